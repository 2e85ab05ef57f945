"""evaluate_settings: what it asks of the first stage, and the rows it reports."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins.evaluation.beir import BeirDataset
from rerank_plugins.evaluation.runner import evaluate_settings
from rerank_plugins.types import Hit

CORPUS = {f"d{i}": {"title": "", "text": "word " * (i + 1)} for i in range(6)}
DATASET = BeirDataset(
    corpus=CORPUS,
    queries={"q1": "first", "q2": "second"},
    qrels={"q1": {"d5": 1}, "q2": {"d0": 1}},
)


class RecordingRetriever:
    """Returns d0..d5 in order; records each call's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def search(self, query: str, k: int = 10, *, candidates: int | None = None) -> list[Hit]:
        self.calls.append({"k": k, "candidates": candidates})
        ids = list(CORPUS)[:k]
        return [Hit(id=d, text=CORPUS[d]["text"], score=float(-i)) for i, d in enumerate(ids)]


class LengthReranker:
    def score(self, query, passages):
        return np.array([len(p) for p in passages], dtype=np.float32)


def test_retriever_depth_reaches_the_first_stage_and_unset_leaves_its_default():
    retriever = RecordingRetriever()
    evaluate_settings(DATASET, retriever, candidates=4, retriever_depth=9)
    assert retriever.calls == [{"k": 4, "candidates": 9}] * 2
    retriever.calls.clear()
    evaluate_settings(DATASET, retriever, candidates=4)
    assert retriever.calls == [{"k": 4, "candidates": None}] * 2
    with pytest.raises(ValueError, match="retriever_depth=3 is below candidates=4"):
        evaluate_settings(DATASET, retriever, candidates=4, retriever_depth=3)


def test_rows_score_first_stage_then_each_depth():
    rows = evaluate_settings(
        DATASET,
        RecordingRetriever(),
        reranker=LengthReranker(),
        candidates=6,
        depths=(3, 6),
        latency="estimated",
        retriever_name="fake",
    )
    by_depth = {row["depth"]: row["metrics"]["ndcg@10"] for row in rows}
    # q1's relevant d5 is last in first-stage order and longest, so reranking all 6 finds it
    # first; q2's d0 is first and shortest, so full reranking sinks it to rank 6.
    assert by_depth[0] == pytest.approx((1 / np.log2(7) + 1.0) / 2)
    assert by_depth[6] == pytest.approx((1.0 + 1 / np.log2(7)) / 2)
    # depth 3 reranks d0..d2 only: q1 keeps d5 at rank 6, q2's d0 drops to rank 3
    assert by_depth[3] == pytest.approx((1 / np.log2(7) + 1 / np.log2(4)) / 2)


class PairsOnlyReranker(LengthReranker):
    """Counts ``score_pairs`` calls and refuses per-query ``score`` (what latency='batch' uses)."""

    def __init__(self) -> None:
        self.pair_calls: list[int] = []

    def score(self, query, passages):
        raise AssertionError("latency='batch' must not score query by query")

    def score_pairs(self, pairs):
        self.pair_calls.append(len(pairs))
        return np.array([len(p) for _, p in pairs], dtype=np.float32)


def test_batch_latency_scores_every_query_in_one_call_with_the_same_rankings():
    kwargs = {"candidates": 6, "depths": (3, 6), "blend_weights": (0.5,)}
    per_query = evaluate_settings(
        DATASET, RecordingRetriever(), reranker=LengthReranker(), latency="estimated", **kwargs
    )
    reranker = PairsOnlyReranker()
    batch = evaluate_settings(
        DATASET, RecordingRetriever(), reranker=reranker, latency="batch", **kwargs
    )
    assert reranker.pair_calls == [12]  # 2 queries x the deepest depth, one call
    assert [r["setting"] for r in batch] == [r["setting"] for r in per_query]
    assert [r["metrics"] for r in batch] == [r["metrics"] for r in per_query]
    rerank_ms = {r["depth"]: r["latency_ms"]["rerank"]["mean"] for r in batch if r["depth"]}
    assert rerank_ms[3] == pytest.approx(rerank_ms[6] / 2)  # charged per pair scored
