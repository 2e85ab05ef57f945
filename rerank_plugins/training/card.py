"""The model card: README.md of a tuned model's directory, written from its training report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .report import recommended_blend_row
from .train import DISTILL_LOSSES

MODEL_CARD = "README.md"


def _row(name: str, result: Mapping[str, Any] | None) -> str:
    if not result:
        return f"| {name} | - | - | - |"
    speed = result.get("pairs_per_s")
    return (
        f"| {name} | {result['ndcg@10']:.4f} | {result['mrr@10']:.4f} | "
        f"{speed if speed is not None else '-'} |"
    )


def model_card(report: Mapping[str, Any]) -> str:
    """The README.md of the output directory: what it is, how it was made, how it scores."""
    settings = report["settings"]
    data = report["data"]
    evaluation = report["evaluation"]
    training = report["training"]
    rows = [
        _row(f"first stage ({settings['negatives']})", evaluation["first_stage"]),
        _row("before (starting model)", evaluation.get("before")),
    ]
    if evaluation.get("teacher"):
        rows.append(_row("teacher", evaluation["teacher"]))
    rows.append(_row("after (this model)", evaluation["after"]))
    if evaluation.get("int8"):
        rows.append(_row("after, ONNX int8", evaluation["int8"]))
    warnings = report.get("warnings") or []
    lines = [
        f"# {Path(report['output']).name}",
        "",
        "A cross-encoder reranker (one relevance logit per query-passage pair) tuned by "
        "`rerank-plugins tune`.",
        *(["", "**Warning**:", *(f"- {w}" for w in warnings)] if warnings else []),
        "",
        "```python",
        "from rerank_plugins import CrossEncoderReranker",
        "",
        f'reranker = CrossEncoderReranker("{report["output"]}")',
        'reranker.rerank("my query", ["passage one", "passage two"])',
        "```",
        "",
        "## How it was made",
        "",
        f"- Base: `{settings['base']}` ({report['model']['base_kind']}"
        + (", new one-logit head" if report["model"]["new_head"] else "")
        + f"); {report['model']['layers']} layers"
        + (
            f" (layers {report['model']['layer_ids_from_base']} of the base)"
            if report["model"]["layer_ids_from_base"]
            else ""
        ),
        f"- Teacher: `{settings['teacher']}`" if settings.get("teacher") else "- Teacher: none",
        f"- Data: `{data['path']}`, split `{data['split']}`: {data['train_queries']} queries, "
        f"{data['train_positives']} positives; eval: {data['eval_source']} "
        f"({data['eval_queries']} queries)",
        f"- Negatives: {report['negatives']['negatives']} from `{settings['negatives']}` ranks "
        f"{settings['rank_min']}..{settings['rank_max']} ({settings['negatives_per_query']} per "
        f"query, {settings['sampling']}); judged positives never used as negatives"
        + (
            f"; plus {report['negatives']['pseudo_queries']} corpus titles asked as "
            "pseudo-queries, "
            + (
                "labelled by the teacher only"
                if settings["loss"] in DISTILL_LOSSES
                else "each with its own document as a weak positive"
            )
            if report["negatives"].get("pseudo_queries")
            else ""
        ),
        f"- Loss: `{settings['loss']}`; {training['steps']} steps, batch {settings['batch_size']}, "
        f"lr {settings['lr']}, max length {settings['max_length']} (serving window "
        f"{settings['serve_length']}), seed {settings['seed']}, {training['precision']} "
        "arithmetic",
        f"- Wall time: {report['timings']['total_s']:.0f} s ({report['machine']['device']})",
        "",
        f"## Eval split: rerank the first stage's top {settings['eval_depth']} "
        "(positives not forced in)",
        "",
        "| model | NDCG@10 | MRR@10 | pairs/s |",
        "|---|---|---|---|",
        *rows,
        "",
        "Pairs/s were measured during the run on this machine; a shared or busy CPU lowers them.",
        *_blend_section(evaluation),
        "",
        "Full details: `training_report.json`.",
        "",
    ]
    return "\n".join(lines)


def blend_advice(evaluation: Mapping[str, Any]) -> str | None:
    """One sentence on the blend weight the eval split prefers (None: nothing was measured)."""
    after = evaluation.get("after") or {}
    if not after.get("blend"):
        return None
    best = recommended_blend_row(evaluation)
    if best is None:
        return (
            "no blend weight ranked the eval split better than this model alone: "
            "use it without blending"
        )
    weight = best["weight"]
    return (
        f"blend_weight={weight:g} ranks the eval split best (NDCG@10 {best['ndcg@10']:.4f} vs "
        f"{after['ndcg@10']:.4f} for this model alone): RerankPipeline(..., "
        f'blend_weight={weight:g}), or blend_weight="recommended", which reads it from this '
        f"directory; rerank-plugins eval --blend {weight:g}"
    )


def _blend_section(evaluation: Mapping[str, Any]) -> list[str]:
    advice = blend_advice(evaluation)
    if advice is None:
        return []
    after = evaluation["after"]
    return [
        "",
        "## Blending with the first stage",
        "",
        "`RerankPipeline(blend_weight=w)` ranks by `(1 - w) * minmax(this model) + "
        "w * minmax(first stage)`. On the same eval candidates:",
        "",
        "| blend weight | NDCG@10 | MRR@10 |",
        "|---|---|---|",
        f"| none (this model alone) | {after['ndcg@10']:.4f} | {after['mrr@10']:.4f} |",
        *(
            f"| {row['weight']:g} | {row['ndcg@10']:.4f} | {row['mrr@10']:.4f} |"
            for row in after["blend"]
        ),
        "",
        f"**Recommendation**: {advice}. The eval split is small: confirm on queries of your "
        "own before relying on a weight.",
    ]


def write_model_card(directory: Path, report: Mapping[str, Any]) -> Path:
    path = directory / MODEL_CARD
    path.write_text(model_card(report), encoding="utf-8")
    return path
