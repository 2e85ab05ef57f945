"""First-stage retrieval benchmark: our BM25 vs rank_bm25, and a synthetic scale test.

SciFact mode (default): the SciFact test queries (first ``--queries`` by id) against the whole
corpus (``title + " " + text``). Both engines index the *same* token lists (our tokenizer:
lowercase, English stopwords, PyStemmer English stemmer), so the comparison is about the
engines: ``HybridRetriever(retrievers=("bm25",))`` (bm25s) vs ``rank_bm25.BM25Okapi``
(``get_scores`` + argsort, what LangChain's ``BM25Retriever`` does). Reported: index build
time, peak traced memory of the build (tracemalloc, a separate build so it does not distort
the timing), queries/s one query at a time and batched, the ratio, and NDCG@10 of both.

Scale mode (``--scale-docs N``): N generated short passages (Zipf-distributed words from a
synthetic vocabulary; generated on the fly, nothing stored) indexed by BM25, dense and
hybrid. Dense uses random unit vectors (dim ``--dim``) instead of a model, so the numbers are
those of FAISS + fusion, not of encoding (encoding 200k passages with MiniLM takes hours on
2 CPU cores). Reported: build time, index size on disk (``save``), peak traced memory of the
build, and per-query latency p50/p95.

Usage::

    python benchmarks/bench_retrieval.py --queries 300
    python benchmarks/bench_retrieval.py --queries 0 --scale-docs 200000 --scale-queries 200
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scifact"

from rerank_plugins.hybrid import HybridRetriever  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=300, help="SciFact test queries (0: skip)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--scale-docs", type=int, default=0, help="synthetic passages (0: skip)")
    parser.add_argument("--scale-queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=384, help="dense dim in scale mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--faiss-threads",
        type=int,
        default=1,
        help="faiss OpenMP threads (default 1: on a busy 2-core machine, 2 threads made a "
        "single-query 20k FlatIP search ~10x slower from OpenMP contention; 0 keeps faiss's)",
    )
    return parser.parse_args(argv)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_memory(fn: Callable[[], Any]) -> float:
    """Peak traced allocation (MiB) while ``fn`` runs; numpy buffers are traced too."""
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak / 2**20


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:,.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- SciFact
def bench_scifact(args: argparse.Namespace) -> str:
    import rank_bm25

    from rerank_plugins.evaluation.beir import load_beir
    from rerank_plugins.evaluation.metrics import ndcg_at_k

    data = load_beir(args.data, split="test")
    ids, texts = data.doc_texts()
    qids = sorted(data.queries, key=lambda q: (len(q), q))[: args.queries]
    queries = [data.queries[q] for q in qids]
    qrels = {q: data.qrels[q] for q in qids}

    def build_ours() -> HybridRetriever:
        return HybridRetriever.from_texts(texts, ids, retrievers=("bm25",))

    HybridRetriever.from_texts(texts[:50], retrievers=("bm25",))  # warm-up: imports, stemmer

    ours, ours_build = timed(build_ours)
    tokenize = ours._bm25.tokenize  # the same token lists for both engines

    def build_theirs() -> Any:
        return rank_bm25.BM25Okapi(tokenize(texts))

    theirs, theirs_build = timed(build_theirs)
    ours_mem, theirs_mem = peak_memory(build_ours), peak_memory(build_theirs)

    ours.search(queries[0])  # warm-up
    ours_hits, ours_loop = timed(lambda: [ours.search(q, k=10) for q in queries])
    _, ours_batch = timed(lambda: ours.search_many(queries, k=10))

    doc_ids = np.asarray(ids)

    def theirs_search(query: str) -> dict[str, float]:
        scores = theirs.get_scores(tokenize([query])[0])
        top = np.argsort(-scores, kind="stable")[:10]
        return dict(zip(doc_ids[top].tolist(), scores[top].tolist(), strict=True))

    theirs_runs, theirs_loop = timed(lambda: [theirs_search(q) for q in queries])
    ours_run = {q: {h.id: h.score for h in hs} for q, hs in zip(qids, ours_hits, strict=True)}
    theirs_run = dict(zip(qids, theirs_runs, strict=True))
    n = len(queries)
    rows = [
        [
            "ours (bm25s)",
            f"{ours_build:.2f}",
            f"{ours_mem:.0f}",
            f"{n / ours_loop:,.0f}",
            f"{n / ours_batch:,.0f}",
            f"{ndcg_at_k(ours_run, qrels, 10):.4f}",
        ],
        [
            "rank_bm25.BM25Okapi",
            f"{theirs_build:.2f}",
            f"{theirs_mem:.0f}",
            f"{n / theirs_loop:,.0f}",
            "n/a",
            f"{ndcg_at_k(theirs_run, qrels, 10):.4f}",
        ],
    ]
    head = (
        f"### SciFact BM25: {len(texts)} docs, {n} test queries, k=10\n\n"
        f"Speed-up (queries/s, one at a time): **{theirs_loop / ours_loop:.1f}x** "
        f"(batched: {theirs_loop / ours_batch:.1f}x)\n\n"
    )
    return head + table(
        ["engine", "build s", "build peak MiB", "q/s (loop)", "q/s (batched)", "NDCG@10"], rows
    )


# ---------------------------------------------------------------------------- scale
def synthetic_passages(n: int, rng: np.random.Generator, *, vocab: int = 50_000) -> list[str]:
    """``n`` passages of 8-40 Zipf-distributed pseudo-words; generated, never stored."""
    words = np.array([f"w{i:x}" for i in range(vocab)])
    lengths = rng.integers(8, 41, size=n)
    picks = np.minimum(rng.zipf(1.2, size=int(lengths.sum())) - 1, vocab - 1)
    flat = words[picks]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(flat[bounds[i] : bounds[i + 1]]) for i in range(n)]


class RandomEmbedder:
    """Unit vectors from a per-text seed: deterministic, model-free (for FAISS/fusion timing)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        seeds = [hash(t) & 0xFFFFFFFF for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(self.dim) for s in seeds]).astype(
            np.float32
        )


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q) * 1000)


