"""Before/after measurement on the eval split, ``training_report.json`` and the model card.

Quality is measured the way the model will be used: the first stage retrieves ``depth``
candidates per eval query (positives are *not* forced in, so a positive the first stage
misses costs NDCG as it would in production) and each model reranks the same candidates.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluation.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from .train import DISTILL_LOSSES

#: Bump when the meaning of a field in ``training_report.json`` changes.
REPORT_FORMAT = 1
REPORT_FILE = "training_report.json"
MODEL_CARD = "README.md"


@dataclass
class Candidates:
    """The first stage's top ``depth`` for each eval query, shared by every model scored."""

    query_ids: list[str]
    queries: list[str]
    doc_ids: list[list[str]]
    texts: list[list[str]]
    depth: int

    @property
    def pairs(self) -> int:
        return sum(len(ids) for ids in self.doc_ids)

    def flat(self) -> list[tuple[str, str]]:
        """Every (query, passage) pair, query by query."""
        return [
            (query, text)
            for query, texts in zip(self.queries, self.texts, strict=True)
            for text in texts
        ]


def retrieve_candidates(
    retriever: Any,
    queries: Mapping[str, str],
    *,
    depth: int,
    retriever_depth: int | None = None,
) -> Candidates:
    """One ``search_many`` over the eval queries (top ``depth`` each)."""
    ids = list(queries)
    kwargs = {} if retriever_depth is None else {"candidates": max(retriever_depth, depth)}
    hits = retriever.search_many([queries[qid] for qid in ids], k=depth, **kwargs)
    return Candidates(
        query_ids=ids,
        queries=[queries[qid] for qid in ids],
        doc_ids=[[hit.id for hit in row] for row in hits],
        texts=[[hit.text for hit in row] for row in hits],
        depth=depth,
    )


def _metrics(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Any]) -> dict[str, float]:
    return {
        "ndcg@10": round(ndcg_at_k(run, qrels, 10), 4),
        "mrr@10": round(mrr_at_k(run, qrels, 10), 4),
        "recall@10": round(recall_at_k(run, qrels, 10), 4),
    }


def first_stage_metrics(candidates: Candidates, qrels: Mapping[str, Any]) -> dict[str, float]:
    run = {
        qid: {doc: float(len(ids) - i) for i, doc in enumerate(ids)}
        for qid, ids in zip(candidates.query_ids, candidates.doc_ids, strict=True)
    }
    return _metrics(run, qrels)


def score_candidates(
    reranker: Any, candidates: Candidates, qrels: Mapping[str, Any]
) -> dict[str, Any]:
    """Rerank every query's candidates with ``reranker``: metrics, pairs/s, seconds."""
    pairs = candidates.flat()
    started = time.perf_counter()
    scores = reranker.score_pairs(pairs) if pairs else []
    seconds = time.perf_counter() - started
    run: dict[str, dict[str, float]] = {}
    offset = 0
    for qid, ids in zip(candidates.query_ids, candidates.doc_ids, strict=True):
        run[qid] = {
            doc: float(s) for doc, s in zip(ids, scores[offset : offset + len(ids)], strict=True)
        }
        offset += len(ids)
    return {
        **_metrics(run, qrels),
        "pairs": len(pairs),
        "seconds": round(seconds, 2),
        "pairs_per_s": round(len(pairs) / seconds, 1) if seconds > 0 else None,
    }


def compare_throughput(
    rerankers: Mapping[str, Any], candidates: Candidates, *, pairs: int = 128, rounds: int = 3
) -> dict[str, float]:
    """Median pairs/s of each reranker on the same pairs, in rotating order (a noisy CPU
    affects each about equally)."""
    sample = candidates.flat()[:pairs]
    if not sample:
        return {}
    names = list(rerankers)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            started = time.perf_counter()
            rerankers[name].score_pairs(sample)
            timings[name].append(len(sample) / max(time.perf_counter() - started, 1e-9))
    return {name: round(statistics.median(values), 2) for name, values in timings.items()}


def measure_result(
    result: Any,
    candidates: Candidates,
    qrels: Mapping[str, Any],
    *,
    teacher: Any = None,
    int8: Any = None,
) -> dict[str, Any]:
    """The trained model on the eval candidates; with a teacher, both side by side (pairs/s);
    with its int8 export, that too plus the export's parity figures."""
    measured: dict[str, Any] = {"after": score_candidates(result, candidates, qrels)}
    if teacher is not None:
        speeds = compare_throughput({"teacher": teacher, "after": result}, candidates)
        teacher_speed = speeds.get("teacher")
        measured["throughput_side_by_side"] = {
            **speeds,
            "speedup": round(speeds["after"] / teacher_speed, 2) if teacher_speed else None,
        }
    if int8 is not None:
        measured["int8"] = score_candidates(int8, candidates, qrels)
        manifest = getattr(int8.backend, "manifest", {}) or {}
        measured["int8"]["parity"] = {
            key: manifest.get(key)
            for key in ("fp32_max_abs_diff_vs_torch", "int8_max_abs_diff_vs_torch")
        }
    return measured


def write_report(directory: Path, report: Mapping[str, Any]) -> Path:
    path = directory / REPORT_FILE
    path.write_text(json.dumps({"format_version": REPORT_FORMAT, **report}, indent=2) + "\n")
    return path


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
        f"{settings['serve_length']}), seed {settings['seed']}",
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
        "Full details: `training_report.json`.",
        "",
    ]
    return "\n".join(lines)


#: How far a distilled student may fall behind its teacher before the report warns.
STUDENT_TOLERANCE = 0.01


def verdict(evaluation: Mapping[str, Any]) -> list[str]:
    """Warnings a user must see before deploying the result (empty: nothing to warn about).

    A tuned model that reranks the first stage's candidates *worse* than the first stage
    ranked them would lower quality in production; so would a student far behind its teacher.
    """
    after = evaluation.get("after") or {}
    if "ndcg@10" not in after:
        return []
    warnings: list[str] = []
    first = (evaluation.get("first_stage") or {}).get("ndcg@10")
    if first is not None and after["ndcg@10"] < first:
        warnings.append(
            f"the tuned model reranks worse than the first stage on the eval split (NDCG@10 "
            f"{after['ndcg@10']:.4f} < {first:.4f}): do not deploy it as is; add queries "
            "(--pseudo-queries N), train longer (--epochs), start from a cross-encoder (--base), "
            "or distil from one (--teacher)"
        )
    teacher = (evaluation.get("teacher") or {}).get("ndcg@10")
    if teacher is not None and after["ndcg@10"] < teacher - STUDENT_TOLERANCE:
        warnings.append(
            f"the model is {teacher - after['ndcg@10']:.4f} NDCG@10 behind its teacher "
            f"({after['ndcg@10']:.4f} vs {teacher:.4f}; tolerance {STUDENT_TOLERANCE})"
        )
    return warnings


def write_model_card(directory: Path, report: Mapping[str, Any]) -> Path:
    path = directory / MODEL_CARD
    path.write_text(model_card(report), encoding="utf-8")
    return path


def loss_trend(history: Sequence[Mapping[str, float]]) -> dict[str, float | None]:
    """Mean logged loss over the first and the last quarter of the run."""
    values = [float(entry["loss"]) for entry in history]
    if not values:
        return {"first": None, "last": None}
    quarter = max(1, len(values) // 4)
    return {
        "first": round(statistics.fmean(values[:quarter]), 4),
        "last": round(statistics.fmean(values[-quarter:]), 4),
    }
