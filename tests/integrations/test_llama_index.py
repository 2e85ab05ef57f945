"""LlamaIndex adapters: the cross-encoder postprocessor, the hybrid retriever, a query engine."""

from __future__ import annotations

import asyncio
import copy

import pytest

pytest.importorskip("llama_index.core")

from integration_corpus import (
    CORPUS,
    QUERY,
    AsyncOnlyReranker,
    HashEmbedder,
    OverlapReranker,
    count_pipeline_builds,
)
from llama_index.core import Settings
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import (
    ReRankEndEvent,
    ReRankStartEvent,
)
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

from rerank_plugins.integrations.llama_index import CrossEncoderRerank, HybridRetriever


@pytest.fixture()
def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(id_=doc_id, text=text, metadata={"topic": topic, "n": i}),
            score=1.0 / (i + 1),
        )
        for i, (doc_id, text, topic) in enumerate(CORPUS)
    ]


@pytest.fixture()
def rerank(tiny_reranker) -> CrossEncoderRerank:
    return CrossEncoderRerank(reranker=tiny_reranker, top_n=5)


@pytest.fixture()
def mock_settings():
    old_llm, old_embed = Settings._llm, Settings._embed_model
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    yield
    Settings._llm, Settings._embed_model = old_llm, old_embed


def _ids(scored: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in scored]


def _texts(scored: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in scored]


# ----------------------------------------------------------------------- CrossEncoderRerank
def test_rerank_matches_core_reranker(rerank, tiny_reranker, nodes):
    expected = tiny_reranker.rerank(QUERY, _texts(nodes), top_n=5)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert _ids(out) == [nodes[r.index].node.node_id for r in expected]
    assert [n.score for n in out] == [r.score for r in expected]
    assert all(type(n.score) is float for n in out)
    assert CrossEncoderRerank.class_name() == "CrossEncoderRerank"
    assert rerank.model == tiny_reranker.model_name


def test_rerank_copies_nodes_and_keeps_retrieval_score(rerank, nodes):
    before = copy.deepcopy(nodes)
    out = rerank.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [(n.node.node_id, n.score, n.node.metadata) for n in nodes] == [
        (n.node.node_id, n.score, n.node.metadata) for n in before
    ]
    by_id = {n.node.node_id: n for n in nodes}
    for scored in out:
        original = by_id[scored.node.node_id]
        assert scored is not original and scored.node is not original.node
        assert scored.node.get_content() == original.node.get_content()
        assert scored.node.metadata["retrieval_score"] == original.score
        assert scored.node.metadata["topic"] == original.node.metadata["topic"]
        # The added score never leaks into what a model or an LLM reads.
        assert "retrieval_score" not in scored.node.get_content(metadata_mode=MetadataMode.EMBED)
        assert "retrieval_score" not in scored.node.get_content(metadata_mode=MetadataMode.LLM)


def test_rerank_top_n_and_threshold(tiny_reranker, nodes):
    scores = sorted(tiny_reranker.score(QUERY, _texts(nodes)), reverse=True)
    assert len(
        CrossEncoderRerank(reranker=tiny_reranker, top_n=None).postprocess_nodes(
            nodes, query_str=QUERY
        )
    ) == len(nodes)
    assert (
        len(
            CrossEncoderRerank(reranker=tiny_reranker, top_n=2).postprocess_nodes(
                nodes, query_str=QUERY
            )
        )
        == 2
    )
    threshold = float(scores[4])
    kept = CrossEncoderRerank(
        reranker=tiny_reranker, top_n=None, score_threshold=threshold
    ).postprocess_nodes(nodes, query_str=QUERY)
    assert len(kept) == sum(s >= threshold for s in scores)
    assert all(n.score >= threshold for n in kept)


def test_rerank_needs_a_query(rerank, nodes):
    with pytest.raises(ValueError, match="query"):
        rerank.postprocess_nodes(nodes)
    with pytest.raises(ValueError):
        rerank.postprocess_nodes(nodes, query_str="  ")
    assert rerank.postprocess_nodes([], query_str=QUERY) == []


