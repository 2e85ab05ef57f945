"""NDCG / MRR / Recall at k: hand-computed cases and agreement with ranx."""

from __future__ import annotations

import math
import random

import pytest

from rerank_plugins.evaluation import evaluate, mrr_at_k, ndcg_at_k, recall_at_k
from rerank_plugins.evaluation.metrics import mrr_per_query, ndcg_per_query, recall_per_query


def log2(x: float) -> float:
    return math.log2(x)


# ----------------------------------------------------------------------------- hand-computed
def test_graded_ndcg_by_hand() -> None:
    qrels = {"q": {"d1": 2, "d2": 1, "d3": 0}}
    run = {"q": {"d3": 0.9, "d2": 0.8, "d1": 0.7, "d4": 0.1}}
    # ranking d3 (0), d2 (1), d1 (2): DCG = 1/log2(3) + 2/log2(4); ideal = 2/1 + 1/log2(3)
    dcg = 1 / log2(3) + 2 / log2(4)
    idcg = 2 / 1 + 1 / log2(3)
    assert ndcg_at_k(run, qrels, 10) == pytest.approx(dcg / idcg, abs=1e-12)
    # @1: d3 has gain 0
    assert ndcg_at_k(run, qrels, 1) == 0.0
    # @2: DCG = 1/log2(3); ideal@2 = 2 + 1/log2(3)
    assert ndcg_at_k(run, qrels, 2) == pytest.approx((1 / log2(3)) / (2 + 1 / log2(3)))
    assert mrr_at_k(run, qrels, 10) == pytest.approx(0.5)
    assert mrr_at_k(run, qrels, 1) == 0.0
    assert recall_at_k(run, qrels, 2) == pytest.approx(0.5)
    assert recall_at_k(run, qrels, 3) == pytest.approx(1.0)


def test_perfect_ranking_is_one() -> None:
    qrels = {"q": {"a": 3, "b": 2, "c": 1}}
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "x": 0.5}}
    assert evaluate(run, qrels) == {
        "ndcg@10": 1.0,
        "mrr@10": 1.0,
        "recall@10": 1.0,
        "recall@100": 1.0,
    }


def test_ties_break_by_doc_id_descending_like_trec_eval() -> None:
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    # equal scores -> c, b, a: the relevant doc is third
    assert mrr_at_k(run, qrels, 10) == pytest.approx(1 / 3)
    assert ndcg_at_k(run, qrels, 10) == pytest.approx(1 / log2(4))
    assert recall_at_k(run, qrels, 2) == 0.0
    # ids compare as strings, not numbers: "9" > "10"
    run = {"q": {"10": 1.0, "9": 1.0}}
    assert mrr_per_query(run, {"q": {"10": 1}}, 10)["q"] == pytest.approx(0.5)
    # a prefix sorts below its extensions: "ab" > "a" so "ab" comes first
    run = {"q": {"a": 1.0, "ab": 1.0}}
    assert mrr_per_query(run, {"q": {"a": 1}}, 10)["q"] == pytest.approx(0.5)


def test_query_without_relevant_documents_is_not_averaged() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}}
    run = {"q1": {"a": 1.0}, "q2": {"b": 1.0}}
    assert set(ndcg_per_query(run, qrels, 10)) == {"q1"}
    assert ndcg_at_k(run, qrels, 10) == 1.0
    assert mrr_at_k(run, qrels, 10) == 1.0
    assert recall_at_k(run, qrels, 10) == 1.0


def test_no_judged_query_at_all_gives_zero() -> None:
    assert evaluate({"q": {"a": 1.0}}, {"q": {"a": 0}}) == {
        "ndcg@10": 0.0,
        "mrr@10": 0.0,
        "recall@10": 0.0,
        "recall@100": 0.0,
    }


def test_k_larger_than_the_list() -> None:
    qrels = {"q": {"a": 1, "z": 1}}
    run = {"q": {"b": 2.0, "a": 1.0}}
    # only two results: DCG = 1/log2(3); ideal (2 relevant) = 1 + 1/log2(3)
    assert ndcg_at_k(run, qrels, 1000) == pytest.approx((1 / log2(3)) / (1 + 1 / log2(3)))
    assert recall_at_k(run, qrels, 1000) == pytest.approx(0.5)
    assert mrr_at_k(run, qrels, 1000) == pytest.approx(0.5)


