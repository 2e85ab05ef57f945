"""NDCG, MRR and Recall at k, with the conventions of trec_eval / pytrec_eval.

``run`` maps a query id to {doc id: score}; ``qrels`` maps a query id to {doc id: graded
relevance}. Documents are ranked by score, descending, ties broken by doc id descending (as
trec_eval does). Averages are over the queries in ``qrels`` that have at least one relevant
document; a query missing from ``run`` counts as 0. NDCG uses linear gain (rel) and log2
discount, like pytrec_eval's ``ndcg_cut``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._validation import check_positive_int

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def _ranked_ids(scores: Mapping[str, float], k: int) -> list[str]:
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (-item[1], _neg(item[0])))][
        :k
    ]


def _neg(doc_id: str) -> tuple[int, ...]:
    # Sort key that puts larger doc ids first among equal scores (trec_eval tie-breaking).
    return (*tuple(-ord(ch) for ch in doc_id), 1)


def _judged(qrels: Qrels) -> dict[str, dict[str, int]]:
    return {
        qid: {doc: int(rel) for doc, rel in docs.items()}
        for qid, docs in qrels.items()
        if any(rel > 0 for rel in docs.values())
    }


def _check_k(k: int) -> None:
    check_positive_int(k, "k")


def ndcg_per_query(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    _check_k(k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out: dict[str, float] = {}
    for qid, judged in _judged(qrels).items():
        ranked = _ranked_ids(run.get(qid, {}), k)
        gains = np.array([max(judged.get(doc, 0), 0) for doc in ranked], dtype=np.float64)
        dcg = float((gains * discounts[: len(gains)]).sum())
        ideal = np.sort(np.array([r for r in judged.values() if r > 0], dtype=np.float64))[::-1][:k]
        idcg = float((ideal * discounts[: len(ideal)]).sum())
        out[qid] = dcg / idcg if idcg > 0 else 0.0
    return out


def mrr_per_query(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    _check_k(k)
    out: dict[str, float] = {}
    for qid, judged in _judged(qrels).items():
        ranked = _ranked_ids(run.get(qid, {}), k)
        out[qid] = next(
            (1.0 / rank for rank, doc in enumerate(ranked, 1) if judged.get(doc, 0) > 0), 0.0
        )
    return out


def recall_per_query(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    _check_k(k)
    out: dict[str, float] = {}
    for qid, judged in _judged(qrels).items():
        relevant = {doc for doc, rel in judged.items() if rel > 0}
        ranked = _ranked_ids(run.get(qid, {}), k)
        out[qid] = len(relevant.intersection(ranked)) / len(relevant)
    return out


def _mean(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else 0.0


def ndcg_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean NDCG@k over judged queries."""
    return _mean(ndcg_per_query(run, qrels, k))


def mrr_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document within the top k."""
    return _mean(mrr_per_query(run, qrels, k))


def recall_at_k(run: Run, qrels: Qrels, k: int = 100) -> float:
    """Mean fraction of each query's relevant documents found in the top k."""
    return _mean(recall_per_query(run, qrels, k))


def evaluate(run: Run, qrels: Qrels) -> dict[str, float]:
    """The standard report: NDCG@10, MRR@10, Recall@10, Recall@100."""
    return {
        "ndcg@10": ndcg_at_k(run, qrels, 10),
        "mrr@10": mrr_at_k(run, qrels, 10),
        "recall@10": recall_at_k(run, qrels, 10),
        "recall@100": recall_at_k(run, qrels, 100),
    }