def test_rerank_builds_model_lazily_once(tiny_ce_path, rerank, nodes):
    lazy = CrossEncoderRerank(model=tiny_ce_path, device="cpu", top_n=5)
    assert lazy.model == str(tiny_ce_path)
    out = lazy.postprocess_nodes(nodes, query_str=QUERY)
    first = lazy.reranker
    lazy.postprocess_nodes(nodes, query_str=QUERY)
    assert lazy.reranker is first
    assert _ids(out) == _ids(rerank.postprocess_nodes(nodes, query_str=QUERY))


def test_rerank_emits_instrumentation_events(rerank, nodes):
    class Collector(BaseEventHandler):
        events: list = Field(default_factory=list)

        @classmethod
        def class_name(cls) -> str:
            return "Collector"

        def handle(self, event, **kwargs) -> None:
            if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
                self.events.append(event)

    root = get_dispatcher()
    handler = Collector()
    root.add_event_handler(handler)
    try:
        out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    finally:
        root.event_handlers.remove(handler)
    start, end = handler.events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.top_n == 5 and start.model_name == rerank.model
    assert len(start.nodes) == len(nodes)
    assert _ids(end.nodes) == _ids(out)


async def test_rerank_async_equals_sync(rerank, nodes):
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    queries = [QUERY, "tumor growth in mice", "immune response to virus infection"]
    results = await asyncio.gather(
        *(rerank.apostprocess_nodes(nodes, query_str=q) for q in queries)
    )
    assert [(_ids(r), [n.score for n in r]) for r in results[:1]] == [
        (_ids(sync), [n.score for n in sync])
    ]
    for q, result in zip(queries, results, strict=True):
        expected = rerank.postprocess_nodes(nodes, query_str=q)
        assert _ids(result) == _ids(expected)
        assert [n.score for n in result] == [n.score for n in expected]


# ----------------------------------------------------------------------- HybridRetriever
def test_hybrid_retriever_nodes_keep_ids_and_scores(core_retriever):
    retriever = HybridRetriever(core_retriever, k=5)
    out = retriever.retrieve(QUERY)
    hits = core_retriever.search(QUERY, k=5)
    assert _ids(out) == [h.id for h in hits]
    for scored, hit in zip(out, hits, strict=True):
        assert isinstance(scored.node, TextNode)
        assert scored.node.text == hit.text
        assert scored.score == pytest.approx(hit.score)
        assert scored.node.metadata["topic"] == hit.metadata["topic"]
        assert scored.node.metadata["scores"] == hit.scores
        assert scored.node.metadata["ranks"] == hit.ranks
        assert scored.node.metadata["retrieval_score"] == pytest.approx(hit.score)
        content = scored.node.get_content(metadata_mode=MetadataMode.EMBED)
        assert "topic" in content and "bm25" not in content and "retrieval_score" not in content


def test_hybrid_retriever_with_reranker(core_retriever, tiny_reranker):
    retriever = HybridRetriever(core_retriever, k=3, reranker=tiny_reranker, candidates=10)
    out = retriever.retrieve(QUERY)
    candidates = core_retriever.search(QUERY, k=10)
    expected = tiny_reranker.rerank(QUERY, [h.text for h in candidates], top_n=3)
    assert _ids(out) == [candidates[r.index].id for r in expected]
    for scored, r in zip(out, expected, strict=True):
        assert scored.node.metadata["relevance_score"] == pytest.approx(r.score)
        assert scored.node.metadata["retrieval_score"] == pytest.approx(candidates[r.index].score)


async def test_hybrid_retriever_async_equals_sync(core_retriever, tiny_reranker):
    for reranker in (None, tiny_reranker):
        retriever = HybridRetriever(core_retriever, k=4, reranker=reranker)
        sync = retriever.retrieve(QUERY)
        result = await retriever.aretrieve(QUERY)
        assert _ids(result) == _ids(sync)
        assert [n.score for n in result] == [n.score for n in sync]


def test_hybrid_retriever_rejects_bad_k(core_retriever):
    with pytest.raises(ValueError):
        HybridRetriever(core_retriever, k=0)


