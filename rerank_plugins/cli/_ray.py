"""The ``--engine ray`` pieces the subcommands share; Ray itself is imported only when used."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from ._common import CLIError, non_negative_float, positive_float

RAY_EXTRA = 'pip install "rerank-plugins[ray]"'


def add_engine_args(
    p: argparse.ArgumentParser, *, title: str, local_help: str, ray_help: str, unit: str
) -> Any:
    """``--engine``, ``--address`` and ``--num-gpus-per-UNIT`` / ``--num-cpus-per-UNIT`` in
    their own help group; returns the group for the command's other Ray flags."""
    group = p.add_argument_group(
        f"{title} (--engine ray; needs the [ray] extra, see docs/scaling.md)"
    )
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help=f"local: {local_help} (default); ray: {ray_help}",
    )
    _add_address_arg(group)
    group.add_argument(
        f"--num-gpus-per-{unit}",
        type=non_negative_float,
        default=0.0,
        help=f"GPUs per {unit} (default 0: CPU only; fractions share a GPU)",
    )
    group.add_argument(
        f"--num-cpus-per-{unit}",
        type=positive_float,
        default=1.0,
        help=f"CPUs per {unit}, also its torch threads on CPU (default 1)",
    )
    return group


def _add_address_arg(p: Any) -> None:
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
