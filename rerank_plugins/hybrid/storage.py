"""On-disk format of a :class:`~rerank_plugins.hybrid.HybridRetriever` (no pickle anywhere).

A saved index is a directory of regular files (no symlinks)::

    manifest.json     format_version, settings, embedder, count, dim, ids, texts, metadatas,
                      files (size + sha256 of every file below), content_sha256
    embeddings.npy    (count, dim) float32, L2-normalised            [dense only]
    dense.faiss       faiss.write_index                                [dense only, count > 0]
    bm25/             bm25s's own save format                          [bm25 only, count > 0]

Saving writes a temporary sibling ``.<name>.tmp-*``, fsyncs every file and directory, then
renames it into place (the previous index goes to ``.<name>.old-*`` for the instant between
the two renames and is then deleted). Saves and loads of indexes in one parent directory
hold an advisory lock on that directory (``flock``; shared for loads, exclusive for saves),
so concurrent saves serialize and a load never sees a half-replaced index. Each save or
load first removes what a killed save left behind and, when a kill came between the two
renames, moves the surviving old index back into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from .._files import publish_directory, staging_directory
from .._files import sha256_file as sha256_of
from . import bm25
from .manifest import FORMAT_VERSION, READABLE_VERSIONS, Manifest, content_digest, describe

try:  # POSIX; elsewhere saves serialize within the process only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "IndexFormatError",
    "publish_directory",
    "staging_directory",
]

MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
FAISS_FILE = "dense.faiss"
BM25_DIR = "bm25"
#: The files bm25s reads from ``bm25/`` (it finds them by these names).
BM25_FILES = (
    "params.index.json",
    "vocab.index.json",
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
)
#: Optional: bm25s writes the first for some settings; the rest are our token ids and
#: vocabulary (absent from indexes saved before they existed, which still load).
BM25_OPTIONAL = (
    "nonoccurrence_array.index.npy",
    bm25.VOCAB_FILE,
    bm25.TOKEN_IDS_FILE,
    bm25.TOKEN_LENGTHS_FILE,
    bm25.TOKENS_FILE,
)

logger = logging.getLogger(__name__)
_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class IndexFormatError(ValueError):
    """A saved index is missing, truncated, corrupt, unsafe, or from another format version."""


# ---------------------------------------------------------------------- locking and debris
@contextlib.contextmanager
def directory_lock(final: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the advisory lock on ``final``'s parent directory (see the module docs)."""
    parent = final.parent
    if fcntl is None:  # pragma: no cover - Windows: in-process only
        with _process_locks_guard:
            lock = _process_locks.setdefault(str(parent), threading.Lock())
        with lock:
            yield
        return
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _debris(final: Path) -> tuple[list[Path], list[Path]]:
    temps, olds = [], []
    for entry in final.parent.iterdir():
        if entry.name.startswith(f".{final.name}.tmp-"):
            temps.append(entry)
        elif entry.name.startswith(f".{final.name}.old-"):
            olds.append(entry)
    return temps, olds


def has_debris(final: Path) -> bool:
    temps, olds = _debris(final)
    return bool(temps or olds)


def clean_debris(final: Path) -> None:
    """Remove leftovers of killed saves of ``final``; restore the old index if only it survived.

    Call with the exclusive :func:`directory_lock` held (a live save's temp is then not ours
    to delete: the saver would hold the lock).
    """
    temps, olds = _debris(final)
    if olds and not os.path.lexists(final):
        survivor = max(olds, key=lambda p: p.stat().st_mtime_ns)
        os.replace(survivor, final)
        olds.remove(survivor)
        logger.warning("restored %s from %s (a save was interrupted)", final, survivor.name)
    for leftover in temps + olds:
        shutil.rmtree(leftover, ignore_errors=True)
        logger.info("removed %s, left by an interrupted save", leftover)


