"""Label-free adaptive fusion weights (query-performance prediction), measured, not shipped.

Per query, each retriever's weight is ``2 * c_r^p / sum(c^p)`` where ``c_r`` is a confidence
read from its own list: ``top1z`` (the best score's z-score within the list) or ``gap`` (best
minus 10th score, over the list's std), on the whole list or its top 20. Fused with z-score,
DBSF, min-max and RRF over the cached per-retriever lists of ``bench_fusion.py`` (run that
first; this script only reads its cache), next to equal and fixed ``bm25=0.6 dense=1.4``
weights. Prints NDCG@10 and Recall@100 per data set.

    RERANK_PLUGINS_CACHE=/work/cache python benchmarks/bench_fusion_adaptive.py \\
        --data ../shared/data/scifact:train --data ../shared/data/trec-dl-2020:test

``--shares 0.6,0.65,0.7 --no-qpp --methods zscore`` gives the fixed-weight rows that chose the
default fusion (docs/benchmarks.md, "Decision").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fusion import ROOT, cached_lists

sys.path.insert(0, str(ROOT))
from rerank_plugins.evaluation.beir import load_beir
from rerank_plugins.evaluation.metrics import ndcg_per_query, recall_at_k
from rerank_plugins.hybrid import fusion

Weights = Callable[[Sequence], np.ndarray]


def fixed(bm25: float, dense: float) -> Weights:
    return lambda lists: np.tile([bm25, dense], (len(lists), 1))


def confidence(stat: str, power: float, depth: int | None) -> Weights:
    """Per-query weights from each list's own score distribution."""

    def weights(lists: Sequence) -> np.ndarray:
        out = []
        for query_lists in lists:
            values = []
            for _, scores in query_lists:
                s = scores[:depth] if depth else scores
                if s.size < 2 or s.std() == 0:
                    values.append(1.0)
                    continue
                if stat == "top1z":
                    c = (s[0] - s.mean()) / s.std()
                else:
                    c = (s[0] - s[min(9, s.size - 1)]) / s.std()
                values.append(max(float(c), 1e-3) ** power)
            v = np.array(values)
            out.append(2 * v / v.sum())
        return np.array(out)

    return weights


def evaluate(dataset, lists, ids, weights: Weights, method: str, depth: int) -> tuple[float, float]:
    qids = list(dataset.queries)
    trimmed = [[(p[:depth], s[:depth]) for p, s in q] for q in lists]
    union, scores, ranks, valid = fusion.align_many(trimmed)
    w = weights(trimmed)
    fused = np.stack([fusion.fuse(method, scores[q], ranks[q], w[q]) for q in range(len(qids))])
    fused[~valid] = -np.inf
    top = fusion.top_order(fused, union, 100)
    run = {
        qid: {ids[union[i, c]]: float(100 - j) for j, c in enumerate(top[i])}
        for i, qid in enumerate(qids)
    }
    qrels = {q: dataset.qrels[q] for q in qids}
    ndcg = ndcg_per_query(run, qrels, 10)
    return float(np.mean([ndcg.get(q, 0.0) for q in qids])), recall_at_k(run, qrels, 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, metavar="DIR:SPLIT")
    parser.add_argument("--depth", type=int, default=100, help="per-retriever list depth")
    parser.add_argument(
        "--shares", default="0.7", help="fixed dense weight shares to add (0.7: bm25=0.6 dense=1.4)"
    )
    parser.add_argument("--methods", default="zscore,dbsf,minmax,rrf")
    parser.add_argument("--no-qpp", action="store_true", help="fixed weights only")
    args = parser.parse_args(argv)
    sets = []
    for spec in args.data:
        directory, split = spec.rsplit(":", 1)
        dataset = load_beir(Path(directory), split=split)
        lists = cached_lists(Path(directory), split, dataset, 400)
        sets.append((dataset, lists, dataset.doc_texts()[0]))
    rows: list[tuple[str, Weights]] = [("equal", fixed(1, 1))]
    for share in (float(x) for x in args.shares.split(",")):
        rows.append((f"share={share:g}", fixed(2 * (1 - share), 2 * share)))
    for stat in () if args.no_qpp else ("top1z", "gap"):
        for power in (1, 2, 3):
            rows.append((f"{stat}^{power}", confidence(stat, power, None)))
            rows.append((f"{stat}^{power}@20", confidence(stat, power, 20)))
    for method in args.methods.split(","):
        for name, weights in rows:
            cells = [evaluate(*s, weights, method, args.depth) for s in sets]
            text = "  ".join(f"NDCG@10 {a:.4f} R@100 {b:.4f}" for a, b in cells)
            print(f"{method:7s} {name:12s} {text}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
