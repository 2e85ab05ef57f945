"""One NaN policy: a non-finite score is an error naming its input; the pipeline falls back."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from rerank_plugins import BaseReranker, CrossEncoderReranker
from rerank_plugins._validation import NonFiniteScoreError
from rerank_plugins.pipeline import RerankPipeline
from rerank_plugins.types import Hit

HITS = [Hit(id=f"d{i}", text="p" * (i + 1), score=float(10 - i)) for i in range(4)]


class Poisoned(BaseReranker):
    """Scores by length, but ``bad`` (NaN or inf) at position ``at`` of every call."""

    def __init__(self, bad: float = float("nan"), at: int = 2) -> None:
        self.bad, self.at = bad, at

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        scores = np.array([len(p) for p in passages], dtype=np.float32)
        if len(scores) > self.at:
            scores[self.at] = self.bad
        return scores


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_base_reranker_raises_naming_the_passage(bad):
    reranker = Poisoned(bad)
    passages = ["a", "bb", "ccc", "dddd"]
    for call in (
        lambda: reranker.score("q", passages),
        lambda: reranker.rerank("q", passages),
        lambda: reranker.rerank("q", passages, score_threshold=0.0),
        lambda: asyncio.run(reranker.arerank("q", passages)),
    ):
        with pytest.raises(NonFiniteScoreError, match=r"non-finite score .* passage 2"):
            call()
    with pytest.raises(NonFiniteScoreError, match="pair 2"):
        reranker.score_pairs([("q", p) for p in passages])
    with pytest.raises(NonFiniteScoreError, match="pair 2"):
        reranker.rerank_many(["q", "r"], [passages[:2], passages[2:]])


@pytest.mark.parametrize(
    ("threshold", "error"),
    [(float("nan"), ValueError), (float("inf"), ValueError), ("0.5", TypeError), (True, TypeError)],
)
def test_score_threshold_must_be_a_finite_number(threshold, error):
    with pytest.raises(error, match="score_threshold"):
        Poisoned(at=99).rerank("q", ["a"], score_threshold=threshold)


class _NaNFirstRow:
    """Wraps a scoring backend; the first row of every batch (the longest pair) gets NaN."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def __call__(self, features: dict[str, np.ndarray]) -> np.ndarray:
        logits = np.array(self._backend(features), dtype=np.float32)
        logits[0] = np.nan
        return logits


def test_cross_encoder_nan_logits_raise_and_are_not_cached(tiny_ce_path):
    reranker = CrossEncoderReranker(tiny_ce_path, device="cpu", cache_size=16)
    reranker.backend = _NaNFirstRow(reranker.backend)
    passages = ["gene", "the heart", "vitamin d deficiency and heart disease risk", "cell"]
    with pytest.raises(NonFiniteScoreError, match=r"passage 2.*logits overflowed or are NaN"):
        reranker.rerank("vitamin d", passages, score_threshold=0.0)
    assert len(reranker.cache) == 0  # nothing from the failed call was kept
    with pytest.raises(NonFiniteScoreError, match="pair 2"):
        reranker.score_pairs(
            [("vitamin d", p) if i != 2 else ("heart", p) for i, p in enumerate(passages)]
        )


def first_stage(query: str, k: int) -> list[Hit]:
    return HITS[:k]


@pytest.mark.parametrize("blend_weight", [None, 0.5])
def test_pipeline_falls_back_on_non_finite_rerank_scores(blend_weight):
    pipeline = RerankPipeline(first_stage, Poisoned(), top_k=4, blend_weight=blend_weight)
    results = [
        pipeline.run("q"),
        *pipeline.run_many(["q", "r"]),
        asyncio.run(pipeline.arun("q")),
        *asyncio.run(pipeline.arun_many(["q"])),
    ]
    for result in results:
        assert not result.reranked
        assert "non-finite score (nan)" in result.error
        assert [h.id for h in result.hits] == ["d0", "d1", "d2", "d3"]  # first-stage order
        assert all(h.rerank_score is None for h in result.hits)
    assert "passage 2" in results[0].error and "pair 2" in results[1].error


class PlainNaN:
    """Not a BaseReranker: the pipeline's own check must catch what it returns."""

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        return np.array([1.0, 2.0, np.nan, 0.0][: len(passages)])


def test_pipeline_checks_scores_of_any_reranker():
    result = RerankPipeline(first_stage, PlainNaN(), top_k=4).run("q")
    assert not result.reranked
    assert result.error.endswith("non-finite score (nan) for candidate 2")


def test_blending_needs_finite_first_stage_scores():
    hits = [Hit(id=h.id, text=h.text, score=h.score) for h in HITS]
    hits[1] = Hit(id="d1", text="pp", score=float("inf"))
    pipeline = RerankPipeline(lambda q, k: hits[:k], Poisoned(at=99), top_k=4, blend_weight=0.3)
    result = pipeline.run("q")
    assert not result.reranked
    assert "first stage" in result.error and "candidate 1" in result.error
    plain = RerankPipeline(lambda q, k: hits[:k], Poisoned(at=99), top_k=4).run("q")
    assert plain.reranked  # without blending the first-stage scores are not used