# ----------------------------------------------------------------------- structure (issue 16)
class _SpanCollector:
    """Collects the instrumentation spans that LlamaIndex opens while a block runs."""

    def __enter__(self):
        from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler

        self.handler = SimpleSpanHandler()
        get_dispatcher().add_span_handler(self.handler)
        return self

    def __exit__(self, *exc):
        get_dispatcher().span_handlers.remove(self.handler)

    def names(self) -> list[str]:
        return [span.id_.rsplit("-", 5)[0] for span in self.handler.completed_spans]


async def test_rerank_opens_a_span_and_a_callback_event_sync_and_async(tiny_reranker, nodes):
    from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler

    debug = LlamaDebugHandler()
    rerank = CrossEncoderRerank(
        reranker=tiny_reranker, top_n=3, callback_manager=CallbackManager([debug])
    )
    with _SpanCollector() as spans:
        out = rerank.postprocess_nodes(nodes, query_str=QUERY)
        aout = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    names = spans.names()
    assert "CrossEncoderRerank._postprocess_nodes" in names
    assert "CrossEncoderRerank._apostprocess_nodes" in names
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 2
    for (start, end), result in zip(pairs, (out, aout), strict=True):
        assert start.payload["model_name"] == rerank.model
        assert _ids(end.payload["nodes"]) == _ids(result)


async def test_async_rerank_awaits_the_native_arerank(nodes):
    reranker = AsyncOnlyReranker()
    rerank = CrossEncoderRerank(reranker=reranker, top_n=4)
    out = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert reranker.async_calls == 1 and len(out) == 4
    assert rerank.model == "async-only"
    expected = OverlapReranker().rerank(QUERY, _texts(nodes), top_n=4)
    assert _ids(out) == [nodes[r.index].node.node_id for r in expected]


def test_rerank_passes_reranker_kwargs_and_rejects_clashes(tiny_ce_path, nodes):
    rerank = CrossEncoderRerank(
        model=tiny_ce_path, device="cpu", top_n=2, reranker_kwargs={"cache_size": 32}
    )
    rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert rerank.reranker.cache.maxsize == 32 and len(rerank.reranker.cache) == len(nodes)
    with pytest.raises(ValueError, match=r"reranker_kwargs \['batch_size'\]"):
        _ = CrossEncoderRerank(model=tiny_ce_path, reranker_kwargs={"batch_size": 2}).reranker
    with pytest.raises(TypeError, match="core reranker surface"):
        CrossEncoderRerank(reranker=object())


def test_retriever_takes_any_core_surface_reranker_and_builds_one_pipeline(
    core_retriever, monkeypatch
):
    built = count_pipeline_builds(monkeypatch)
    overlap = OverlapReranker()
    retriever = HybridRetriever(core_retriever, k=3, reranker=overlap, candidates=8)
    out = retriever.retrieve(QUERY)
    retriever.retrieve("stem cells in the brain")
    assert len(built) == 1
    candidates = core_retriever.search(QUERY, k=8)
    ranked = overlap.rerank(QUERY, [h.text for h in candidates], top_n=3)
    assert _ids(out) == [candidates[r.index].id for r in ranked]
    with pytest.raises(ValueError, match="k=9 is above candidates=8"):
        HybridRetriever(core_retriever, k=9, reranker=overlap, candidates=8).retrieve(QUERY)
    with pytest.raises(TypeError, match="core reranker surface"):
        HybridRetriever(core_retriever, reranker=object())
    with pytest.raises(TypeError, match="search"):
        HybridRetriever(object())


def test_retriever_metadata_filters_reach_the_core(core_retriever):
    filters = MetadataFilters(filters=[MetadataFilter(key="topic", value="oncology")])
    out = HybridRetriever(core_retriever, k=10, filters=filters).retrieve(QUERY)
    expected = core_retriever.search(QUERY, k=10, filter={"topic": {"$eq": "oncology"}})
    assert _ids(out) == [h.id for h in expected]
    assert out and all(n.node.metadata["topic"] == "oncology" for n in out)
    reranked = HybridRetriever(
        core_retriever, k=2, reranker=OverlapReranker(), filters={"topic": "neuro"}
    ).retrieve(QUERY)
    assert [n.node.metadata["topic"] for n in reranked] == ["neuro"]
    with pytest.raises(ValueError, match="'text_match' has no translation"):
        HybridRetriever(
            core_retriever,
            filters=MetadataFilters(
                filters=[MetadataFilter(key="topic", value="onc", operator="text_match")]
            ),
        )


