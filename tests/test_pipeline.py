"""RerankPipeline: ordering, fallbacks, blending, timings — with stand-in stages."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from rerank_plugins.pipeline import PipelineResult, RerankPipeline
from rerank_plugins.types import Hit

DOCS = {
    "d1": "apples are red",
    "d2": "bananas are yellow",
    "d3": "cherries are red and small",
    "d4": "dates are brown",
    "d5": "elderberries are dark",
}


class ListRetriever:
    """First stage that returns DOCS in a fixed order with decreasing scores."""

    def __init__(self, order=("d1", "d2", "d3", "d4", "d5")) -> None:
        self.order = order
        self.calls: list[tuple[str, int]] = []

    def search(self, query: str, k: int = 10) -> list[Hit]:
        self.calls.append((query, k))
        return [
            Hit(id=doc, text=DOCS[doc], score=float(10 - i), metadata={"pos": i})
            for i, doc in enumerate(self.order[:k])
        ]


class LengthReranker:
    """Scores a passage by its length: deterministic and easy to reason about."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.seen: list[list[str]] = []

    def score(self, query, passages):
        self.seen.append(list(passages))
        if self.fail:
            raise RuntimeError("model exploded")
        time.sleep(self.delay)
        return np.array([len(p) for p in passages], dtype=np.float32)

    def score_pairs(self, pairs):
        if self.fail:
            raise RuntimeError("model exploded")
        time.sleep(self.delay)
        return np.array([len(p) for _, p in pairs], dtype=np.float32)


def test_run_reorders_by_reranker_and_keeps_first_stage_scores():
    pipeline = RerankPipeline(ListRetriever(), LengthReranker(), candidates=5, top_k=5)
    result = pipeline.run("fruit")
    assert isinstance(result, PipelineResult)
    assert result.reranked and result.error is None
    assert [h.id for h in result.hits] == ["d3", "d5", "d2", "d4", "d1"]
    assert [h.rerank_score for h in result.hits] == [len(DOCS[h.id]) for h in result.hits]
    assert result.hits[0].retrieval_score == 8.0  # d3 was third in the first stage
    assert result.hits[0].metadata == {"pos": 2}
    assert set(result.timings) == {"retrieve_s", "rerank_s", "total_s"}
    assert result.timings["total_s"] >= result.timings["rerank_s"] >= 0


def test_top_k_and_candidates_are_applied():
    retriever = ListRetriever()
    pipeline = RerankPipeline(retriever, LengthReranker(), candidates=3, top_k=2)
    result = pipeline.run("q")
    assert retriever.calls == [("q", 3)]
    assert [h.id for h in result.hits] == ["d3", "d2"]


def test_rerank_top_scores_only_the_head_and_keeps_tail_below_in_order():
    reranker = LengthReranker()
    pipeline = RerankPipeline(ListRetriever(), reranker, candidates=5, rerank_top=2, top_k=5)
    result = pipeline.run("q")
    assert reranker.seen == [[DOCS["d1"], DOCS["d2"]]]
    assert [h.id for h in result.hits] == ["d2", "d1", "d3", "d4", "d5"]
    assert result.hits[2].rerank_score is None


def test_failure_falls_back_to_first_stage_order():
    pipeline = RerankPipeline(ListRetriever(), LengthReranker(fail=True), candidates=5, top_k=3)
    result = pipeline.run("q")
    assert not result.reranked
    assert "model exploded" in result.error
    assert [h.id for h in result.hits] == ["d1", "d2", "d3"]


def test_timeout_falls_back_without_losing_the_query():
    pipeline = RerankPipeline(
        ListRetriever(), LengthReranker(delay=1.0), candidates=5, top_k=5, rerank_timeout=0.05
    )
    start = time.perf_counter()
    result = pipeline.run("q")
    assert time.perf_counter() - start < 0.9
    assert not result.reranked and "rerank_timeout" in result.error
    assert [h.id for h in result.hits] == ["d1", "d2", "d3", "d4", "d5"]
    pipeline.close()


