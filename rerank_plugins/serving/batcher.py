"""Cross-request dynamic batching: one worker owns the model, requests await their own futures.

Requests :meth:`PairBatcher.submit` their (query, passage) pairs and await a future. A single
worker task on the event loop takes queued pairs in arrival order (up to ``max_batch_pairs``
per step, slicing a large request across steps), scores them with one
``reranker.score_pairs`` call in a dedicated model thread, so pairs from concurrent requests
share the reranker's length-sorted, token-budget batches, and hands every request its own
slice of the scores. The batcher needs no web framework: a FastAPI app (``create_app``), a
Ray Serve replica or a test drives it on any running event loop.

Guarantees: every accepted request is answered exactly once (scores or an exception); a
request that fails alone (e.g. a query too long for the model) does not fail the requests it
shared a step with (the step is rescored request by request); ``stop()`` drains what was
accepted before it returns; a full queue refuses new work with :class:`QueueFullError`
instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .._validation import check_positive_int
from ..types import Reranker

T = TypeVar("T")

#: Default bound on pairs accepted but not yet answered (admission control).
DEFAULT_MAX_QUEUE_PAIRS = 8192
#: Default most pairs one worker step scores together (one ``score_pairs`` call).
DEFAULT_MAX_BATCH_PAIRS = 256
#: Default wait, after the first queued pair, for other requests' pairs to join the step.
DEFAULT_MAX_WAIT_MS = 2.0


class QueueFullError(RuntimeError):
    """The batcher holds ``max_queue_pairs`` pairs already; retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatcherClosedError(RuntimeError):
    """The batcher is draining or stopped and accepts no new work."""


@dataclass(eq=False)
class _Job:
    """One request's pairs, its future and how far the worker has got through them."""

    queries: list[str]
    passages: list[str]
    future: asyncio.Future[np.ndarray]
    scores: np.ndarray = field(init=False)
    taken: int = 0  # pairs handed to the worker so far
    done: int = 0  # pairs scored so far

    def __post_init__(self) -> None:
        self.scores = np.empty(len(self.passages), dtype=np.float32)

    @property
    def size(self) -> int:
        return len(self.passages)


@dataclass(frozen=True)
class _Slice:
    job: _Job
    start: int
    stop: int


