"""Translate framework metadata filters into the core filter grammar (framework-free).

The core grammar (what ``HybridRetriever.search(filter=...)`` reads) is Mongo-like::

    {"field": {"$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte": value}}
    {"field": {"$in" | "$nin": [value, ...]}}
    {"$and": [filter, ...]}    {"$or": [filter, ...]}

and a list-valued metadata field matches a scalar ``$eq`` when it contains it. Both
translators return exactly that grammar, in one canonical form (every comparison spelled
``{"field": {"$op": value}}``, several clauses wrapped in ``$and``), or ``None`` for "no
filter". A filter they cannot translate raises :class:`FilterTranslationError` naming the
operator: a filter is never dropped or loosened.

* :func:`from_langchain_filter`: the dict filters LangChain vector stores accept (Chroma,
  Pinecone, PGVector style): ``{"field": value}``, ``{"field": [v, ...]}`` (any of),
  ``{"field": {"$op": value, ...}}`` with the comparisons above and ``$between``, and
  ``$and``/``$or`` lists, nested.
* :func:`from_llama_index_filters`: LlamaIndex ``MetadataFilters`` (``FilterOperator`` EQ, NE,
  GT, GTE, LT, LTE, IN, NIN, CONTAINS, ANY, ALL; ``FilterCondition`` AND, OR; nested).
  TEXT_MATCH, TEXT_MATCH_INSENSITIVE, IS_EMPTY and the NOT condition have no translation.

Missing keys follow the core's rule (see docs/hybrid.md), which may differ from a given
vector store's: LlamaIndex's in-memory store, for one, lets ``!=``/``nin`` match documents
without the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
MEMBERSHIP = ("$in", "$nin")
LOGICAL = ("$and", "$or")

#: LlamaIndex ``FilterOperator`` values -> core comparison operators.
_LLAMA_COMPARISONS = {
    "==": "$eq",
    "!=": "$ne",
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
    "in": "$in",
    "nin": "$nin",
}


class FilterTranslationError(ValueError):
    """A framework filter uses an operator or value the core filter grammar cannot express."""


# ---------------------------------------------------------------------------- values
def _scalar(value: Any, where: str) -> Any:
    """A filter value the core compares: str, int, float (finite), bool or None."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterTranslationError(f"{where} is {value!r}; filter values must be finite")
        return value
    raise FilterTranslationError(
        f"{where} must be a str, number, bool or None, got {type(value).__name__} ({value!r})"
    )


