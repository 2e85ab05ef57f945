"""Input checks shared by every public entry point: fail loudly, name the culprit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast, overload

import numpy as np


def check_query(query: object, *, where: str = "query") -> str:
    """Return ``query`` if it is a non-blank string, else raise a clear error."""
    if not isinstance(query, str):
        raise TypeError(f"{where} must be a str, got {type(query).__name__}")
    if not query.strip():
        raise ValueError(f"{where} is empty or whitespace; a reranker needs a non-empty query")
    return query


def check_passages(passages: object, *, where: str = "passages") -> list[str]:
    """Return ``passages`` as a list of str; raise TypeError naming the first bad position."""
    if isinstance(passages, str):
        raise TypeError(f"{where} must be a sequence of str, not a single str")
    if not isinstance(passages, Sequence):
        try:
            passages = list(passages)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                f"{where} must be a sequence of str, got {type(passages).__name__}"
            ) from None
    out = list(cast(Iterable[Any], passages))
    for position, passage in enumerate(out):
        if not isinstance(passage, str):
            raise TypeError(f"{where}[{position}] must be a str, got {type(passage).__name__}")
    return out


def check_retriever_depth(retriever_depth: int | None, candidates: int) -> None:
    """Per-retriever depth before fusion must cover the candidates asked of the fused list."""
    if retriever_depth is not None and retriever_depth < candidates:
        raise ValueError(
            f"retriever_depth={retriever_depth} is below candidates={candidates}: the first "
            "stage would pad its results with documents no retriever ranked"
        )


def check_top_n(top_n: int | None) -> int | None:
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0:
        raise ValueError(f"top_n must be a non-negative int or None, got {top_n!r}")
    return top_n


@overload
def check_positive_int(value: object, name: str, *, allow_none: Literal[False] = False) -> int: ...
@overload
def check_positive_int(value: object, name: str, *, allow_none: Literal[True]) -> int | None: ...
def check_positive_int(value: object, name: str, *, allow_none: bool = False) -> int | None:
    """Return ``value`` as an int if it is one and >= 1 (``None`` too with ``allow_none``).

    Rejects bools and floats (``2.5``, ``2.0``) with a ValueError naming ``name``, so a bad
    setting fails where it is given, not later where it is used.

    Example:
        >>> check_positive_int(3, "top_k")
        3
        >>> check_positive_int(0, "top_k")
        Traceback (most recent call last):
        ...
        ValueError: top_k must be a positive int (>= 1), got 0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        also = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive int (>= 1){also}, got {value!r}")
    return int(value)
