"""The on-disk document-embedding cache: reused for the same model and texts, never wrong."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rerank_plugins.hybrid import HybridRetriever
from rerank_plugins.hybrid.dense import Embedder

TEXTS = ["vitamin d and bone health", "smoking causes lung cancer", "antibiotics kill bacteria"]


@pytest.fixture()
def tiny_st_path(tiny_embedder_path):
    return str(tiny_embedder_path)


def test_second_build_reuses_cached_embeddings(tiny_st_path, tmp_path, monkeypatch):
    cache = tmp_path / "emb"
    first = HybridRetriever.from_texts(
        TEXTS, embedder=tiny_st_path, embedding_cache=cache, show_progress=False
    )
    files = list(cache.glob("*.npy"))
    assert len(files) == 1
    calls = []
    original = Embedder.encode
    monkeypatch.setattr(
        Embedder,
        "encode",
        lambda self, texts, **kw: calls.append(list(texts)) or original(self, texts, **kw),
    )
    second = HybridRetriever.from_texts(
        TEXTS, embedder=tiny_st_path, embedding_cache=cache, show_progress=False
    )
    assert calls == []  # documents came from the cache
    np.testing.assert_array_equal(first._dense.embeddings, second._dense.embeddings)
    query = "bone vitamin"
    assert [h.id for h in first.search(query, k=3)] == [h.id for h in second.search(query, k=3)]


def test_other_texts_or_changed_model_miss_the_cache(tiny_st_path, tmp_path):
    cache = tmp_path / "emb"
    HybridRetriever.from_texts(
        TEXTS, embedder=tiny_st_path, embedding_cache=cache, show_progress=False
    )
    HybridRetriever.from_texts(
        TEXTS[:2], embedder=tiny_st_path, embedding_cache=cache, show_progress=False
    )
    assert len(list(cache.glob("*.npy"))) == 2
    copy = tmp_path / "model"
    shutil.copytree(tiny_st_path, copy)
    before = Embedder(str(copy), cache_dir=cache)._cache_path(TEXTS)
    modules = copy / "modules.json"
    modules.write_text(modules.read_text() + "\n")
    assert Embedder(str(copy), cache_dir=cache)._cache_path(TEXTS) != before


def test_corrupt_cache_file_is_ignored_and_rewritten(tiny_st_path, tmp_path):
    cache = tmp_path / "emb"
    first = HybridRetriever.from_texts(
        TEXTS, embedder=tiny_st_path, embedding_cache=cache, show_progress=False
    )
    (path,) = cache.glob("*.npy")
    path.write_bytes(path.read_bytes()[:40])
    again = HybridRetriever.from_texts(
        TEXTS, embedder=tiny_st_path, embedding_cache=cache, show_progress=False
    )
    np.testing.assert_allclose(first._dense.embeddings, again._dense.embeddings, atol=1e-6)
    assert np.load(path, allow_pickle=False).shape == (len(TEXTS), first._dense.dim)


def test_callable_embedders_are_not_cached(fake_embedder, tmp_path):
    cache = tmp_path / "emb"
    HybridRetriever.from_texts(
        TEXTS, embedder=fake_embedder, embedding_cache=cache, show_progress=False
    )
    assert not cache.exists() or not list(cache.iterdir())
