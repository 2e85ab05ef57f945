"""LangChain adapters: compressor, BaseCrossEncoder, hybrid retriever (+ the standard suite)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from integration_corpus import (
    CORPUS,
    QUERY,
    AsyncOnlyReranker,
    HashEmbedder,
    OverlapReranker,
    build_core_retriever,
    count_pipeline_builds,
)
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_tests.integration_tests import RetrieversIntegrationTests
from pydantic import ValidationError

from rerank_plugins.integrations.langchain import (
    CrossEncoderCompressor,
    HybridRetriever,
    RerankPluginsCrossEncoder,
)


@pytest.fixture()
def documents() -> list[Document]:
    return [
        Document(page_content=text, metadata={"topic": topic, "n": i}, id=doc_id)
        for i, (doc_id, text, topic) in enumerate(CORPUS)
    ]


@pytest.fixture()
def compressor(tiny_reranker) -> CrossEncoderCompressor:
    return CrossEncoderCompressor(reranker=tiny_reranker, top_n=5)


def _ids(docs) -> list[str | None]:
    return [doc.id for doc in docs]


# ----------------------------------------------------------------------- compressor
def test_compressor_matches_core_reranker(compressor, tiny_reranker, documents):
    expected = tiny_reranker.rerank(QUERY, [d.page_content for d in documents], top_n=5)
    out = compressor.compress_documents(documents, QUERY)
    assert _ids(out) == [documents[r.index].id for r in expected]
    assert [d.metadata["relevance_score"] for d in out] == [r.score for r in expected]
    assert all(type(d.metadata["relevance_score"]) is float for d in out)


def test_compressor_keeps_metadata_and_ids_and_does_not_mutate(compressor, documents):
    before = copy.deepcopy(documents)
    out = compressor.compress_documents(documents, QUERY)
    assert documents == before  # inputs untouched (no relevance_score added)
    by_id = {d.id: d for d in documents}
    for doc in out:
        original = by_id[doc.id]
        assert doc is not original
        assert doc.page_content == original.page_content
        assert {
            k: v for k, v in doc.metadata.items() if k != "relevance_score"
        } == original.metadata


def test_compressor_top_n_and_threshold(tiny_reranker, documents):
    scores = sorted(tiny_reranker.score(QUERY, [d.page_content for d in documents]), reverse=True)
    everything = CrossEncoderCompressor(reranker=tiny_reranker, top_n=None)
    assert len(everything.compress_documents(documents, QUERY)) == len(documents)
    assert (
        len(
            CrossEncoderCompressor(reranker=tiny_reranker, top_n=2).compress_documents(
                documents, QUERY
            )
        )
        == 2
    )
    threshold = float(scores[3])
    kept = CrossEncoderCompressor(
        reranker=tiny_reranker, top_n=None, score_threshold=threshold
    ).compress_documents(documents, QUERY)
    assert len(kept) == sum(s >= threshold for s in scores)
    assert all(d.metadata["relevance_score"] >= threshold for d in kept)
    assert CrossEncoderCompressor(reranker=tiny_reranker).top_n == 3


def test_compressor_empty_and_bad_query(compressor, documents):
    assert list(compressor.compress_documents([], QUERY)) == []
    with pytest.raises(ValueError):
        compressor.compress_documents(documents, "   ")


def test_compressor_builds_model_lazily_once(tiny_ce_path, documents, tiny_reranker):
    compressor = CrossEncoderCompressor(model=str(tiny_ce_path), device="cpu", top_n=4)
    assert compressor.reranker is None
    first = compressor.compress_documents(documents, QUERY)
    reranker = compressor.reranker
    assert reranker is not None
    compressor.compress_documents(documents, QUERY)
    assert compressor.reranker is reranker
    # Same weights as the shared fixture: same order and scores.
    expected = CrossEncoderCompressor(reranker=tiny_reranker, top_n=4).compress_documents(
        documents, QUERY
    )
    assert _ids(first) == _ids(expected)


def test_compressor_rejects_unknown_fields(tiny_reranker):
    with pytest.raises(ValidationError):
        CrossEncoderCompressor(reranker=tiny_reranker, topn=3)
    with pytest.raises(ValidationError):
        CrossEncoderCompressor(reranker=tiny_reranker, activation="softmax")


async def test_compressor_async_equals_sync_and_runs_concurrently(compressor, documents):
    sync = compressor.compress_documents(documents, QUERY)
    queries = [QUERY, "tumor growth in mice", "virus infection immune response"]
    results = await asyncio.gather(*(compressor.acompress_documents(documents, q) for q in queries))
    assert results[0] == sync
    for q, result in zip(queries, results, strict=True):
        assert result == compressor.compress_documents(documents, q)


def test_compressor_in_contextual_compression_retriever(compressor, core_retriever, tiny_reranker):
    from langchain_classic.retrievers import ContextualCompressionRetriever

    base = HybridRetriever(retriever=core_retriever, k=8)
    candidates = base.invoke(QUERY)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    out = retriever.invoke(QUERY)
    expected = tiny_reranker.rerank(QUERY, [d.page_content for d in candidates], top_n=5)
    assert _ids(out) == [candidates[r.index].id for r in expected]
    assert all("relevance_score" in d.metadata and "scores" in d.metadata for d in out)


def test_compressor_in_lcel_chain(compressor, core_retriever):
    from langchain_classic.retrievers import ContextualCompressionRetriever

    base = HybridRetriever(retriever=core_retriever, k=8)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    seen: dict[str, Any] = {}

    def format_docs(docs: list[Document]) -> str:
        seen["docs"] = docs
        return "\n".join(d.page_content for d in docs)

    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}\nAnswer:")
    chain = (
        {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | prompt
        | FakeListLLM(responses=["Probably yes."])
        | StrOutputParser()
    )
    assert chain.invoke(QUERY) == "Probably yes."
    assert _ids(seen["docs"]) == _ids(retriever.invoke(QUERY))


# ----------------------------------------------------------------------- BaseCrossEncoder
def test_base_cross_encoder_in_langchain_reranker(
    tiny_reranker, compressor, documents, tiny_ce_path
):
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker

    model = RerankPluginsCrossEncoder(reranker=tiny_reranker)
    pairs = [(QUERY, d.page_content) for d in documents]
    scores = model.score(pairs)
    assert all(type(s) is float for s in scores)
    assert scores == [
        float(s) for s in tiny_reranker.score(QUERY, [d.page_content for d in documents])
    ]
    theirs = CrossEncoderReranker(model=model, top_n=5).compress_documents(documents, QUERY)
    assert _ids(theirs) == _ids(compressor.compress_documents(documents, QUERY))
    loaded = RerankPluginsCrossEncoder(str(tiny_ce_path), device="cpu")
    assert loaded.score(pairs[:3]) == pytest.approx(scores[:3], abs=1e-5)
    with pytest.raises(ValueError):
        RerankPluginsCrossEncoder(reranker=tiny_reranker, device="cpu")


# ----------------------------------------------------------------------- HybridRetriever
def test_hybrid_retriever_matches_core_and_keeps_ids(core_retriever):
    retriever = HybridRetriever(retriever=core_retriever, k=5)
    docs = retriever.invoke(QUERY)
    hits = core_retriever.search(QUERY, k=5)
    assert _ids(docs) == [h.id for h in hits]
    for doc, hit in zip(docs, hits, strict=True):
        assert doc.page_content == hit.text
        assert doc.metadata["topic"] == hit.metadata["topic"]
        assert doc.metadata["scores"] == hit.scores
        assert set(doc.metadata["scores"]) <= {"bm25", "dense"}
        assert doc.metadata["ranks"] == hit.ranks
        assert doc.metadata["retrieval_score"] == pytest.approx(hit.score)
        assert "relevance_score" not in doc.metadata
    assert len(retriever.invoke(QUERY, k=2)) == 2
    assert retriever.k == 5


def test_hybrid_retriever_with_reranker_runs_pipeline(core_retriever, tiny_reranker):
    retriever = HybridRetriever(
        retriever=core_retriever, reranker=tiny_reranker, k=3, candidates=10
    )
    docs = retriever.invoke(QUERY)
    assert len(docs) == 3
    candidates = core_retriever.search(QUERY, k=10)
    expected = tiny_reranker.rerank(QUERY, [h.text for h in candidates], top_n=3)
    assert _ids(docs) == [candidates[r.index].id for r in expected]
    for doc, r in zip(docs, expected, strict=True):
        assert doc.metadata["relevance_score"] == pytest.approx(r.score)
        assert type(doc.metadata["relevance_score"]) is float
        assert doc.metadata["retrieval_score"] == pytest.approx(candidates[r.index].score)
    assert len(retriever.invoke(QUERY, k=1)) == 1


async def test_hybrid_retriever_async_equals_sync(core_retriever, tiny_reranker):
    for reranker in (None, tiny_reranker):
        retriever = HybridRetriever(retriever=core_retriever, reranker=reranker, k=4)
        assert await retriever.ainvoke(QUERY) == retriever.invoke(QUERY)
        assert await retriever.ainvoke(QUERY, k=2) == retriever.invoke(QUERY, k=2)


def test_hybrid_retriever_from_documents_round_trips_ids(documents):
    retriever = HybridRetriever.from_documents(
        documents, embedder=HashEmbedder(), show_progress=False, k=len(documents)
    )
    docs = retriever.invoke(QUERY)
    assert sorted(_ids(docs)) == sorted(_ids(documents))
    by_id = {d.id: d for d in documents}
    for doc in docs:
        assert doc.page_content == by_id[doc.id].page_content
        assert doc.metadata["n"] == by_id[doc.id].metadata["n"]


def test_hybrid_retriever_rejects_bad_k(core_retriever):
    with pytest.raises(ValidationError):
        HybridRetriever(retriever=core_retriever, k=0)
    with pytest.raises(ValueError):
        HybridRetriever(retriever=core_retriever).invoke(QUERY, k=0)


# ----------------------------------------------------------------------- structure (issue 16)
def test_compressor_passes_reranker_kwargs_to_the_core(tiny_ce_path, documents):
    compressor = CrossEncoderCompressor(
        model=str(tiny_ce_path),
        device="cpu",
        reranker_kwargs={"cache_size": 16, "long_passages": "chunk", "dtype": "float32"},
    )
    compressor.compress_documents(documents, QUERY)
    built = compressor.reranker
    assert built.cache.maxsize == 16 and built.long_passages == "chunk"
    assert len(built.cache) == len(documents)  # the cache it was told to keep is in use
    with pytest.raises(ValueError, match=r"reranker_kwargs \['device'\]"):
        CrossEncoderCompressor(
            model=str(tiny_ce_path), reranker_kwargs={"device": "cpu"}
        ).get_reranker()


def test_any_core_surface_reranker_plugs_in(documents, core_retriever):
    overlap = OverlapReranker()
    expected = overlap.rerank(QUERY, [d.page_content for d in documents], top_n=3)
    out = CrossEncoderCompressor(reranker=overlap, top_n=3).compress_documents(documents, QUERY)
    assert _ids(out) == [documents[r.index].id for r in expected]
    pairs = [(QUERY, d.page_content) for d in documents]
    assert RerankPluginsCrossEncoder(reranker=overlap).score(pairs) == [
        float(x) for x in overlap.score_pairs(pairs)
    ]
    docs = HybridRetriever(retriever=core_retriever, reranker=overlap, k=3, candidates=8).invoke(
        QUERY
    )
    candidates = core_retriever.search(QUERY, k=8)
    ranked = overlap.rerank(QUERY, [h.text for h in candidates], top_n=3)
    assert _ids(docs) == [candidates[r.index].id for r in ranked]
    with pytest.raises(ValidationError):
        CrossEncoderCompressor(reranker=object())
    with pytest.raises(TypeError, match="core reranker surface"):
        RerankPluginsCrossEncoder(reranker=object())


async def test_async_compressor_awaits_the_native_arerank(documents):
    reranker = AsyncOnlyReranker()
    compressor = CrossEncoderCompressor(reranker=reranker, top_n=4)
    out = await compressor.acompress_documents(documents, QUERY)
    assert reranker.async_calls == 1 and len(out) == 4
    expected = OverlapReranker().rerank(QUERY, [d.page_content for d in documents], top_n=4)
    assert _ids(out) == [documents[r.index].id for r in expected]


def test_pipeline_is_built_once_per_adapter(core_retriever, tiny_reranker, monkeypatch):
    built = count_pipeline_builds(monkeypatch)
    retriever = HybridRetriever(
        retriever=core_retriever,
        reranker=tiny_reranker,
        k=3,
        candidates=10,
        pipeline_kwargs={"rerank_timeout": 30.0},
    )
    first = retriever.invoke(QUERY)
    retriever.invoke("tumor growth in mice")
    two = retriever.invoke(QUERY, k=2)
    assert len(built) == 1
    assert [d.id for d in two] == [d.id for d in first[:2]]  # k per call: a prefix
    retriever.candidates = 12  # a changed setting builds a new pipeline
    retriever.invoke(QUERY)
    assert len(built) == 2 and built[1]["candidates"] == 12
    retriever.close()


def test_k_above_candidates_is_an_error_not_a_silent_raise(core_retriever, tiny_reranker):
    retriever = HybridRetriever(retriever=core_retriever, reranker=tiny_reranker, candidates=5)
    assert len(retriever.invoke(QUERY, k=5)) == 5
    with pytest.raises(ValueError, match="k=6 is above candidates=5"):
        retriever.invoke(QUERY, k=6)
    with pytest.raises(ValueError, match="set by the adapter"):
        HybridRetriever(
            retriever=core_retriever, reranker=tiny_reranker, pipeline_kwargs={"top_k": 3}
        ).invoke(QUERY)


def test_fusion_settings_reach_the_core_retriever(documents):
    retriever = HybridRetriever.from_documents(
        documents,
        embedder=HashEmbedder(),
        show_progress=False,
        fusion="minmax",
        weights={"bm25": 2.0, "dense": 0.5},
        rrf_k=10,
    )
    core = retriever.retriever
    assert core.fusion == "minmax" and core.rrf_k == 10.0
    assert core.weights == {"bm25": 2.0, "dense": 0.5}
    default = HybridRetriever.from_documents(
        documents, embedder=HashEmbedder(), show_progress=False
    )
    assert default.retriever.fusion == "zscore" and default.retriever.rrf_k == 60.0
    assert default.retriever.weights == {"bm25": 0.6, "dense": 1.4}  # the core's defaults
    with pytest.raises(ValueError, match="fusion"):  # validated by the core, not the adapter
        HybridRetriever.from_documents(documents, embedder=HashEmbedder(), fusion="borda")


def test_filters_reach_the_core_search(core_retriever):
    retriever = HybridRetriever(retriever=core_retriever, k=10, filter={"topic": "cardio"})
    docs = retriever.invoke(QUERY)
    expected = core_retriever.search(QUERY, k=10, filter={"topic": {"$eq": "cardio"}})
    assert _ids(docs) == [h.id for h in expected]
    assert docs and all(d.metadata["topic"] == "cardio" for d in docs)
    # A per-call filter replaces the retriever's own, with and without a reranker.
    oncology = retriever.invoke(QUERY, filter={"topic": {"$eq": "oncology"}})
    assert oncology and all(d.metadata["topic"] == "oncology" for d in oncology)
    reranked = HybridRetriever(
        retriever=core_retriever, reranker=OverlapReranker(), k=3, filter={"topic": "neuro"}
    )
    assert [d.metadata["topic"] for d in reranked.invoke(QUERY)] == ["neuro"]
    with pytest.raises(ValidationError, match=r"'\$exists' has no translation"):
        HybridRetriever(retriever=core_retriever, filter={"topic": {"$exists": True}})
    with pytest.raises(ValueError, match="has no translation"):
        retriever.invoke(QUERY, filter={"topic": {"$regex": "^c"}})


async def test_async_filter_and_reranker(core_retriever):
    retriever = HybridRetriever(
        retriever=core_retriever, reranker=OverlapReranker(), k=3, filter={"topic": "cardio"}
    )
    assert await retriever.ainvoke(QUERY) == retriever.invoke(QUERY)
    assert all(d.metadata["topic"] == "cardio" for d in await retriever.ainvoke(QUERY))


def test_output_metadata_is_a_deep_copy(documents, tiny_reranker):
    documents[0].metadata["tags"] = ["a", "b"]
    core_docs = HybridRetriever.from_documents(
        documents, embedder=HashEmbedder(), show_progress=False, k=len(documents)
    )
    out = core_docs.invoke(QUERY)
    tagged = next(d for d in out if d.id == documents[0].id)
    tagged.metadata["tags"].append("mutated")
    assert documents[0].metadata["tags"] == ["a", "b"]
    assert core_docs.retriever.get(documents[0].id)[1]["tags"] == ["a", "b"]
    assert (
        "mutated"
        not in next(d for d in core_docs.invoke(QUERY) if d.id == documents[0].id).metadata["tags"]
    )
    compressed = CrossEncoderCompressor(reranker=tiny_reranker, top_n=None).compress_documents(
        documents, QUERY
    )
    next(d for d in compressed if d.id == documents[0].id).metadata["tags"].append("x")
    assert documents[0].metadata["tags"] == ["a", "b"]


def test_from_documents_keeps_given_ids_and_fills_missing_ones(documents):
    documents[3] = Document(page_content=documents[3].page_content, metadata={"n": 3})
    retriever = HybridRetriever.from_documents(
        documents, embedder=HashEmbedder(), show_progress=False, k=len(documents)
    )
    ids = retriever.retriever.ids
    assert ids[:3] == [d.id for d in documents[:3]] and ids[4:] == [d.id for d in documents[4:]]
    assert len(ids[3]) == 32 and ids[3] not in {d.id for d in documents}  # a uuid4 hex
    unnamed = [Document(page_content=d.page_content) for d in documents[:3]]
    assert HybridRetriever.from_documents(
        unnamed, embedder=HashEmbedder(), show_progress=False
    ).retriever.ids == ["0", "1", "2"]


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's own retriever conformance suite, offline (fake embedder)."""

    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": build_core_retriever(), "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


class TestRerankedHybridRetrieverStandard(RetrieversIntegrationTests):
    """The same suite with the cross-encoder pipeline switched on."""

    @pytest.fixture(autouse=True)
    def _reranker(self, tiny_reranker) -> None:
        type(self).reranker = tiny_reranker

    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": build_core_retriever(), "reranker": self.reranker, "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


@pytest.mark.shared
def test_real_model_puts_the_answer_first(scifact_ce_path):
    import json
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "examples" / "data" / "sample_corpus.jsonl"
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line]
    docs = [Document(page_content=f"{r['title']}. {r['text']}", id=r["_id"]) for r in rows]
    compressor = CrossEncoderCompressor(model=scifact_ce_path, device="cpu", top_n=2)
    out = compressor.compress_documents(
        docs, "Vitamin D supplements prevent fractures in older adults."
    )
    assert out[0].id in {"s01", "s02"}
    assert out[0].metadata["relevance_score"] > out[1].metadata["relevance_score"]
