"""Clients no one here wrote (cohere SDK, LangChain's CohereRerank), our RemoteReranker, and
concurrent load, all against the real server on loopback."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from server_support import DOCUMENTS, QUERY

from rerank_plugins import RemoteReranker

pytestmark = pytest.mark.server


def test_cohere_sdk_client_v2(server, local_reranker, loopback_only):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused-locally", base_url=server, timeout=60)
    response = client.rerank(model="tiny-ce", query=QUERY, documents=DOCUMENTS, top_n=4)
    expected = local_reranker.rerank(QUERY, DOCUMENTS, top_n=4)
    assert [r.index for r in response.results] == [r.index for r in expected]
    for got, want in zip(response.results, expected, strict=True):
        assert got.relevance_score == pytest.approx(want.score, abs=1e-4)
    assert response.meta.api_version.version == "2"


def test_cohere_sdk_v1_client(server, local_reranker, loopback_only):
    cohere = pytest.importorskip("cohere")
    client = cohere.Client(api_key="unused-locally", base_url=server, timeout=60)
    response = client.rerank(query=QUERY, documents=DOCUMENTS, return_documents=True)
    expected = local_reranker.rerank(QUERY, DOCUMENTS)
    assert [r.index for r in response.results] == [r.index for r in expected]
    assert [r.document.text for r in response.results] == [r.passage for r in expected]


def test_langchain_cohere_rerank_compressor(server, local_reranker, loopback_only):
    pytest.importorskip("langchain_cohere")
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    compressor = CohereRerank(
        model="tiny-ce", base_url=server, cohere_api_key="unused-locally", top_n=3
    )
    documents = [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(DOCUMENTS)]
    compressed = compressor.compress_documents(documents, QUERY)
    expected = local_reranker.rerank(QUERY, DOCUMENTS, top_n=3)
    assert [d.metadata["n"] for d in compressed] == [r.index for r in expected]
    for document, want in zip(compressed, expected, strict=True):
        assert document.page_content == want.passage
        assert document.metadata["relevance_score"] == pytest.approx(want.score, abs=1e-4)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_remote_reranker_cohere_equals_local(server, local_reranker, path):
    with RemoteReranker(server, api="cohere", path=path, model="tiny-ce", timeout=60) as remote:
        np.testing.assert_allclose(
            remote.score(QUERY, DOCUMENTS), local_reranker.score(QUERY, DOCUMENTS), atol=1e-4
        )
        got = remote.rerank(QUERY, DOCUMENTS, top_n=3)
        want = local_reranker.rerank(QUERY, DOCUMENTS, top_n=3)
        assert [(r.index, r.passage) for r in got] == [(r.index, r.passage) for r in want]


def test_remote_reranker_tei_returns_logits(server, spread_ce_path):
    from rerank_plugins import CrossEncoderReranker

    logits = CrossEncoderReranker(spread_ce_path, device="cpu")  # activation="none"
    remote = RemoteReranker(server, api="tei", batch_documents=4, timeout=60)  # 2 requests
    np.testing.assert_allclose(
        remote.score(QUERY, DOCUMENTS), logits.score(QUERY, DOCUMENTS), atol=1e-3
    )
    pairs = [("cell death", d) for d in DOCUMENTS[:3]] + [(QUERY, d) for d in DOCUMENTS[3:]]
    np.testing.assert_allclose(remote.score_pairs(pairs), logits.score_pairs(pairs), atol=1e-3)
    remote.close()


async def test_remote_reranker_async(server, local_reranker):
    remote = RemoteReranker(server, batch_documents=2, timeout=60)
    many = await remote.arerank_many([QUERY, "cell death"], [DOCUMENTS, DOCUMENTS[:3]])
    want = local_reranker.rerank_many([QUERY, "cell death"], [DOCUMENTS, DOCUMENTS[:3]])
    assert [[r.index for r in rs] for rs in many] == [[r.index for r in rs] for rs in want]
    await remote.aclose()


def test_pipeline_with_remote_reranker(server, local_reranker):
    from rerank_plugins import RerankPipeline

    hits = [(f"d{i}", text, 1.0 - i / 10) for i, text in enumerate(DOCUMENTS)]
    remote = RemoteReranker(server, timeout=60)
    result = RerankPipeline(lambda q, k: hits[:k], remote, candidates=6, top_k=6).run(QUERY)
    assert result.reranked, result.error
    assert [h.id for h in result.hits] == [
        f"d{r.index}" for r in local_reranker.rerank(QUERY, DOCUMENTS)
    ]


def test_adapters_take_a_remote_reranker(server, local_reranker):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from rerank_plugins.integrations.langchain import CrossEncoderCompressor
    from rerank_plugins.integrations.llama_index import CrossEncoderRerank

    remote = RemoteReranker(server, timeout=60)
    want = [r.index for r in local_reranker.rerank(QUERY, DOCUMENTS, top_n=3)]
    compressor = CrossEncoderCompressor(reranker=remote, top_n=3)
    documents = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(DOCUMENTS)]
    assert [d.metadata["n"] for d in compressor.compress_documents(documents, QUERY)] == want
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(DOCUMENTS)]
    reranked = CrossEncoderRerank(reranker=remote, top_n=3).postprocess_nodes(
        nodes, query_bundle=QueryBundle(QUERY)
    )
    assert [int(n.node.node_id) for n in reranked] == want


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_concurrent_requests_equal_sequential(server):
    """32 concurrent requests (3 routes, different queries and lengths) give the answers the
    same requests give one by one; pairs of concurrent requests are scored in shared steps."""
    queries = ["vitamin d", "cell death", "heart disease risk", "rna expression", "tumor"]
    requests = []
    for n in range(32):
        documents = [DOCUMENTS[(n + j) % len(DOCUMENTS)] + f" {j}" for j in range(2 + n % 5)]
        path = ("/v1/rerank", "/v2/rerank", "/rerank")[n % 3]
        key = "texts" if path == "/rerank" else "documents"
        requests.append((path, {"query": queries[n % len(queries)], key: documents}))

    def canonical(path: str, body) -> list[tuple[int, float]]:
        items = body if path == "/rerank" else body["results"]
        score = "score" if path == "/rerank" else "relevance_score"
        return [(item["index"], item[score]) for item in items]

    async with httpx.AsyncClient(base_url=server, timeout=120) as client:
        sequential = []
        for path, body in requests:
            response = await client.post(path, content=json.dumps(body))
            sequential.append(canonical(path, response.json()))
        steps_before = _metric(server, "rerank_batch_pairs_count")
        responses = await asyncio.gather(
            *(client.post(path, content=json.dumps(body)) for path, body in requests)
        )
        steps = _metric(server, "rerank_batch_pairs_count") - steps_before
    assert all(r.status_code == 200 for r in responses)
    for (path, _), response, alone in zip(requests, responses, sequential, strict=True):
        together = canonical(path, response.json())
        assert [i for i, _ in together] == [i for i, _ in alone]
        assert [s for _, s in together] == pytest.approx([s for _, s in alone], abs=1e-5)
    assert steps < len(requests), "no two concurrent requests shared a scoring step"
