"""Shared test data for the adapter tests: a tiny corpus, a fake embedder, the core index."""

from __future__ import annotations

import numpy as np
from rp_test_support import HashEmbedder

from rerank_plugins.rerankers import BaseReranker

CORPUS = [
    ("d01", "vitamin d deficiency is associated with increased risk of heart disease", "cardio"),
    ("d02", "vitamin d treatment reduced the risk of death in clinical trial patients", "cardio"),
    ("d03", "the tumor growth in mice was decreased by the drug therapy", "oncology"),
    (
        "d04",
        "cancer cells with the gene mutation had higher expression of the receptor",
        "oncology",
    ),
    ("d05", "stem cells in brain tissue lead to growth of new cells", "neuro"),
    ("d06", "the virus infection caused an immune response in human blood cells", "immunology"),
    ("d07", "bacteria in the blood cause infection and increased immune activity", "immunology"),
    ("d08", "dna and rna levels were lower in cells with the mutation", "genetics"),
    ("d09", "the protein pathway signal is not associated with disease risk", "genetics"),
    ("d10", "heart disease patients with lower vitamin d levels had higher death risk", "cardio"),
    ("d11", "drug treatment of brain tumor in human patients reduced tumor growth", "oncology"),
    ("d12", "immune cells and virus infection in mice model of disease", "immunology"),
]
QUERY = "does vitamin d deficiency increase heart disease risk"


def build_core_retriever():
    """The real core hybrid retriever over CORPUS with the fake embedder."""
    from rerank_plugins.hybrid import HybridRetriever

    return HybridRetriever.from_texts(
        [text for _, text, _ in CORPUS],
        ids=[doc_id for doc_id, _, _ in CORPUS],
        metadatas=[{"topic": topic, "source": f"{doc_id}.txt"} for doc_id, _, topic in CORPUS],
        embedder=HashEmbedder(),
        show_progress=False,
    )


def _overlap(queries: list[str], passages: list[str]) -> np.ndarray:
    scores = []
    for query, passage in zip(queries, passages, strict=True):
        words = set(query.lower().split())
        scores.append(sum(word in words for word in passage.lower().split()))
    return np.asarray(scores, dtype=np.float32)


class OverlapReranker(BaseReranker):
    """A reranker with the core surface that is not a CrossEncoderReranker (word overlap)."""

    model_name = "word-overlap"

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        return _overlap(queries, passages)


class AsyncOnlyReranker(BaseReranker):
    """A core-surface reranker whose blocking path fails: proves async callers await it."""

    model_name = "async-only"

    def __init__(self) -> None:
        self.async_calls = 0

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        raise AssertionError("the async path must not call the blocking scorer")

    async def _ascore_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        self.async_calls += 1
        return _overlap(queries, passages)


def count_pipeline_builds(monkeypatch) -> list[dict]:
    """Record the keyword arguments of every RerankPipeline built from now on."""
    import rerank_plugins.pipeline as pipeline_module

    built: list[dict] = []

    class Counting(pipeline_module.RerankPipeline):
        def __init__(self, *args, **kwargs):
            built.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "RerankPipeline", Counting)
    return built
