"""Pseudo-queries for distillation: titles (or first sentences), seeded, never an eval document."""

from __future__ import annotations

import pytest

from rerank_plugins.training.pseudo import PSEUDO_PREFIX, pseudo_query_text, title_queries

CORPUS = {
    "a": {"title": "Vitamin D and fractures", "text": "We followed 400 patients."},
    "b": {"title": "", "text": "Statins lower LDL. They also reduce events."},
    "c": {"title": "  ", "text": ""},  # nothing to ask with
    "d": {"title": "Gene therapy in mice", "text": "..."},
    "e": {"title": " ".join(f"w{i}" for i in range(50)), "text": "long title"},
}


def test_the_query_is_the_title_else_the_first_sentence_capped_in_words() -> None:
    assert pseudo_query_text(CORPUS["a"]) == "Vitamin D and fractures"
    assert pseudo_query_text(CORPUS["b"]) == "Statins lower LDL."
    assert pseudo_query_text(CORPUS["c"]) == ""
    assert pseudo_query_text(CORPUS["e"]).split() == [f"w{i}" for i in range(32)]


def test_queries_are_seeded_in_corpus_order_and_skip_excluded_and_empty_documents() -> None:
    queries, qrels = title_queries(CORPUS, 10, exclude={"d"}, seed=3)
    assert list(queries) == [f"{PSEUDO_PREFIX}{d}" for d in ("a", "b", "e")]  # c: no text
    assert qrels == {f"{PSEUDO_PREFIX}{d}": {d: 1} for d in ("a", "b", "e")}
    two = title_queries(CORPUS, 2, seed=5)[0]
    assert two == title_queries(CORPUS, 2, seed=5)[0] and len(two) == 2
    order = [q.removeprefix(PSEUDO_PREFIX) for q in two]
    assert order == sorted(order, key=list(CORPUS).index)
    assert title_queries(CORPUS, 0) == ({}, {})


def test_bad_counts_and_clashing_query_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="pseudo_queries must be >= 0"):
        title_queries(CORPUS, -1)
    with pytest.raises(TypeError, match="pseudo_queries must be an int"):
        title_queries(CORPUS, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kept for pseudo-queries"):
        title_queries(CORPUS, 2, query_ids={"q1", "pseudo:q2"})
