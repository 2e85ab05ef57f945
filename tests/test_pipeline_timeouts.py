"""rerank_timeout is a query's own: abandoned calls never make later queries fall back.

Every test uses a reranker that sleeps or blocks on an Event (no model), bounded in count and
time; a test that would hang on a regression is capped by its Events' timeouts.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from rerank_plugins import BaseReranker
from rerank_plugins.pipeline import RerankPipeline
from rerank_plugins.types import Hit

HITS = [Hit(id=f"d{i}", text="x" * (i + 1), score=float(10 - i)) for i in range(4)]


def first_stage(query: str, k: int) -> list[Hit]:
    return HITS[:k]


class Sleepy:
    """Scores by passage length after sleeping ``slow_s`` ("slow ..." queries) or ``fast_s``."""

    def __init__(self, slow_s: float = 0.3, fast_s: float = 0.0) -> None:
        self.slow_s, self.fast_s = slow_s, fast_s
        self.started: list[str] = []
        self.lock = threading.Lock()

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        with self.lock:
            self.started.append(query)
        time.sleep(self.slow_s if query.startswith("slow") else self.fast_s)
        return np.array([len(p) for p in passages], dtype=np.float32)

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        time.sleep(self.slow_s if pairs and pairs[0][0].startswith("slow") else self.fast_s)
        return np.array([len(p) for _, p in pairs], dtype=np.float32)


class Blocking:
    """Blocks every call until ``release`` is set (at most 10 s, so a bug cannot hang CI)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        self.calls += 1
        if not query.startswith("fast"):
            self.release.wait(10)
        return np.zeros(len(passages), dtype=np.float32)


def test_abandoned_slow_calls_do_not_make_later_fast_queries_fall_back():
    # 12 slow calls of 0.3 s on 2 workers were 1.8 s of backlog: with the old executor every
    # fast query in those 1.8 s fell back, because queue time counted against its timeout.
    pipeline = RerankPipeline(first_stage, Sleepy(slow_s=0.3), rerank_timeout=0.05, top_k=4)
    slow = [pipeline.run(f"slow {i}") for i in range(12)]
    assert not any(r.reranked for r in slow)
    # each timed out, or found every thread busy with abandoned calls and did not wait long
    assert all("rerank_timeout=0.05 s" in r.error or "abandoned" in r.error for r in slow)
    start = time.perf_counter()
    fallbacks = 0
    while True:
        result = pipeline.run("fast")
        if result.reranked:
            break
        fallbacks += 1
        assert time.perf_counter() - start < 1.5, f"fast queries still fall back ({fallbacks})"
    waited = time.perf_counter() - start
    # at most one abandoned call's remaining 0.3 s (plus a noisy machine's slack)
    assert waited < 1.0, waited
    assert [h.id for h in result.hits] == ["d3", "d2", "d1", "d0"]
    assert "queue_s" in result.timings
    pipeline.close()


async def test_concurrent_arun_calls_wait_their_turn_instead_of_falling_back():
    # 16 calls of 20 ms on 2 workers: the last waits ~160 ms for a slot, past the 50 ms
    # timeout; only its own 20 ms of scoring counts, so none falls back.
    pipeline = RerankPipeline(first_stage, Sleepy(fast_s=0.02), rerank_timeout=0.05, top_k=4)
    results = await asyncio.gather(*(pipeline.arun(f"fast {i}") for i in range(16)))
    assert [r.error for r in results] == [None] * 16
    assert all(r.reranked for r in results)
    assert max(r.timings["queue_s"] for r in results) > 0.05  # some really waited
    assert all(r.timings["queue_s"] <= r.timings["rerank_s"] for r in results)
    pipeline.close()


