"""The LangChain peer gets the fusion our built retriever ran, defaults resolved in one place."""

from __future__ import annotations

from typing import Any

import pytest

from rerank_plugins.evaluation.peers import _peer_rrf
from rerank_plugins.hybrid import HybridRetriever

TEXTS = ["aspirin lowers fever", "statins lower cholesterol", "exercise helps sleep"]


def _built(fake_embedder: Any, **fusion: Any) -> HybridRetriever:
    return HybridRetriever.from_texts(TEXTS, embedder=fake_embedder, **fusion)


def test_the_default_fusion_reaches_the_peer_as_its_weights(fake_embedder: Any) -> None:
    notes: list[str] = []
    weights, c = _peer_rrf(_built(fake_embedder), notes)
    assert weights == pytest.approx([0.6, 1.4]) and c == 60.0
    assert len(notes) == 1 and notes[0].startswith("fusion=zscore: ours only")


def test_equal_rrf_is_the_peers_own_default(fake_embedder: Any) -> None:
    notes: list[str] = []
    weights, c = _peer_rrf(_built(fake_embedder, fusion="rrf", weights=None, rrf_k=10), notes)
    assert weights == pytest.approx([0.5, 0.5]) and c == 10.0 and notes == []


def test_a_partial_weighting_fills_in_the_retrievers_implicit_one(fake_embedder: Any) -> None:
    notes: list[str] = []
    retriever = _built(fake_embedder, fusion="rrf", weights={"dense": 2.0}, rrf_k=7.5)
    weights, c = _peer_rrf(retriever, notes)
    assert weights == pytest.approx([1.0, 2.0]) and c == 7.5
    assert notes == ["rrf_k=7.5: LangChain's EnsembleRetriever takes an int c=7"]