# ---------------------------------------------------------------------- writing
def file_records(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relative/path: {"size", "sha256"}}`` for every file under ``directory``."""
    records = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        records[relative] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return records


# ---------------------------------------------------------------------- reading safely
def safe_file(directory: Path, relative: str, *, required: bool = True) -> Path | None:
    """``directory/relative`` if it is a regular file inside ``directory`` reached without
    symlinks; None when absent and not ``required``; IndexFormatError otherwise."""
    parts = relative.split("/")
    if relative.startswith("/") or "\\" in relative or any(p in ("", ".", "..") for p in parts):
        raise IndexFormatError(f"{directory / MANIFEST}: file name {relative!r} is not allowed")
    path = directory
    for part in parts:
        path = path / part
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            if required:
                raise IndexFormatError(f"{directory / relative} is missing") from None
            return None
        if stat.S_ISLNK(mode):
            raise IndexFormatError(
                f"{path} is a symlink; an index directory must hold its own regular files"
            )
    if not stat.S_ISREG(mode):
        raise IndexFormatError(f"{path} is not a regular file")
    return path


def verify_file(path: Path, relative: str, manifest: Manifest, *, verify: bool) -> None:
    """Compare ``path`` with its manifest record: size always, sha256 unless ``verify=False``."""
    if manifest.format_version < 2:
        return
    record = manifest.files.get(relative)
    if record is None:
        raise IndexFormatError(f"{path} is not listed in {MANIFEST}'s 'files'")
    size = path.stat().st_size
    if size != record.size:
        raise IndexFormatError(
            f"{path} is truncated or was modified: {size} bytes, {MANIFEST} records {record.size}"
        )
    if verify and sha256_of(path) != record.sha256:
        raise IndexFormatError(
            f"{path} is damaged or was modified: its sha256 differs from the one in {MANIFEST}"
        )


def check_listed(directory: Path, manifest: Manifest, expected: set[str]) -> None:
    """Every file the manifest lists must be one this index reads (and be safe to read)."""
    for relative in manifest.files:
        safe_file(directory, relative)
        if relative not in expected:
            raise IndexFormatError(
                f"{directory / MANIFEST} lists {relative!r}, which this index does not use"
            )


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a ``.npy`` header, checked against the file's size (no data read)."""
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = handle.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise IndexFormatError(f"{path} is truncated or not a .npy file ({error})") from error
    if dtype.hasobject or fortran:
        raise IndexFormatError(f"{path} holds {dtype} data; expected a plain numeric C array")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise IndexFormatError(
            f"{path} is truncated or padded: {actual} bytes, its header {shape} needs {expected}"
        )
    return tuple(int(n) for n in shape), dtype


def read_embeddings(directory: Path, manifest: Manifest, *, verify: bool) -> np.ndarray:
    path = safe_file(directory, EMBEDDINGS)
    assert path is not None
    shape, dtype = npy_header(path)
    if len(shape) != 2 or dtype != np.dtype("<f4"):
        raise IndexFormatError(f"{path} must be a 2-D float32 array, got {dtype} {shape}")
    if shape[0] != manifest.count:
        raise IndexFormatError(
            f"{path} has {shape[0]} rows but {MANIFEST} lists {manifest.count} documents"
        )
    if manifest.dim is not None and manifest.count and shape[1] != manifest.dim:
        raise IndexFormatError(f"{path} has dim {shape[1]} but {MANIFEST} says {manifest.dim}")
    verify_file(path, EMBEDDINGS, manifest, verify=verify)
    array = np.load(path, allow_pickle=False)
    if array.size and not np.isfinite(array).all():
        raise IndexFormatError(f"{path} holds NaN or inf values")
    return np.ascontiguousarray(array)