def test_blend_weight_mixes_normalised_scores():
    # Full weight on the first stage gives back first-stage order; zero weight is pure rerank.
    first = RerankPipeline(ListRetriever(), LengthReranker(), candidates=5, blend_weight=1.0)
    assert [h.id for h in first.run("q").hits] == ["d1", "d2", "d3", "d4", "d5"]
    pure = RerankPipeline(ListRetriever(), LengthReranker(), candidates=5, blend_weight=0.0)
    assert [h.id for h in pure.run("q").hits] == ["d3", "d5", "d2", "d4", "d1"]
    half = RerankPipeline(ListRetriever(), LengthReranker(), candidates=5, blend_weight=0.5)
    hits = half.run("q").hits
    lengths = np.array([len(DOCS[d]) for d in ("d1", "d2", "d3", "d4", "d5")], dtype=float)
    first_scores = np.array([10, 9, 8, 7, 6], dtype=float)
    expected = 0.5 * (lengths - lengths.min()) / np.ptp(lengths) + 0.5 * (
        first_scores - first_scores.min()
    ) / np.ptp(first_scores)
    by_id = dict(zip(("d1", "d2", "d3", "d4", "d5"), expected, strict=True))
    for hit in hits:
        assert hit.score == pytest.approx(by_id[hit.id])


def test_blend_weight_recommended_reads_the_tuned_models_report(tmp_path):
    (tmp_path / "training_report.json").write_text(
        '{"evaluation": {"recommended_blend_weight": 0.5}}', encoding="utf-8"
    )
    reranker = LengthReranker()
    reranker.model_name = str(tmp_path)  # as CrossEncoderReranker keeps its directory
    tuned = RerankPipeline(ListRetriever(), reranker, candidates=5, blend_weight="recommended")
    half = RerankPipeline(ListRetriever(), LengthReranker(), candidates=5, blend_weight=0.5)
    assert tuned.blend_weight == 0.5
    assert [(h.id, h.score) for h in tuned.run("q").hits] == [
        (h.id, h.score) for h in half.run("q").hits
    ]
    with pytest.raises(ValueError, match="needs a reranker loaded from a local model directory"):
        RerankPipeline(ListRetriever(), LengthReranker(), blend_weight="recommended")


def test_function_first_stage_with_tuples():
    def search(query, k):
        return [("a", "short", 1.0), ("b", "a much longer passage", 0.5, {"src": "x"})][:k]

    result = RerankPipeline(search, LengthReranker(), candidates=2).run("q")
    assert [h.id for h in result.hits] == ["b", "a"]
    assert result.hits[0].metadata == {"src": "x"}


def test_bad_first_stage_results_and_queries_raise():
    with pytest.raises(TypeError, match="first-stage result 0"):
        RerankPipeline(lambda q, k: [object()], LengthReranker()).run("q")
    pipeline = RerankPipeline(ListRetriever(), LengthReranker())
    with pytest.raises(ValueError, match="empty"):
        pipeline.run("   ")
    with pytest.raises(ValueError, match="top_k"):
        RerankPipeline(ListRetriever(), LengthReranker(), top_k=0)
    with pytest.raises(ValueError, match="blend_weight"):
        RerankPipeline(ListRetriever(), LengthReranker(), blend_weight=1.5)


def test_run_many_matches_run_and_falls_back_together():
    pipeline = RerankPipeline(ListRetriever(), LengthReranker(), candidates=4, top_k=3)
    many = pipeline.run_many(["q1", "q2"])
    single = [pipeline.run("q1"), pipeline.run("q2")]
    assert [[h.id for h in r.hits] for r in many] == [[h.id for h in r.hits] for r in single]
    assert [r.query for r in many] == ["q1", "q2"]
    failing = RerankPipeline(ListRetriever(), LengthReranker(fail=True), candidates=4, top_k=2)
    results = failing.run_many(["q1", "q2"])
    assert all(not r.reranked for r in results)
    assert [[h.id for h in r.hits] for r in results] == [["d1", "d2"], ["d1", "d2"]]


