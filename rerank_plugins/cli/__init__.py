"""``rerank-plugins`` command line: one module per subcommand, shared pieces in ``_common``.

Errors the user can fix (a missing data directory, a model that is not available offline, a
missing optional package) are printed as one ``error:`` line without a traceback and exit
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from . import bench, demo, evaluate, serve, tune
from ._common import (
    USER_ERRORS,
    CLIError,
    DefaultsHelpFormatter,
    default_demo_data,
    default_embedder,
    default_reranker,
    package_info_on_stderr,
    quiet_model_loading,
)

#: The subcommand modules, in ``--help`` order; each has ``register(subparsers)``.
SUBCOMMANDS: tuple[ModuleType, ...] = (demo, evaluate, bench, tune, serve)


def build_parser() -> argparse.ArgumentParser:
    """The full parser: global options, then each subcommand module's own parser."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="rerank-plugins",
        description="Hybrid retrieval + cross-encoder reranking: demo, evaluation, benchmark, "
        "tuning, serving.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    for command in sub.choices.values():
        command.formatter_class = DefaultsHelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rerank-plugins`` / ``python -m rerank_plugins``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    quiet_model_loading()
    try:
        with package_info_on_stderr():
            return int(args.func(args) or 0)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = [
    "SUBCOMMANDS",
    "CLIError",
    "build_parser",
    "default_demo_data",
    "default_embedder",
    "default_reranker",
    "main",
]