def test_query_missing_from_run_counts_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0}}
    assert ndcg_per_query(run, qrels, 10) == {"q1": 1.0, "q2": 0.0}
    assert ndcg_at_k(run, qrels, 10) == pytest.approx(0.5)
    assert mrr_at_k(run, qrels, 10) == pytest.approx(0.5)
    assert recall_at_k(run, qrels, 10) == pytest.approx(0.5)


def test_run_query_missing_from_qrels_is_ignored() -> None:
    qrels = {"q1": {"a": 1}}
    run = {"q1": {"a": 1.0}, "extra": {"x": 1.0}}
    assert recall_per_query(run, qrels, 10) == {"q1": 1.0}


def test_negative_relevance_counts_as_not_relevant() -> None:
    qrels = {"q": {"a": -1, "b": 1}}
    run = {"q": {"a": 2.0, "b": 1.0}}
    assert mrr_at_k(run, qrels, 10) == pytest.approx(0.5)
    assert ndcg_at_k(run, qrels, 10) == pytest.approx(1 / log2(3))
    assert recall_at_k(run, qrels, 10) == 1.0


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k_is_rejected(k) -> None:
    with pytest.raises(ValueError, match="k must be a positive int"):
        ndcg_at_k({}, {}, k)


# ----------------------------------------------------------------------------- vs ranx
def _random_case(seed: int, *, ties: bool) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 8))
        qrels[qid] = {doc: rng.randint(1, 3) for doc in judged}
        if rng.random() < 0.3:  # some judged non-relevant documents too
            qrels[qid][rng.choice(docs)] = 0
        if not any(r > 0 for r in qrels[qid].values()):
            qrels[qid][judged[0]] = 1
        retrieved = rng.sample(docs, rng.randint(5, 40))
        if ties:
            scores = {doc: float(rng.randint(0, 4)) for doc in retrieved}
        else:
            scores = {doc: rng.random() for doc in retrieved}
        run[qid] = scores
    return run, qrels


def _ranx_scores(run: dict, qrels: dict, metrics: list[str]) -> dict[str, float]:
    ranx = pytest.importorskip("ranx")
    # ranx's order among equal scores is its sort's (numba, not stable), not trec_eval's; give
    # ranx distinct scores that spell out the trec_eval order (score desc, then doc id desc).
    ordered = {}
    for qid, scores in run.items():
        ranked = sorted(scores, key=lambda d: (scores[d], d), reverse=True)
        ordered[qid] = {doc: float(len(ranked) - i) for i, doc in enumerate(ranked)}
    judged = {qid: {d: r for d, r in docs.items() if r > 0} for qid, docs in qrels.items()}
    return ranx.evaluate(ranx.Qrels(judged), ranx.Run(ordered), metrics)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_ranx(seed: int, ties: bool) -> None:
    run, qrels = _random_case(seed, ties=ties)
    names = ["ndcg@10", "ndcg@5", "mrr@10", "recall@10", "recall@100", "ndcg@100"]
    theirs = _ranx_scores(run, qrels, names)
    ours = {
        "ndcg@10": ndcg_at_k(run, qrels, 10),
        "ndcg@5": ndcg_at_k(run, qrels, 5),
        "ndcg@100": ndcg_at_k(run, qrels, 100),
        "mrr@10": mrr_at_k(run, qrels, 10),
        "recall@10": recall_at_k(run, qrels, 10),
        "recall@100": recall_at_k(run, qrels, 100),
    }
    for name in names:
        assert ours[name] == pytest.approx(float(theirs[name]), abs=1e-6), name


def test_tie_order_does_not_depend_on_insertion_order() -> None:
    qrels = {"q": {"a": 1}}
    forward = {"q": {"a": 1.0, "b": 1.0}}
    backward = {"q": {"b": 1.0, "a": 1.0}}
    assert mrr_at_k(forward, qrels, 10) == mrr_at_k(backward, qrels, 10) == pytest.approx(0.5)
    assert float(_ranx_scores(forward, qrels, ["mrr@10"])) == pytest.approx(0.5)