def check_faiss(index: Any, faiss: Any, kind: str, count: int, dim: int, path: Path) -> None:
    """The loaded FAISS index is the kind the settings name, inner product, count x dim."""
    kinds = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSW, "ivf": faiss.IndexIVF}
    expected = kinds.get(kind)
    if expected is not None and not isinstance(index, expected):
        raise IndexFormatError(
            f"{path} holds a {type(index).__name__}, but the settings say faiss_index={kind!r}"
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexFormatError(f"{path} does not use inner product (metric {index.metric_type})")
    if index.ntotal != count or index.d != dim:
        raise IndexFormatError(
            f"{path} holds {index.ntotal} vectors of dim {index.d}; "
            f"embeddings.npy has {count} of dim {dim}"
        )


def check_bm25_files(directory: Path, manifest: Manifest, *, verify: bool) -> None:
    """bm25s's arrays: safe, listed, consistent with each other and with the document count."""
    for name in (*BM25_FILES, *BM25_OPTIONAL):
        relative = f"{BM25_DIR}/{name}"
        path = safe_file(directory, relative, required=name in BM25_FILES)
        if path is not None:
            verify_file(path, relative, manifest, verify=verify)
    shapes = {}
    for name in ("data", "indices", "indptr"):
        path = directory / BM25_DIR / f"{name}.csc.index.npy"
        shape, dtype = npy_header(path)
        if len(shape) != 1 or dtype.kind not in "fiu":
            raise IndexFormatError(f"{path} must be a 1-D numeric array, got {dtype} {shape}")
        shapes[name] = shape[0]
    if shapes["data"] != shapes["indices"] or shapes["indptr"] < 1:
        raise IndexFormatError(f"{directory / BM25_DIR}: data/indices/indptr sizes disagree")


def check_bm25_scores(scores: dict[str, Any], count: int, directory: Path) -> None:
    """After bm25s loaded: ``indptr`` is a valid offset array and every document id < count."""
    where = directory / BM25_DIR
    indptr, indices = np.asarray(scores["indptr"]), np.asarray(scores["indices"])
    if int(scores.get("num_docs", -1)) != count:
        raise IndexFormatError(f"{where} holds {scores.get('num_docs')} documents, not {count}")
    if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise IndexFormatError(f"{where}: indptr is not a valid offset array")
    if len(indices) and (indices.min() < 0 or indices.max() >= count):
        raise IndexFormatError(f"{where}: document ids outside 0..{count - 1}")


def read_manifest(directory: Path, *, verify: bool) -> Manifest:
    """Parse and validate ``manifest.json``; with ``verify``, check its own checksum too."""
    if not directory.is_dir():
        raise IndexFormatError(f"index directory {str(directory)!r} does not exist")
    try:
        path = safe_file(directory, MANIFEST)
    except IndexFormatError as error:
        if "is missing" not in str(error):
            raise
        raise IndexFormatError(
            f"{directory / MANIFEST} is missing; is {directory} a saved HybridRetriever?"
        ) from None
    assert path is not None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise IndexFormatError(
            f"{path} is not valid JSON ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, dict):
        raise IndexFormatError(f"{path} must hold a JSON object")
    version = data.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise IndexFormatError(
            f"{path} has format_version {version!r}; this version of rerank-plugins reads "
            f"format_version {' and '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        raise IndexFormatError(f"{path}: {describe(error)}") from None
    except RecursionError:
        raise IndexFormatError(f"{path} nests its values too deeply") from None
    if manifest.format_version < 2:
        logger.warning(
            "%s is format_version 1 (no checksums): loaded without integrity checks; save it "
            "again to write format_version %d",
            directory,
            FORMAT_VERSION,
        )
    elif verify and _digest_or_none(data) != manifest.content_sha256:
        raise IndexFormatError(
            f"{path} is damaged or was edited: its content does not match its content_sha256 "
            "(HybridRetriever.load(..., verify=False) skips the checksums)"
        )
    return manifest


def _digest_or_none(data: dict[str, Any]) -> str | None:
    try:
        return content_digest(data)
    except TypeError:  # e.g. a lone surrogate escaped in the JSON: not what save wrote
        return None
