"""Ray Data batch scoring vs in-process ``score_pairs`` on the same SciFact pairs, one run.

Rows: in-process ``CrossEncoderReranker.score_pairs`` (run first and again last, to show
drift on a shared machine), then ``rerank_dataset`` with 1 actor holding all the CPUs and
with 2 actors of 1 CPU each, on a local Ray instance sized to this machine. Each Ray row
reports the job's wall time (actor start-up and model load included), the time to its first
scored block, and pairs/s after that first block (the steady state a long job approaches).

    nice -n 5 python benchmarks/bench_ray.py --pairs 480 \
        --model ../shared/models/minilm-l6-scifact-ce --data ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def scifact_pairs(data: Path, n_pairs: int, per_query: int, seed: int) -> list[tuple[str, str]]:
    """``per_query`` corpus passages (seeded sample, title + text) for each of the first test
    queries, until ``n_pairs``: a fixed, realistic mix of passage lengths."""
    from rerank_plugins.evaluation.beir import load_beir

    dataset = load_beir(data, split="test")
    _, texts = dataset.doc_texts()
    rng = np.random.default_rng(seed)
    pairs: list[tuple[str, str]] = []
    for query in dataset.queries.values():
        for i in rng.choice(len(texts), size=per_query, replace=False):
            pairs.append((query, texts[int(i)]))
            if len(pairs) == n_pairs:
                return pairs
    return pairs


def in_process(model: str, pairs: list[tuple[str, str]], max_length: int) -> dict:
    import torch

    from rerank_plugins import CrossEncoderReranker

    reranker = CrossEncoderReranker(model, device="cpu", max_length=max_length)
    reranker.score_pairs(pairs[:8])  # warm-up
    start = time.perf_counter()
    scores = reranker.score_pairs(pairs)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds,
        "threads": torch.get_num_threads(),
        "scores": scores,
    }


def on_ray(
    model: str, pairs: list[tuple[str, str]], max_length: int, actors: int, cpus: float, rows: int
) -> dict:
    import pyarrow as pa
    import ray.data

    from rerank_plugins.distributed import rerank_dataset

    blocks = [
        pa.table(
            {
                "position": np.arange(lo, min(lo + rows, len(pairs))),
                "query": [q for q, _ in pairs[lo : lo + rows]],
                "passage": [p for _, p in pairs[lo : lo + rows]],
            }
        )
        for lo in range(0, len(pairs), rows)
    ]
    start = time.perf_counter()
    scored = rerank_dataset(
        ray.data.from_arrow(blocks),
        model,
        concurrency=actors,
        num_cpus=cpus,
        batch_size=rows,
        max_length=max_length,
    )
    scores = np.full(len(pairs), np.nan, dtype=np.float32)
    first = None
    for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
        if first is None:
            first = time.perf_counter()
        scores[batch["position"]] = batch["score"]
    seconds = time.perf_counter() - start
    assert first is not None and not np.isnan(scores).any()
    after_first = time.perf_counter() - first
    steady = (len(pairs) - rows) / after_first if after_first > 0 else float("nan")
    return {
        "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds,
        "first_block_s": first - start,
        "steady_pairs_per_s": steady,
        "scores": scores,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--pairs", type=int, default=480)
    parser.add_argument("--per-query", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rows", type=int, default=64, help="rows per block / actor call")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    from rerank_plugins.distributed import ray_instance

    pairs = scifact_pairs(Path(args.data), args.pairs, args.per_query, seed=0)
    print(f"{len(pairs)} SciFact pairs, max_length {args.max_length}, {args.cpus} CPUs")
    results: dict[str, dict] = {
        "in-process (first)": in_process(args.model, pairs, args.max_length)
    }
    reference = results["in-process (first)"]["scores"]
    with ray_instance(num_cpus=args.cpus, object_store_memory=256 * 1024**2, quiet=True):
        results[f"ray 1 actor x {args.cpus} CPU"] = on_ray(
            args.model, pairs, args.max_length, 1, args.cpus, args.rows
        )
        results[f"ray {args.cpus} actors x 1 CPU"] = on_ray(
            args.model, pairs, args.max_length, args.cpus, 1, args.rows
        )
    results["in-process (last)"] = in_process(args.model, pairs, args.max_length)
    base = np.mean([results[k]["pairs_per_s"] for k in results if k.startswith("in-process")])
    print("| row | wall s | pairs/s | x in-process | first block s | steady pairs/s | max |diff| |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        diff = float(np.max(np.abs(row["scores"] - reference)))
        print(
            f"| {name} | {row['seconds']:.1f} | {row['pairs_per_s']:.1f} | "
            f"{row['pairs_per_s'] / base:.2f} | {row.get('first_block_s', float('nan')):.1f} | "
            f"{row.get('steady_pairs_per_s', float('nan')):.1f} | {diff:.1e} |"
        )
    if args.out:
        payload = {k: {m: v for m, v in row.items() if m != "scores"} for k, row in results.items()}
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