def test_arun_equals_run():
    pipeline = RerankPipeline(ListRetriever(), LengthReranker(), candidates=5)
    sync = pipeline.run("q")
    result = asyncio.run(pipeline.arun("q"))
    assert [h.id for h in result.hits] == [h.id for h in sync.hits]


def test_with_real_tiny_cross_encoder(tiny_reranker):
    pipeline = RerankPipeline(ListRetriever(), tiny_reranker, candidates=5, top_k=5)
    result = pipeline.run("red fruit")
    expected = tiny_reranker.rerank("red fruit", [DOCS[d] for d in ("d1", "d2", "d3", "d4", "d5")])
    assert [h.text for h in result.hits] == [r.passage for r in expected]
    assert [h.rerank_score for h in result.hits] == pytest.approx([r.score for r in expected])


class DepthRetriever(ListRetriever):
    """A first stage whose search/search_many take HybridRetriever's ``candidates`` keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.depths: list[int | None] = []

    def search(self, query: str, k: int = 10, *, candidates: int | None = None) -> list[Hit]:
        self.depths.append(candidates)
        return super().search(query, k)

    def search_many(self, queries, k: int = 10, *, candidates: int | None = None):
        self.depths.append(candidates)
        return [super(DepthRetriever, self).search(q, k) for q in queries]


def test_retriever_depth_is_forwarded_to_search_and_search_many():
    retriever = DepthRetriever()
    pipeline = RerankPipeline(retriever, LengthReranker(), candidates=4, retriever_depth=7)
    single = pipeline.run("q")
    many = pipeline.run_many(["q", "r"])
    assert retriever.depths == [7, 7]
    assert [h.id for h in many[0].hits] == [h.id for h in single.hits]
    RerankPipeline(retriever, LengthReranker(), candidates=4).run("q")
    assert retriever.depths[-1] is None  # unset: the retriever's own default applies


def test_retriever_depth_needs_a_search_that_takes_candidates():
    with pytest.raises(TypeError, match="candidates"):
        RerankPipeline(ListRetriever(), LengthReranker(), retriever_depth=10)
    with pytest.raises(TypeError, match="candidates"):
        RerankPipeline(lambda q, k: [], LengthReranker(), retriever_depth=10)
    for bad in (0, -3, 99):  # below candidates=100 the first stage would pad with unranked docs
        with pytest.raises(ValueError, match=r"retriever_depth=-?\d+ is below candidates=100"):
            RerankPipeline(DepthRetriever(), LengthReranker(), retriever_depth=bad)
    with pytest.raises(TypeError, match="retriever_depth"):
        RerankPipeline(DepthRetriever(), LengthReranker(), retriever_depth=2.5)


def test_retriever_depth_changes_which_hybrid_candidates_reach_the_reranker(fake_embedder):
    from rerank_plugins.hybrid import HybridRetriever

    texts = [f"alpha {i} " + "beta " * (i % 5) + f"gamma{i % 7}" for i in range(40)]
    hybrid = HybridRetriever.from_texts(texts, embedder=fake_embedder, show_progress=False)
    query = "alpha beta gamma3"
    for depth in (3, 5, 40):
        pipeline = RerankPipeline(
            hybrid, LengthReranker(), candidates=3, top_k=3, retriever_depth=depth
        )
        expected = hybrid.search(query, 3, candidates=depth)
        assert [h.id for h in pipeline.retrieve(query)] == [h.id for h in expected]
    shallow = {h.id for h in hybrid.search(query, 3, candidates=1)}
    deep = {h.id for h in hybrid.search(query, 3, candidates=40)}
    assert shallow != deep  # depth 1 fuses two single-document lists


class HitsWithoutRetrievalScore(ListRetriever):
    """A batched first stage returning bare Hits (no ``retrieval_score``)."""

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return [Hit(id=h.id, text=h.text, score=h.score) for h in super().search(query, k)]

    def search_many(self, queries, k: int = 10):
        return [self.search(q, k) for q in queries]


def test_run_many_blends_with_first_stage_scores_like_run():
    pipeline = RerankPipeline(
        HitsWithoutRetrievalScore(), LengthReranker(), candidates=5, top_k=5, blend_weight=1.0
    )
    single = pipeline.run("q")
    batched = pipeline.run_many(["q"])[0]
    # weight 1: the first stage's own order, in both paths
    assert [h.id for h in single.hits] == ["d1", "d2", "d3", "d4", "d5"]
    assert [h.id for h in batched.hits] == [h.id for h in single.hits]
    assert [h.retrieval_score for h in batched.hits] == [10.0, 9.0, 8.0, 7.0, 6.0]


class FilteringRetriever(ListRetriever):
    """First stage with a per-call ``filter=`` (drops the ids it names) and a batched path."""

    def __init__(self) -> None:
        super().__init__()
        self.filters: list[object] = []
        self.batched = 0

    def search(self, query: str, k: int = 10, *, filter=None) -> list[Hit]:
        self.filters.append(filter)
        hits = super().search(query, k=len(self.order))
        drop = set((filter or {}).get("drop", ()))
        return [h for h in hits if h.id not in drop][:k]

    def search_many(self, queries, k: int = 10, *, filter=None):
        self.batched += 1
        return [self.search(q, k=k, filter=filter) for q in queries]


def test_search_kwargs_reach_this_call_only():
    retriever = FilteringRetriever()
    pipeline = RerankPipeline(retriever, LengthReranker(), candidates=5, top_k=5)
    filtered = pipeline.run("q", search_kwargs={"filter": {"drop": ["d3"]}})
    assert "d3" not in [h.id for h in filtered.hits] and len(filtered.hits) == 4
    plain = pipeline.run("q")
    assert "d3" in [h.id for h in plain.hits]
    assert retriever.filters == [{"drop": ["d3"]}, None]


def test_search_kwargs_in_run_many_arun_and_arun_many():
    retriever = FilteringRetriever()
    pipeline = RerankPipeline(retriever, LengthReranker(), candidates=5, top_k=5)
    kwargs = {"filter": {"drop": ["d1", "d5"]}}
    many = pipeline.run_many(["a", "b"], search_kwargs=kwargs)
    assert retriever.batched == 1  # still one batched first-stage call
    one = asyncio.run(pipeline.arun("a", search_kwargs=kwargs))
    amany = asyncio.run(pipeline.arun_many(["a", "b"], search_kwargs=kwargs))
    for result in [*many, one, *amany]:
        assert sorted(h.id for h in result.hits) == ["d2", "d3", "d4"]
    assert [h.id for h in one.hits] == [h.id for h in many[0].hits]


def test_concurrent_queries_keep_their_own_search_kwargs():
    retriever = FilteringRetriever()
    pipeline = RerankPipeline(retriever, LengthReranker(delay=0.01), candidates=5, top_k=5)

    async def both():
        return await asyncio.gather(
            *(
                pipeline.arun(f"q{i}", search_kwargs={"filter": {"drop": [f"d{i}"]}})
                for i in range(1, 6)
            )
        )

    for i, result in enumerate(asyncio.run(both()), start=1):
        assert f"d{i}" not in {h.id for h in result.hits} and len(result.hits) == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"filtr": {}}, TypeError, "'filtr', which FilteringRetriever.search does not take"),
        ({"k": 3}, ValueError, "may not set 'k'"),
        ({"candidates": 3}, ValueError, "may not set 'candidates'"),
        ([("filter", {})], TypeError, "search_kwargs must be a mapping"),
        ([], TypeError, "search_kwargs must be a mapping, got list"),  # empty, still refused
    ],
)
def test_bad_search_kwargs_name_the_problem(kwargs, error, message):
    pipeline = RerankPipeline(FilteringRetriever(), LengthReranker(), candidates=5)
    with pytest.raises(error, match=message):
        pipeline.run("q", search_kwargs=kwargs)


def test_search_kwargs_need_a_search_method():
    pipeline = RerankPipeline(lambda q, k: [("d1", "x", 1.0)], LengthReranker(), candidates=1)
    with pytest.raises(TypeError, match="plain function first stage"):
        pipeline.run("q", search_kwargs={"filter": {}})
    assert pipeline.run("q", search_kwargs={}).hits[0].id == "d1"  # empty is no kwargs
