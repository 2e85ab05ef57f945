"""CascadeReranker: every passage once, kept ones in accurate order above the rest, async = sync."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins import BaseReranker, CascadeReranker, Reranker
from rerank_plugins.rerankers.cascade import REST_GAP


class TableReranker(BaseReranker):
    """Scores each passage from a fixed table; records every batched call."""

    def __init__(self, table: dict[str, float], fail: bool = False) -> None:
        self.table = table
        self.fail = fail
        self.calls: list[tuple[list[str], list[str]]] = []

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        self.calls.append((list(queries), list(passages)))
        if self.fail:
            raise RuntimeError("fast model exploded")
        return np.array([self.table[p] for p in passages], dtype=np.float32)


class ScoreOnly:
    """A bare ScoresPassages member (no BaseReranker, no score_pairs)."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table

    def score(self, query, passages):
        return np.array([self.table[p] for p in passages], dtype=np.float32)


def _tables(n: int, seed: int) -> tuple[list[str], dict[str, float], dict[str, float]]:
    rng = np.random.default_rng(seed)
    passages = [f"p{i}" for i in range(n)]
    fast = dict(zip(passages, rng.normal(size=n).round(2).tolist(), strict=True))
    accurate = dict(zip(passages, rng.normal(size=n).round(2).tolist(), strict=True))
    return passages, fast, accurate


def _expected(passages, fast, accurate, keep):
    """The cascade's order, written out by hand: kept by accurate, then the rest by fast."""
    by_fast = sorted(range(len(passages)), key=lambda i: (-fast[passages[i]], i))
    kept, rest = by_fast[:keep], by_fast[keep:]
    kept.sort(key=lambda i: (-accurate[passages[i]], i))
    return kept + rest


@pytest.mark.parametrize(("n", "keep", "seed"), [(12, 4, 0), (30, 10, 1), (7, 1, 2), (50, 49, 3)])
def test_every_passage_once_kept_in_accurate_order_above_rest_in_fast_order(n, keep, seed):
    passages, fast, accurate = _tables(n, seed)
    cascade = CascadeReranker(TableReranker(fast), TableReranker(accurate), keep=keep)
    results = cascade.rerank("q", passages)
    assert sorted(r.index for r in results) == list(range(n))
    assert [r.index for r in results] == _expected(passages, fast, accurate, keep)
    # score() sorts the same way, kept scores are the accurate model's, rest sit below them
    scores = cascade.score("q", passages)
    assert np.argsort(-scores, kind="stable").tolist() == [r.index for r in results]
    kept = {r.index for r in results[:keep]}
    for i in kept:
        assert scores[i] == np.float32(accurate[passages[i]])
    rest = [i for i in range(n) if i not in kept]
    if rest:
        assert max(scores[rest]) == pytest.approx(min(scores[list(kept)]) - REST_GAP)
        # a constant shift: the rest's fast score differences survive
        shift = {round(float(scores[i]) - fast[passages[i]], 4) for i in rest}
        assert len(shift) == 1


def test_keep_at_or_above_n_is_the_accurate_reranker_and_skips_the_fast_pass():
    passages, fast, accurate = _tables(8, 4)
    fast_model, accurate_model = TableReranker(fast), TableReranker(accurate)
    for keep in (8, 20):
        cascade = CascadeReranker(fast_model, accurate_model, keep=keep)
        assert cascade.rerank("q", passages) == accurate_model.rerank("q", passages)
        assert cascade.score("q", passages).tolist() == accurate_model.score("q", passages).tolist()
    assert fast_model.calls == []


def test_ties_are_broken_by_input_order_at_the_cut_and_among_kept():
    passages = ["a", "b", "c", "d", "e"]
    fast = dict.fromkeys(passages, 1.0)
    accurate = dict.fromkeys(passages, 0.5)
    cascade = CascadeReranker(TableReranker(fast), TableReranker(accurate), keep=2)
    assert [r.index for r in cascade.rerank("q", passages)] == [0, 1, 2, 3, 4]
    scores = cascade.score("q", passages)
    assert scores[:2].tolist() == [0.5, 0.5] and np.all(scores[2:] < 0.5)


def test_extreme_magnitudes_keep_the_fast_order():
    # Accurate scores near 1e12: a shift would round the rest's differences of 1 away.
    passages = ["k", "x", "y", "z"]
    fast = {"k": 10.0, "x": 3.0, "y": 2.0, "z": 1.0}
    accurate = dict.fromkeys(passages, 1e12)
    cascade = CascadeReranker(TableReranker(fast), TableReranker(accurate), keep=1)
    scores = cascade.score("q", passages)
    assert np.argsort(-scores, kind="stable").tolist() == [0, 1, 2, 3]
    assert len(set(scores[1:].tolist())) == 3 and scores[1] < scores[0]


