"""``HybridRetriever.save`` and ``.load``: the file layout is in :mod:`.storage`.

Load order, cheapest and safest first: the manifest (JSON, schema, its own checksum), then
per data file: no symlink and inside the directory, its header against the declared
document count (so no array is allocated from a bogus shape), its size and sha256 against
the manifest, and only then the file is parsed (numpy / FAISS / bm25s) and checked again
(FAISS kind and metric, bm25s offsets and document ids). Every failure is an
:class:`~.storage.IndexFormatError` naming the file and the problem.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import storage
from .manifest import FORMAT_VERSION, Manifest, content_digest, encode

if TYPE_CHECKING:
    from .retriever import HybridRetriever


def _body(retriever: HybridRetriever) -> dict[str, Any]:
    """The manifest of ``retriever`` without ``files``/``content_sha256`` (read lock held)."""
    dense, embedder = retriever._dense, retriever._embedder
    return {
        "format_version": FORMAT_VERSION,
        "settings": retriever.settings,
        "embedder": embedder.name if embedder is not None else None,
        "count": len(retriever._ids),
        "dim": dense.dim if dense is not None else None,
        "next_auto_id": retriever._next_auto,
        "ids": retriever._ids,
        "texts": retriever._texts,
        "metadatas": retriever._metadatas,
    }


def save_index(retriever: HybridRetriever, path: str | os.PathLike[str]) -> None:
    """Write ``retriever`` to directory ``path`` atomically (see :mod:`.storage`)."""
    final = Path(path).expanduser().resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    with storage.directory_lock(final, exclusive=True):
        storage.clean_debris(final)
        with retriever._lock.read():  # one consistent state, even while others add/delete
            manifest = _body(retriever)
            encode(manifest)  # unserialisable metadata fails before anything is written
            temp = storage.staging_directory(final)
            try:
                if retriever._dense is not None:
                    retriever._dense.save(
                        str(temp / storage.EMBEDDINGS), str(temp / storage.FAISS_FILE)
                    )
                if retriever._bm25 is not None:
                    retriever._bm25.save(temp / storage.BM25_DIR)
                manifest["files"] = storage.file_records(temp)
                manifest["content_sha256"] = content_digest(manifest)
                (temp / storage.MANIFEST).write_bytes(encode(manifest))
                storage.publish_directory(temp, final)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise


def _expected_files(retriever: HybridRetriever, count: int) -> set[str]:
    expected: set[str] = set()
    if retriever._dense is not None:
        expected.add(storage.EMBEDDINGS)
        if count:
            expected.add(storage.FAISS_FILE)
    if retriever._bm25 is not None:
        names = (*storage.BM25_FILES, *storage.BM25_OPTIONAL)
        expected.update(f"{storage.BM25_DIR}/{name}" for name in names)
    return expected


def load_index(
    cls: type[HybridRetriever],
    path: str | os.PathLike[str],
    *,
    embedder: Any,
    tokenizer: Callable[[str], Sequence[str]] | None,
    show_progress: bool,
    device: str | None,
    dtype: str | None,
    verify: bool,
) -> HybridRetriever:
    """See :meth:`HybridRetriever.load`."""
    directory = Path(path).expanduser().resolve()
    if directory.parent.is_dir() and storage.has_debris(directory):
        with storage.directory_lock(directory, exclusive=True):
            storage.clean_debris(directory)
    if not directory.parent.is_dir():
        raise storage.IndexFormatError(f"index directory {str(directory)!r} does not exist")
    with storage.directory_lock(directory, exclusive=False):
        manifest = storage.read_manifest(directory, verify=verify)
        runtime = {"show_progress": show_progress, "device": device, "dtype": dtype}
        retriever = _construct(cls, directory, manifest, embedder, tokenizer, runtime)
        return _load_files(retriever, directory, manifest, verify)


def _construct(
    cls: type[HybridRetriever],
    directory: Path,
    manifest: Manifest,
    embedder: Any,
    tokenizer: Callable[[str], Sequence[str]] | None,
    runtime: dict[str, Any],
) -> HybridRetriever:
    """A retriever with the saved settings (and the caller's embedder/tokenizer/device)."""
    settings = manifest.settings
    if "dense" in settings.retrievers and embedder is None:
        embedder = manifest.embedder
        if embedder is None:
            raise ValueError(
                f"{directory} was built with a callable or model-object embedder, which is "
                "not saved; pass it again: HybridRetriever.load(path, embedder=...)"
            )
    if settings.custom_tokenizer and tokenizer is None:
        raise ValueError(
            f"{directory} was built with a custom tokenizer; pass it again: "
            "HybridRetriever.load(path, tokenizer=...)"
        )
    kwargs = settings.constructor_kwargs()
    if embedder is not None:
        kwargs["embedder"] = embedder
    try:
        return cls(tokenizer=tokenizer, **runtime, **kwargs)
    except (KeyError, TypeError, ValueError) as error:
        raise storage.IndexFormatError(
            f"{directory / storage.MANIFEST}: bad settings ({error})"
        ) from error


def _load_files(
    retriever: HybridRetriever, directory: Path, manifest: Manifest, verify: bool
) -> HybridRetriever:
    count = manifest.count
    storage.check_listed(directory, manifest, _expected_files(retriever, count))
    if retriever._dense is not None:
        _load_dense(retriever, directory, manifest, verify)
    if retriever._bm25 is not None:
        _load_bm25(retriever, directory, manifest, verify)
    retriever._restore(manifest.ids, manifest.texts, manifest.metadatas, manifest.next_auto_id)
    return retriever


def _load_dense(
    retriever: HybridRetriever, directory: Path, manifest: Manifest, verify: bool
) -> None:
    dense = retriever._dense
    assert dense is not None
    embeddings = storage.read_embeddings(directory, manifest, verify=verify)
    faiss_path = None
    if manifest.count:
        faiss_path = storage.safe_file(directory, storage.FAISS_FILE)
        assert faiss_path is not None
        storage.verify_file(faiss_path, storage.FAISS_FILE, manifest, verify=verify)
    try:
        dense.load(embeddings, None if faiss_path is None else str(faiss_path))
    except (RuntimeError, ValueError) as error:
        raise storage.IndexFormatError(
            f"{faiss_path} is unreadable or inconsistent: {error}"
        ) from error
    if faiss_path is not None:
        storage.check_faiss(
            dense._index, dense.faiss, dense.kind, manifest.count, embeddings.shape[1], faiss_path
        )


def _load_bm25(
    retriever: HybridRetriever, directory: Path, manifest: Manifest, verify: bool
) -> None:
    bm25 = retriever._bm25
    assert bm25 is not None
    bm25_dir = directory / storage.BM25_DIR
    if manifest.format_version >= 2:
        saved = any(name.startswith(f"{storage.BM25_DIR}/") for name in manifest.files)
    else:
        saved = (
            storage.safe_file(
                directory, f"{storage.BM25_DIR}/{storage.BM25_FILES[0]}", required=False
            )
            is not None
        )
    texts = manifest.texts
    needs_dir = bm25.engine == "bm25s" and manifest.count and any(bm25.tokenize(texts[:50]))
    if needs_dir and not saved:
        raise storage.IndexFormatError(f"{bm25_dir} is missing")
    if saved and bm25.engine == "bm25s":
        storage.check_bm25_files(directory, manifest, verify=verify)
    try:
        bm25.load(bm25_dir if saved else None, count=manifest.count, texts=texts)
    except Exception as error:  # bm25s raises a variety of errors on corrupt files
        raise storage.IndexFormatError(
            f"{bm25_dir} is unreadable or inconsistent: {error}"
        ) from error
    if saved and bm25.engine == "bm25s":
        storage.check_bm25_scores(bm25._model.scores, manifest.count, directory)