def bench_scale(args: argparse.Namespace) -> str:
    rng = np.random.default_rng(args.seed)
    (passages, generate_s) = timed(lambda: synthetic_passages(args.scale_docs, rng))
    queries = [" ".join(p.split()[:4]) for p in rng.choice(passages, size=args.scale_queries)]
    embedder = RandomEmbedder(args.dim)
    vectors = rng.standard_normal((len(passages), args.dim), dtype=np.float32)
    rows = []
    for name, retrievers in (
        ("bm25", ("bm25",)),
        ("dense", ("dense",)),
        ("hybrid", ("bm25", "dense")),
    ):
        extra = {"embeddings": vectors} if "dense" in retrievers else {}

        def build(retrievers=retrievers, extra=extra) -> HybridRetriever:
            return HybridRetriever.from_texts(
                passages, retrievers=retrievers, embedder=embedder, show_progress=False, **extra
            )

        index, build_s = timed(build)
        memory = peak_memory(build)
        with tempfile.TemporaryDirectory() as tmp:
            index.save(Path(tmp) / "index")
            size = directory_size(Path(tmp) / "index") / 2**20
        index.search(queries[0])
        latencies = []
        for query in queries:
            start = time.perf_counter()
            index.search(query, k=10)
            latencies.append(time.perf_counter() - start)
        rows.append(
            [
                name,
                f"{build_s:.1f}",
                f"{size:,.0f}",
                f"{memory:,.0f}",
                f"{percentile_ms(latencies, 50):.1f}",
                f"{percentile_ms(latencies, 95):.1f}",
            ]
        )
        del index
        gc.collect()
    head = (
        f"### Scale: {args.scale_docs:,} synthetic passages (generated in {generate_s:.1f}s), "
        f"{len(queries)} queries, k=10, 100 candidates per retriever\n\n"
        f"Dense uses random {args.dim}-d unit vectors (FlatIP, exact) instead of a model; "
        "build excludes encoding. Memory is the peak traced allocation of a second build.\n\n"
    )
    return head + table(
        ["retriever", "build s", "on disk MiB", "build peak MiB", "p50 ms", "p95 ms"], rows
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.faiss_threads > 0:
        import faiss

        faiss.omp_set_num_threads(args.faiss_threads)
    print(
        f"_{platform.platform()}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, faiss threads {args.faiss_threads or 'default'} "
        "(shared machine: timings are noisy)_\n"
    )
    if args.queries > 0:
        print(bench_scifact(args), "\n", flush=True)
    if args.scale_docs > 0:
        print(bench_scale(args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