def test_concurrent_threads_share_the_slots_and_all_rerank():
    pipeline = RerankPipeline(first_stage, Sleepy(fast_s=0.02), rerank_timeout=0.05, top_k=4)
    results: list = [None] * 12

    def worker(i: int) -> None:
        results[i] = pipeline.run(f"fast {i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(r is not None and r.reranked for r in results)
    pipeline.close()


def test_full_queue_falls_back_at_once():
    reranker = Blocking()
    pipeline = RerankPipeline(
        first_stage, reranker, rerank_timeout=2.0, rerank_workers=1, rerank_queue=1
    )
    out: dict[str, object] = {}
    running = threading.Thread(target=lambda: out.setdefault("a", pipeline.run("a")))
    running.start()
    deadline = time.monotonic() + 5
    while reranker.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    waiting = threading.Thread(target=lambda: out.setdefault("b", pipeline.run("b")))
    waiting.start()
    while not pipeline._pool._queue and time.monotonic() < deadline:  # b is queued
        time.sleep(0.005)
    start = time.perf_counter()
    third = pipeline.run("c")
    assert time.perf_counter() - start < 0.5
    assert not third.reranked and "queue full" in third.error
    reranker.release.set()
    running.join(5)
    waiting.join(5)
    assert out["a"].reranked and out["b"].reranked
    assert out["b"].timings["queue_s"] > 0
    pipeline.close()


async def test_a_query_cancelled_while_queued_never_runs():
    reranker = Blocking()
    pipeline = RerankPipeline(first_stage, reranker, rerank_timeout=5.0, rerank_workers=1)
    first = asyncio.create_task(pipeline.arun("first"))
    while reranker.calls == 0:
        await asyncio.sleep(0.005)
    queued = asyncio.create_task(pipeline.arun("queued"))
    while not pipeline._pool._queue:
        await asyncio.sleep(0.005)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert not pipeline._pool._queue
    reranker.release.set()
    assert (await first).reranked
    assert reranker.calls == 1  # the cancelled query's scoring never started
    pipeline.close()


def test_saturated_pool_waits_one_timeout_then_recovers():
    # workers=1 -> 2 threads; two hung calls hold both: a third query waits rerank_timeout
    # for a thread, falls back saying why, and the pipeline reranks again once they return.
    reranker = Blocking()
    pipeline = RerankPipeline(first_stage, reranker, rerank_timeout=0.1, rerank_workers=1)
    hung = [pipeline.run(f"hung {i}") for i in range(2)]
    assert all("rerank_timeout" in r.error for r in hung)
    assert pipeline._pool.abandoned == 2
    start = time.perf_counter()
    blocked = pipeline.run("fast while saturated")
    assert 0.09 < time.perf_counter() - start < 1.0
    assert not blocked.reranked and "abandoned" in blocked.error
    assert reranker.calls == 2  # it never ran
    reranker.release.set()
    deadline = time.monotonic() + 5
    while pipeline._pool.abandoned and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pipeline.run("fast again").reranked
    pipeline.close()


def test_run_and_run_many_share_the_fallback_messages_and_timings():
    pipeline = RerankPipeline(first_stage, Sleepy(slow_s=0.3), rerank_timeout=0.05, top_k=2)
    single = pipeline.run("slow one")
    many = pipeline.run_many(["slow a", "slow b"])
    assert single.error == "reranking exceeded rerank_timeout=0.05 s"
    assert [r.error for r in many] == [
        "reranking exceeded rerank_timeout=0.05 s (0.1 s for 2 queries)"
    ] * 2
    for result in (single, *many):
        assert set(result.timings) == {"retrieve_s", "rerank_s", "queue_s", "total_s"}
        assert [h.id for h in result.hits] == ["d0", "d1"]
    pipeline.close()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (0, ValueError),
        (-1.0, ValueError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_bad_rerank_timeout_is_rejected(value, error):
    with pytest.raises(error, match="rerank_timeout"):
        RerankPipeline(first_stage, Sleepy(), rerank_timeout=value)


@pytest.mark.parametrize("name", ["candidates", "top_k", "rerank_top", "rerank_workers"])
@pytest.mark.parametrize("value", [2.5, True, "3"])
def test_counts_must_be_ints(name, value):
    with pytest.raises(TypeError, match=name):
        RerankPipeline(first_stage, Sleepy(), **{name: value})


class NativeAsync(BaseReranker):
    """Async I/O reranker: its coroutine sleeps; cancellation is recorded."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sync_calls = 0
        self.cancelled = 0

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        self.sync_calls += 1
        return np.array([len(p) for p in passages], dtype=np.float32)

    async def _ascore_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return np.array([len(p) for p in passages], dtype=np.float32)


async def test_arun_awaits_native_async_and_cancels_it_at_the_timeout():
    fast = NativeAsync(delay=0.0)
    pipeline = RerankPipeline(first_stage, fast, top_k=4)
    sync = pipeline.run("q")
    assert fast.sync_calls == 1
    result = await pipeline.arun("q")
    many = await pipeline.arun_many(["q", "q"])
    assert fast.sync_calls == 1  # the async path never used the blocking method
    assert [h.id for h in result.hits] == [h.id for h in sync.hits]
    assert [[h.id for h in r.hits] for r in many] == [[h.id for h in sync.hits]] * 2
    slow = NativeAsync(delay=5.0)
    timed = RerankPipeline(first_stage, slow, top_k=4, rerank_timeout=0.05)
    start = time.perf_counter()
    fallback = await timed.arun("q")
    assert time.perf_counter() - start < 2.0
    assert fallback.error == "reranking exceeded rerank_timeout=0.05 s"
    assert slow.cancelled == 1 and timed._pool is None  # nothing left running, no threads


async def test_arun_many_equals_run_many_with_thread_backed_reranker(tiny_reranker):
    pipeline = RerankPipeline(first_stage, tiny_reranker, top_k=4, rerank_timeout=30.0)
    queries = ["x marks", "xx and x"]
    sync = pipeline.run_many(queries)
    asynchronous = await pipeline.arun_many(queries)
    assert [[h.id for h in r.hits] for r in asynchronous] == [[h.id for h in r.hits] for r in sync]
    assert [[h.rerank_score for h in r.hits] for r in asynchronous] == [
        [h.rerank_score for h in r.hits] for r in sync
    ]
    assert all(r.reranked for r in asynchronous)
    pipeline.close()
