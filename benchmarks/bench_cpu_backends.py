"""CPU backends side by side on SciFact: torch fp32, sentence-transformers, ONNX fp32, ONNX int8.

Each query's 100 BM25 candidates (bm25s: lowercase, English stopwords, PyStemmer English
stemmer, title + " " + text) are reranked by every backend at the same ``max_length``.
Reports pairs/s, per-query p50/p95 latency, NDCG@10 of the reranked list with its paired
change against torch fp32 (mean over queries and a 95% bootstrap interval), the speed ratio
against ``sentence_transformers.CrossEncoder.predict(batch_size=32)`` and the largest
|score difference| against torch fp32.

    python benchmarks/bench_cpu_backends.py --queries 10 \
        --model ../shared/models/minilm-l6-scifact-ce --data ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def load_scifact(data: Path, n_queries: int, stride: int = 1):
    """Corpus texts (title + text), every ``stride``-th test query by file order, and qrels."""
    from rerank_plugins.evaluation.beir import load_beir

    dataset = load_beir(data, split="test")
    ids, texts = dataset.doc_texts()
    test_ids = list(dataset.queries)[::stride][:n_queries]
    return (
        dict(zip(ids, texts, strict=True)),
        {q: dataset.queries[q] for q in test_ids},
        dataset.qrels,
    )


def bm25_candidates(corpus: dict[str, str], queries: dict[str, str], k: int):
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    doc_ids = list(corpus)
    tokens = bm25s.tokenize(
        [corpus[d] for d in doc_ids],
        lower=True,
        stopwords="en",
        stemmer=stemmer,
        show_progress=False,
    )
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    q_tokens = bm25s.tokenize(
        list(queries.values()), lower=True, stopwords="en", stemmer=stemmer, show_progress=False
    )
    results, _ = retriever.retrieve(q_tokens, k=k, show_progress=False)
    return {qid: [doc_ids[i] for i in row] for qid, row in zip(queries, results, strict=True)}


def ndcg_per_query(
    ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    values = {}
    for qid, docs in ranked.items():
        rel = qrels.get(qid, {})
        dcg = sum((2 ** rel.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(docs[:10]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum((2**r - 1) / math.log2(i + 2) for i, r in enumerate(ideal))
        values[qid] = dcg / idcg if idcg > 0 else 0.0
    return values


def ndcg_at_10(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    values = list(ndcg_per_query(ranked, qrels).values())
    return float(np.mean(values)) if values else 0.0


def paired_interval(deltas: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple:
    """95% bootstrap interval of the mean per-query difference (queries resampled)."""
    if len(deltas) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = deltas[rng.integers(0, len(deltas), (resamples, len(deltas)))].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def run_interleaved(score_fns, queries, candidates, corpus):
    """Time every backend on every query, rotating the order per query.

    The CPU may be shared (other processes, turbo, thermal state): interleaving spreads any
    slowdown evenly over the rows instead of penalising whichever row ran during it.
    """
    names = list(score_fns)
    qids = list(queries)
    first = [corpus[d] for d in candidates[qids[0]]]
    for fn in score_fns.values():  # warm-up: allocator, thread pools, kernels
        fn(queries[qids[0]], first)
    latencies = {n: [] for n in names}
    scores = {n: {} for n in names}
    ranked = {n: {} for n in names}
    for position, qid in enumerate(qids):
        passages = [corpus[d] for d in candidates[qid]]
        shift = position % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            s = np.asarray(score_fns[name](queries[qid], passages), dtype=np.float32)
            latencies[name].append(time.perf_counter() - started)
            scores[name][qid] = s
            order = np.argsort(-s, kind="stable")
            ranked[name][qid] = [candidates[qid][i] for i in order]
        print(f"# query {position + 1}/{len(qids)}", file=sys.stderr, flush=True)
    return latencies, scores, ranked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--stride", type=int, default=1, help="take every Nth test query")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="max_tokens_per_batch of our rows (default: the reranker's, per backend/precision)",
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT threads")
    parser.add_argument("--cache-dir", default=None, help="ONNX export cache (default: temp)")
    parser.add_argument(
        "--rows",
        default="torch,st,onnx,int8",
        help="comma list of torch, st, torch-bf16 (needs AMX/AVX512-BF16 to be fast), onnx, "
        "int8 (default recipe: every MatMul int8), int8-ffnout (FFN output fp32), int8-noffn "
        "(FFN fp32), int8-tensor (per-tensor), int8-rr (reduce_range), int8-nofuse (no ORT "
        "fusion), onnx-nofuse",
    )
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from rerank_plugins import CrossEncoderReranker

    corpus, queries, qrels = load_scifact(Path(args.data), args.queries, args.stride)
    candidates = bm25_candidates(corpus, queries, args.candidates)
    bm25_ndcg = ndcg_at_10(candidates, qrels)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="rerank-bench-onnx-")

    def reranker(**kwargs):
        return CrossEncoderReranker(
            args.model,
            device="cpu",
            max_length=args.max_length,
            batch_size=args.batch_size,
            max_tokens_per_batch=args.max_tokens,
            num_threads=args.threads,
            **kwargs,
        )

    def onnx_row(quantize=None, **backend_options):
        model = reranker(
            backend="onnx", quantize=quantize, cache_dir=cache_dir, backend_options=backend_options
        )
        return model.score, model.backend.manifest.get("build_seconds")

    def st_row():
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(args.model, device="cpu", max_length=args.max_length)
        return (
            lambda q, ps: model.predict(
                [(q, p) for p in ps],
                batch_size=32,
                show_progress_bar=False,
                activation_fn=torch.nn.Identity(),
            ),
            None,
        )

    factories = {
        "torch": ("torch fp32 (CrossEncoderReranker)", lambda: (reranker().score, None)),
        "st": ("sentence-transformers CrossEncoder.predict", st_row),
        "torch-bf16": (
            "torch bf16 (CrossEncoderReranker, dtype='bfloat16')",
            lambda: (reranker(dtype="bfloat16").score, None),
        ),
        "onnx": ("ONNX fp32", lambda: onnx_row()),
        "int8": ("ONNX int8 (default: every MatMul int8)", lambda: onnx_row("int8")),
        "int8-ffnout": (
            "ONNX int8 (FFN output fp32)",
            lambda: onnx_row("int8", keep_fp32="ffn_output"),
        ),
        "int8-noffn": ("ONNX int8 (FFN fp32)", lambda: onnx_row("int8", keep_fp32="ffn")),
        "int8-tensor": ("ONNX int8 (per-tensor)", lambda: onnx_row("int8", per_channel=False)),
        "int8-rr": (
            "ONNX int8 (per-channel, reduce_range)",
            lambda: onnx_row("int8", reduce_range=True),
        ),
        "int8-nofuse": ("ONNX int8 (no ORT fusion)", lambda: onnx_row("int8", optimize=False)),
        "onnx-nofuse": ("ONNX fp32 (no ORT fusion)", lambda: onnx_row(optimize=False)),
    }
    labels, score_fns, loads = {}, {}, {}
    for name in [r.strip() for r in args.rows.split(",") if r.strip()]:
        label, factory = factories[name]
        started = time.perf_counter()
        score_fns[name], build_seconds = factory()
        labels[name] = label
        loads[name] = (time.perf_counter() - started, build_seconds)
        print(f"# loaded {name} in {loads[name][0]:.1f}s", file=sys.stderr, flush=True)
    latencies, scores, ranked = run_interleaved(score_fns, queries, candidates, corpus)
    pairs = sum(len(candidates[q]) for q in queries)
    reference = scores.get("torch")
    per_query = {name: ndcg_per_query(ranked[name], qrels) for name in score_fns}
    rows = []
    for name in score_fns:
        if "torch" in per_query:  # paired NDCG@10 change vs torch fp32, per query
            deltas = np.array([per_query[name][q] - per_query["torch"][q] for q in queries])
            low, high = paired_interval(deltas)
        else:
            deltas, low, high = np.array([]), float("nan"), float("nan")
        diff = (
            max(float(np.max(np.abs(scores[name][q] - reference[q]))) for q in queries)
            if reference is not None
            else float("nan")
        )
        rows.append(
            {
                "row": name,
                "backend": labels[name],
                "pairs_per_s": pairs / sum(latencies[name]),
                "p50_ms": 1000 * float(np.percentile(latencies[name], 50)),
                "p95_ms": 1000 * float(np.percentile(latencies[name], 95)),
                "ndcg@10": ndcg_at_10(ranked[name], qrels),
                "ndcg_delta_vs_torch": float(deltas.mean()) if len(deltas) else float("nan"),
                "ndcg_delta_ci95": [low, high],
                "queries_changed": int(np.count_nonzero(np.abs(deltas) > 1e-12)),
                "ndcg_per_query": per_query[name],
                "max_abs_diff_vs_torch": diff,
                "load_s": loads[name][0],
                "export_s": loads[name][1],
            }
        )
    base = next((r["pairs_per_s"] for r in rows if r["row"] == "st"), None)
    for row in rows:
        row["speed_vs_st"] = row["pairs_per_s"] / base if base else float("nan")

    print(
        f"\nSciFact test: {len(queries)} queries x {args.candidates} BM25 candidates, "
        f"max_length={args.max_length}, batch_size={args.batch_size}, "
        f"threads={args.threads or torch.get_num_threads()}, BM25 NDCG@10={bm25_ndcg:.4f}\n"
    )
    print(
        "| backend | pairs/s | p50 ms/query | p95 ms/query | NDCG@10 | ΔNDCG vs torch [95% CI] "
        "| x ST | max abs diff vs torch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        low, high = r["ndcg_delta_ci95"]
        print(
            f"| {r['backend']} | {r['pairs_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
            f"{r['ndcg@10']:.4f} | {r['ndcg_delta_vs_torch']:+.4f} [{low:+.4f}, {high:+.4f}] | "
            f"{r['speed_vs_st']:.2f} | {r['max_abs_diff_vs_torch']:.2e} |"
        )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "bm25_ndcg@10": bm25_ndcg,
                    "rows": rows,
                    "cpu_count": os.cpu_count(),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