def test_retriever_fusion_settings_and_deep_metadata(corpus):
    metadatas = [{"topic": topic, "tags": [topic]} for _, _, topic in corpus]
    retriever = HybridRetriever.from_texts(
        [text for _, text, _ in corpus],
        [doc_id for doc_id, _, _ in corpus],
        metadatas,
        k=len(corpus),
        embedder=HashEmbedder(),
        show_progress=False,
        fusion="zscore",
        weights={"dense": 3.0},
        rrf_k=5,
    )
    core = retriever.retriever
    assert (core.fusion, core.rrf_k, core.weights) == ("zscore", 5.0, {"dense": 3.0})
    metadatas[0]["tags"].append("after-indexing")  # the caller's list is not the index's
    assert core.get(corpus[0][0])[1]["tags"] == [corpus[0][2]]
    out = retriever.retrieve(QUERY)
    out[0].node.metadata["tags"].append("mutated")
    again = {n.node.node_id: n for n in retriever.retrieve(QUERY)}
    assert "mutated" not in again[out[0].node.node_id].node.metadata["tags"]
    scored = NodeWithScore(node=TextNode(id_="x", text="t", metadata={"tags": ["a"]}), score=1.0)
    copied = CrossEncoderRerank(reranker=OverlapReranker(), top_n=1).postprocess_nodes(
        [scored], query_str="t"
    )
    copied[0].node.metadata["tags"].append("b")
    assert scored.node.metadata["tags"] == ["a"]


# ----------------------------------------------------------------------- end to end
def test_query_engine_end_to_end(core_retriever, tiny_reranker, mock_settings):
    retriever = HybridRetriever(core_retriever, k=8)
    rerank = CrossEncoderRerank(reranker=tiny_reranker, top_n=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[rerank])
    response = engine.query(QUERY)
    assert isinstance(str(response), str) and str(response)
    candidates = retriever.retrieve(QUERY)
    expected = tiny_reranker.rerank(QUERY, _texts(candidates), top_n=3)
    assert _ids(response.source_nodes) == [candidates[r.index].node.node_id for r in expected]
    assert [n.score for n in response.source_nodes] == pytest.approx([r.score for r in expected])
    ids = {doc_id for doc_id, _, _ in CORPUS}
    assert all(n.node.node_id in ids for n in response.source_nodes)
    assert all("retrieval_score" in n.node.metadata for n in response.source_nodes)


async def test_query_engine_async_matches_sync(core_retriever, tiny_reranker, mock_settings):
    engine = RetrieverQueryEngine.from_args(
        HybridRetriever(core_retriever, k=8),
        llm=MockLLM(),
        node_postprocessors=[CrossEncoderRerank(reranker=tiny_reranker, top_n=3)],
    )
    sync = engine.query(QUERY)
    result = await engine.aquery(QUERY)
    assert _ids(result.source_nodes) == _ids(sync.source_nodes)


@pytest.mark.shared
async def test_real_model_puts_the_answer_first(scifact_ce_path):
    import json
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "examples" / "data" / "sample_corpus.jsonl"
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line]
    nodes = [
        NodeWithScore(node=TextNode(id_=r["_id"], text=r["text"], metadata={"title": r["title"]}))
        for r in rows
    ]
    rerank = CrossEncoderRerank(model=scifact_ce_path, device="cpu", top_n=2)
    query = "Scurvy is caused by a lack of vitamin C."
    out = await rerank.apostprocess_nodes(nodes, query_str=query)
    assert out[0].node.node_id == "s04"
    assert _ids(out) == _ids(rerank.postprocess_nodes(nodes, query_str=query))
