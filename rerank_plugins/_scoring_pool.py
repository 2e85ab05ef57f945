"""Scoring slots behind ``RerankPipeline(rerank_timeout=...)``: a timeout that is a query's own.

Python cannot stop a thread, so a scoring call that outlives its timeout keeps running. The
pool makes sure such *abandoned* calls never eat the time of later queries:

* at most ``workers`` calls score for live queries at once; later queries wait in a FIFO
  queue of at most ``max_pending`` (a query that finds it full falls back at once);
* a query's timeout clock starts when its scoring starts, not when it starts waiting; the
  wait is reported separately (``queue_s``);
* a query that stops waiting before its scoring started is simply removed from the queue
  (its call never runs);
* a call abandoned while running keeps its thread until it returns (its result is
  discarded) but hands its slot to the next query at once. At most ``2 * workers`` threads
  exist, so abandoned calls can occupy ``workers`` threads beyond the live ones; when every
  thread is held by abandoned work the pool is *saturated*: a waiting query then waits at
  most ``patience`` more seconds for a thread before it falls back.

Waiting works from threads (:meth:`ScoringPool.run`) and from an event loop
(:meth:`ScoringPool.arun`) alike; both share one queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class RerankUnavailable(Exception):
    """Scoring did not happen or did not finish in time; ``queue_s`` is how long it waited."""

    def __init__(self, message: str, queue_s: float) -> None:
        super().__init__(message)
        self.queue_s = queue_s


class ScoringTimeout(RerankUnavailable):
    """The call started but did not return within its timeout (it is left to finish)."""


def _poke(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> Callable[..., None]:
    """A thread-safe ``event.set`` for ``loop``; a no-op once the loop is closed."""

    def wake(*_: object) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(event.set)

    return wake


class _Ticket:
    """One query's place in the queue; ``wake`` pokes an async waiter (sync ones use a Condition)."""

    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self.granted = False
        self.wake = wake


