"""Framework adapters for rerank-plugins.

Each adapter lives in its own module and needs its framework's extra; this package itself
imports neither framework, so ``import rerank_plugins.integrations`` is always cheap.

* :mod:`rerank_plugins.integrations.langchain` (``pip install "rerank-plugins[langchain]"``):
  ``CrossEncoderCompressor``, ``RerankPluginsCrossEncoder``, ``HybridRetriever``.
* :mod:`rerank_plugins.integrations.llama_index` (``pip install "rerank-plugins[llamaindex]"``):
  ``CrossEncoderRerank``, ``HybridRetriever``.

The adapters only convert types: scoring, batching, fusion and the retrieve-then-rerank
pipeline all live in the core (:class:`rerank_plugins.CrossEncoderReranker`,
:class:`rerank_plugins.HybridRetriever`, :class:`rerank_plugins.RerankPipeline`).
"""

from __future__ import annotations

from typing import Any

from ..types import Hit


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """Metadata for a framework document built from a core :class:`~rerank_plugins.Hit`.

    Keeps the hit's own metadata and adds ``scores``/``ranks`` (per first-stage retriever),
    ``retrieval_score`` (the fused first-stage score) and, when the hit was reranked,
    ``relevance_score`` (the cross-encoder score). All scores are Python floats.
    """
    metadata = dict(hit.metadata)
    metadata["scores"] = {name: float(value) for name, value in hit.scores.items()}
    metadata["ranks"] = {name: int(value) for name, value in hit.ranks.items()}
    retrieval = hit.retrieval_score if hit.retrieval_score is not None else hit.score
    metadata["retrieval_score"] = float(retrieval)
    if hit.rerank_score is not None:
        metadata["relevance_score"] = float(hit.rerank_score)
    return metadata


def run_search(
    retriever: Any,
    query: str,
    k: int,
    *,
    reranker: Any = None,
    candidates: int | None = None,
    pipeline_kwargs: dict[str, Any] | None = None,
) -> list[Hit]:
    """Retrieve ``k`` hits with the core retriever, or run the core pipeline with a reranker.

    Without a reranker this is ``retriever.search(query, k=k)``; with one it is
    ``RerankPipeline(retriever, reranker, top_k=k, candidates=...).run(query).hits``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if reranker is None:
        return list(retriever.search(query, k=k))
    from ..pipeline import RerankPipeline

    kwargs: dict[str, Any] = dict(pipeline_kwargs or {})
    if candidates is not None:
        kwargs["candidates"] = max(candidates, k)
    pipeline = RerankPipeline(retriever, reranker, top_k=k, **kwargs)
    try:
        return list(pipeline.run(query).hits)
    finally:
        pipeline.close()


#: Metadata keys the adapters add; kept out of the text a model or an LLM sees.
SCORE_KEYS = ("scores", "ranks", "retrieval_score", "relevance_score")

__all__ = ["SCORE_KEYS", "hit_metadata", "run_search"]
