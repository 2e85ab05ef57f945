"""The surface every reranker shares: validate once, score in one batched call, rank.

Subclasses implement :meth:`BaseReranker._score_checked` (already-validated, aligned
``queries``/``passages`` lists in, float32 scores out) and inherit ``score``,
``score_pairs``, ``rerank``, ``rerank_many`` and their async twins. A subclass with a native
async path (an HTTP client) overrides :meth:`BaseReranker._ascore_checked` as well.

NaN policy: every score that leaves a public method is finite. A subclass that produces NaN
or an infinity makes the call raise :class:`~rerank_plugins._validation.NonFiniteScoreError`
(a ``ValueError``) naming the first bad input, never a silently misplaced result;
:class:`~rerank_plugins.RerankPipeline` falls back to first-stage order on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from .._validation import (
    check_finite_scores,
    check_passages,
    check_query,
    check_text,
    check_threshold,
    check_top_n,
)
from ..types import RerankResult


class BaseReranker:
    """Shared validation, ranking and async plumbing for rerankers.

    Example:
        >>> import numpy as np
        >>> class Lengths(BaseReranker):
        ...     def _score_checked(self, queries, passages):
        ...         return np.array([len(p) for p in passages], dtype=np.float32)
        >>> [r.index for r in Lengths().rerank("q", ["a", "abc", "ab"])]
        [1, 2, 0]
    """

    # ------------------------------------------------------------------ to implement
    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """Scores aligned with the (already validated) pairs; higher is more relevant."""
        raise NotImplementedError

    async def _ascore_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """Async :meth:`_score_checked`; by default the blocking call runs in a thread."""
        return await asyncio.to_thread(self._score_checked, queries, passages)

    # ------------------------------------------------------------------ checked scoring
    def _finite_scores(self, queries: list[str], passages: list[str], what: str) -> np.ndarray:
        """:meth:`_score_checked` with its output checked: one finite score per pair."""
        return check_finite_scores(self._score_checked(queries, passages), len(passages), what=what)

    async def _afinite_scores(
        self, queries: list[str], passages: list[str], what: str
    ) -> np.ndarray:
        """Async :meth:`_finite_scores`."""
        scores = await self._ascore_checked(queries, passages)
        return check_finite_scores(scores, len(passages), what=what)

    # ------------------------------------------------------------------ sync
    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Score each passage against ``query``; float32 array aligned with ``passages``."""
        queries, checked = _query_pairs(query, passages)
        return self._finite_scores(queries, checked, "passage")

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Score arbitrary (query, passage) pairs; float32 array aligned with ``pairs``."""
        return self._finite_scores(*_split_pairs(pairs), "pair")

    def rerank(
        self,
        query: str,
        passages: Sequence[str],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RerankResult]:
        """Return passages best first, each with its original index and score.

        Without ``top_n`` and ``score_threshold`` every passage comes back exactly once.
        Ties keep input order.
        """
        top_n = check_top_n(top_n)
        score_threshold = check_threshold(score_threshold)
        queries, checked = _query_pairs(query, passages)  # a generator is consumed once, here
        return ranked(
            self._finite_scores(queries, checked, "passage"), checked, top_n, score_threshold
        )

    def rerank_many(
        self,
        queries: Sequence[str],
        passage_lists: Sequence[Sequence[str]],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[list[RerankResult]]:
        """Rerank several queries at once; their pairs share batches (less padding, fewer calls)."""
        top_n = check_top_n(top_n)
        score_threshold = check_threshold(score_threshold)
        flat_queries, flat_passages, lists = _flatten(queries, passage_lists)
        return _split_ranked(
            self._finite_scores(flat_queries, flat_passages, "pair"), lists, top_n, score_threshold
        )

    # ------------------------------------------------------------------ async
    async def ascore(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Async :meth:`score`."""
        queries, checked = _query_pairs(query, passages)
        return await self._afinite_scores(queries, checked, "passage")

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Async :meth:`score_pairs`."""
        return await self._afinite_scores(*_split_pairs(pairs), "pair")

    async def arerank(
        self,
        query: str,
        passages: Sequence[str],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`."""
        top_n = check_top_n(top_n)
        score_threshold = check_threshold(score_threshold)
        queries, checked = _query_pairs(query, passages)
        scores = await self._afinite_scores(queries, checked, "passage")
        return ranked(scores, checked, top_n, score_threshold)

    async def arerank_many(
        self,
        queries: Sequence[str],
        passage_lists: Sequence[Sequence[str]],
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[list[RerankResult]]:
        """Async :meth:`rerank_many`."""
        top_n = check_top_n(top_n)
        score_threshold = check_threshold(score_threshold)
        flat_queries, flat_passages, lists = _flatten(queries, passage_lists)
        scores = await self._afinite_scores(flat_queries, flat_passages, "pair")
        return _split_ranked(scores, lists, top_n, score_threshold)


# ---------------------------------------------------------------------- helpers
def _query_pairs(query: str, passages: Sequence[str]) -> tuple[list[str], list[str]]:
    query = check_query(query)
    checked = check_passages(passages)
    return [query] * len(checked), checked


def _split_pairs(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    queries: list[str] = []
    passages: list[str] = []
    for position, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"pairs[{position}] must be a (query, passage) pair")
        queries.append(check_query(pair[0], where=f"pairs[{position}][0]"))
        if not isinstance(pair[1], str):
            raise TypeError(f"pairs[{position}][1] must be a str, got {type(pair[1]).__name__}")
        passages.append(check_text(pair[1], where=f"pairs[{position}][1]"))
    return queries, passages


def _flatten(
    queries: Sequence[str], passage_lists: Sequence[Sequence[str]]
) -> tuple[list[str], list[str], list[list[str]]]:
    if len(queries) != len(passage_lists):
        raise ValueError(f"got {len(queries)} queries but {len(passage_lists)} passage lists")
    checked_queries = [check_query(q, where=f"queries[{i}]") for i, q in enumerate(queries)]
    lists = [check_passages(p, where=f"passage_lists[{i}]") for i, p in enumerate(passage_lists)]
    flat_queries = [q for q, plist in zip(checked_queries, lists, strict=True) for _ in plist]
    flat_passages = [p for plist in lists for p in plist]
    return flat_queries, flat_passages, lists


def _split_ranked(
    scores: np.ndarray,
    lists: list[list[str]],
    top_n: int | None,
    score_threshold: float | None,
) -> list[list[RerankResult]]:
    bounds = np.cumsum([0, *(len(plist) for plist in lists)])
    return [
        ranked(scores[bounds[i] : bounds[i + 1]], plist, top_n, score_threshold)
        for i, plist in enumerate(lists)
    ]


def ranked(
    scores: np.ndarray,
    passages: Sequence[str],
    top_n: int | None,
    score_threshold: float | None,
) -> list[RerankResult]:
    """Passages best first (ties keep input order), cut by ``score_threshold`` and ``top_n``."""
    scores = np.asarray(scores)
    if len(scores) != len(passages):
        raise ValueError(f"reranker returned {len(scores)} scores for {len(passages)} passages")
    order = np.argsort(-scores, kind="stable")
    if score_threshold is not None:
        order = order[scores[order] >= score_threshold]
    if top_n is not None:
        order = order[:top_n]
    return [RerankResult(index=int(i), score=float(scores[i]), passage=passages[i]) for i in order]