class ScoringPool:
    """A bounded queue of scoring calls with per-call timeouts (see the module docs)."""

    def __init__(self, *, workers: int, max_pending: int, patience: float) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self.patience = patience
        self.max_threads = 2 * workers
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Ticket] = deque()
        self._async_waiters: set[_Ticket] = set()
        self._live = 0  # calls scoring for a query that still waits for them
        self._abandoned = 0  # calls still running for a query that gave up on them
        self._closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_threads, thread_name_prefix="rerank"
        )

    @property
    def abandoned(self) -> int:
        """Timed-out calls still running (their results will be discarded)."""
        with self._lock:
            return self._abandoned

    # ------------------------------------------------------------------ state (under _lock)
    def _can_start(self) -> bool:
        return self._live < self.workers and self._live + self._abandoned < self.max_threads

    def _saturated(self) -> bool:
        """Nothing live will free a slot and every thread holds abandoned work."""
        return self._live == 0 and not self._can_start()

    def _dispatch(self) -> None:
        """Grant free slots in FIFO order and let every waiter re-check its state."""
        while self._queue and self._can_start():
            ticket = self._queue.popleft()
            ticket.granted = True
            self._live += 1
        self._changed.notify_all()
        for ticket in self._async_waiters:
            assert ticket.wake is not None
            ticket.wake()

    def _enter(self, ticket: _Ticket) -> None:
        if self._closed:
            raise RerankUnavailable("the pipeline is closed", 0.0)
        if not self._queue and self._can_start():
            ticket.granted = True
            self._live += 1
            return
        if len(self._queue) >= self.max_pending:
            raise RerankUnavailable(
                f"rerank queue full: {len(self._queue)} queries already wait for "
                f"{self.workers} scoring slots",
                0.0,
            )
        self._queue.append(ticket)

    def _deadline(self, deadline: float | None, now: float) -> float | None:
        """While saturated a waiter gets ``patience`` seconds; otherwise it waits its turn."""
        if self._closed:
            return now
        if not self._saturated():
            return None  # a live call holds a slot and ends within its own timeout
        return now + self.patience if deadline is None else deadline

    def _give_up(self, ticket: _Ticket, start: float) -> RerankUnavailable:
        self._queue.remove(ticket)
        waited = time.perf_counter() - start
        if self._closed:
            return RerankUnavailable("the pipeline was closed while this query waited", waited)
        return RerankUnavailable(
            f"no scoring thread came free in {waited:.3g} s: all {self.max_threads} were "
            "running timed-out (abandoned) calls",
            waited,
        )

    def _withdraw(self, ticket: _Ticket) -> None:
        """The waiter went away (cancelled): leave the queue, or return a granted slot."""
        with self._lock:
            if ticket.granted:
                self._live -= 1
                self._dispatch()
            elif ticket in self._queue:
                self._queue.remove(ticket)

    def _finished(self) -> None:
        with self._lock:
            self._live -= 1
            self._dispatch()

    def _abandon(self, future: concurrent.futures.Future[Any]) -> None:
        """The query stopped waiting for a running call: hand its slot on, keep its thread."""
        with self._lock:
            self._live -= 1
            self._abandoned += 1
            self._dispatch()
        future.add_done_callback(self._abandoned_done)

    def _abandoned_done(self, _future: object) -> None:
        with self._lock:
            self._abandoned -= 1
            self._dispatch()

    def _submit(self, function: Callable[[], Any], queued: float) -> concurrent.futures.Future[Any]:
        try:
            return self._executor.submit(function)
        except RuntimeError:  # closed between the grant and the submit
            self._finished()
            raise RerankUnavailable("the pipeline is closed", queued) from None

    def _outcome(
        self, future: concurrent.futures.Future[Any], timeout: float, queued: float
    ) -> tuple[Any, float]:
        if not future.done():
            self._abandon(future)
            raise ScoringTimeout(f"scoring took longer than {timeout:g} s", queued)
        self._finished()
        return future.result(), queued  # re-raises what the call raised

    # ------------------------------------------------------------------ sync
    def run(self, function: Callable[[], Any], timeout: float) -> tuple[Any, float]:
        """``function()`` within ``timeout`` seconds of scoring; returns (result, queue_s)."""
        start = time.perf_counter()
        ticket = _Ticket()
        with self._lock:
            self._enter(ticket)
            deadline: float | None = None
            while not ticket.granted:
                now = time.perf_counter()
                deadline = self._deadline(deadline, now)
                if deadline is not None and now >= deadline:
                    raise self._give_up(ticket, start)
                self._changed.wait(None if deadline is None else deadline - now)
        queued = time.perf_counter() - start
        future = self._submit(function, queued)
        concurrent.futures.wait([future], timeout=timeout)
        return self._outcome(future, timeout, queued)

    # ------------------------------------------------------------------ async
    async def arun(self, function: Callable[[], Any], timeout: float) -> tuple[Any, float]:
        """:meth:`run` for an event loop: waits without blocking it."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        ticket = _Ticket(wake=_poke(loop, event))
        start = time.perf_counter()
        with self._lock:
            self._enter(ticket)
            self._async_waiters.add(ticket)
        try:
            deadline: float | None = None
            while True:
                with self._lock:
                    if ticket.granted:
                        break
                    now = time.perf_counter()
                    deadline = self._deadline(deadline, now)
                    if deadline is not None and now >= deadline:
                        raise self._give_up(ticket, start)
                    event.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        event.wait(), None if deadline is None else deadline - now
                    )
        except asyncio.CancelledError:
            self._withdraw(ticket)
            raise
        finally:
            with self._lock:
                self._async_waiters.discard(ticket)
        queued = time.perf_counter() - start
        future = self._submit(function, queued)
        done = asyncio.Event()
        future.add_done_callback(_poke(loop, done))
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        except asyncio.CancelledError:
            if future.done():
                self._finished()
            else:
                self._abandon(future)
            raise
        return self._outcome(future, timeout, queued)

    def close(self) -> None:
        """Refuse new calls and release waiters; running calls finish on their own."""
        with self._lock:
            self._closed = True
            self._dispatch()
        self._executor.shutdown(wait=False, cancel_futures=True)
