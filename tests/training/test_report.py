"""The training report: blend weights measured on the eval split, and the verdict (warnings a
user must see before deploying a tuned model)."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins.training import report as reporting


def _metrics(ndcg: float) -> dict[str, float]:
    return {"ndcg@10": ndcg, "mrr@10": ndcg}


def test_no_warning_when_the_model_beats_the_first_stage():
    evaluation = {"first_stage": _metrics(0.70), "after": _metrics(0.74)}
    assert reporting.verdict(evaluation) == []


def test_a_model_worse_than_the_first_stage_is_flagged_with_both_numbers():
    evaluation = {"first_stage": _metrics(0.7781), "after": _metrics(0.4585)}
    (warning,) = reporting.verdict(evaluation)
    assert "reranks worse than the first stage" in warning
    assert "0.4585 < 0.7781" in warning and "do not deploy" in warning


def test_the_warning_names_a_blend_that_beats_the_first_stage():
    after = {**_metrics(0.70), "blend": [{"weight": 0.4, **_metrics(0.76)}]}
    evaluation = {"first_stage": _metrics(0.74), "after": after, "recommended_blend_weight": 0.4}
    (warning,) = reporting.verdict(evaluation)
    assert "do not deploy it as is (blend_weight=0.4 with the first stage gives 0.7600)" in warning
    after["blend"][0]["ndcg@10"] = 0.73  # better than the model, not than the first stage
    (warning,) = reporting.verdict(evaluation)
    assert "blend_weight" not in warning


def test_a_student_behind_its_teacher_beyond_the_tolerance_is_flagged():
    close = {"first_stage": _metrics(0.6), "teacher": _metrics(0.75), "after": _metrics(0.741)}
    assert reporting.verdict(close) == []
    far = {"first_stage": _metrics(0.6), "teacher": _metrics(0.75), "after": _metrics(0.73)}
    (warning,) = reporting.verdict(far)
    assert "0.0200 NDCG@10 behind its teacher" in warning


class _FixedScores:
    """A reranker whose score for a passage is looked up by its text."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.array([self.scores[text] for _, text in pairs])


def _candidates() -> reporting.Candidates:
    # q1: the first stage puts the positive d1 first, the model puts it last;
    # q2: both put the positive d4 first.
    return reporting.Candidates(
        query_ids=["q1", "q2"],
        queries=["first query", "second query"],
        doc_ids=[["d1", "d2", "d3"], ["d4", "d5"]],
        texts=[["t1", "t2", "t3"], ["t4", "t5"]],
        depth=3,
        first_scores=[[9.0, 1.0, 0.0], [5.0, 1.0]],
    )


QRELS = {"q1": {"d1": 1}, "q2": {"d4": 1}}
MODEL = _FixedScores({"t1": 0.0, "t2": 1.0, "t3": 0.9, "t4": 3.0, "t5": 0.0})


def test_blend_rows_rank_by_the_pipelines_blend_of_both_scores():
    measured = reporting.score_candidates(MODEL, _candidates(), QRELS, blend_weights=(0.3, 0.6))
    alone, (low, high) = measured["ndcg@10"], measured["blend"]
    assert alone == pytest.approx((0.5 + 1.0) / 2, abs=1e-4)  # d1 third for q1
    # w=0.3: d1 = 0.3 * 1 = 0.3 < d2 = 0.7 + 0.3 * 1/9 = 0.733: still behind d2 and d3
    assert (low["weight"], low["ndcg@10"]) == (0.3, alone)
    # w=0.6: d1 = 0.6 > d2 = 0.4 + 0.6/9 = 0.467 > d3 = 0.36: first
    assert (high["weight"], high["ndcg@10"]) == (0.6, 1.0)
    assert reporting.recommend_blend(measured) == 0.6


def test_no_blend_is_recommended_when_none_beats_the_model_alone():
    good = _FixedScores({"t1": 2.0, "t2": 1.0, "t3": 0.9, "t4": 3.0, "t5": 0.0})
    measured = reporting.score_candidates(good, _candidates(), QRELS, blend_weights=(0.2, 0.5))
    assert measured["ndcg@10"] == 1.0
    assert [row["ndcg@10"] for row in measured["blend"]] == [1.0, 1.0]
    assert reporting.recommend_blend(measured) is None  # a tie keeps the model alone


def test_ties_between_weights_go_to_the_smaller_weight():
    measured = {
        "ndcg@10": 0.5,
        "blend": [{"weight": 0.2, "ndcg@10": 0.6}, {"weight": 0.4, "ndcg@10": 0.6}],
    }
    assert reporting.recommend_blend(measured) == 0.2


def test_no_blend_rows_without_first_stage_scores():
    candidates = _candidates()
    candidates.first_scores = []
    measured = reporting.score_candidates(MODEL, candidates, QRELS, blend_weights=(0.5,))
    assert "blend" not in measured and reporting.recommend_blend(measured) is None


def test_non_finite_scores_skip_the_blend_instead_of_failing_the_run():
    broken = _FixedScores({"t1": float("nan"), "t2": 1.0, "t3": 0.9, "t4": 3.0, "t5": 0.0})
    measured = reporting.score_candidates(broken, _candidates(), QRELS, blend_weights=(0.5,))
    assert "blend" not in measured and "not finite" in measured["blend_note"]
    assert reporting.recommend_blend(measured) is None


def test_measure_result_recommends_from_the_default_weights():
    measured = reporting.measure_result(MODEL, _candidates(), QRELS)
    weights = [row["weight"] for row in measured["after"]["blend"]]
    assert weights == list(reporting.BLEND_WEIGHTS)
    # d1 passes d2 once w > 1 - w + w / 9, i.e. w > 9/17: 0.6 is the first such weight
    assert measured["recommended_blend_weight"] == 0.6
