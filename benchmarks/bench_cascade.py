"""Reranking cascades vs single models on SciFact: latency per query, NDCG@10, physical limit.

Each test query's BM25 candidates (as in ``bench_cpu_backends.py``) are reranked in one
process, rows rotated per query so a busy spell on a shared CPU hits every row alike. The
first ``--latency-queries`` queries run every row (wall-clock and process CPU seconds per
query); the quality rows (``fp32`` and every ``int8*``/``bf16`` row) run on all ``--queries``,
and every cascade's NDCG@10 is replayed from their scores (exact: the fast pass scores the same
batches as its row; checked against the measured cascade rows). Rows (``--rows``):

* ``st``: ``sentence_transformers.CrossEncoder.predict(batch_size=32)`` (the peers' path);
* ``fp32``: ``CrossEncoderReranker(dtype="float32")`` (the exact path, the reference);
* ``default``: ``CrossEncoderReranker(model)`` with every default (timed only when it differs
  from ``fp32``, i.e. where ``dtype="auto"`` resolves to bf16);
* ``bf16``: ``dtype="bfloat16"`` (only where the CPU runs it natively);
* ``int8``: ONNX Runtime dynamic int8; ``int8-<L>``: the same with ``max_length=L``;
* ``cascade-<K>``: ``CascadeReranker(int8, fp32, keep=K)``; ``cascade<L>-<K>``: its fast pass
  at ``max_length=L``; ``bf16cascade-<K>``: ``CascadeReranker(int8, bf16)``;
* ``sint8[-<L>]`` and ``scascade[<L>]-<K>``: the same with ``--student`` (e.g. a distilled
  student) as the int8 model, so the model's own int8 and a student run side by side;
* ``top-<K>``: fp32 on the BM25 top K only, the rest in BM25 order (``RerankPipeline``'s
  ``rerank_top=K``: the first stage as the fast pass, for free).

Reports per row: p50/p95 ms per query, pairs scored by each member, NDCG@10 with the paired
change vs ``fp32`` and its 95% bootstrap interval, the speed ratio to ``st``, and the share
of the CPU's peak FLOP/s the row reached (FLOPs counted from each pair's real token length).
Cascades at other depths and with a skip margin are replayed the same way, their latency
estimated from the measured rows (fast row + the fp32 row's time x the kept pairs' token share).

    nice -n 5 python benchmarks/bench_cascade.py --queries 30 --stride 10 --latency-queries 6 \
        --rows st,fp32,default,int8,int8-128,cascade-10,cascade-20,cascade-30,cascade128-10,top-20 \
        --json cascade.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu_backends import (
    SHARED,
    bm25_candidates,
    load_scifact,
    ndcg_per_query,
    paired_interval,
)
from bench_cpu_budget import cpu_name

ROW_PATTERN = re.compile(
    r"^(st|fp32|default|bf16|s?int8(-\d+)?|(bf16|s)?cascade(\d+)?-\d+|top-\d+)$"
)
#: Rows run on every query: the reference and the fast passes every cascade is replayed from.
QUALITY_ROW = re.compile(r"^(fp32|bf16|s?int8(-\d+)?)$")


def fast_of(cascade_row: str) -> str:
    """The int8 row a cascade row's fast pass is: ``scascade128-20`` -> ``sint8-128``."""
    prefix, length = cascade_row.rsplit("-", 1)[0].split("cascade")
    student = "s" if prefix == "s" else ""
    return f"{student}int8-{length}" if length else f"{student}int8"


def pair_flops(lengths: np.ndarray, config: Any) -> np.ndarray:
    """Multiply-adds x 2 of one BERT forward per pair (dense layers + attention), by length.

    Per layer and token: the Q, K, V and output projections (4 h^2) and the FFN (2 h f) are
    GEMMs; attention scores and the weighted sum add 2 L h per token. Embedding lookups,
    LayerNorm, softmax, GELU and the head are left out (under 2% here).
    """
    h = int(config.hidden_size)
    f = int(config.intermediate_size)
    layers = int(config.num_hidden_layers)
    lengths = lengths.astype(np.float64)
    per_layer = 2 * lengths * (4 * h * h + 2 * h * f) + 2 * 2 * lengths * lengths * h
    return layers * per_layer


