"""Small typed result objects shared by the reranker, the retriever and the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


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


@runtime_checkable
class SearchesHits(Protocol):
    """A first stage with ``search(query, k) -> list[Hit]`` (e.g. :class:`HybridRetriever`)."""

    def search(self, query: str, k: int = 10) -> list[Hit]: ...


@runtime_checkable
class ScoresPassages(Protocol):
    """A second stage with ``score(query, passages) -> array`` (e.g. CrossEncoderReranker)."""

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class Reranker(ScoresPassages, Protocol):
    """The full reranker surface: what the pipeline, the adapters, the server and the CLI use.

    :class:`~rerank_plugins.CrossEncoderReranker` and every
    :class:`~rerank_plugins.rerankers.BaseReranker` subclass have it.
    """

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...

    def rerank(
        self,
        query: str,
        passages: Sequence[str],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RerankResult]: ...

    def rerank_many(
        self,
        queries: Sequence[str],
        passage_lists: Sequence[Sequence[str]],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[list[RerankResult]]: ...

    async def ascore(self, query: str, passages: Sequence[str]) -> np.ndarray: ...

    async def arerank(
        self,
        query: str,
        passages: Sequence[str],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RerankResult]: ...