def test_bad_settings_and_members_are_rejected():
    member = TableReranker({})
    with pytest.raises(ValueError, match="keep must be >= 1, got 0"):
        CascadeReranker(member, member, keep=0)
    with pytest.raises(ValueError, match="keep must be >= 1"):
        CascadeReranker(member, member, keep=-3)
    with pytest.raises(TypeError, match="keep must be an int"):
        CascadeReranker(member, member, keep=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keep must be an int"):
        CascadeReranker(member, member, keep=True)
    with pytest.raises(ValueError, match="skip_margin"):
        CascadeReranker(member, member, skip_margin=-1.0)
    with pytest.raises(ValueError, match="skip_margin"):
        CascadeReranker(member, member, skip_margin=float("nan"))
    with pytest.raises(TypeError, match="fast must be a reranker"):
        CascadeReranker("model-name", member)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="accurate must be a reranker"):
        CascadeReranker(member, object())  # type: ignore[arg-type]


def test_a_failing_fast_model_raises_and_the_pipeline_falls_back():
    from rerank_plugins.pipeline import RerankPipeline
    from rerank_plugins.types import Hit

    passages, fast, accurate = _tables(6, 5)
    cascade = CascadeReranker(TableReranker(fast, fail=True), TableReranker(accurate), keep=2)
    with pytest.raises(RuntimeError, match="fast model exploded"):
        cascade.rerank("q", passages)

    class Fixed:
        def search(self, query, k=10):
            return [Hit(id=p, text=p, score=float(-i)) for i, p in enumerate(passages[:k])]

    result = RerankPipeline(Fixed(), cascade, candidates=6, top_k=6).run("q")
    assert not result.reranked and "fast model exploded" in result.error
    assert [h.id for h in result.hits] == passages


def test_members_that_return_the_wrong_count_or_nan_are_named():
    class Short(BaseReranker):
        def _score_checked(self, queries, passages):
            return np.zeros(len(passages) - 1, dtype=np.float32)

    class NaN(BaseReranker):
        def _score_checked(self, queries, passages):
            return np.full(len(passages), np.nan, dtype=np.float32)

    good = TableReranker(dict.fromkeys("abc", 1.0))
    with pytest.raises(ValueError, match="fast reranker returned 2 scores for 3 pairs"):
        CascadeReranker(Short(), good, keep=1).score("q", ["a", "b", "c"])
    with pytest.raises(ValueError, match="accurate reranker returned non-finite"):
        CascadeReranker(good, NaN(), keep=1).score("q", ["a", "b", "c"])


def test_many_queries_share_one_call_per_member_and_match_rerank():
    p1, fast1, acc1 = _tables(9, 6)
    p2 = [f"r{i}" for i in range(5)]
    fast = {**fast1, **{p: float(i) for i, p in enumerate(p2)}}
    accurate = {**acc1, **{p: float(-i) for i, p in enumerate(p2)}}
    fast_model, accurate_model = TableReranker(fast), TableReranker(accurate)
    cascade = CascadeReranker(fast_model, accurate_model, keep=3)
    many = cascade.rerank_many(["q1", "q2"], [p1, p2])
    assert len(fast_model.calls) == 1 and len(accurate_model.calls) == 1
    assert len(fast_model.calls[0][1]) == 14 and len(accurate_model.calls[0][1]) == 6
    assert many == [cascade.rerank("q1", p1), cascade.rerank("q2", p2)]
    # score_pairs with interleaved queries groups each query's pairs
    pairs = [
        ("q2", p2[0]),
        ("q1", p1[0]),
        *[("q1", p) for p in p1[1:]],
        *[("q2", p) for p in p2[1:]],
    ]
    flat = cascade.score_pairs(pairs)
    assert flat[1:10].tolist() == cascade.score("q1", p1).tolist()
    assert [flat[0], *flat[10:]] == cascade.score("q2", p2).tolist()


def test_members_with_only_score_work():
    passages, fast, accurate = _tables(10, 7)
    cascade = CascadeReranker(ScoreOnly(fast), ScoreOnly(accurate), keep=4)
    assert [r.index for r in cascade.rerank("q", passages)] == _expected(
        passages, fast, accurate, 4
    )


async def test_async_equals_sync():
    passages, fast, accurate = _tables(15, 8)
    cascade = CascadeReranker(TableReranker(fast), TableReranker(accurate), keep=5)
    assert isinstance(cascade, Reranker)
    assert (await cascade.ascore("q", passages)).tolist() == cascade.score("q", passages).tolist()
    assert await cascade.arerank("q", passages, top_n=7) == cascade.rerank("q", passages, top_n=7)
    lists = [passages[:9], passages[9:]]
    assert await cascade.arerank_many(["a", "b"], lists) == cascade.rerank_many(["a", "b"], lists)
    bare = CascadeReranker(ScoreOnly(fast), ScoreOnly(accurate), keep=5)
    assert (await bare.ascore("q", passages)).tolist() == cascade.score("q", passages).tolist()


