"""Retrieve-then-rerank: a first-stage retriever finds candidates, a cross-encoder orders them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ._scores import minmax_rows
from ._validation import check_query, check_retriever_depth
from .types import Hit, ScoresPassages, SearchesHits

logger = logging.getLogger(__name__)


#: A plain function first stage: ``(query, k) -> iterable of (id, text, score)`` or Hits.
SearchFunction = Callable[[str, int], Iterable[Any]]


@dataclass(frozen=True)
class PipelineResult:
    """The final ranked hits of one query, per-stage timings in seconds, and what happened.

    ``reranked`` is False when the reranker failed or timed out; ``hits`` are then in
    first-stage order and ``error`` says why.
    """

    query: str
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    reranked: bool = True
    error: str | None = None


def _as_hit(item: Any, position: int) -> Hit:
    """A first-stage result as a Hit whose ``retrieval_score`` is set (blending reads it)."""
    if isinstance(item, Hit):
        return (
            item if item.retrieval_score is not None else replace(item, retrieval_score=item.score)
        )
    if isinstance(item, (tuple, list)) and len(item) >= 3:
        doc_id, text, score = item[0], item[1], item[2]
        metadata = dict(item[3]) if len(item) > 3 and item[3] is not None else {}
        if not isinstance(text, str):
            raise TypeError(
                f"first-stage result {position} has a {type(text).__name__} text; expected str"
            )
        return Hit(
            id=str(doc_id),
            text=text,
            score=float(score),
            metadata=metadata,
            retrieval_score=float(score),
        )
    raise TypeError(
        f"first-stage result {position} must be a Hit or an (id, text, score[, metadata]) "
        f"tuple, got {type(item).__name__}"
    )


def _accepts_keyword(function: Any, name: str) -> bool:
    """Whether ``function`` takes keyword ``name`` (explicitly or through ``**kwargs``)."""
    if not callable(function):
        return False
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == name and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )


def _minmax(values: np.ndarray) -> np.ndarray:
    return minmax_rows(values)[0]


def blend_scores(
    rerank_scores: np.ndarray, first_stage_scores: np.ndarray, weight: float
) -> np.ndarray:
    """``(1 - weight) * minmax(rerank) + weight * minmax(first stage)`` over one candidate list."""
    if len(rerank_scores) == 0:
        return np.asarray(rerank_scores, dtype=np.float64)
    return (1.0 - weight) * _minmax(np.asarray(rerank_scores)) + weight * _minmax(
        np.asarray(first_stage_scores)
    )


class RerankPipeline:
    """Hybrid (or any) first stage, then cross-encoder reranking of the top candidates.

    Args:
        retriever: An object with ``search(query, k)`` returning :class:`Hit` objects, or a
            function ``(query, k) -> iterable of (id, text, score[, metadata])``.
        reranker: An object with ``score(query, passages)`` (a CrossEncoderReranker).
        candidates: How many first-stage hits to fetch.
        rerank_top: How many of those the cross-encoder scores (default: all). The rest stay
            below the reranked ones, in first-stage order.
        top_k: How many final hits to return.
        rerank_timeout: Seconds to wait for the reranker; past it the query falls back to
            first-stage order with ``reranked=False`` (the scoring thread is not killed).
        blend_weight: If set (0..1), final score = ``(1 - w) * minmax(cross-encoder) +
            w * minmax(first stage)`` over the reranked candidates. Off by default.
        retriever_depth: How deep each of a hybrid first stage's lists goes before fusion,
            passed as ``search(..., candidates=retriever_depth)`` (HybridRetriever's own
            default is ``max(2 * k, 100)``); at least ``candidates``. Shallower lists keep
            documents that only one retriever ranks high; see docs/tuning.md for when that
            helps reranking.
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
        blend_weight: float | None = None,
        retriever_depth: int | None = None,
    ) -> None:
        if not isinstance(retriever, SearchesHits) and not callable(retriever):
            raise TypeError("retriever must have search(query, k) or be a function (query, k)")
        if not isinstance(reranker, ScoresPassages):
            raise TypeError("reranker must have score(query, passages)")
        for name, value in (("candidates", candidates), ("top_k", top_k)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if rerank_top is not None and rerank_top < 0:
            raise ValueError(f"rerank_top must be >= 0, got {rerank_top}")
        if rerank_timeout is not None and rerank_timeout <= 0:
            raise ValueError(f"rerank_timeout must be > 0 seconds, got {rerank_timeout}")
        if blend_weight is not None and not 0.0 <= blend_weight <= 1.0:
            raise ValueError(f"blend_weight must be within [0, 1], got {blend_weight}")
        self._search_kwargs: dict[str, Any] = {}
        if retriever_depth is not None:
            if isinstance(retriever_depth, bool) or not isinstance(retriever_depth, int):
                raise TypeError(f"retriever_depth must be an int, got {retriever_depth!r}")
            if not _accepts_keyword(getattr(retriever, "search", None), "candidates"):
                raise TypeError(
                    "retriever_depth needs a retriever whose search() takes a 'candidates' "
                    f"keyword (like HybridRetriever); {type(retriever).__name__} does not"
                )
            check_retriever_depth(retriever_depth, candidates)
            self._search_kwargs["candidates"] = retriever_depth
        self.retriever = retriever
        self.reranker = reranker
        self.retriever_depth = retriever_depth
        # The batched first stage, when the retriever has one that takes these settings.
        search_many = getattr(retriever, "search_many", None)
        self._search_many = (
            search_many
            if callable(search_many)
            and (not self._search_kwargs or _accepts_keyword(search_many, "candidates"))
            else None
        )
        self.candidates = candidates
        self.rerank_top = rerank_top
        self.top_k = top_k
        self.rerank_timeout = rerank_timeout
        self.blend_weight = blend_weight
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ stages
    def retrieve(self, query: str, k: int | None = None) -> list[Hit]:
        """First stage only: ``k`` (default ``candidates``) hits in first-stage order."""
        k = k or self.candidates
        raw: Iterable[Any]
        if isinstance(self.retriever, SearchesHits):
            raw = self.retriever.search(query, k=k, **self._search_kwargs)
        else:
            raw = self.retriever(query, k)
        return [_as_hit(item, position) for position, item in enumerate(raw)]

    def _scores(
        self, function: Callable[..., Any], *args: Any, timeout: float | None
    ) -> np.ndarray:
        """``function(*args)`` as float64 scores; past ``timeout`` seconds, TimeoutError."""
        if timeout is None:
            return np.asarray(function(*args), dtype=np.float64)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="rerank"
            )
        future = self._executor.submit(function, *args)
        return np.asarray(future.result(timeout=timeout), dtype=np.float64)

    def _order(self, hits: list[Hit], scores: np.ndarray) -> list[Hit]:
        if len(scores) != len(hits):
            raise ValueError(f"reranker returned {len(scores)} scores for {len(hits)} passages")
        final = scores
        if self.blend_weight is not None and len(hits) > 0:
            first = np.array([hit.retrieval_score or 0.0 for hit in hits], dtype=np.float64)
            final = blend_scores(scores, first, self.blend_weight)
        order = np.argsort(-final, kind="stable")
        return [
            replace(hits[i], score=float(final[i]), rerank_score=float(scores[i])) for i in order
        ]

    # ------------------------------------------------------------------ public
    def run(self, query: str) -> PipelineResult:
        """Retrieve candidates, rerank the top ones, return the best ``top_k`` with timings."""
        query = check_query(query)
        start = time.perf_counter()
        hits = self.retrieve(query)
        retrieved = time.perf_counter()
        depth = len(hits) if self.rerank_top is None else min(self.rerank_top, len(hits))
        head, tail = hits[:depth], hits[depth:]
        reranked, error = True, None
        try:
            scores = self._scores(
                self.reranker.score, query, [h.text for h in head], timeout=self.rerank_timeout
            )
            ordered = self._order(head, scores)
        except concurrent.futures.TimeoutError:
            ordered, reranked = head, False
            error = f"reranking exceeded rerank_timeout={self.rerank_timeout} s"
        except Exception as exc:  # a failing reranker must not lose the query
            ordered, reranked = head, False
            error = f"reranking failed: {type(exc).__name__}: {exc}"
        done = time.perf_counter()
        if error is not None:
            logger.warning("falling back to first-stage order: %s", error)
        return PipelineResult(
            query=query,
            hits=(ordered + tail)[: self.top_k],
            timings={
                "retrieve_s": retrieved - start,
                "rerank_s": done - retrieved,
                "total_s": done - start,
            },
            reranked=reranked,
            error=error,
        )

    def run_many(self, queries: Sequence[str]) -> list[PipelineResult]:
        """Run several queries; their pairs share reranker batches when it has ``score_pairs``.

        Timings are per query: each query's share of the batched stage times. If the shared
        reranking fails or times out (``rerank_timeout`` scaled by the number of queries),
        every query falls back to first-stage order.
        """
        checked = [check_query(q, where=f"queries[{i}]") for i, q in enumerate(queries)]
        if not checked:
            return []
        score_pairs = getattr(self.reranker, "score_pairs", None)
        if score_pairs is None:
            return [self.run(query) for query in checked]
        start = time.perf_counter()
        if self._search_many is not None:
            raw_lists = self._search_many(checked, k=self.candidates, **self._search_kwargs)
            hit_lists = [[_as_hit(item, i) for i, item in enumerate(raw)] for raw in raw_lists]
        else:
            hit_lists = [self.retrieve(query) for query in checked]
        retrieved = time.perf_counter()
        heads = [hits if self.rerank_top is None else hits[: self.rerank_top] for hits in hit_lists]
        pairs = [(q, h.text) for q, head in zip(checked, heads, strict=True) for h in head]
        reranked, error = True, None
        try:
            timeout = None if self.rerank_timeout is None else self.rerank_timeout * len(checked)
            flat = self._scores(score_pairs, pairs, timeout=timeout)
            bounds = np.cumsum([0, *(len(head) for head in heads)])
            ordered = [
                self._order(head, flat[bounds[i] : bounds[i + 1]]) for i, head in enumerate(heads)
            ]
        except concurrent.futures.TimeoutError:
            ordered, reranked = heads, False
            error = "reranking exceeded rerank_timeout"
        except Exception as exc:  # a failing reranker must not lose the queries
            ordered, reranked = heads, False
            error = f"reranking failed: {type(exc).__name__}: {exc}"
        done = time.perf_counter()
        if error is not None:
            logger.warning(
                "falling back to first-stage order for %d queries: %s", len(checked), error
            )
        share = 1.0 / len(checked)
        timings = {
            "retrieve_s": (retrieved - start) * share,
            "rerank_s": (done - retrieved) * share,
            "total_s": (done - start) * share,
        }
        return [
            PipelineResult(
                query=query,
                hits=(ordered[i] + hit_lists[i][len(heads[i]) :])[: self.top_k],
                timings=dict(timings),
                reranked=reranked,
                error=error,
            )
            for i, query in enumerate(checked)
        ]

    async def arun(self, query: str) -> PipelineResult:
        """Async :meth:`run`: the blocking work runs in a thread, not on the event loop."""
        return await asyncio.to_thread(self.run, query)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
