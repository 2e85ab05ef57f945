"""CPU token budget and threads per forward pass, idle and loaded, against sentence-transformers.

Each round takes one SciFact test query's BM25 candidates and scores them with every row, in
a rotated order, twice: once as the machine is ("idle") and once next to ``--load-procs``
other busy processes this script starts (a bounded ``python -c`` busy loop each; stopped at
the end of the phase). Rows: ``st`` (``sentence_transformers.CrossEncoder.predict``,
``batch_size=32``, the process's torch threads) and ours at every
``max_tokens_per_batch`` x ``num_threads`` setting. Reports, per condition, the median
pairs/s of every row over the rounds and the median of its per-round ratio to ``st`` (same
pairs, same phase), plus the load average seen at each phase.

    nice -n 5 python benchmarks/bench_cpu_budget.py --rounds 5 --candidates 30 \
        --budgets 1024,2048,4096,8192 --threads 1,2 --json budget.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu_backends import SHARED, bm25_candidates, load_scifact

#: A busy loop that ends on its own after the given seconds, even if this script dies.
BUSY_LOOP = (
    "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def start_load(procs: int, seconds: float) -> list[subprocess.Popen]:
    code = BUSY_LOOP.format(seconds=float(seconds))
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(procs)]


def stop_load(children: list[subprocess.Popen]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        child.wait(timeout=10)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (one query each)")
    parser.add_argument("--stride", type=int, default=7, help="take every Nth test query")
    parser.add_argument("--candidates", type=int, default=30, help="BM25 candidates per call")
    parser.add_argument("--budgets", type=_ints, default=[1024, 2048, 4096, 8192])
    parser.add_argument("--threads", type=_ints, default=[1, 2])
    parser.add_argument("--conditions", default="idle,loaded")
    parser.add_argument("--load-procs", type=int, default=1, help="busy processes when loaded")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    import torch
    from sentence_transformers import CrossEncoder

    from rerank_plugins import CrossEncoderReranker

    corpus, queries, _ = load_scifact(Path(args.data), args.rounds, args.stride)
    candidates = bm25_candidates(corpus, queries, args.candidates)
    st = CrossEncoder(args.model, device="cpu", max_length=args.max_length)
    rows = {
        "st": lambda q, ps: st.predict(
            [(q, p) for p in ps],
            batch_size=32,
            show_progress_bar=False,
            activation_fn=torch.nn.Identity(),
        )
    }
    for threads in args.threads:
        for budget in args.budgets:
            model = CrossEncoderReranker(
                args.model,
                device="cpu",
                dtype="float32",
                max_length=args.max_length,
                max_tokens_per_batch=budget,
                num_threads=threads,
            )
            rows[f"ours {budget} tok, {threads} thr"] = model.score
    names = list(rows)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    qids = list(queries)
    warm = [corpus[d] for d in candidates[qids[0]]][:8]
    for fn in rows.values():
        fn(queries[qids[0]], warm)
    seconds: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in conditions}
    loadavg: dict[str, list[float]] = {c: [] for c in conditions}
    for position, qid in enumerate(qids):
        passages = [corpus[d] for d in candidates[qid]]
        order = conditions if position % 2 == 0 else conditions[::-1]
        for condition in order:
            children = start_load(args.load_procs, 900) if condition == "loaded" else []
            try:
                time.sleep(0.5 if children else 0.0)
                loadavg[condition].append(os.getloadavg()[0])
                shift = position % len(names)
                for name in names[shift:] + names[:shift]:
                    started = time.perf_counter()
                    rows[name](queries[qid], passages)
                    seconds[condition][name].append(time.perf_counter() - started)
            finally:
                stop_load(children)
        print(f"# round {position + 1}/{len(qids)}", file=sys.stderr, flush=True)

    report: dict[str, dict[str, dict[str, float]]] = {}
    for condition in conditions:
        base = np.array(seconds[condition]["st"])
        report[condition] = {}
        for name in names:
            mine = np.array(seconds[condition][name])
            report[condition][name] = {
                "pairs_per_s": float(np.median(args.candidates / mine)),
                "x_st": float(np.median(base / mine)),
            }
    print(
        f"\n{cpu_name()}, {os.cpu_count()} CPUs; {len(qids)} rounds x {args.candidates} pairs, "
        f"max_length {args.max_length}; loaded = +{args.load_procs} busy process(es)"
    )
    for condition in conditions:
        print(f"load average during '{condition}': {np.round(loadavg[condition], 1).tolist()}")
    header = " | ".join(f"{c} pairs/s | {c} x ST" for c in conditions)
    print(f"\n| row | {header} |")
    print("|---|" + "---:|" * (2 * len(conditions)))
    for name in names:
        cells = " | ".join(
            f"{report[c][name]['pairs_per_s']:.1f} | {report[c][name]['x_st']:.2f}"
            for c in conditions
        )
        print(f"| {name} | {cells} |")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "cpu": cpu_name(),
                    "cpu_count": os.cpu_count(),
                    "seconds": seconds,
                    "loadavg": loadavg,
                    "report": report,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
