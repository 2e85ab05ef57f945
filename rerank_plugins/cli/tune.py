"""``rerank-plugins tune``: fine-tune or distil a cross-encoder on a BEIR data set."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._common import CLIError, embedding_cache_setting, log, positive_int


def _number(
    cast: type, *, low: float, high: float | None = None, low_open: bool = False
) -> Callable[[str], Any]:
    """An argparse type: ``cast(text)`` within ``low`` (exclusive when ``low_open``) .. ``high``."""
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    if high is not None:
        bound += f" and < {high:g}"
    what = "an integer" if cast is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text!r}") from None
        if value < low or (low_open and value == low) or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text!r}")
        return value

    return parse


_fraction = _number(float, low=0.0, high=1.0, low_open=True)
_positive_float = _number(float, low=0.0, low_open=True)
_non_negative_float = _number(float, low=0.0)
_non_negative_int = _number(int, low=0)


def _count_or_auto(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 or auto, got {text!r}"
        ) from None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's or ``kill``'s stop) unwinds like Ctrl-C, so the half-written
    model in the temporary directory is removed instead of left beside ``--out``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_tune(args: argparse.Namespace) -> int:
    from ..training import TrainingDataError, tune
    from ..training._deps import require_train

    require_train()  # a missing extra fails before minutes of indexing
    if args.base is None and args.teacher is None:
        raise CLIError("--base is required (or --teacher with --student-layers to distil it)")
    try:
        with _terminate_as_interrupt():
            result = tune(
                args.data,
                out=args.out,
                base=args.base,
                split=args.split,
                eval_split=args.eval_split,
                eval_fraction=args.eval_fraction,
                negatives=args.negatives,
                negatives_per_query=args.negatives_per_query,
                rank_min=args.rank_min,
                rank_max=args.rank_max,
                sampling=args.sampling,
                teacher=args.teacher,
                relative_margin=args.relative_margin,
                student_layers=args.student_layers,
                loss=args.loss,
                pseudo_queries=args.pseudo_queries,
                device=args.device,
                max_steps=args.max_steps or None,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                head_lr=args.head_lr,
                logit_scale=args.logit_scale,
                precision=args.precision,
                max_length=args.max_length,
                serve_length=args.serve_length,
                seed=args.seed,
                eval_depth=args.eval_depth,
                retriever_depth=args.retriever_depth,
                embedder=args.embedder,
                embedding_cache=embedding_cache_setting(args),
                export_int8=args.export_int8,
                overwrite=args.overwrite,
                show_progress=not args.quiet,
            )
    except TrainingDataError as error:
        raise CLIError(f"--data {os.fspath(args.data)!r}: {error}") from None
    evaluation = result.report["evaluation"]
    summary = {
        name: {k: evaluation[name].get(k) for k in ("ndcg@10", "mrr@10", "pairs_per_s")}
        for name in ("first_stage", "before", "teacher", "after", "int8")
        if evaluation.get(name) and "ndcg@10" in evaluation[name]
    }
    warnings = result.report.get("warnings") or []
    print(json.dumps({"model": str(result.path), "eval": summary, "warnings": warnings}, indent=2))
    # The warnings were logged by the run itself (logger.warning); the JSON carries them too.
    log(
        f"wrote {result.path} (training_report.json, README.md) in "
        f"{result.report['timings']['total_s']:.0f} s"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``tune`` subcommand."""
    p = sub.add_parser(
        "tune",
        help="fine-tune (or distil) a cross-encoder on your BEIR data, with hard negatives "
        "from our own first stage",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/)"
    )
    p.add_argument(
        "--base",
        default=None,
        help="starting model: cross-encoder or plain encoder (a one-logit head is added), "
        "local directory or cached hub id; default with --teacher: the teacher",
    )
    p.add_argument("--out", required=True, help="output model directory (absent or empty)")
    p.add_argument("--split", default="train", help="qrels split to learn from")
    p.add_argument(
        "--eval-split",
        default=None,
        help="qrels split to measure on (default: dev if present, else a held-out slice of "
        "the training queries)",
    )
    p.add_argument(
        "--eval-fraction",
        type=_fraction,
        default=0.1,
        help="share of the training queries held out when there is no eval split",
    )
    p.add_argument(
        "--negatives",
        choices=("hybrid", "bm25", "dense"),
        default="hybrid",
        help="first stage that mines hard negatives and gives the eval candidates",
    )
    p.add_argument("--negatives-per-query", type=positive_int, default=3)
    p.add_argument(
        "--rank-min", type=positive_int, default=1, help="first first-stage rank to draw from"
    )
    p.add_argument(
        "--rank-max", type=positive_int, default=30, help="last first-stage rank to draw from"
    )
    p.add_argument("--sampling", choices=("random", "top"), default="random")
    p.add_argument(
        "--teacher",
        default=None,
        help="cross-encoder whose scores the student learns (with --student-layers), else "
        "a filter of likely false negatives",
    )
    p.add_argument(
        "--relative-margin",
        type=_non_negative_float,
        default=None,
        help="teacher filter: drop negatives scoring above p - |p| x margin (p: weakest "
        "positive); default 0.05 with --teacher when not distilling",
    )
    p.add_argument(
        "--student-layers",
        type=positive_int,
        default=None,
        help="distil into a student with this many of the base's layers",
    )
    p.add_argument(
        "--loss",
        choices=("mnrl", "lambda", "listnet", "bce", "margin_mse", "mse", "listnet_kd"),
        default=None,
        help="training loss (default mnrl; margin_mse when distilling; listnet_kd distils the "
        "teacher's scores over each query's whole list)",
    )
    p.add_argument(
        "--pseudo-queries",
        type=_count_or_auto,
        default=0,
        metavar="N|auto",
        help="also learn from N corpus titles asked as queries (default 0): labelled by the "
        "teacher when distilling, else with the title's own document as a weak positive "
        "(never a document judged for an eval query; docs/training.md). auto: as many as the "
        "judged training queries when the base gets a new head and no teacher labels, else 0",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, ...")
    p.add_argument(
        "--max-steps",
        type=_non_negative_int,
        default=0,
        help="stop after this many optimizer steps (0: run --epochs)",
    )
    p.add_argument("--epochs", type=_positive_float, default=3.0, help="default 3")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="training rows per step (a query, a positive and its negatives for mnrl)",
    )
    p.add_argument("--lr", type=_positive_float, default=5e-5, help="encoder learning rate")
    p.add_argument(
        "--head-lr",
        type=_positive_float,
        default=None,
        help="learning rate of a new relevance head (default 2e-3; else --lr)",
    )
    p.add_argument(
        "--logit-scale",
        type=_positive_float,
        default=None,
        help="mnrl: logits are multiplied by this in the softmax and the scale is folded into "
        "the saved head (default 10 for a new head, 1 for a cross-encoder's own)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="training arithmetic: auto is bf16 autocast on CUDA and on CPUs with native bf16 "
        "(AMX, AVX512-BF16), fp16 on older CUDA, else fp32; weights stay float32",
    )
    p.add_argument("--max-length", type=positive_int, default=192, help="training token window")
    p.add_argument(
        "--serve-length",
        type=positive_int,
        default=None,
        help="token window saved with the model (default max(--max-length, 256))",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-depth", type=positive_int, default=30, help="candidates reranked per eval query"
    )
    p.add_argument(
        "--retriever-depth",
        type=positive_int,
        default=None,
        help="hybrid: each retriever's depth before fusion (default: the retriever's own)",
    )
    p.add_argument("--embedder", default=None, help="dense embedder (default: bundled MiniLM)")
    p.add_argument(
        "--embedding-cache",
        default=None,
        metavar="DIR",
        help="document-embedding cache (default $RERANK_PLUGINS_CACHE/embeddings; 'off')",
    )
    p.add_argument(
        "--export-int8",
        action="store_true",
        help="also build the ONNX int8 export (parity-checked) into OUT/onnx and measure it",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --out once the model is done"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_tune)