def test_skip_margin_skips_the_accurate_pass_only_for_a_clear_fast_winner():
    clear = {"a": 9.0, "b": 2.0, "c": 1.5, "d": 1.0}
    close = {"w": 3.0, "x": 2.9, "y": 1.0, "z": 0.5}
    accurate_table = {p: -v for p, v in {**clear, **close}.items()}
    accurate = TableReranker(accurate_table)
    cascade = CascadeReranker(TableReranker({**clear, **close}), accurate, keep=2, skip_margin=5.0)
    many = cascade.rerank_many(["clear", "close"], [list(clear), list(close)])
    assert [r.passage for r in many[0]] == ["a", "b", "c", "d"]  # fast order, fast scores
    assert [r.score for r in many[0]] == list(clear.values())
    assert [r.passage for r in many[1]] == ["x", "w", "y", "z"]  # re-scored by accurate
    assert accurate.calls == [(["close", "close"], ["w", "x"])]
    assert cascade.stats == {"queries": 2, "skipped": 1, "fast_pairs": 8, "accurate_pairs": 2}
    # off by default: the clear query is re-scored too
    default = CascadeReranker(TableReranker(clear), TableReranker(accurate_table), keep=2)
    assert [r.passage for r in default.rerank("clear", list(clear))] == ["b", "a", "c", "d"]


def test_eval_scores_each_depth_with_its_own_cascade_call():
    from rerank_plugins.evaluation.beir import BeirDataset
    from rerank_plugins.evaluation.runner import evaluate_settings
    from rerank_plugins.types import Hit

    docs = [f"doc{i}" for i in range(8)]
    fast = {d: float(i) for i, d in enumerate(docs)}  # fast favours late documents
    accurate = {d: float(-i) for i, d in enumerate(docs)}  # accurate favours early ones

    class Fixed:
        def search(self, query, k=10):
            return [Hit(id=d, text=d, score=float(-i)) for i, d in enumerate(docs[:k])]

    dataset = BeirDataset(
        corpus={d: {"title": "", "text": d} for d in docs},
        queries={"q": "q"},
        qrels={"q": {"doc4": 1}},
    )
    cascade = CascadeReranker(TableReranker(fast), TableReranker(accurate), keep=2)
    rows = evaluate_settings(
        dataset, Fixed(), reranker=cascade, candidates=8, depths=(5, 8), latency="estimated"
    )
    # depth 5: the cascade over doc0..doc4 keeps doc4, doc3 and ranks doc3 first, doc4 second.
    # Reusing the depth-8 call's scores (which kept doc7, doc6) would rank doc0..doc4 by
    # their fast scores alone: doc4 first, NDCG@10 1.0.
    ndcg = {row["depth"]: row["metrics"]["ndcg@10"] for row in rows}
    assert ndcg[5] == pytest.approx(1 / np.log2(3))
    assert [r.passage for r in cascade.rerank("q", docs[:5])] == [
        "doc3",
        "doc4",
        "doc2",
        "doc1",
        "doc0",
    ]
    assert all(row["latency_ms"]["rerank"]["p50"] > 0 for row in rows if row["depth"])


def test_with_real_tiny_cross_encoders(tiny_ce_path):
    from rerank_plugins import CrossEncoderReranker

    passages = [
        "vitamin d deficiency raises fracture risk",
        "the cell grows",
        "brain tumor growth in mice",
        "blood levels of vitamin d",
        "gene expression in the heart",
        "immune response to infection",
    ]
    fast = CrossEncoderReranker(tiny_ce_path, device="cpu", max_length=32)
    accurate = CrossEncoderReranker(tiny_ce_path, device="cpu")
    cascade = CascadeReranker(fast, accurate, keep=3)
    f, a = fast.score("vitamin d", passages), accurate.score("vitamin d", passages)
    table_f = dict(zip(passages, f.tolist(), strict=True))
    table_a = dict(zip(passages, a.tolist(), strict=True))
    got = [r.index for r in cascade.rerank("vitamin d", passages)]
    assert got == _expected(passages, table_f, table_a, 3)


def test_empty_candidates_call_no_member():
    fast, accurate = TableReranker({}), TableReranker({})
    cascade = CascadeReranker(fast, accurate, keep=3)
    assert cascade.rerank("q", []) == []
    assert cascade.score("q", []).shape == (0,)
    assert fast.calls == [] and accurate.calls == []
