"""Retrieve-then-rerank: a first-stage retriever finds candidates, a cross-encoder orders them."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import numpy as np

from ._first_stage import FirstStage, SearchFunction
from ._scores import minmax_rows
from ._scoring_pool import RerankUnavailable, ScoringPool, ScoringTimeout
from ._tuned import resolve_blend_weight
from ._validation import (
    NonFiniteScoreError,
    check_finite_scores,
    check_int,
    check_number,
    check_query,
)
from .rerankers.base import BaseReranker
from .types import Hit, ScoresPassages, SearchesHits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineResult:
    """The final ranked hits of one query, per-stage timings in seconds, and what happened.

    ``reranked`` is False when the reranker failed, timed out, returned a non-finite score
    or could not get a scoring slot; ``hits`` are then in first-stage order and ``error``
    says why. ``timings`` has ``retrieve_s``, ``rerank_s`` (the whole second stage,
    waiting included) and ``total_s``; with ``rerank_timeout`` also ``queue_s``, the part of
    ``rerank_s`` spent waiting for a scoring slot.
    """

    query: str
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    reranked: bool = True
    error: str | None = None


def _minmax(values: np.ndarray) -> np.ndarray:
    return minmax_rows(values)[0]


def blend_scores(
    rerank_scores: np.ndarray, first_stage_scores: np.ndarray, weight: float
) -> np.ndarray:
    """``(1 - weight) * minmax(rerank) + weight * minmax(first stage)`` over one candidate list.

    Both inputs must be finite (:class:`NonFiniteScoreError` names the first that is not):
    one NaN would otherwise turn every blended score into NaN.
    """
    if len(rerank_scores) == 0:
        return np.asarray(rerank_scores, dtype=np.float64)
    rerank = check_finite_scores(rerank_scores, len(rerank_scores), what="candidate")
    first = check_finite_scores(
        first_stage_scores,
        len(rerank_scores),
        what="candidate",
        source="first stage (blend_weight needs its scores)",
    )
    return (1.0 - weight) * _minmax(rerank) + weight * _minmax(first)


def _has_native_async(reranker: Any, name: str) -> bool:
    """Whether ``reranker.<name>`` is real async I/O, not BaseReranker's thread default.

    A timed-out native call is cancelled (it stops); a thread-backed one cannot be, so the
    pipeline runs those on its own scoring pool, where abandoned calls are accounted for.
    """
    if not callable(getattr(reranker, name, None)):
        return False
    if isinstance(reranker, BaseReranker):
        return type(reranker)._ascore_checked is not BaseReranker._ascore_checked
    return True


@dataclass
class _Stage:
    """One call's candidates on their way through the second stage."""

    queries: list[str]
    hit_lists: list[list[Hit]]
    heads: list[list[Hit]]
    start: float
    retrieved: float

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(q, h.text) for q, head in zip(self.queries, self.heads, strict=True) for h in head]


#: What scoring produced: the scores, or why there are none; and the seconds spent queueing.
_Outcome = tuple["np.ndarray | Exception", "float | None"]


