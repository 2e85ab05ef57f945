"""LlamaIndex MetadataFilters -> the core filter grammar, checked as dicts."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from rerank_plugins.integrations.filters import (
    FilterTranslationError,
    from_llama_index_filters,
)


def _f(key, value, op="=="):
    return MetadataFilter(key=key, value=value, operator=FilterOperator(op))


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("==", "cardio", {"topic": {"$eq": "cardio"}}),
        ("!=", "cardio", {"topic": {"$ne": "cardio"}}),
        (">", 3, {"topic": {"$gt": 3}}),
        (">=", 3, {"topic": {"$gte": 3}}),
        ("<", 2.5, {"topic": {"$lt": 2.5}}),
        ("<=", 3, {"topic": {"$lte": 3}}),
        ("in", ["a", "b"], {"topic": {"$in": ["a", "b"]}}),
        ("nin", ["a", "b"], {"topic": {"$nin": ["a", "b"]}}),
        ("contains", "a", {"topic": {"$eq": "a"}}),
        ("any", ["a", "b"], {"$or": [{"topic": {"$eq": "a"}}, {"topic": {"$eq": "b"}}]}),
        ("all", ["a", "b"], {"$and": [{"topic": {"$eq": "a"}}, {"topic": {"$eq": "b"}}]}),
        ("any", ["a"], {"topic": {"$eq": "a"}}),
    ],
)
def test_llama_index_operators_translate(op, value, expected):
    assert from_llama_index_filters(MetadataFilters(filters=[_f("topic", value, op)])) == expected


def test_llama_index_conditions_and_nesting():
    nested = MetadataFilters(
        filters=[
            _f("topic", "cardio"),
            MetadataFilters(
                filters=[_f("n", 1, ">"), _f("tags", "x", "contains")],
                condition=FilterCondition.OR,
            ),
        ],
        condition=FilterCondition.AND,
    )
    assert from_llama_index_filters(nested) == {
        "$and": [
            {"topic": {"$eq": "cardio"}},
            {"$or": [{"n": {"$gt": 1}}, {"tags": {"$eq": "x"}}]},
        ]
    }
    either = MetadataFilters(filters=[_f("a", 1), _f("b", 2)], condition="or")
    assert from_llama_index_filters(either) == {"$or": [{"a": {"$eq": 1}}, {"b": {"$eq": 2}}]}
    default = MetadataFilters(filters=[_f("a", 1), _f("b", 2)], condition=None)
    assert from_llama_index_filters(default) == {"$and": [{"a": {"$eq": 1}}, {"b": {"$eq": 2}}]}
    assert from_llama_index_filters(MetadataFilters(filters=[])) is None
    assert from_llama_index_filters(None) is None


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (MetadataFilters(filters=[_f("t", "x", "text_match")]), "'text_match' has no translation"),
        (
            MetadataFilters(filters=[_f("t", "x", "text_match_insensitive")]),
            "'text_match_insensitive' has no translation",
        ),
        (MetadataFilters(filters=[_f("t", None, "is_empty")]), "'is_empty' has no translation"),
        (
            MetadataFilters(filters=[_f("t", 1)], condition=FilterCondition.NOT),
            "condition 'not' has no translation",
        ),
        (MetadataFilters(filters=[_f("t", "abc", "in")]), "must be a list"),
        (MetadataFilters(filters=[_f("t", ["a"], "==")]), "needs the 'in'"),
        (MetadataFilters(filters=[_f("t", [], "any")]), "at least one value"),
    ],
)
def test_llama_index_untranslatable_filters_raise(filters, message):
    with pytest.raises(FilterTranslationError, match=message):
        from_llama_index_filters(filters)
