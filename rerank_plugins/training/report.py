"""Before/after measurement on the eval split, and ``training_report.json``.

Quality is measured the way the model will be used: the first stage retrieves ``depth``
candidates per eval query (positives are *not* forced in, so a positive the first stage
misses costs NDCG as it would in production) and each model reranks the same candidates.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._tuned import REPORT_FILE
from .._validation import NonFiniteScoreError
from ..evaluation.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from ..pipeline import blend_scores

#: Blend weights measured after training: ``RerankPipeline(blend_weight=w)`` for w in these.
BLEND_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

#: Bump when the meaning of a field in ``training_report.json`` changes.
REPORT_FORMAT = 1


@dataclass
class Candidates:
    """The first stage's top ``depth`` for each eval query, shared by every model scored."""

    query_ids: list[str]
    queries: list[str]
    doc_ids: list[list[str]]
    texts: list[list[str]]
    depth: int
    #: The first stage's own scores, row by row (empty: blending cannot be measured).
    first_scores: list[list[float]] = field(default_factory=list)

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
        first_scores=[[float(hit.score) for hit in row] for row in hits],
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


def _rows(candidates: Candidates, scores: Sequence[float]) -> list[np.ndarray]:
    """The flat scores of :meth:`Candidates.flat`, cut back into one array per query."""
    rows, offset = [], 0
    for ids in candidates.doc_ids:
        rows.append(np.asarray(scores[offset : offset + len(ids)], dtype=np.float64))
        offset += len(ids)
    return rows


def _run(candidates: Candidates, rows: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    return {
        qid: {doc: float(s) for doc, s in zip(ids, row, strict=True)}
        for qid, ids, row in zip(candidates.query_ids, candidates.doc_ids, rows, strict=True)
    }


def score_candidates(
    reranker: Any,
    candidates: Candidates,
    qrels: Mapping[str, Any],
    *,
    blend_weights: Sequence[float] = (),
) -> dict[str, Any]:
    """Rerank every query's candidates with ``reranker``: metrics, pairs/s, seconds.

    With ``blend_weights`` (and first-stage scores in ``candidates``) the same scores are also
    ranked by :func:`~rerank_plugins.pipeline.blend_scores` at each weight, under ``"blend"``.
    """
    pairs = candidates.flat()
    started = time.perf_counter()
    scores = reranker.score_pairs(pairs) if pairs else []
    seconds = time.perf_counter() - started
    rows = _rows(candidates, scores)
    measured: dict[str, Any] = {
        **_metrics(_run(candidates, rows), qrels),
        "pairs": len(pairs),
        "seconds": round(seconds, 2),
        "pairs_per_s": round(len(pairs) / seconds, 1) if seconds > 0 else None,
    }
    if blend_weights and candidates.first_scores:
        try:
            measured["blend"] = [
                {"weight": w, **_metrics(_run(candidates, blend_rows(rows, candidates, w)), qrels)}
                for w in blend_weights
            ]
        except NonFiniteScoreError:  # a diverged model is still reported and warned about
            measured["blend_note"] = "not measured: some scores are not finite"
    return measured


def blend_rows(
    rows: Sequence[np.ndarray], candidates: Candidates, weight: float
) -> list[np.ndarray]:
    """Each query's reranker scores blended with its first-stage scores at ``weight``."""
    return [
        blend_scores(row, np.asarray(first, dtype=np.float64), weight)
        for row, first in zip(rows, candidates.first_scores, strict=True)
    ]


def recommended_blend_row(evaluation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``after.blend`` row of the recommended weight (None: nothing recommended)."""
    weight = evaluation.get("recommended_blend_weight")
    rows = (evaluation.get("after") or {}).get("blend") or []
    return next((row for row in rows if row["weight"] == weight), None)


def recommend_blend(measured: Mapping[str, Any]) -> float | None:
    """The blend weight with the best NDCG@10 on the eval split, if one beats no blend.

    Ties go to the smaller weight (more of the reranker).
    """
    best_weight, best = None, measured["ndcg@10"]
    for row in measured.get("blend") or []:
        if row["ndcg@10"] > best:
            best_weight, best = row["weight"], row["ndcg@10"]
    return best_weight


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
    measured: dict[str, Any] = {
        "after": score_candidates(result, candidates, qrels, blend_weights=BLEND_WEIGHTS)
    }
    measured["recommended_blend_weight"] = recommend_blend(measured["after"])
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
        blended = recommended_blend_row(evaluation)
        rescue = (
            f" (blend_weight={blended['weight']:g} with the first stage gives "
            f"{blended['ndcg@10']:.4f})"
            if blended is not None and blended["ndcg@10"] > first
            else ""
        )
        warnings.append(
            f"the tuned model reranks worse than the first stage on the eval split (NDCG@10 "
            f"{after['ndcg@10']:.4f} < {first:.4f}): do not deploy it as is{rescue}; add "
            "queries (--pseudo-queries N), train longer (--epochs), start from a cross-encoder "
            "(--base), or distil from one (--teacher)"
        )
    teacher = (evaluation.get("teacher") or {}).get("ndcg@10")
    if teacher is not None and after["ndcg@10"] < teacher - STUDENT_TOLERANCE:
        warnings.append(
            f"the model is {teacher - after['ndcg@10']:.4f} NDCG@10 behind its teacher "
            f"({after['ndcg@10']:.4f} vs {teacher:.4f}; tolerance {STUDENT_TOLERANCE})"
        )
    return warnings


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
