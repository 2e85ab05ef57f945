"""The on-disk document-embedding cache: reused for the same model and texts, never wrong."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins.hybrid import HybridRetriever
from rerank_plugins.hybrid.dense import Embedder

TEXTS = ["vitamin d and bone health", "smoking causes lung cancer", "antibiotics kill bacteria"]


@pytest.fixture(scope="module")
def tiny_st_path(tmp_path_factory, tiny_ce_path):
    """A tiny random sentence-transformers embedder built from the tiny BERT's tokenizer."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-st")
    tokenizer = BertTokenizerFast.from_pretrained(tiny_ce_path)
    bert_dir = directory / "bert"
    tokenizer.save_pretrained(bert_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(bert_dir)
    transformer = models.Transformer(str(bert_dir), max_seq_length=64)
    pooling = models.Pooling(
        getattr(transformer, "get_embedding_dimension", None)
        and transformer.get_embedding_dimension()
        or transformer.get_word_embedding_dimension()
    )
    model_dir = directory / "st"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(model_dir))
    return str(model_dir)


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
    embedder = Embedder(tiny_st_path, cache_dir=cache)
    before = embedder._cache_path(TEXTS)
    config = next(
        p for p in __import__("pathlib").Path(tiny_st_path).iterdir() if p.name == "modules.json"
    )
    config.write_text(config.read_text() + "\n")
    assert Embedder(tiny_st_path, cache_dir=cache)._cache_path(TEXTS) != before


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
