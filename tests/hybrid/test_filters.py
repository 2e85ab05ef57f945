"""The filter grammar (docs/hybrid.md): every operator, strict types, and loud errors."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins.hybrid.filters import compile_filter, filter_mask

DOCS = [
    {"year": 2020, "topic": "heart", "tags": ["a", "b"], "flag": True, "src": {"kind": "pdf"}},
    {"year": 2021, "topic": "brain", "tags": ["c"], "flag": False, "src": {"kind": "web"}},
    {"year": 2019.5, "topic": "heart", "tags": [], "flag": 1},
    {"year": "2020", "topic": None, "tags": "a"},
    {"topic": "cancer", "a.b": "literal"},
]


def matching(flt) -> list[int]:
    mask = filter_mask(DOCS, flt)
    assert mask is not None and mask.dtype == bool and len(mask) == len(DOCS)
    return np.flatnonzero(mask).tolist()


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({}, [0, 1, 2, 3, 4]),
        ({"topic": "heart"}, [0, 2]),
        ({"topic": {"$eq": "heart"}}, [0, 2]),
        ({"topic": {"$ne": "heart"}}, [1, 3, 4]),  # missing or null fields differ from "heart"
        ({"topic": None}, [3]),
        ({"year": 2020}, [0]),  # not "2020"
        ({"year": "2020"}, [3]),  # not 2020
        ({"year": 2020.0}, [0]),  # ints and floats compare as numbers
        ({"flag": True}, [0]),  # not 1
        ({"flag": 1}, [2]),  # not True
        ({"year": {"$gt": 2019.5}}, [0, 1]),
        ({"year": {"$gte": 2019.5}}, [0, 1, 2]),
        ({"year": {"$lt": 2021}}, [0, 2]),  # "2020" is a str: no order against a number
        ({"year": {"$gte": 2020, "$lte": 2020}}, [0]),
        ({"topic": {"$gt": "cancer"}}, [0, 2]),  # strings order with strings
        ({"topic": {"$in": ["brain", "cancer"]}}, [1, 4]),
        ({"topic": ["brain", "cancer"]}, [1, 4]),  # list shorthand = $in
        ({"topic": {"$nin": ["heart"]}}, [1, 3, 4]),
        ({"tags": "a"}, [0, 3]),  # a list field contains the value; a str field equals it
        ({"tags": {"$in": ["b", "c"]}}, [0, 1]),  # lists intersect
        ({"tags": {"$nin": ["a"]}}, [1, 2, 4]),
        ({"tags": {"$ne": "a"}}, [1, 2, 4]),
        ({"topic": {"$exists": False}}, []),
        ({"year": {"$exists": False}}, [4]),
        ({"year": {"$exists": True}, "topic": "heart"}, [0, 2]),
        ({"$and": [{"topic": "heart"}, {"year": {"$gt": 2019.9}}]}, [0]),
        ({"$or": [{"topic": "brain"}, {"year": "2020"}]}, [1, 3]),
        ({"$not": {"topic": "heart"}}, [1, 3, 4]),
        ({"$or": [{"$and": [{"topic": "heart"}, {"flag": 1}]}, {"topic": "cancer"}]}, [2, 4]),
        ({"src.kind": "pdf"}, [0]),  # dots walk into nested dicts
        ({"src.kind": {"$in": ["web", "pdf"]}}, [0, 1]),
        ({"a.b": "literal"}, [4]),  # ...unless the literal key exists
        ({"year": {"$in": range(2020, 2022)}}, [0, 1]),  # a range is a sequence
        ({"year": np.int64(2021)}, [1]),  # numpy scalars are numbers
    ],
)
def test_grammar(flt, expected):
    assert matching(flt) == expected


@pytest.mark.parametrize(
    ("flt", "error", "message"),
    [
        ({"year": {"$regex": "20"}}, ValueError, r"unknown filter operator '\$regex'"),
        ({"$nor": [{"a": 1}]}, ValueError, r"unknown top-level operator '\$nor'"),
        ({"$gt": 3}, ValueError, r"field operators go inside a field"),
        ({"$or": []}, ValueError, r"\$or.*empty list"),
        ({"$and": {"a": 1}}, TypeError, r"\$and.*list of filters"),
        ({"$not": [{"a": 1}]}, TypeError, r"\$not.*must be a dict"),
        ({"year": {}}, ValueError, r"empty dict"),
        ({"src": {"kind": "pdf"}}, ValueError, r"dotted key"),
        ({"year": {"$gt": 1, "x": 2}}, ValueError, r"unknown filter operator 'x'"),
        ({"year": {"$in": (y for y in [2020])}}, TypeError, r"generator"),
        ({"year": {"$in": np.array([2020])}}, TypeError, r"numpy array.*tolist"),
        ({"year": np.array([2020])}, TypeError, r"numpy array"),
        ({"year": (y for y in [2020])}, TypeError, r"must be a str, number, bool or None"),
        ({"year": {"$in": 2020}}, TypeError, r"\$in.*list of values"),
        ({"year": {"$gt": None}}, TypeError, r"needs a number or a str"),
        ({"year": {"$gt": float("nan")}}, ValueError, r"finite"),
        ({"year": {"$exists": 1}}, TypeError, r"True or False"),
        ({"a..b": 1}, ValueError, r"empty part"),
        ({"": 1}, ValueError, r"empty key"),
        ({3: 1}, TypeError, r"keys must be str"),
        ({"year": b"2020"}, TypeError, r"bytes"),
        ("year", TypeError, r"filter must be a dict"),
    ],
)
def test_shapes_it_does_not_understand_raise_naming_the_problem(flt, error, message):
    with pytest.raises(error, match=message):
        compile_filter(flt)


def test_error_names_the_nested_location():
    with pytest.raises(ValueError, match=r"filter\['\$or'\]\[1\]\['year'\].*\$between"):
        compile_filter({"$or": [{"topic": "x"}, {"year": {"$between": [1, 2]}}]})


def test_retriever_applies_the_grammar(fake_embedder):
    from rerank_plugins.hybrid import HybridRetriever

    texts = [f"document about topic {i}" for i in range(len(DOCS))]
    retriever = HybridRetriever.from_texts(
        texts, metadatas=DOCS, embedder=fake_embedder, show_progress=False
    )
    hits = retriever.search("document", k=5, filter={"$or": [{"tags": "a"}, {"year": 2021}]})
    assert sorted(h.id for h in hits) == ["0", "1", "3"]
    with pytest.raises(ValueError, match=r"\$like"):
        retriever.search("document", filter={"topic": {"$like": "he%"}})
