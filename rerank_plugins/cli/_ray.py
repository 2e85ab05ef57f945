"""The ``--engine ray`` pieces the subcommands share; Ray itself is imported only when used."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from ._common import CLIError

RAY_EXTRA = 'pip install "rerank-plugins[ray]"'


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


@contextlib.contextmanager
def ray_session(args: argparse.Namespace) -> Iterator[bool]:
    """``ray_instance`` for ``--address`` (join) or a local instance (start, then stop);
    yields whether this command started Ray. A cluster that cannot be reached is a CLIError."""
    from ..distributed.cluster import ray_instance

    address = getattr(args, "address", None)
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(
                ray_instance(address, quiet=getattr(args, "quiet", False))
            )
        except ConnectionError as error:
            raise CLIError(f"--address {address}: cannot join the Ray cluster ({error})") from None
        yield started
