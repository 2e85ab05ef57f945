"""Metadata filters: a small Mongo-like grammar, compiled once, strict about types and shapes.

Grammar (the full reference, with examples, is in docs/hybrid.md)::

    filter     := {clause, ...}                   every clause must hold ({} matches all)
    clause     := "$and": [filter, ...]           all of them (non-empty list)
                | "$or":  [filter, ...]           at least one (non-empty list)
                | "$not": filter                  the filter does not hold
                | field: value                    shorthand for {"$eq": value}
                | field: [value, ...]             shorthand for {"$in": [...]}
                | field: {op: operand, ...}       every operator must hold (non-empty)
    field      := a str not starting with "$"; dots walk into nested dicts ("a.b")
    op         := $eq $ne $gt $gte $lt $lte       operand: a scalar
                | $in $nin                        operand: a list/tuple/set of scalars
                | $exists                         operand: True or False
    scalar     := str | int | float (finite) | bool | None

Types are strict: ``"2020"`` never equals ``2020``, ``1`` never equals ``True``; ints and
floats compare as numbers (``2020 == 2020.0``). ``$gt``/``$gte``/``$lt``/``$lte`` compare
numbers with numbers and strings with strings; any other pairing does not match. A
list-valued metadata field matches when *any* element does (``{"tags": "a"}`` matches
``{"tags": ["a", "b"]}``; ``$in`` matches when the lists intersect); ``$ne``/``$nin`` hold
when *no* element matches. A missing field matches only ``$ne``, ``$nin``, ``$exists: False``
(and a ``$not`` around a positive test). Anything outside the grammar raises ``ValueError``
or ``TypeError`` naming the key and the problem: a filter is never silently read as "match
nothing".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from numbers import Real
from typing import Any

import numpy as np

Predicate = Callable[[Mapping[str, Any]], bool]

LOGICAL = ("$and", "$or", "$not")
COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
MEMBERSHIP = ("$in", "$nin")
OPERATORS = (*COMPARISONS, *MEMBERSHIP, "$exists")
_MISSING = object()


# ---------------------------------------------------------------------- values
def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not _is_bool(value)


def _scalar(value: Any, where: str) -> Any:
    """A filter operand as a plain scalar (numpy scalars become Python ones)."""
    if value is None or isinstance(value, str):
        return value
    if _is_bool(value):
        return bool(value)
    if _is_number(value):
        if isinstance(value, np.integer):
            return int(value)
        number = value if isinstance(value, (int, float)) else float(value)
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"{where} is {value!r}; filter numbers must be finite")
        return number
    if isinstance(value, np.ndarray):
        raise TypeError(f"{where} is a numpy array; pass a list (array.tolist())")
    if isinstance(value, Mapping):
        raise ValueError(
            f"{where} is a dict without operators; to filter on a nested field use a dotted "
            "key ('parent.child'), to compare use an operator ('$gt', '$in', ...)"
        )
    raise TypeError(
        f"{where} must be a str, number, bool or None, got {type(value).__name__} {value!r}"
    )


def _operand_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, np.ndarray):
        raise TypeError(f"{where} is a numpy array; pass a list (array.tolist())")
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, AbstractSet)):
        raise TypeError(
            f"{where} must be a list of values, got {type(value).__name__} {value!r} "
            "(an iterator or generator is not accepted: pass list(...))"
        )
    return [_scalar(item, f"{where}[{i}]") for i, item in enumerate(value)]


_FAST_KINDS = {str: "str", bool: "bool", int: "number", float: "number", type(None): "none"}


def _kind(value: Any) -> str:
    fast = _FAST_KINDS.get(type(value))
    if fast is not None:
        return fast
    if _is_bool(value):
        return "bool"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "str"
    return "other"


def _value_test(values: list[Any]) -> Callable[[Any], bool]:
    """``found -> bool``: does the (scalar or list) field equal any of ``values``, kind-strict.

    One hash lookup per element: each kind has its own set, so ``1`` never meets ``True``.
    """
    by_kind: dict[str, set[Any]] = {"str": set(), "bool": set(), "number": set()}
    for value in values:
        if value is not None:
            by_kind[_kind(value)].add(value)
    strs, bools, numbers = by_kind["str"], by_kind["bool"], by_kind["number"]
    wants_none = any(value is None for value in values)

    def scalar(found: Any) -> bool:
        kind = _kind(found)
        if kind == "str":
            return found in strs
        if kind == "number":
            return found in numbers
        if kind == "bool":
            return bool(found) in bools
        return kind == "none" and wants_none

    def test(found: Any) -> bool:
        if isinstance(found, (list, tuple)):
            return any(scalar(element) for element in found)
        return scalar(found)

    return test


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _elements(found: Any) -> list[Any]:
    """A list-valued field's elements, else the value itself as the only element."""
    if isinstance(found, (list, tuple)):
        return list(found)
    return [found]


