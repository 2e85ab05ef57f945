"""BaseReranker: one validated scoring call behind every sync and async entry point."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins import BaseReranker, CrossEncoderReranker, Reranker


class CountingReranker(BaseReranker):
    """Scores a passage by its length; records each batched call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        self.calls.append((queries, passages))
        return np.array([len(p) for p in passages], dtype=np.float32)


def test_surface_protocol() -> None:
    assert isinstance(CountingReranker(), Reranker)
    assert issubclass(CrossEncoderReranker, BaseReranker)


def test_rerank_many_is_one_call_and_keeps_indices() -> None:
    reranker = CountingReranker()
    out = reranker.rerank_many(["q1", "q2"], [["aa", "a", "aaa"], ["b"]], top_n=2)
    assert len(reranker.calls) == 1
    assert reranker.calls[0] == (["q1", "q1", "q1", "q2"], ["aa", "a", "aaa", "b"])
    assert [r.index for r in out[0]] == [2, 0]
    assert [r.index for r in out[1]] == [0]


async def test_async_equals_sync() -> None:
    reranker = CountingReranker()
    passages = ["abc", "a", "ab", "abcd"]
    assert (await reranker.ascore("q", passages)).tolist() == reranker.score("q", passages).tolist()
    assert await reranker.arerank("q", passages, top_n=3) == reranker.rerank("q", passages, top_n=3)
    pairs = [("q", "ab"), ("r", "a")]
    assert (await reranker.ascore_pairs(pairs)).tolist() == [2.0, 1.0]
    many = await reranker.arerank_many(["q", "r"], [passages, ["x"]])
    assert many == reranker.rerank_many(["q", "r"], [passages, ["x"]])


def test_validation_names_the_culprit() -> None:
    reranker = CountingReranker()
    with pytest.raises(TypeError, match=r"passages\[1\]"):
        reranker.score("q", ["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="query"):
        reranker.rerank(" ", ["a"])
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        reranker.score_pairs([("q",)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="NaN"):
        reranker.rerank("q", ["a"], score_threshold=float("nan"))
    with pytest.raises(ValueError, match="2 queries but 1"):
        reranker.rerank_many(["a", "b"], [["x"]])
    assert reranker.calls == []


async def test_cross_encoder_async(tiny_reranker: CrossEncoderReranker) -> None:
    passages = ["vitamin d deficiency", "the heart", "gene expression in cells"]
    sync = tiny_reranker.rerank("vitamin d", passages)
    assert await tiny_reranker.arerank("vitamin d", passages) == sync
    np.testing.assert_array_equal(
        await tiny_reranker.ascore("vitamin d", passages),
        tiny_reranker.score("vitamin d", passages),
    )
