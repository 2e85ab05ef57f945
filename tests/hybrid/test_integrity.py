"""Damaged, edited or hostile index directories: always an IndexFormatError naming the file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil

import numpy as np
import pytest

from rerank_plugins.hybrid import FORMAT_VERSION, HybridRetriever, IndexFormatError
from rerank_plugins.hybrid.manifest import content_digest

TEXTS = [
    "vitamin d deficiency and heart disease",
    "stem cells in the brain",
    "cancer drug clinical trial",
    "immune response to virus infection",
]


@pytest.fixture()
def saved(tmp_path, fake_embedder):
    retriever = HybridRetriever.from_texts(
        TEXTS,
        ids=["a", "b", "c", "d"],
        metadatas=[{"n": i} for i in range(4)],
        embedder=fake_embedder,
        show_progress=False,
    )
    path = tmp_path / "index"
    retriever.save(path)
    return retriever, path


def _load(path, fake_embedder, **kwargs):
    return HybridRetriever.load(path, embedder=fake_embedder, **kwargs)


def _manifest(path) -> dict:
    return json.loads((path / "manifest.json").read_text(encoding="utf-8"))


def _write_manifest(path, manifest: dict, *, reseal: bool) -> None:
    """Rewrite manifest.json; ``reseal`` recomputes content_sha256 (a consistent forgery)."""
    if reseal and "content_sha256" in manifest:
        with contextlib.suppress(TypeError):  # NaN/inf: save cannot write them, no reseal
            manifest["content_sha256"] = content_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _flip_last_byte(file) -> None:
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01  # the lowest mantissa byte of the last float32: still finite
    file.write_bytes(bytes(data))


def test_manifest_records_a_checksum_per_file(saved):
    _, path = saved
    manifest = _manifest(path)
    assert manifest["format_version"] == FORMAT_VERSION == 2
    listed = set(manifest["files"])
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert listed == on_disk - {"manifest.json"}
    assert {"embeddings.npy", "dense.faiss", "bm25/data.csc.index.npy"} <= listed
    assert all(len(r["sha256"]) == 64 and r["size"] > 0 for r in manifest["files"].values())


@pytest.mark.parametrize(
    "name", ["embeddings.npy", "dense.faiss", "bm25/data.csc.index.npy", "bm25/params.index.json"]
)
def test_flipped_bytes_are_detected(saved, fake_embedder, name):
    _, path = saved
    _flip_last_byte(path / name)
    with pytest.raises(IndexFormatError, match=rf"{name}.*sha256"):
        _load(path, fake_embedder)


def test_verify_false_skips_the_checksums_but_not_the_structure(saved, fake_embedder):
    retriever, path = saved
    _flip_last_byte(path / "embeddings.npy")
    loaded = _load(path, fake_embedder, verify=False)  # the documented opt-out
    assert loaded.ids == retriever.ids
    (path / "embeddings.npy").write_bytes((path / "embeddings.npy").read_bytes()[:-8])
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy is truncated"):
        _load(path, fake_embedder, verify=False)


def test_edited_manifest_is_detected(saved, fake_embedder):
    _, path = saved
    manifest = _manifest(path)
    manifest["texts"][1] = "stem cells in the liver"
    _write_manifest(path, manifest, reseal=False)
    with pytest.raises(IndexFormatError, match=r"manifest\.json.*content_sha256"):
        _load(path, fake_embedder)
    assert _load(path, fake_embedder, verify=False).get("b")[0] == "stem cells in the liver"


def test_symlinks_are_refused(saved, fake_embedder, tmp_path):
    _, path = saved
    outside = tmp_path / "outside.npy"
    shutil.copy(path / "embeddings.npy", outside)
    (path / "embeddings.npy").unlink()
    os.symlink(outside, path / "embeddings.npy")
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy is a symlink"):
        _load(path, fake_embedder)


def test_symlinked_directory_inside_is_refused(saved, fake_embedder, tmp_path):
    _, path = saved
    shutil.move(path / "bm25", tmp_path / "bm25-elsewhere")
    os.symlink(tmp_path / "bm25-elsewhere", path / "bm25")
    with pytest.raises(IndexFormatError, match=r"bm25 is a symlink"):
        _load(path, fake_embedder)


@pytest.mark.parametrize("name", ["../outside.npy", "/etc/passwd", "bm25/../embeddings.npy"])
def test_file_names_outside_the_directory_are_refused(saved, fake_embedder, name):
    _, path = saved
    manifest = _manifest(path)
    manifest["files"][name] = manifest["files"]["embeddings.npy"]
    _write_manifest(path, manifest, reseal=True)
    with pytest.raises(IndexFormatError, match="is not allowed"):
        _load(path, fake_embedder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(count=10**12), "count"),
        (lambda m: m.update(count="4"), "count"),
        (lambda m: m.update(count=-1), "count"),
        (lambda m: m.update(count=4.0), "count"),
        (lambda m: m.update(dim=10**9), "dim"),
        (lambda m: m.update(ids=["a", "a", "c", "d"]), "unique"),
        (lambda m: m.update(ids=[1, 2, 3, 4]), "ids"),
        (lambda m: m.update(texts=[None] * 4), "texts"),
        (lambda m: m.update(metadatas=[[1]] * 4), "metadatas"),
        (lambda m: m.update(next_auto_id=-5), "next_auto_id"),
        (lambda m: m["settings"].update(rrf_k=float("nan")), "rrf_k"),
        (lambda m: m["settings"].update(rrf_k="60"), "rrf_k"),
        (lambda m: m["settings"].update(retrievers=["splade"]), "retrievers"),
        (lambda m: m["settings"].update(retrievers=[]), "retrievers"),
        (lambda m: m["settings"].update(batch_size=0), "batch_size"),
        (lambda m: m["settings"].update(fusion="best"), "fusion"),
        (lambda m: m["settings"].update(weights={"dense": float("inf")}), "weights"),
        (lambda m: m["settings"].update(extra={"nested": {"too": "deep"}}), "extra"),
        (lambda m: m.update(format_version=True), "format_version"),
        (lambda m: m.update(surprise=1), "surprise"),
        (lambda m: m.update(settings=[]), "settings"),
        (lambda m: m["files"]["embeddings.npy"].update(sha256="xyz"), "sha256"),
        (lambda m: m["files"].update({"notes.txt": m["files"]["dense.faiss"]}), "notes.txt"),
    ],
)
def test_bad_manifest_values_are_index_format_errors(saved, fake_embedder, edit, message):
    _, path = saved
    manifest = _manifest(path)
    edit(manifest)
    _write_manifest(path, manifest, reseal=True)
    with pytest.raises(IndexFormatError, match=message):
        _load(path, fake_embedder)


def test_deeply_nested_manifest_is_an_index_format_error(saved, fake_embedder):
    _, path = saved
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[:-1] + ',"x":' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(IndexFormatError, match=r"manifest\.json"):
        _load(path, fake_embedder)


def test_npy_header_cannot_claim_a_huge_array(saved, fake_embedder):
    _, path = saved
    target = path / "embeddings.npy"
    with target.open("wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (4, 10**9)}
        )
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy .*(truncated|dim)"):
        _load(path, fake_embedder, verify=False)


def test_object_npy_is_refused(saved, fake_embedder):
    _, path = saved
    np.save(
        path / "bm25" / "data.csc.index.npy", np.array([1, "x"], dtype=object), allow_pickle=True
    )
    with pytest.raises(IndexFormatError, match=r"data\.csc\.index\.npy"):
        _load(path, fake_embedder, verify=False)


def test_bm25_document_ids_are_bounded_by_the_count(saved, fake_embedder):
    _, path = saved
    indices = path / "bm25" / "indices.csc.index.npy"
    array = np.load(indices)
    array[0] = 999
    np.save(indices, array)
    manifest = _manifest(path)
    manifest["files"]["bm25/indices.csc.index.npy"]["size"] = indices.stat().st_size
    _write_manifest(path, manifest, reseal=True)
    with pytest.raises(IndexFormatError, match=r"document ids outside 0\.\.3"):
        _load(path, fake_embedder, verify=False)


def test_hnsw_settings_over_a_flat_faiss_file_fail_at_load(saved, fake_embedder):
    _, path = saved
    manifest = _manifest(path)
    manifest["settings"]["faiss_index"] = "hnsw"
    _write_manifest(path, manifest, reseal=True)
    with pytest.raises(IndexFormatError, match=r"dense\.faiss holds a IndexFlatIP.*'hnsw'"):
        _load(path, fake_embedder)


def test_format_1_still_loads_with_a_warning(saved, fake_embedder, caplog):
    retriever, path = saved
    manifest = _manifest(path)
    for key in ("files", "content_sha256"):
        del manifest[key]
    manifest["format_version"] = 1
    _write_manifest(path, manifest, reseal=False)
    with caplog.at_level(logging.WARNING):
        loaded = _load(path, fake_embedder)
    assert "format_version 1" in caplog.text and "save it again" in caplog.text
    queries = ["heart vitamin", "brain cells"]
    assert loaded.search_many(queries, k=4) == retriever.search_many(queries, k=4)
    loaded.save(path)
    assert _manifest(path)["format_version"] == 2


class WithOption(HybridRetriever):
    """Stands for a future constructor setting (e.g. a fusion option) saved in ``settings``."""

    def __init__(self, *, fusion_depth: int = 50, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fusion_depth = fusion_depth
        self.settings["fusion_depth"] = fusion_depth


def test_new_constructor_settings_round_trip_without_schema_changes(tmp_path, fake_embedder):
    retriever = WithOption.from_texts(
        TEXTS, embedder=fake_embedder, show_progress=False, fusion_depth=7
    )
    retriever.save(tmp_path / "i")
    assert WithOption.load(tmp_path / "i", embedder=fake_embedder).fusion_depth == 7
    with pytest.raises(IndexFormatError, match="fusion_depth"):  # a build that lacks it
        HybridRetriever.load(tmp_path / "i", embedder=fake_embedder)
