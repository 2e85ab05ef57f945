"""The ``--engine ray`` pieces the subcommands share; Ray itself is imported only when used."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from ._common import CLIError

RAY_EXTRA = 'pip install "rerank-plugins[ray]"'


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_address_arg(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: join the Ray cluster at ADDR (auto, HOST:PORT or "
        "ray://HOST:PORT) and leave it running at exit; default: start a local Ray instance "
        "for this command and stop it at exit",
    )


def require_ray() -> None:
    """Fail before minutes of indexing or loading when the [ray] extra is missing."""
    try:
        import rerank_plugins.distributed  # noqa: F401
    except ImportError as error:
        raise CLIError(f"--engine ray needs Ray ({error}); install it with: {RAY_EXTRA}") from None


def ray_session(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """``ray_instance`` for ``--address`` (join) or a local instance (start, then stop)."""
    from ..distributed.cluster import ray_instance

    return ray_instance(getattr(args, "address", None), quiet=getattr(args, "quiet", False))
