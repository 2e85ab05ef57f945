"""The model card written beside a tuned model: warnings first, then how it was made and scored."""

from __future__ import annotations

from typing import Any

from rerank_plugins.training import report as reporting
from rerank_plugins.training.card import blend_advice, model_card


def _metrics(ndcg: float) -> dict[str, float]:
    return {"ndcg@10": ndcg, "mrr@10": ndcg}


def _report(evaluation: dict[str, Any]) -> dict[str, Any]:
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
    return {
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
        "training": {"steps": 104, "precision": "bf16"},
        "model": {
            "base_kind": "encoder",
            "new_head": True,
            "layers": 6,
            "layer_ids_from_base": None,
        },
        "negatives": {"negatives": 5096},
        "timings": {"total_s": 1997.0},
        "machine": {"device": "cpu"},
        "warnings": reporting.verdict(evaluation),
    }


def test_the_model_card_puts_the_warnings_before_the_usage():
    evaluation = {"first_stage": _metrics(0.7781), "before": None, "after": _metrics(0.4585)}
    report = _report(evaluation)
    card = model_card(report)
    assert card.index("**Warning**") < card.index("```python")
    assert "0.4585 < 0.7781" in card
    assert "seed 0, bf16 arithmetic" in card  # the precision the run trained in
    del report["warnings"]
    assert "**Warning**" not in model_card(report)
    assert "Blending" not in model_card(report)  # nothing measured, nothing said


def test_the_card_tables_every_blend_weight_and_names_the_best():
    after = {
        **_metrics(0.7064),
        "blend": [
            {"weight": 0.2, **_metrics(0.7283)},
            {"weight": 0.5, **_metrics(0.7380)},
        ],
    }
    evaluation = {"first_stage": _metrics(0.7041), "before": None, "after": after}
    evaluation["recommended_blend_weight"] = 0.5
    card = model_card(_report(evaluation))
    section = card[card.index("## Blending with the first stage") :]
    assert "| none (this model alone) | 0.7064 |" in section
    assert "| 0.2 | 0.7283 |" in section and "| 0.5 | 0.7380 |" in section
    assert (
        "**Recommendation**: blend_weight=0.5 ranks the eval split best (NDCG@10 0.7380 vs 0.7064"
        in section
    )
    assert "--blend 0.5" in section and 'blend_weight="recommended"' in section


def test_the_advice_says_so_when_no_weight_helps():
    after = {**_metrics(0.80), "blend": [{"weight": 0.5, **_metrics(0.79)}]}
    evaluation = {"after": after, "recommended_blend_weight": None}
    assert "use it without blending" in str(blend_advice(evaluation))
    assert blend_advice({"after": _metrics(0.8)}) is None
