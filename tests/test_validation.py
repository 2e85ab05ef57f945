"""Inputs the core refuses with an error that names the problem (issue 15, item 7)."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins import BaseReranker
from rerank_plugins._validation import check_passages, check_query


class Lengths(BaseReranker):
    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        return np.array([len(p) for p in passages], dtype=np.float32)


@pytest.mark.parametrize(
    "passages", [{"a": 1, "bb": 2}, {"a", "bb"}, frozenset({"a"}), {"a": "x"}.keys()]
)
def test_unordered_passages_are_rejected(passages):
    with pytest.raises(TypeError, match="sequence of str"):
        Lengths().rerank("q", passages)


def test_sequences_and_generators_still_work():
    assert [r.index for r in Lengths().rerank("q", ("a", "ccc", "bb"))] == [1, 2, 0]
    assert len(Lengths().rerank("q", (p for p in ["a", "b"]))) == 2
    with pytest.raises(TypeError, match="got int"):
        check_passages(3)


@pytest.mark.parametrize(
    "query", ["\u200b", "\u200b\u200c\u200d\ufeff", " \u2060 ", "\u00ad", "\x00\x01", "\u3164"]
)
def test_invisible_queries_are_rejected(query):
    with pytest.raises(ValueError, match="invisible"):
        check_query(query)
    with pytest.raises(ValueError, match="query"):
        Lengths().rerank(query, ["a"])


def test_visible_queries_with_invisible_characters_pass():
    assert check_query("vitamin\u200bd") == "vitamin\u200bd"
    assert check_query("é") == "é"
    assert check_query("日本") == "日本"


def test_lone_surrogates_are_named_with_their_position():
    with pytest.raises(ValueError, match=r"query has a lone surrogate '\\ud800' at position 3"):
        check_query("abc\ud800def")
    with pytest.raises(ValueError, match=r"passages\[1\] has a lone surrogate .* at position 0"):
        Lengths().score("q", ["fine", "\udc80tail"])
    with pytest.raises(ValueError, match=r"pairs\[0\]\[1\] has a lone surrogate"):
        Lengths().score_pairs([("q", "x\udfff")])
    assert check_query("emoji \U0001f600") == "emoji \U0001f600"  # a real pair is fine