def _values(value: Any, where: str) -> list[Any]:
    """A list of scalars for ``$in``/``$nin``: a list or tuple (not a str, set or generator)."""
    if not isinstance(value, (list, tuple)):
        raise FilterTranslationError(
            f"{where} must be a list of values, got {type(value).__name__} ({value!r})"
        )
    return [_scalar(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _clause(field: str, op: str, value: Any) -> dict[str, Any]:
    return {field: {op: value}}


def _combine(op: str, clauses: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {op: clauses}


def _field(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise FilterTranslationError(f"{where}: metadata keys must be non-empty str, got {name!r}")
    if name.startswith("$"):
        raise FilterTranslationError(
            f"{where}: unknown operator {name!r}; the core supports {', '.join(LOGICAL)} "
            f"and, per field, {', '.join(COMPARISONS + MEMBERSHIP)}"
        )
    return name


# ---------------------------------------------------------------------------- LangChain
def from_langchain_filter(flt: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Translate a LangChain-style dict filter into the core grammar (``None``/``{}``: no filter).

    Example:
        >>> from_langchain_filter({"year": {"$gte": 2000, "$lt": 2010}, "topic": "cardio"})
        {'$and': [{'year': {'$gte': 2000}}, {'year': {'$lt': 2010}}, {'topic': {'$eq': 'cardio'}}]}
        >>> from_langchain_filter({"$or": [{"topic": ["a", "b"]}, {"n": {"$between": [1, 3]}}]})
        {'$or': [{'topic': {'$in': ['a', 'b']}}, {'$and': [{'n': {'$gte': 1}}, {'n': {'$lte': 3}}]}]}
    """
    if flt is None:
        return None
    return _from_dict(flt, "filter")


def _from_dict(flt: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(flt, Mapping):
        raise FilterTranslationError(
            f"{where} must be a dict of metadata key -> condition, got {type(flt).__name__}"
        )
    clauses: list[dict[str, Any]] = []
    for key, condition in flt.items():
        if key in LOGICAL:
            clauses.append(_logical(key, condition, f"{where}[{key!r}]"))
        else:
            clauses.extend(_conditions(_field(key, where), condition, f"{where}[{key!r}]"))
    return _combine("$and", clauses)


def _logical(op: str, parts: Any, where: str) -> dict[str, Any]:
    if not isinstance(parts, (list, tuple)) or not parts:
        raise FilterTranslationError(f"{where} must be a non-empty list of filters")
    children = []
    for i, part in enumerate(parts):
        child = _from_dict(part, f"{where}[{i}]")
        if child is None:
            raise FilterTranslationError(f"{where}[{i}] is an empty filter")
        children.append(child)
    return children[0] if len(children) == 1 else {op: children}


def _conditions(field: str, condition: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(condition, (list, tuple)):
        return [_clause(field, "$in", _values(condition, where))]
    if not isinstance(condition, Mapping):
        return [_clause(field, "$eq", _scalar(condition, where))]
    if not condition:
        raise FilterTranslationError(f"{where} is an empty condition")
    out = []
    for op, value in condition.items():
        at = f"{where}[{op!r}]"
        if op in COMPARISONS:
            out.append(_clause(field, op, _scalar(value, at)))
        elif op in MEMBERSHIP:
            out.append(_clause(field, op, _values(value, at)))
        elif op == "$between":
            bounds = _values(value, at)
            if len(bounds) != 2:
                raise FilterTranslationError(f"{at} must be [low, high], got {value!r}")
            out += [_clause(field, "$gte", bounds[0]), _clause(field, "$lte", bounds[1])]
        else:
            raise FilterTranslationError(
                f"{at}: operator {op!r} has no translation into the core filter grammar "
                f"(supported: {', '.join(COMPARISONS + MEMBERSHIP)}, $between)"
            )
    return out


# ---------------------------------------------------------------------------- LlamaIndex
def from_llama_index_filters(filters: Any) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` into the core grammar (``None``: no filter).

    ``CONTAINS`` (a list field holds the value) becomes ``$eq``, which the core matches by
    containment on list fields; ``ANY``/``ALL`` become ``$or``/``$and`` of those.

    Example:
        >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
        >>> from_llama_index_filters(MetadataFilters(filters=[
        ...     MetadataFilter(key="year", value=2020, operator=">="),
        ...     MetadataFilter(key="tags", value=["a", "b"], operator="any")]))
        {'$and': [{'year': {'$gte': 2020}}, {'$or': [{'tags': {'$eq': 'a'}}, {'tags': {'$eq': 'b'}}]}]}
    """
    if filters is None:
        return None
    return _from_llama_filters(filters, "filters")


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _from_llama_filters(filters: Any, where: str) -> dict[str, Any] | None:
    parts = getattr(filters, "filters", None)
    if not isinstance(parts, Sequence):
        raise FilterTranslationError(
            f"{where} must be a llama_index MetadataFilters, got {type(filters).__name__}"
        )
    condition = _enum_value(getattr(filters, "condition", None)) or "and"
    if condition not in ("and", "or"):
        raise FilterTranslationError(
            f"{where}: condition {condition!r} has no translation into the core filter "
            "grammar (supported: and, or)"
        )
    clauses = []
    for i, part in enumerate(parts):
        at = f"{where}.filters[{i}]"
        if hasattr(part, "filters"):
            child = _from_llama_filters(part, at)
            if child is not None:
                clauses.append(child)
        else:
            clauses.append(_from_llama_filter(part, at))
    return _combine(f"${condition}", clauses)


def _from_llama_filter(flt: Any, where: str) -> dict[str, Any]:
    field = _field(getattr(flt, "key", None), where)
    operator = _enum_value(getattr(flt, "operator", "=="))
    value = getattr(flt, "value", None)
    at = f"{where} ({field!r} {operator})"
    if operator in ("in", "nin"):
        return _clause(field, _LLAMA_COMPARISONS[operator], _values(value, at))
    if operator in _LLAMA_COMPARISONS:
        if isinstance(value, (list, tuple)):
            raise FilterTranslationError(
                f"{at}: a list value needs the 'in', 'nin', 'any' or 'all' operator"
            )
        return _clause(field, _LLAMA_COMPARISONS[operator], _scalar(value, at))
    if operator == "contains":
        return _clause(field, "$eq", _scalar(value, at))
    if operator in ("any", "all"):
        items = _values(value, at)
        if not items:
            raise FilterTranslationError(f"{at}: needs at least one value")
        combined = _combine(
            "$or" if operator == "any" else "$and", [_clause(field, "$eq", v) for v in items]
        )
        assert combined is not None
        return combined
    raise FilterTranslationError(
        f"{at}: operator {operator!r} has no translation into the core filter grammar "
        "(supported: ==, !=, >, >=, <, <=, in, nin, contains, any, all)"
    )
