"""The training report's verdict: warnings a user must see before deploying a tuned model."""

from __future__ import annotations

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


def test_a_student_behind_its_teacher_beyond_the_tolerance_is_flagged():
    close = {"first_stage": _metrics(0.6), "teacher": _metrics(0.75), "after": _metrics(0.741)}
    assert reporting.verdict(close) == []
    far = {"first_stage": _metrics(0.6), "teacher": _metrics(0.75), "after": _metrics(0.73)}
    (warning,) = reporting.verdict(far)
    assert "0.0200 NDCG@10 behind its teacher" in warning


def test_the_model_card_puts_the_warnings_before_the_usage():
    settings = {
        "negatives": "hybrid",
        "base": "all-MiniLM-L6-v2",
        "teacher": None,
        "eval_depth": 30,
        "rank_min": 1,
        "rank_max": 30,
        "negatives_per_query": 7,
        "sampling": "random",
        "loss": "mnrl",
        "batch_size": 8,
        "lr": 5e-5,
        "max_length": 192,
        "serve_length": 256,
        "seed": 0,
    }
    evaluation = {"first_stage": _metrics(0.7781), "before": None, "after": _metrics(0.4585)}
    report = {
        "output": "/models/tuned",
        "settings": settings,
        "data": {
            "path": "/data/scifact",
            "split": "train",
            "train_queries": 728,
            "train_positives": 826,
            "eval_source": "81 held out",
            "eval_queries": 81,
        },
        "evaluation": evaluation,
        "training": {"steps": 104},
        "model": {"base_kind": "encoder", "new_head": True, "layers": 6},
        "negatives": {"negatives": 5096},
        "timings": {"total_s": 1997.0},
        "machine": {"device": "cpu"},
        "warnings": reporting.verdict(evaluation),
    }
    report["model"]["layer_ids_from_base"] = None
    card = reporting.model_card(report)
    assert card.index("**Warning**") < card.index("```python")
    assert "0.4585 < 0.7781" in card
    del report["warnings"]
    assert "**Warning**" not in reporting.model_card(report)
