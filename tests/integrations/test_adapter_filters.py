"""Framework metadata filters -> the core filter grammar, checked as dicts (no evaluator needed)."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins.integrations.filters import (
    FilterTranslationError,
    from_langchain_filter,
)


# ----------------------------------------------------------------------- LangChain dicts
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ({}, None),
        ({"topic": "cardio"}, {"topic": {"$eq": "cardio"}}),
        ({"topic": ["a", "b"]}, {"topic": {"$in": ["a", "b"]}}),
        ({"topic": ("a",)}, {"topic": {"$in": ["a"]}}),
        ({"n": {"$ne": 3}}, {"n": {"$ne": 3}}),
        ({"n": {"$nin": [1, 2]}}, {"n": {"$nin": [1, 2]}}),
        ({"flag": True, "x": None}, {"$and": [{"flag": {"$eq": True}}, {"x": {"$eq": None}}]}),
        (
            {"year": {"$gte": 2000, "$lt": 2010}},
            {"$and": [{"year": {"$gte": 2000}}, {"year": {"$lt": 2010}}]},
        ),
        (
            {"n": {"$between": [1, 3]}},
            {"$and": [{"n": {"$gte": 1}}, {"n": {"$lte": 3}}]},
        ),
        (
            {"$or": [{"topic": "a"}, {"$and": [{"n": {"$gt": 1}}, {"m": {"$lte": 2.5}}]}]},
            {
                "$or": [
                    {"topic": {"$eq": "a"}},
                    {"$and": [{"n": {"$gt": 1}}, {"m": {"$lte": 2.5}}]},
                ]
            },
        ),
        ({"$and": [{"topic": "a"}]}, {"topic": {"$eq": "a"}}),
        (
            {"topic": "a", "$or": [{"n": 1}, {"n": 2}]},
            {"$and": [{"topic": {"$eq": "a"}}, {"$or": [{"n": {"$eq": 1}}, {"n": {"$eq": 2}}]}]},
        ),
        ({"n": np.int64(3)}, {"n": {"$eq": 3}}),
    ],
)
def test_langchain_dict_filters_translate_to_core_grammar(given, expected):
    out = from_langchain_filter(given)
    assert out == expected
    if expected is not None:
        assert type(next(iter(_leaves(out)))) in (str, int, float, bool, type(None))


def _leaves(flt):
    for key, value in flt.items():
        if key in ("$and", "$or"):
            for child in value:
                yield from _leaves(child)
        else:
            ((op, operand),) = value.items()
            yield from operand if op in ("$in", "$nin") else [operand]


def test_langchain_translation_does_not_mutate_the_input():
    given = {"year": {"$gte": 2000, "$lt": 2010}, "tags": ["a"]}
    before = {"year": {"$gte": 2000, "$lt": 2010}, "tags": ["a"]}
    from_langchain_filter(given)
    assert given == before


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"n": {"$exists": True}}, r"'\$exists' has no translation"),
        ({"title": {"$like": "%x%"}}, r"'\$like' has no translation"),
        ({"$not": {"n": 1}}, r"unknown operator '\$not'"),
        ({"$nor": [{"n": 1}]}, r"unknown operator '\$nor'"),
        ({"$or": []}, "non-empty list"),
        ({"$or": {"n": 1}}, "non-empty list"),
        ({"$and": [{}]}, "empty filter"),
        ({"n": {}}, "empty condition"),
        ({"n": {"$in": "ab"}}, "must be a list"),
        ({"n": {"$in": {1, 2}}}, "must be a list"),
        ({"n": {"$in": range(3)}}, "must be a list"),
        ({"n": {"$in": (i for i in range(3))}}, "must be a list"),
        ({"n": np.arange(3)}, "must be a str, number"),
        ({"n": {"$eq": [1, 2]}}, "must be a str, number"),
        ({"n": float("nan")}, "finite"),
        ({"n": {"$between": [1]}}, r"\[low, high\]"),
        ({3: "x"}, "non-empty str"),
        ({"": "x"}, "non-empty str"),
        (["n", 1], "must be a dict"),
    ],
)
def test_langchain_untranslatable_filters_raise(given, message):
    with pytest.raises(FilterTranslationError, match=message):
        from_langchain_filter(given)


def test_translation_error_is_a_value_error():
    assert issubclass(FilterTranslationError, ValueError)