def peak_flops(cores: int, ghz: float) -> dict[str, float]:
    """Peak FLOP/s of ``cores`` AVX2-FMA cores (Zen 3: 2 x 256-bit FMA pipes per core).

    fp32: 2 pipes x 8 lanes x 2 (FMA) = 32 FLOP per cycle and core. int8 without VNNI (AVX2
    ``vpmaddubsw`` + ``vpmaddwd``, 2 per cycle): 32 multiply-adds = 64 ops per cycle and core.
    """
    return {"fp32": cores * ghz * 1e9 * 32, "int8": cores * ghz * 1e9 * 64}


def cpu_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000.0
    except (OSError, ValueError):
        pass
    return float("nan")


def replay(
    fast: np.ndarray, accurate: np.ndarray, keep: int, skip_margin: float | None = None
) -> tuple[np.ndarray, int]:
    """CascadeReranker's order from full fast and accurate scores; (order, accurate pairs)."""
    by_fast = np.argsort(-fast, kind="stable")
    if keep >= len(fast):
        return np.argsort(-accurate, kind="stable"), len(fast)
    if skip_margin is not None and fast[by_fast[0]] - fast[by_fast[1]] >= skip_margin:
        return by_fast, 0
    kept = np.sort(by_fast[:keep])
    kept = kept[np.argsort(-accurate[kept], kind="stable")]
    return np.concatenate([kept, by_fast[keep:]]), keep


