"""PairBatcher in-process with a fake reranker: sharing, slicing, isolation, limits, draining."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from rerank_plugins._validation import RerankerOutputError
from rerank_plugins.rerankers import BaseReranker
from rerank_plugins.serving.batcher import BatcherClosedError, PairBatcher, QueueFullError


class Recorder(BaseReranker):
    """Score = len(passage) + 100 * len(query); records calls; can block or fail on demand."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []
        self.gate = threading.Event()
        self.gate.set()

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        self.gate.wait(10)
        self.calls.append(list(zip(queries, passages, strict=True)))
        if "bad" in passages:
            raise ValueError("query 'bad' cannot be scored")
        return np.array(
            [len(p) + 100 * len(q) for q, p in zip(queries, passages, strict=True)],
            dtype=np.float32,
        )


def want(query: str, passages: list[str]) -> list[float]:
    return [float(len(p) + 100 * len(query)) for p in passages]


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.005)


async def test_concurrent_requests_share_one_step():
    reranker = Recorder()
    batcher = PairBatcher(reranker, max_wait_ms=50)
    await batcher.start()
    jobs = [("q", ["a", "bbb"]), ("qq", ["cc"]), ("q", ["dddd", "e", "ff"])]
    results = await asyncio.gather(*(batcher.submit([q] * len(p), p) for q, p in jobs))
    assert [r.tolist() for r in results] == [want(q, p) for q, p in jobs]
    assert len(reranker.calls) == 1 and len(reranker.calls[0]) == 6
    assert batcher.pending_pairs == 0
    await batcher.stop()


async def test_large_request_is_sliced_and_reassembled():
    reranker = Recorder()
    batcher = PairBatcher(reranker, max_batch_pairs=4, max_wait_ms=0)
    passages = [str(i) * (i + 1) for i in range(10)]
    scores = await batcher.submit(["q"] * 10, passages)
    assert scores.tolist() == want("q", passages)
    assert [len(call) for call in reranker.calls] == [4, 4, 2]
    await batcher.stop()


async def test_one_bad_request_does_not_fail_its_neighbours():
    reranker = Recorder()
    batcher = PairBatcher(reranker, max_wait_ms=50)
    good, bad, other = (
        batcher.submit(["q", "q"], ["a", "bb"]),
        batcher.submit(["q", "q"], ["ok", "bad"]),
        batcher.submit(["r"], ["ccc"]),
    )
    results = await asyncio.gather(good, bad, other, return_exceptions=True)
    assert results[0].tolist() == want("q", ["a", "bb"])
    assert isinstance(results[1], ValueError) and "bad" in str(results[1])
    assert results[2].tolist() == want("r", ["ccc"])
    assert batcher.pending_pairs == 0
    await batcher.stop()


async def test_full_queue_refuses_with_retry_after_and_keeps_accepted_work():
    reranker = Recorder()
    reranker.gate.clear()  # the model is busy
    batcher = PairBatcher(reranker, max_queue_pairs=4, max_wait_ms=0)
    first = asyncio.ensure_future(batcher.submit(["q"] * 3, ["a", "b", "c"]))
    await wait_until(lambda: batcher.pending_pairs == 3)
    with pytest.raises(QueueFullError) as refused:
        await batcher.submit(["q"] * 2, ["d", "e"])
    assert refused.value.retry_after >= 1
    one_more = asyncio.ensure_future(batcher.submit(["q"], ["f"]))  # 3 + 1 fits
    await wait_until(lambda: batcher.pending_pairs == 4)
    with pytest.raises(ValueError, match="never fit"):
        await batcher.submit(["q"] * 5, list("vwxyz"))
    reranker.gate.set()
    assert (await first).tolist() == want("q", ["a", "b", "c"])
    assert (await one_more).tolist() == want("q", ["f"])
    assert batcher.pending_pairs == 0
    await batcher.stop()


async def test_stop_drains_accepted_requests_then_refuses():
    reranker = Recorder()
    reranker.gate.clear()
    batcher = PairBatcher(reranker, max_batch_pairs=2, max_wait_ms=0)
    accepted = [asyncio.ensure_future(batcher.submit(["q"] * 3, ["a", "bb", "ccc"]))]
    accepted.append(asyncio.ensure_future(batcher.submit(["r"], ["d"])))
    await wait_until(lambda: batcher.pending_pairs == 4)
    stopping = asyncio.ensure_future(batcher.stop())
    await asyncio.sleep(0.05)
    with pytest.raises(BatcherClosedError):
        await batcher.submit(["q"], ["late"])
    assert not stopping.done()
    reranker.gate.set()
    await stopping
    assert [f.result().tolist() for f in accepted] == [
        want("q", ["a", "bb", "ccc"]),
        want("r", ["d"]),
    ]
    assert not batcher.running


async def test_stop_without_drain_fails_what_is_queued():
    reranker = Recorder()
    reranker.gate.clear()
    batcher = PairBatcher(reranker, max_batch_pairs=1, max_wait_ms=0)
    in_step = asyncio.ensure_future(batcher.submit(["q"], ["a"]))
    await wait_until(lambda: batcher.pending_pairs == 1)
    await asyncio.sleep(0.05)  # the worker has taken it
    queued = asyncio.ensure_future(batcher.submit(["q"], ["b"]))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(batcher.stop(drain=False))
    await asyncio.sleep(0.05)
    reranker.gate.set()
    await stopping
    assert in_step.result().tolist() == want("q", ["a"])  # already being scored: answered
    with pytest.raises(BatcherClosedError):
        queued.result()
    assert batcher.pending_pairs == 0


async def test_cancelled_request_frees_its_pairs():
    reranker = Recorder()
    reranker.gate.clear()
    batcher = PairBatcher(reranker, max_batch_pairs=1, max_wait_ms=0)
    busy = asyncio.ensure_future(batcher.submit(["q"], ["a"]))
    gone = asyncio.ensure_future(batcher.submit(["q"] * 3, ["x", "y", "z"]))
    await wait_until(lambda: batcher.pending_pairs == 4)
    gone.cancel()
    reranker.gate.set()
    assert (await busy).tolist() == want("q", ["a"])
    await wait_until(lambda: batcher.pending_pairs == 0)
    assert not {p for call in reranker.calls for _, p in call} & {"x", "y", "z"}
    assert (await batcher.submit(["q"], ["b"])).tolist() == want("q", ["b"])
    await batcher.stop()


async def test_wrong_score_count_is_an_error_not_a_hang():
    class Short(BaseReranker):
        def _score_checked(self, queries, passages):
            return np.zeros(len(passages) - 1, dtype=np.float32)

    batcher = PairBatcher(Short(), max_wait_ms=0)
    with pytest.raises(RerankerOutputError, match=r"\(1,\) scores for 2 pairs"):
        await batcher.submit(["q", "q"], ["a", "b"])
    await batcher.stop()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_queue_pairs": 0}, "max_queue_pairs"),
        ({"max_batch_pairs": True}, "max_batch_pairs"),
        ({"max_wait_ms": -1.0}, "max_wait_ms"),
    ],
)
def test_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PairBatcher(Recorder(), **kwargs)
