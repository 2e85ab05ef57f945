"""Small typed result objects shared by the reranker, the retriever and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One passage after reranking.

    ``index`` is the passage's position in the list the caller passed in, so results can
    always be mapped back to the caller's own objects.
    """

    index: int
    score: float
    passage: str


@dataclass(frozen=True, slots=True)
class Hit:
    """One document returned by a retriever or a pipeline.

    ``score`` is the score the hit is ranked by (fused score after retrieval, cross-encoder
    score after reranking). ``scores``/``ranks`` hold each first-stage retriever's own score
    and 1-based rank (absent when that retriever did not return the document).
    """

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    retrieval_score: float | None = None
    rerank_score: float | None = None