def timed_rounds(
    score_fns: dict[str, Any],
    every_query: list[str],
    queries: dict[str, str],
    candidates: dict[str, list[str]],
    corpus: dict[str, str],
    latency_queries: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, dict[str, np.ndarray]]]:
    """Wall and process-CPU seconds and scores per row and query, rows rotated per query."""
    names = list(score_fns)
    qids = list(queries)
    warm = [corpus[d] for d in candidates[qids[0]]][:16]
    for fn in score_fns.values():  # allocator, thread pools, kernels
        fn(queries[qids[0]], warm)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    scores: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    for position, qid in enumerate(qids):
        active = names if position < latency_queries else [n for n in names if n in every_query]
        passages = [corpus[d] for d in candidates[qid]]
        shift = position % len(active)
        for name in active[shift:] + active[:shift]:
            started, started_cpu = time.perf_counter(), time.process_time()
            got = np.asarray(score_fns[name](queries[qid], passages), dtype=np.float32)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
            scores[name][qid] = got
        print(f"# query {position + 1}/{len(qids)}", file=sys.stderr, flush=True)
    return wall, cpu, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--stride", type=int, default=10, help="take every Nth test query")
    parser.add_argument(
        "--latency-queries", type=int, default=6, help="queries on which every row is timed"
    )
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--rows",
        default="st,fp32,default,int8,int8-128,cascade-10,cascade-20,cascade-30,cascade128-10,"
        "top-20",
    )
    parser.add_argument("--replay-keeps", default="5,10,15,20,30,50")
    parser.add_argument("--replay-margins", default="1,2,3,4,6")
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument(
        "--fast-model",
        default=None,
        help="model of every int8 row and cascade fast pass (e.g. a distilled student from "
        "`rerank-plugins tune --student-layers`; default: --model)",
    )
    parser.add_argument(
        "--student",
        default=None,
        help="model of the sint8* rows and scascade* fast passes (a distilled student)",
    )
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--cache-dir", default=None, help="ONNX export cache (default: temp)")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    import torch

    from rerank_plugins import CascadeReranker, CrossEncoderReranker
    from rerank_plugins._device import cpu_supports_fast_bf16, physical_cores, resolve_dtype

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    for row in rows:
        if not ROW_PATTERN.match(row):
            parser.error(f"unknown row {row!r}")
    if "fp32" not in rows:
        parser.error("--rows must include fp32 (the reference of every comparison)")
    if args.student is None and any(r.startswith("s") and r != "st" for r in rows):
        parser.error("sint8*/scascade* rows need --student MODEL")
    native_bf16 = cpu_supports_fast_bf16()
    skipped = [r for r in rows if "bf16" in r and not native_bf16]
    rows = [r for r in rows if r not in skipped]
    notes = []
    if skipped:
        notes.append(f"{skipped} not run: this CPU has no native bf16 (AMX/AVX512-BF16)")
    if "default" in rows and resolve_dtype("auto", torch.device("cpu")) == torch.float32:
        rows.remove("default")
        notes.append("default = fp32 here (dtype='auto' resolves to float32 on this CPU)")
    for row in rows:  # every cascade's fast row runs on every query (its replay source)
        if "cascade" in row:
            fast_row = fast_of(row)
            if fast_row not in rows:
                rows.append(fast_row)

    corpus, queries, qrels = load_scifact(Path(args.data), args.queries, args.stride)
    candidates = bm25_candidates(corpus, queries, args.candidates)
    qids = list(queries)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="rerank-bench-onnx-")
    members: dict[str, Any] = {}

    def member(name: str) -> Any:
        if name not in members:
            base = {"device": "cpu", "max_length": args.max_length}
            if name == "fp32":
                members[name] = CrossEncoderReranker(args.model, dtype="float32", **base)
            elif name == "default":
                members[name] = CrossEncoderReranker(args.model, device="cpu")
            elif name == "bf16":
                members[name] = CrossEncoderReranker(args.model, dtype="bfloat16", **base)
            else:  # [s]int8 or [s]int8-<L>
                length = int(name.split("-")[1]) if "-" in name else args.max_length
                members[name] = CrossEncoderReranker(
                    args.student if name.startswith("s") else args.fast_model or args.model,
                    device="cpu",
                    max_length=length,
                    backend="onnx",
                    quantize="int8",
                    cache_dir=cache_dir,
                )
        return members[name]

    score_fns: dict[str, Any] = {}
    cascades: dict[str, Any] = {}
    for row in rows:
        if row == "st":
            from sentence_transformers import CrossEncoder

            st = CrossEncoder(args.model, device="cpu", max_length=args.max_length)
            score_fns[row] = lambda q, ps, st=st: st.predict(
                [(q, p) for p in ps],
                batch_size=32,
                show_progress_bar=False,
                activation_fn=torch.nn.Identity(),
            )
        elif "cascade" in row:
            head, keep = row.rsplit("-", 1)
            fast = member(fast_of(row))
            accurate = member("bf16" if head.startswith("bf16") else "fp32")
            cascades[row] = CascadeReranker(fast, accurate, keep=int(keep))
            score_fns[row] = cascades[row].score
        elif row.startswith("top-"):
            keep = int(row.split("-")[1])

            def first_stage_cascade(q: str, ps: list[str], keep: int = keep) -> np.ndarray:
                head = member("fp32").score(q, ps[:keep])  # RerankPipeline(rerank_top=keep)
                tail = np.arange(len(ps) - len(head), dtype=np.float32)
                return np.concatenate([head, float(head.min()) - 1.0 - tail])

            score_fns[row] = first_stage_cascade
        else:
            score_fns[row] = member(row).score
    every_query = [r for r in score_fns if QUALITY_ROW.match(r)]
    latency_queries = min(args.latency_queries, len(qids))
    wall, cpu, scores = timed_rounds(
        score_fns, every_query, queries, candidates, corpus, latency_queries
    )
    timed = qids[:latency_queries]

    # Token lengths and FLOPs per pair, per window.
    tokenizer = member("fp32").tokenizer

    def lengths_at(window: int) -> dict[str, np.ndarray]:
        out = {}
        for qid in qids:
            encoded = tokenizer(
                [queries[qid]] * len(candidates[qid]),
                [corpus[d] for d in candidates[qid]],
                truncation="only_second",
                max_length=window,
            )["input_ids"]
            out[qid] = np.array([len(ids) for ids in encoded])
        return out

    def window_of(fast_row: str) -> int:
        return int(fast_row.split("-")[1]) if "-" in fast_row else args.max_length

    config = member("fp32").backend.config
    windows = {args.max_length} | {window_of(r) for r in score_fns if "int8" in r}
    lengths = {w: lengths_at(w) for w in windows}
    flops = {w: {q: pair_flops(lengths[w][q], config) for q in qids} for w in windows}
    # The int8 rows' FLOPs at their own depth (a student has fewer layers than --model).
    from transformers import AutoConfig

    def depth_share(model: str | None) -> float:
        if model is None:
            return 1.0
        return AutoConfig.from_pretrained(model).num_hidden_layers / config.num_hidden_layers

    shares = {"": depth_share(args.fast_model), "s": depth_share(args.student)}

    def share_of(int8_row: str) -> float:
        return shares["s" if int8_row.startswith("s") else ""]

    cores = physical_cores()
    ghz = cpu_ghz()
    peak = peak_flops(cores, ghz)
    full = flops[args.max_length]

    # Replays: every cascade from the quality rows' scores, on every query.
    def replay_row(fast_row: str, keep: int, margin: float | None) -> dict[str, Any]:
        orders, pairs, est_wall, est_cpu, work = {}, 0, [], [], 0.0
        for i, qid in enumerate(qids):
            if fast_row == "bm25":
                fast_scores = -np.arange(len(candidates[qid]), dtype=np.float32)
            else:
                fast_scores = scores[fast_row][qid]
            order, kept = replay(fast_scores, scores["fp32"][qid], keep, margin)
            orders[qid] = [candidates[qid][j] for j in order]
            pairs += kept
            chosen = np.argsort(-fast_scores, kind="stable")[:kept]
            share = lengths[args.max_length][qid][chosen].sum() / max(
                lengths[args.max_length][qid].sum(), 1
            )
            fast_wall = 0.0 if fast_row == "bm25" else wall[fast_row][i]
            fast_cpu = 0.0 if fast_row == "bm25" else cpu[fast_row][i]
            est_wall.append(fast_wall + wall["fp32"][i] * share)
            est_cpu.append(fast_cpu + cpu["fp32"][i] * share)
            work += full[qid][chosen].sum()
            if fast_row != "bm25":
                work += share_of(fast_row) * flops[window_of(fast_row)][qid].sum()
        values = ndcg_per_query(orders, qrels)
        deltas = np.array([values[q] - per_query["fp32"][q] for q in qids])
        low, high = paired_interval(deltas)
        return {
            "fast": fast_row,
            "keep": keep,
            "skip_margin": margin,
            "orders": orders,
            "ndcg@10": float(np.mean([values[q] for q in qids])),
            "delta_vs_fp32": float(deltas.mean()),
            "ci95": [low, high],
            "queries_changed": int(np.count_nonzero(np.abs(deltas) > 1e-12)),
            "accurate_pairs_per_query": pairs / len(qids),
            "estimated_wall_p50_ms": 1000 * float(np.percentile(est_wall, 50)),
            "estimated_cpu_p50_ms": 1000 * float(np.percentile(est_cpu, 50)),
            "gflop_per_query": work / len(qids) / 1e9,
        }

    def ranked_of(name: str, qid: str) -> list[str]:
        order = np.argsort(-scores[name][qid], kind="stable")
        return [candidates[qid][j] for j in order]

    per_query = {
        name: ndcg_per_query({q: ranked_of(name, q) for q in scores[name]}, qrels)
        for name in every_query
    }
    keeps = [int(k) for k in args.replay_keeps.split(",") if k]
    margins = [float(m) for m in args.replay_margins.split(",") if m]
    fast_rows = [r for r in every_query if "int8" in r]
    replays = [replay_row("bm25", k, None) for k in keeps]
    replays += [replay_row(f, k, m) for f in fast_rows for k in keeps for m in [None, *margins]]

    # Measured rows: latency on the timed queries; NDCG on all queries (direct or replayed).
    mismatches = 0
    table = []
    st_wall = np.array(wall["st"]) if "st" in wall else None
    for name in score_fns:
        times = np.array(wall[name][:latency_queries])
        cpus = np.array(cpu[name][:latency_queries])
        if name in per_query:
            quality = {q: per_query[name][q] for q in qids}
            work = sum(
                share_of(name) * flops[window_of(name)][q].sum()
                if "int8" in name
                else full[q].sum()
                for q in timed
            )
        elif name == "st":
            quality, work = None, sum(full[q].sum() for q in timed)
        else:
            if name.startswith("top-"):
                fast_row, keep = "bm25", int(name.split("-")[1])
            else:
                fast_row, keep = fast_of(name), int(name.rsplit("-", 1)[1])
            rep = replay_row(fast_row, keep, None)
            quality = ndcg_per_query(rep["orders"], qrels)
            for q in timed:  # the replay must equal what the real cascade returned
                mismatches += ranked_of(name, q) != rep["orders"][q]
            work = rep["gflop_per_query"] * 1e9 * len(timed)
        entry: dict[str, Any] = {
            "row": name,
            "wall_p50_ms": 1000 * float(np.percentile(times, 50)),
            "wall_p95_ms": 1000 * float(np.percentile(times, 95)),
            "cpu_p50_ms": 1000 * float(np.percentile(cpus, 50)),
            "x_st": float(st_wall.sum() / times.sum()) if st_wall is not None else None,
            "gflop_per_query": work / len(timed) / 1e9,
            "share_of_fp32_peak_wall": work / times.sum() / peak["fp32"],
            "gflop_per_cpu_second": work / cpus.sum() / 1e9,
            "stats": cascades[name].stats if name in cascades else None,
        }
        if quality is not None:
            deltas = np.array([quality[q] - per_query["fp32"][q] for q in qids])
            low, high = paired_interval(deltas)
            entry.update(
                {
                    "ndcg@10": float(np.mean([quality[q] for q in qids])),
                    "delta_vs_fp32": float(deltas.mean()),
                    "ci95": [low, high],
                    "queries_changed": int(np.count_nonzero(np.abs(deltas) > 1e-12)),
                }
            )
        table.append(entry)

    mean_len = float(np.mean(np.concatenate(list(lengths[args.max_length].values()))))
    per_pair = float(np.mean(np.concatenate(list(full.values()))))
    print(
        f"\n{cpu_name()}, {cores} physical cores at {ghz:.2f} GHz, torch threads "
        f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"SciFact test: {len(qids)} queries (every {args.stride}th; every row timed on the first "
        f"{latency_queries}) x {args.candidates} BM25 candidates, max_length={args.max_length}; "
        f"mean pair length {mean_len:.1f} tokens, {per_pair / 1e9:.2f} GFLOP per pair"
    )
    print(
        f"peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, int8 {peak['int8'] / 1e9:.0f} GOP/s -> "
        f"{args.candidates} pairs need >= {args.candidates * per_pair / peak['fp32'] * 1000:.0f} "
        f"ms fp32, >= {args.candidates * per_pair / peak['int8'] * 1000:.0f} ms int8"
    )
    for note in notes:
        print(f"note: {note}")
    print(f"replayed vs measured cascade rankings: {mismatches} of the timed queries differ")
    print(
        f"\n| row | wall p50 ms | wall p95 ms | CPU-s p50 ms | x ST | GFLOP/query | wall share of "
        f"fp32 peak | GFLOP per CPU-s | NDCG@10 ({len(qids)} q) | Δ vs fp32 [95% CI] | changed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in table:
        x_st = f"{r['x_st']:.2f}" if r["x_st"] is not None else "-"
        quality = "- | - | -"
        if "ndcg@10" in r:
            low, high = r["ci95"]
            quality = (
                f"{r['ndcg@10']:.4f} | {r['delta_vs_fp32']:+.4f} [{low:+.4f}, {high:+.4f}] | "
                f"{r['queries_changed']}"
            )
        print(
            f"| {r['row']} | {r['wall_p50_ms']:.0f} | {r['wall_p95_ms']:.0f} | "
            f"{r['cpu_p50_ms']:.0f} | {x_st} | {r['gflop_per_query']:.0f} | "
            f"{r['share_of_fp32_peak_wall']:.3f} | {r['gflop_per_cpu_second']:.1f} | {quality} |"
        )
    print(
        "\nReplayed cascades (ranking exact; latency estimated: fast row + fp32 row x kept "
        "token share):"
    )
    print(
        "| fast | keep | skip margin | NDCG@10 | Δ vs fp32 [95% CI] | changed | accurate "
        "pairs/query | est. wall p50 ms | est. CPU-s p50 ms | GFLOP/query |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in replays:
        low, high = r["ci95"]
        margin = "-" if r["skip_margin"] is None else f"{r['skip_margin']:g}"
        print(
            f"| {r['fast']} | {r['keep']} | {margin} | {r['ndcg@10']:.4f} | "
            f"{r['delta_vs_fp32']:+.4f} [{low:+.4f}, {high:+.4f}] | {r['queries_changed']} | "
            f"{r['accurate_pairs_per_query']:.1f} | {r['estimated_wall_p50_ms']:.0f} | "
            f"{r['estimated_cpu_p50_ms']:.0f} | {r['gflop_per_query']:.0f} |"
        )
    if args.json_out:
        for r in replays:
            r.pop("orders")
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "cpu": cpu_name(),
                    "cores": cores,
                    "ghz": ghz,
                    "peak": peak,
                    "mean_pair_tokens": mean_len,
                    "flops_per_pair": per_pair,
                    "notes": notes,
                    "rows": table,
                    "replays": replays,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "ndcg_per_query": per_query,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