# ---------------------------------------------------------------------- compiling
def _lookup(key: str, path: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    """Read ``key``: a literal top-level key wins, else dots walk into nested dicts."""
    if len(path) == 1:
        return lambda metadata: metadata.get(key, _MISSING)

    def walk(metadata: Mapping[str, Any]) -> Any:
        value: Any = metadata.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = metadata
        for part in path:
            if not isinstance(value, Mapping):
                return _MISSING
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return _MISSING
        return value

    return walk


def _field_path(key: str, where: str) -> tuple[str, ...]:
    if not key:
        raise ValueError(f"{where}: an empty key is not a metadata field")
    parts = tuple(key.split("."))
    if any(not part for part in parts):
        raise ValueError(f"{where}: {key!r} has an empty part; nested fields look like 'a.b'")
    return parts


def _operator(
    op: str, operand: Any, get: Callable[[Mapping[str, Any]], Any], where: str
) -> Predicate:
    where = f"{where}[{op!r}]"
    if op == "$exists":
        if not _is_bool(operand):
            raise TypeError(f"{where} must be True or False, got {operand!r}")
        present = bool(operand)
        return lambda m: (get(m) is not _MISSING) == present
    if op in MEMBERSHIP or op in ("$eq", "$ne"):
        values = _operand_list(operand, where) if op in MEMBERSHIP else [_scalar(operand, where)]
        test = _value_test(values)
        if op in ("$in", "$eq"):
            return lambda m: (found := get(m)) is not _MISSING and test(found)
        return lambda m: (found := get(m)) is _MISSING or not test(found)
    value = _scalar(operand, where)
    kind = _kind(value)
    if kind not in ("number", "str"):
        raise TypeError(f"{where} compares order: it needs a number or a str, got {operand!r}")
    compare = _ORDER[op]

    def ordered(m: Mapping[str, Any]) -> bool:
        found = get(m)
        if found is _MISSING:
            return False
        return any(_kind(e) == kind and compare(e, value) for e in _elements(found))

    return ordered


def _field(key: str, condition: Any, where: str) -> Predicate:
    where = f"{where}[{key!r}]"
    get = _lookup(key, _field_path(key, where))
    if isinstance(condition, Mapping):
        if not condition:
            raise ValueError(f"{where} is an empty dict; give a value or an operator")
        operators = [str(op) for op in condition]
        unknown = [op for op in operators if op not in OPERATORS]
        if unknown:
            if not any(op.startswith("$") for op in operators):
                _scalar(condition, where)  # raises: a dict value is not a scalar
            raise ValueError(
                f"{where}: unknown filter operator {unknown[0]!r}; supported operators are "
                f"{', '.join(OPERATORS)} (and {', '.join(LOGICAL)} at the top of a filter)"
            )
        return _all_of([_operator(op, condition[op], get, where) for op in operators])
    if isinstance(condition, (list, tuple, AbstractSet)):
        return _operator("$in", condition, get, where)
    return _operator("$eq", condition, get, where)


def _subfilters(value: Any, op: str, where: str) -> list[Predicate]:
    where = f"{where}[{op!r}]"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{where} must be a list of filters, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{where} is an empty list; give at least one filter")
    return [compile_filter(item, where=f"{where}[{i}]") for i, item in enumerate(value)]


def _any_of(subs: list[Predicate]) -> Predicate:
    return lambda metadata: any(p(metadata) for p in subs)


def _negation(inner: Predicate) -> Predicate:
    return lambda metadata: not inner(metadata)


def compile_filter(flt: Any, *, where: str = "filter") -> Predicate:
    """Check ``flt`` against the grammar and return a predicate ``metadata -> bool``."""
    if not isinstance(flt, Mapping):
        raise TypeError(
            f"{where} must be a dict of metadata key -> value, got {type(flt).__name__}"
        )
    predicates: list[Predicate] = []
    for key, condition in flt.items():
        if not isinstance(key, str):
            raise TypeError(f"{where} keys must be str, got {key!r}")
        if key in ("$and", "$or"):
            subs = _subfilters(condition, key, where)
            predicates.append(_all_of(subs) if key == "$and" else _any_of(subs))
        elif key == "$not":
            inner = compile_filter(condition, where=f"{where}['$not']")
            predicates.append(_negation(inner))
        elif key.startswith("$"):
            hint = (
                " (field operators go inside a field: {'year': {'$gt': 2000}})"
                if key in OPERATORS
                else ""
            )
            raise ValueError(
                f"{where}: unknown top-level operator {key!r}; supported: "
                f"{', '.join(LOGICAL)}{hint}"
            )
        else:
            predicates.append(_field(key, condition, where))
    return _all_of(predicates)


def _all_of(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return lambda m: True
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda m: first(m) and second(m)
    return lambda m: all(p(m) for p in predicates)


def filter_mask(
    metadatas: Sequence[Mapping[str, Any]], flt: Mapping[str, Any] | Predicate | None
) -> np.ndarray | None:
    """Boolean array, one per document (None when there is no filter).

    ``flt`` is a filter dict or a predicate from :func:`compile_filter`.
    """
    if flt is None:
        return None
    predicate = flt if callable(flt) and not isinstance(flt, Mapping) else compile_filter(flt)
    return np.fromiter((predicate(m) for m in metadatas), dtype=bool, count=len(metadatas))