class RerankPipeline:
    """Hybrid (or any) first stage, then cross-encoder reranking of the top candidates.

    Args:
        retriever: An object with ``search(query, k)`` returning :class:`Hit` objects, or a
            function ``(query, k) -> iterable of (id, text, score[, metadata])``.
        reranker: An object with ``score(query, passages)`` (a CrossEncoderReranker); its
            ``score_pairs`` batches :meth:`run_many`, its ``ascore``/``ascore_pairs`` serve
            :meth:`arun`/:meth:`arun_many`.
        candidates: How many first-stage hits to fetch.
        rerank_top: How many of those the cross-encoder scores (default: all). The rest stay
            below the reranked ones, in first-stage order.
        top_k: How many final hits to return.
        rerank_timeout: Seconds a query's own scoring may take (its clock starts when its
            scoring starts, not while it waits for a slot); past it the query falls back to
            first-stage order with ``reranked=False``. See docs/reliability.md for what
            happens to the abandoned call and to queries that wait.
        rerank_workers: With ``rerank_timeout``: how many scoring calls run at once.
        rerank_queue: With ``rerank_timeout``: how many queries may wait for a slot; one
            more falls back at once.
        blend_weight: If set (0..1), final score = ``(1 - w) * minmax(cross-encoder) +
            w * minmax(first stage)`` over the reranked candidates. Off by default.
            ``"recommended"``: the weight the reranker's training report recommends (a model
            directory written by ``rerank-plugins tune``; None when the model alone ranked
            best), read once here; a model without one is an error.
        retriever_depth: How deep each of a hybrid first stage's lists goes before fusion,
            passed as ``search(..., candidates=retriever_depth)`` (HybridRetriever's own
            default is ``max(2 * k, 100)``); at least ``candidates``. Shallower lists keep
            documents that only one retriever ranks high; see docs/tuning.md for when that
            helps reranking.

    Non-finite scores (NaN, inf) from the reranker, or from the first stage when blending,
    never reach the results: the query falls back with the reason in ``error``.
    """

    def __init__(
        self,
        retriever: SearchesHits | SearchFunction,
        reranker: ScoresPassages,
        *,
        candidates: int = 100,
        rerank_top: int | None = None,
        top_k: int = 5,
        rerank_timeout: float | None = None,
        blend_weight: float | Literal["recommended"] | None = None,
        retriever_depth: int | None = None,
        rerank_workers: int = 2,
        rerank_queue: int = 64,
    ) -> None:
        if not isinstance(retriever, SearchesHits) and not callable(retriever):
            raise TypeError("retriever must have search(query, k) or be a function (query, k)")
        if not isinstance(reranker, ScoresPassages):
            raise TypeError("reranker must have score(query, passages)")
        candidates = check_int(candidates, "candidates")
        top_k = check_int(top_k, "top_k")
        if rerank_top is not None:
            rerank_top = check_int(rerank_top, "rerank_top", minimum=0)
        if rerank_timeout is not None:
            rerank_timeout = check_number(rerank_timeout, "rerank_timeout", positive=True)
        blend_weight = resolve_blend_weight(blend_weight, reranker)
        if blend_weight is not None:
            blend_weight = check_number(blend_weight, "blend_weight")
            if not 0.0 <= blend_weight <= 1.0:
                raise ValueError(f"blend_weight must be within [0, 1], got {blend_weight}")
        self.rerank_workers = check_int(rerank_workers, "rerank_workers")
        self.rerank_queue = check_int(rerank_queue, "rerank_queue", minimum=0)
        self._first = FirstStage(retriever, candidates=candidates, retriever_depth=retriever_depth)
        self.retriever = retriever
        self.reranker = reranker
        self.retriever_depth = retriever_depth
        self.candidates = candidates
        self.rerank_top = rerank_top
        self.top_k = top_k
        self.rerank_timeout = rerank_timeout
        self.blend_weight: float | None = blend_weight
        self._pool: ScoringPool | None = None
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------------ stages
    def retrieve(
        self, query: str, k: int | None = None, *, search_kwargs: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """First stage only: ``k`` (default ``candidates``) hits in first-stage order.

        ``search_kwargs`` go to this call's ``retriever.search`` (e.g. ``{"filter": {...}}``
        for a :class:`~rerank_plugins.HybridRetriever`).
        """
        return self._first.retrieve(query, k or self.candidates, search_kwargs)

    def _retrieve_many(
        self, queries: list[str], search_kwargs: Mapping[str, Any] | None = None
    ) -> list[list[Hit]]:
        return self._first.retrieve_many(queries, self.candidates, search_kwargs)

    def _stage(self, queries: list[str], hit_lists: list[list[Hit]], start: float) -> _Stage:
        depth = self.rerank_top
        heads = [hits if depth is None else hits[:depth] for hits in hit_lists]
        return _Stage(queries, hit_lists, heads, start, time.perf_counter())

    def _scoring_pool(self) -> ScoringPool:
        with self._pool_lock:
            if self._pool is None:
                assert self.rerank_timeout is not None
                self._pool = ScoringPool(
                    workers=self.rerank_workers,
                    max_pending=self.rerank_queue,
                    patience=self.rerank_timeout,
                )
            return self._pool

    def _timeout(self, stage: _Stage) -> float | None:
        """A batch of queries gets ``rerank_timeout`` per query (its pairs are N times more)."""
        if self.rerank_timeout is None:
            return None
        return self.rerank_timeout * len(stage.queries)

    def _score(self, stage: _Stage, call: Callable[[], Any]) -> _Outcome:
        """Run ``call`` (the batch's scoring), within the timeout when one is set."""
        timeout = self._timeout(stage)
        try:
            if timeout is None:
                return np.asarray(call(), dtype=np.float64), None
            scores, queued = self._scoring_pool().run(call, timeout)
            return np.asarray(scores, dtype=np.float64), queued
        except RerankUnavailable as exc:
            return exc, exc.queue_s
        except Exception as exc:  # a failing reranker must not lose the query
            return exc, 0.0 if timeout is not None else None

    async def _ascore(
        self,
        stage: _Stage,
        call: Callable[[], Any],
        acall: Callable[[], Awaitable[Any]] | None,
        native: bool,
    ) -> _Outcome:
        """:meth:`_score` for an event loop: the reranker's own async when it has one."""
        timeout = self._timeout(stage)
        try:
            if acall is not None and (timeout is None or native):
                if timeout is None:
                    return np.asarray(await acall(), dtype=np.float64), None
                try:  # a native coroutine is cancelled at the timeout: nothing is left running
                    scores = await asyncio.wait_for(acall(), timeout)
                except asyncio.TimeoutError:
                    return ScoringTimeout(f"scoring took longer than {timeout:g} s", 0.0), 0.0
                return np.asarray(scores, dtype=np.float64), 0.0
            if timeout is None:
                return np.asarray(await asyncio.to_thread(call), dtype=np.float64), None
            scores, queued = await self._scoring_pool().arun(call, timeout)
            return np.asarray(scores, dtype=np.float64), queued
        except RerankUnavailable as exc:
            return exc, exc.queue_s
        except Exception as exc:  # a failing reranker must not lose the query
            return exc, 0.0 if timeout is not None else None

    def _order(self, hits: list[Hit], scores: np.ndarray) -> list[Hit]:
        final = scores
        if self.blend_weight is not None and len(hits) > 0:
            first = np.array(
                [np.nan if h.retrieval_score is None else h.retrieval_score for h in hits],
                dtype=np.float64,
            )
            final = blend_scores(scores, first, self.blend_weight)
        order = np.argsort(-final, kind="stable")
        return [
            replace(hits[i], score=float(final[i]), rerank_score=float(scores[i])) for i in order
        ]

    def _describe(self, error: Exception, stage: _Stage) -> str:
        if isinstance(error, ScoringTimeout):
            scaled = len(stage.queries) > 1
            batch = (
                f" ({self._timeout(stage):g} s for {len(stage.queries)} queries)" if scaled else ""
            )
            return f"reranking exceeded rerank_timeout={self.rerank_timeout:g} s{batch}"
        if isinstance(error, RerankUnavailable):
            return f"reranking skipped: {error}"
        return f"reranking failed: {type(error).__name__}: {error}"

    def _finish(self, stage: _Stage, outcome: _Outcome) -> list[PipelineResult]:
        """The one fallback/timing path of run, run_many, arun and arun_many."""
        scores, queued = outcome
        error: str | None = None
        ordered: list[list[Hit]] = stage.heads
        if isinstance(scores, Exception):
            error = self._describe(scores, stage)
        else:
            try:
                ordered = self._ordered(stage, scores)
            except (NonFiniteScoreError, ValueError, TypeError) as exc:
                error = self._describe(exc, stage)
        done = time.perf_counter()
        if error is not None:
            count = len(stage.queries)
            suffix = f" for {count} queries" if count > 1 else ""
            logger.warning("falling back to first-stage order%s: %s", suffix, error)
        share = 1.0 / len(stage.queries)
        timings = {
            "retrieve_s": (stage.retrieved - stage.start) * share,
            "rerank_s": (done - stage.retrieved) * share,
            "total_s": (done - stage.start) * share,
        }
        if queued is not None:
            timings["queue_s"] = queued * share
        return [
            PipelineResult(
                query=query,
                hits=(ordered[i] + stage.hit_lists[i][len(stage.heads[i]) :])[: self.top_k],
                timings=dict(timings),
                reranked=error is None,
                error=error,
            )
            for i, query in enumerate(stage.queries)
        ]

    def _ordered(self, stage: _Stage, flat: np.ndarray) -> list[list[Hit]]:
        sizes = [len(head) for head in stage.heads]
        check_finite_scores(flat, sum(sizes), what="candidate" if len(sizes) == 1 else "pair")
        bounds = np.cumsum([0, *sizes])
        return [
            self._order(head, flat[bounds[i] : bounds[i + 1]]) for i, head in enumerate(stage.heads)
        ]

    # ------------------------------------------------------------------ public
    def run(self, query: str, *, search_kwargs: Mapping[str, Any] | None = None) -> PipelineResult:
        """Retrieve candidates, rerank the top ones, return the best ``top_k`` with timings.

        ``search_kwargs`` are this query's extra first-stage keywords, e.g.
        ``pipeline.run(q, search_kwargs={"filter": {"year": {"$gte": 2020}}})``.
        """
        query = check_query(query)
        start = time.perf_counter()
        stage = self._stage([query], [self.retrieve(query, search_kwargs=search_kwargs)], start)
        texts = [h.text for h in stage.heads[0]]
        return self._finish(stage, self._score(stage, lambda: self.reranker.score(query, texts)))[0]

    def run_many(
        self, queries: Sequence[str], *, search_kwargs: Mapping[str, Any] | None = None
    ) -> list[PipelineResult]:
        """Run several queries; their pairs share reranker batches when it has ``score_pairs``.

        Timings are per query: each query's share of the batched stage times. The batch gets
        ``rerank_timeout`` per query; if the shared reranking fails or times out, every query
        falls back to first-stage order. ``search_kwargs`` apply to every query.
        """
        checked = [check_query(q, where=f"queries[{i}]") for i, q in enumerate(queries)]
        if not checked:
            return []
        score_pairs = getattr(self.reranker, "score_pairs", None)
        if score_pairs is None:
            return [self.run(query, search_kwargs=search_kwargs) for query in checked]
        start = time.perf_counter()
        stage = self._stage(checked, self._retrieve_many(checked, search_kwargs), start)
        pairs = stage.pairs
        return self._finish(stage, self._score(stage, lambda: score_pairs(pairs)))

    async def arun(
        self, query: str, *, search_kwargs: Mapping[str, Any] | None = None
    ) -> PipelineResult:
        """Async :meth:`run`: the first stage runs in a thread, scoring uses ``ascore``.

        Results equal :meth:`run`'s. A reranker whose ``ascore`` is real async I/O is awaited
        (and cancelled at the timeout); a thread-backed one (BaseReranker's default) shares
        the sync path's scoring pool when ``rerank_timeout`` is set.
        """
        query = check_query(query)
        start = time.perf_counter()
        retrieve = partial(self.retrieve, query, search_kwargs=search_kwargs)
        stage = self._stage([query], [await asyncio.to_thread(retrieve)], start)
        texts = [h.text for h in stage.heads[0]]
        ascore = getattr(self.reranker, "ascore", None)
        outcome = await self._ascore(
            stage,
            lambda: self.reranker.score(query, texts),
            None if ascore is None else lambda: ascore(query, texts),
            _has_native_async(self.reranker, "ascore"),
        )
        return self._finish(stage, outcome)[0]

    async def arun_many(
        self, queries: Sequence[str], *, search_kwargs: Mapping[str, Any] | None = None
    ) -> list[PipelineResult]:
        """Async :meth:`run_many` (pairs share batches via ``ascore_pairs``/``score_pairs``)."""
        checked = [check_query(q, where=f"queries[{i}]") for i, q in enumerate(queries)]
        if not checked:
            return []
        score_pairs = getattr(self.reranker, "score_pairs", None)
        if score_pairs is None:
            runs = (self.arun(query, search_kwargs=search_kwargs) for query in checked)
            return list(await asyncio.gather(*runs))
        start = time.perf_counter()
        hit_lists = await asyncio.to_thread(self._retrieve_many, checked, search_kwargs)
        stage = self._stage(checked, hit_lists, start)
        pairs = stage.pairs
        ascore_pairs = getattr(self.reranker, "ascore_pairs", None)
        outcome = await self._ascore(
            stage,
            lambda: score_pairs(pairs),
            None if ascore_pairs is None else lambda: ascore_pairs(pairs),
            _has_native_async(self.reranker, "ascore_pairs"),
        )
        return self._finish(stage, outcome)

    def close(self) -> None:
        """Stop the scoring pool (queued queries fall back); running calls finish on their own."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
