"""``--fusion``, ``--weights``, ``--rrf-k``: HybridRetriever's fusion settings on the CLI."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CLIError, log

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