class PairBatcher:
    """Queue (query, passage) pairs from concurrent requests; score them together.

    Args:
        reranker: Anything with ``score_pairs(pairs) -> scores`` (a
            :class:`~rerank_plugins.CrossEncoderReranker`, a ``RemoteReranker``, ...). Only the
            batcher's model thread calls it.
        max_queue_pairs: Most pairs accepted but not yet answered; a request that would go
            past it gets :class:`QueueFullError` (HTTP 503 with ``Retry-After``).
        max_batch_pairs: Most pairs scored in one worker step (one ``score_pairs`` call);
            bigger steps sort more pairs by length together, smaller ones answer small
            requests sooner.
        max_wait_ms: After the first pair of a step arrives, how long the worker waits for
            more requests to join (0: score at once; pairs that arrive while the model is busy
            join the next step either way).
        on_step: Optional callback ``(pairs, seconds)`` after every scored step (metrics).

    Example:
        >>> import asyncio, numpy as np
        >>> from rerank_plugins.rerankers import BaseReranker
        >>> class Lengths(BaseReranker):
        ...     def _score_checked(self, queries, passages):
        ...         return np.array([len(p) for p in passages], dtype=np.float32)
        >>> async def main():
        ...     batcher = PairBatcher(Lengths())
        ...     await batcher.start()
        ...     scores = await asyncio.gather(
        ...         batcher.submit(["q", "q"], ["a", "abc"]), batcher.submit(["r"], ["ab"])
        ...     )
        ...     await batcher.stop()
        ...     return [s.tolist() for s in scores]
        >>> asyncio.run(main())
        [[1.0, 3.0], [2.0]]
    """

    def __init__(
        self,
        reranker: Reranker,
        *,
        max_queue_pairs: int = DEFAULT_MAX_QUEUE_PAIRS,
        max_batch_pairs: int = DEFAULT_MAX_BATCH_PAIRS,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        on_step: Callable[[int, float], None] | None = None,
    ) -> None:
        for name, value in (
            ("max_queue_pairs", max_queue_pairs),
            ("max_batch_pairs", max_batch_pairs),
        ):
            check_positive_int(value, name)
        if not math.isfinite(max_wait_ms) or max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        if not callable(getattr(reranker, "score_pairs", None)):
            raise TypeError("reranker must have score_pairs(pairs)")
        self.reranker = reranker
        self.max_queue_pairs = max_queue_pairs
        self.max_batch_pairs = max_batch_pairs
        self.max_wait_s = max_wait_ms / 1000.0
        self.on_step = on_step
        self._jobs: collections.deque[_Job] = collections.deque()
        self._pending = 0  # pairs accepted and not yet answered (queued + being scored)
        self._queued = 0  # pairs not yet handed to the worker
        self._pairs_per_s = 0.0  # moving estimate, for Retry-After
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._closing = False

    # ------------------------------------------------------------------ state
    @property
    def pending_pairs(self) -> int:
        """Pairs accepted and not yet answered (queued or being scored): the queue depth."""
        return self._pending

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def accepting(self) -> bool:
        return not self._closing

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the worker on the running event loop (an app's lifespan, a Ray replica)."""
        if self.running:
            return
        if self._closing:
            raise BatcherClosedError("the batcher was stopped; make a new one")
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="rerank-model"
            )
        self._worker = self._loop.create_task(self._run(), name="rerank-batcher")

    async def stop(self, *, drain: bool = True) -> None:
        """Refuse new work; answer what was accepted (``drain``) or fail it; stop the worker."""
        self._closing = True
        if self._worker is None:
            self._fail_all(BatcherClosedError("the batcher stopped before scoring this request"))
            return
        if drain and self._idle is not None:
            await self._idle.wait()
        else:
            self._fail_all(BatcherClosedError("the batcher stopped before scoring this request"))
        assert self._wake is not None
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------------ requests
    async def submit(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Queue aligned pairs and await their scores (float32, aligned with the inputs).

        Raises :class:`QueueFullError` when the queue is full, :class:`BatcherClosedError`
        when draining, and whatever the reranker raised for these pairs.
        """
        if len(queries) != len(passages):
            raise ValueError(f"got {len(queries)} queries but {len(passages)} passages")
        if self._closing:
            raise BatcherClosedError("the server is shutting down; send the request elsewhere")
        if not self.running:
            await self.start()  # a host that skipped the lifespan still gets a worker
        size = len(passages)
        if size == 0:
            return np.empty(0, dtype=np.float32)
        if size > self.max_queue_pairs:
            raise ValueError(
                f"{size} pairs can never fit max_queue_pairs={self.max_queue_pairs}; "
                "split the request"
            )
        if self._pending + size > self.max_queue_pairs:
            raise QueueFullError(
                f"the scoring queue holds {self._pending} pairs; {size} more would exceed "
                f"max_queue_pairs={self.max_queue_pairs}",
                retry_after=self._retry_after(),
            )
        assert self._loop is not None and self._wake is not None and self._idle is not None
        job = _Job(list(queries), list(passages), self._loop.create_future())
        self._jobs.append(job)
        self._pending += size
        self._queued += size
        self._idle.clear()
        self._wake.set()
        # A caller that is cancelled cancels the future: the worker then skips its pairs.
        return await job.future

    async def run_in_model_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the model thread (e.g. tokenizer work, never concurrent
        with scoring)."""
        if not self.running:
            await self.start()
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, function, *args)

    # ------------------------------------------------------------------ worker
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._jobs:
                self._mark_idle()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather_window()
            step = self._take()
            try:
                await self._score_step(step)
            except Exception as error:  # a bookkeeping bug must not kill the worker
                for piece in step:
                    self._fail(piece.job, error)

    async def _gather_window(self) -> None:
        """Wait up to ``max_wait_ms`` after the oldest queued pair for a fuller step."""
        if self.max_wait_s <= 0 or self._closing:
            return
        assert self._wake is not None
        deadline = time.monotonic() + self.max_wait_s
        while self._queued < self.max_batch_pairs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _take(self) -> list[_Slice]:
        """Up to ``max_batch_pairs`` queued pairs in arrival order (a big job is sliced)."""
        step: list[_Slice] = []
        budget = self.max_batch_pairs
        while self._jobs and budget > 0:
            job = self._jobs[0]
            if job.future.done():  # the caller went away: drop its unscored pairs
                self._jobs.popleft()
                self._release(job, job.size - job.taken, queued=job.size - job.taken)
                continue
            stop = min(job.size, job.taken + budget)
            step.append(_Slice(job, job.taken, stop))
            budget -= stop - job.taken
            self._queued -= stop - job.taken
            job.taken = stop
            if job.taken == job.size:
                self._jobs.popleft()
        return step

    async def _score_step(self, step: list[_Slice]) -> None:
        if not step:
            return
        queries = [q for s in step for q in s.job.queries[s.start : s.stop]]
        passages = [p for s in step for p in s.job.passages[s.start : s.stop]]
        started = time.perf_counter()
        try:
            scores = await self._score(queries, passages)
        except Exception as error:
            if len(step) == 1:
                self._fail(step[0].job, error)
                return
            # One request's bad pairs must not fail the others: rescore request by request.
            for piece in step:
                if piece.job.future.done():  # cancelled meanwhile
                    self._release(piece.job, piece.stop - piece.start)
                    continue
                try:
                    part = await self._score(
                        piece.job.queries[piece.start : piece.stop],
                        piece.job.passages[piece.start : piece.stop],
                    )
                except Exception as piece_error:
                    self._fail(piece.job, piece_error)
                else:
                    self._deliver(piece, part)
            return
        elapsed = time.perf_counter() - started
        self._observe(len(passages), elapsed)
        offset = 0
        for piece in step:
            width = piece.stop - piece.start
            self._deliver(piece, scores[offset : offset + width])
            offset += width

    async def _score(self, queries: list[str], passages: list[str]) -> np.ndarray:
        assert self._loop is not None
        pairs = list(zip(queries, passages, strict=True))
        raw = await self._loop.run_in_executor(self._executor, self.reranker.score_pairs, pairs)
        scores = np.asarray(raw, dtype=np.float32).reshape(-1)
        if len(scores) != len(pairs):
            raise RuntimeError(f"reranker returned {len(scores)} scores for {len(pairs)} pairs")
        return scores

    # ------------------------------------------------------------------ bookkeeping
    def _deliver(self, piece: _Slice, scores: np.ndarray) -> None:
        job = piece.job
        width = piece.stop - piece.start
        self._release(job, width)
        if job.future.done():
            return
        job.scores[piece.start : piece.stop] = scores
        job.done += width
        if job.done == job.size:
            job.future.set_result(job.scores)

    def _fail(self, job: _Job, error: BaseException) -> None:
        """Answer ``job`` with ``error`` once; its unscored pairs leave the queue."""
        untaken = job.size - job.taken
        if untaken:
            with contextlib.suppress(ValueError):
                self._jobs.remove(job)
            job.taken = job.size
        self._release(job, job.size - job.done, queued=untaken)
        job.done = job.size
        if not job.future.done():
            job.future.set_exception(error)

    def _release(self, job: _Job, pairs: int, *, queued: int = 0) -> None:
        self._pending -= pairs
        self._queued -= queued
        if self._pending == 0:
            self._mark_idle()

    def _fail_all(self, error: BaseException) -> None:
        while self._jobs:
            self._fail(self._jobs[0], error)

    def _mark_idle(self) -> None:
        if self._idle is not None and self._pending == 0:
            self._idle.set()

    def _observe(self, pairs: int, seconds: float) -> None:
        if seconds > 0:
            rate = pairs / seconds
            self._pairs_per_s = (
                rate if self._pairs_per_s == 0 else 0.8 * self._pairs_per_s + 0.2 * rate
            )
        if self.on_step is not None:
            self.on_step(pairs, seconds)

    def _retry_after(self) -> int:
        """Whole seconds until the queue has likely drained (1..30), for ``Retry-After``."""
        if self._pairs_per_s <= 0:
            return 1
        return int(min(30, max(1, math.ceil(self._pending / self._pairs_per_s))))
