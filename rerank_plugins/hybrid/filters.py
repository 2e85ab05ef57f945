"""Metadata filters: ``{"key": value}`` (equality), ``{"key": {"$in": [...]}}`` or a list (in).

Several keys must all match. A document without the key never matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_MISSING = object()


def _compile(flt: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    if not isinstance(flt, Mapping):
        raise TypeError(f"filter must be a dict of metadata key -> value, got {type(flt).__name__}")
    clauses = []
    for key, condition in flt.items():
        if not isinstance(key, str):
            raise TypeError(f"filter keys must be str, got {key!r}")
        if isinstance(condition, Mapping):
            if set(condition) - {"$in", "$eq"} or len(condition) != 1:
                raise ValueError(
                    f"filter[{key!r}] supports exactly one of '$eq' or '$in', got {sorted(condition)}"
                )
            ((op, value),) = condition.items()
            if op == "$in":
                if isinstance(value, (str, bytes)) or not isinstance(
                    value, (Sequence, set, frozenset)
                ):
                    raise TypeError(f"filter[{key!r}]['$in'] must be a list, got {value!r}")
                clauses.append((key, "in", list(value)))
            else:
                clauses.append((key, "eq", value))
        elif isinstance(condition, (list, tuple, set, frozenset)):
            clauses.append((key, "in", list(condition)))
        else:
            clauses.append((key, "eq", condition))
    return clauses


def _matches(metadata: Mapping[str, Any], clauses: list[tuple[str, str, Any]]) -> bool:
    for key, op, value in clauses:
        found = metadata.get(key, _MISSING)
        if found is _MISSING:
            return False
        if op == "eq":
            if found != value:
                return False
        elif not any(found == v for v in value):
            return False
    return True


def filter_mask(
    metadatas: Sequence[Mapping[str, Any]], flt: Mapping[str, Any] | None
) -> np.ndarray | None:
    """Boolean array, one per document (None when there is no filter)."""
    if flt is None:
        return None
    clauses = _compile(flt)
    return np.fromiter((_matches(m, clauses) for m in metadatas), dtype=bool, count=len(metadatas))
