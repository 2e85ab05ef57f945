"""Throughput of CrossEncoderReranker vs sentence-transformers' CrossEncoder.predict.

SciFact test queries, 100 BM25 candidates each (bm25s: lowercase, English stopwords, PyStemmer
English stemmer, ``title + " " + text`` over the whole corpus). For every query the contenders
run back to back in a rotating order (so drift on a shared, noisy machine hits all of them
alike), after a warm-up of each, in one process with the same torch thread count:

* ``rerank``: ``CrossEncoderReranker.rerank(query, candidates)`` per query;
* ``rerank_many``: all queries in one call (their pairs share batches), timed against the
  per-query baseline loop over the same queries;
* token-budget settings (``max_tokens_per_batch``) with a large pair count;
* ``st-32``: ``CrossEncoder.predict(pairs, batch_size=32)``, what LangChain's
  ``CrossEncoderReranker`` and LlamaIndex's ``SentenceTransformerRerank`` do per query;
* ``st-<b>``: ``predict`` at the same batch size as the row.

Usage::

    python benchmarks/bench_rerank.py --queries 20 --candidates 100 --batch-sizes 16,32,64 \
        --max-length 256 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT.parent / "shared" / "models" / "minilm-l6-scifact-ce"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scifact"


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=20, help="SciFact test queries (sorted id)")
    parser.add_argument("--candidates", type=int, default=100, help="BM25 candidates per query")
    parser.add_argument("--batch-sizes", type=_ints, default=[16, 32, 64])
    parser.add_argument(
        "--token-budgets",
        type=_ints,
        default=[4096, 8192],
        help="max_tokens_per_batch settings (with --budget-batch-size pairs at most)",
    )
    parser.add_argument("--budget-batch-size", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--json", dest="json_path", default=None, help="write results here")
    return parser.parse_args(argv)


def bm25_candidates(data: str, n_queries: int, k: int) -> tuple[list[str], list[list[str]]]:
    import bm25s
    import Stemmer

    from rerank_plugins.evaluation.beir import load_beir

    dataset = load_beir(data, split="test")
    _ids, texts = dataset.doc_texts()
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, lower=True, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    qids = sorted(dataset.queries)[:n_queries]
    queries = [dataset.queries[q] for q in qids]
    tokens = bm25s.tokenize(
        queries, lower=True, stopwords="en", stemmer=stemmer, show_progress=False
    )
    docs, _ = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
    return queries, [[texts[int(i)] for i in row] for row in docs]


def _clock(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from sentence_transformers import CrossEncoder

    from rerank_plugins import CrossEncoderReranker

    if args.threads:
        torch.set_num_threads(args.threads)
    queries, candidates = bm25_candidates(args.data, args.queries, args.candidates)
    n_pairs = sum(len(c) for c in candidates)

    ours = CrossEncoderReranker(args.model, device="cpu", max_length=args.max_length)
    st = CrossEncoder(
        args.model, max_length=args.max_length, activation_fn=torch.nn.Identity(), device="cpu"
    )

    # Contenders: name -> (callable(query_index) -> scores in input order).
    def ours_fn(batch_size: int, budget: int | None):
        def run(i: int) -> np.ndarray:
            ours.batch_size = batch_size
            ours.max_tokens_per_batch = budget or batch_size * ours.max_length
            results = ours.rerank(queries[i], candidates[i])
            scores = np.empty(len(results), dtype=np.float32)
            for result in results:
                scores[result.index] = result.score
            return scores

        return run

    def st_fn(batch_size: int):
        def run(i: int) -> np.ndarray:
            pairs = [(queries[i], passage) for passage in candidates[i]]
            return np.asarray(st.predict(pairs, batch_size=batch_size, show_progress_bar=False))

        return run

    contenders: dict[str, object] = {"st-32": st_fn(32)}
    rows: list[tuple[str, str, str]] = []  # (label, ours name, same-batch baseline name)
    for b in args.batch_sizes:
        contenders[f"ours-{b}"] = ours_fn(b, None)
        contenders.setdefault(f"st-{b}", st_fn(b))
        rows.append((f"rerank, batch_size={b}", f"ours-{b}", f"st-{b}"))
    for budget in args.token_budgets:
        name = f"ours-budget-{budget}"
        contenders[name] = ours_fn(args.budget_batch_size, budget)
        rows.append(
            (
                f"rerank, batch_size={args.budget_batch_size}, max_tokens_per_batch={budget}",
                name,
                "st-32",
            )
        )

    # Warm up every contender once (first calls allocate and build kernels).
    for fn in contenders.values():
        fn(0)  # type: ignore[operator]

    names = list(contenders)
    seconds = {name: 0.0 for name in names}
    scores: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for i in range(len(queries)):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed, out = _clock(lambda fn=contenders[name], i=i: fn(i))  # type: ignore[misc]
            seconds[name] += elapsed
            scores[name].append(out)

    # rerank_many vs the per-query baseline loop, alternating which goes first.
    many_rows = []
    for b in args.batch_sizes:
        ours.batch_size, ours.max_tokens_per_batch = b, b * ours.max_length
        ours.rerank_many(queries[:2], candidates[:2])
        t_many = t_base = 0.0
        many_scores: list[np.ndarray] = []
        for repeat in range(2):

            def many():
                return ours.rerank_many(queries, candidates)

            def base():
                return [st_fn(32)(i) for i in range(len(queries))]

            order = (
                [("many", many), ("base", base)]
                if repeat % 2 == 0
                else [("base", base), ("many", many)]
            )
            for label, fn in order:
                elapsed, out = _clock(fn)
                if label == "many":
                    t_many += elapsed
                    many_scores = []
                    for results in out:
                        s = np.empty(len(results), dtype=np.float32)
                        for r in results:
                            s[r.index] = r.score
                        many_scores.append(s)
                else:
                    t_base += elapsed
        many_rows.append((b, t_many, t_base, many_scores))

    def compare(ours_scores: list[np.ndarray], ref_scores: list[np.ndarray]) -> tuple[bool, float]:
        same_top10 = all(
            list(np.argsort(-a, kind="stable")[:10]) == list(np.argsort(-b, kind="stable")[:10])
            for a, b in zip(ours_scores, ref_scores, strict=True)
        )
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours_scores, ref_scores, strict=True))
        return same_top10, diff

    rate = {name: n_pairs / seconds[name] for name in names}
    table = []
    header = (
        "| setting | ours pairs/s | ST predict bs=32 pairs/s | ratio vs bs=32 | "
        "ST predict same bs pairs/s | ratio vs same bs | top-10 identical | max abs score diff |"
    )
    lines = [header, "|" + "---|" * 8]
    for label, mine, same in rows:
        same_top10, diff = compare(scores[mine], scores["st-32"])
        entry = {
            "setting": label,
            "ours_pairs_per_s": rate[mine],
            "st32_pairs_per_s": rate["st-32"],
            "ratio_vs_st32": rate[mine] / rate["st-32"],
            "st_same_pairs_per_s": rate[same],
            "ratio_vs_st_same": rate[mine] / rate[same],
            "top10_identical": same_top10,
            "max_abs_diff": diff,
        }
        table.append(entry)
        lines.append(
            f"| {label} | {rate[mine]:.1f} | {rate['st-32']:.1f} | {entry['ratio_vs_st32']:.2f} | "
            f"{rate[same]:.1f} | {entry['ratio_vs_st_same']:.2f} | {'yes' if same_top10 else 'NO'} | "
            f"{diff:.2e} |"
        )
    for b, t_many, t_base, many_scores in many_rows:
        same_top10, diff = compare(many_scores, scores["st-32"])
        ours_rate, base_rate = 2 * n_pairs / t_many, 2 * n_pairs / t_base
        entry = {
            "setting": f"rerank_many, batch_size={b}",
            "ours_pairs_per_s": ours_rate,
            "st32_pairs_per_s": base_rate,
            "ratio_vs_st32": ours_rate / base_rate,
            "top10_identical": same_top10,
            "max_abs_diff": diff,
        }
        table.append(entry)
        lines.append(
            f"| rerank_many ({len(queries)} queries/call), batch_size={b} | {ours_rate:.1f} | "
            f"{base_rate:.1f} | {ours_rate / base_rate:.2f} | - | - | "
            f"{'yes' if same_top10 else 'NO'} | {diff:.2e} |"
        )

    info = (
        f"{len(queries)} SciFact test queries x {args.candidates} BM25 candidates = {n_pairs} "
        f"pairs per contender; max_length={args.max_length}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {platform.processor() or platform.machine()}"
    )
    print(info)
    print()
    print("\n".join(lines))
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps({"info": info, "args": vars(args), "rows": table}, indent=2) + "\n",
            encoding="utf-8",
        )
    slow = [entry["setting"] for entry in table if entry["ratio_vs_st32"] < 1.0]
    slow += [e["setting"] for e in table if e.get("ratio_vs_st_same", 1.0) < 1.0]
    if slow:
        print(f"\nslower than the baseline: {sorted(set(slow))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
