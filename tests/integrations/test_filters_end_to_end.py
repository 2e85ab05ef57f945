"""Framework filters, translated by the adapters, evaluated by the core grammar end to end."""

from __future__ import annotations

import pytest
from integration_corpus import CORPUS


def _topics(docs_metadata: list[dict]) -> set[str]:
    return {m["topic"] for m in docs_metadata}


def test_langchain_or_filter_reaches_the_core(core_retriever, query) -> None:
    pytest.importorskip("langchain_core")
    from rerank_plugins.integrations.langchain import HybridRetriever

    wanted = {"oncology", "neuro"}
    allowed = {doc_id for doc_id, _, topic in CORPUS if topic in wanted}
    retriever = HybridRetriever(
        retriever=core_retriever,
        k=len(CORPUS),
        filter={"$or": [{"topic": "oncology"}, {"topic": {"$eq": "neuro"}}]},
    )
    docs = retriever.invoke(query)
    assert {d.id for d in docs} == allowed  # every allowed document, nothing else
    assert _topics([d.metadata for d in docs]) <= wanted


def test_llama_index_nested_filters_reach_the_core(core_retriever, query) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.vector_stores.types import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    from rerank_plugins.integrations.llama_index import HybridRetriever

    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="topic", value="cardio", operator=FilterOperator.NE),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="topic", value=["oncology"], operator=FilterOperator.IN),
                    MetadataFilter(key="source", value="d01.txt", operator=FilterOperator.EQ),
                ],
                condition=FilterCondition.OR,
            ),
        ],
        condition=FilterCondition.AND,
    )
    allowed = {
        doc_id
        for doc_id, _, topic in CORPUS
        if topic != "cardio" and (topic == "oncology" or f"{doc_id}.txt" == "d01.txt")
    }
    assert allowed  # the corpus has oncology documents
    nodes = HybridRetriever(core_retriever, k=len(CORPUS), filters=filters).retrieve(query)
    assert {n.node.node_id for n in nodes} == allowed
