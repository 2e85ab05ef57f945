"""The real server (subprocess): every route's schema, scores equal to in-process, bad input."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest
from server_support import DOCUMENTS, QUERY

pytestmark = pytest.mark.server


def post(url: str, path: str, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url + path, content=content, timeout=60.0)


def expected(local_reranker, query: str = QUERY, documents=DOCUMENTS):
    scores = local_reranker.score(query, documents)
    return scores, list(np.argsort(-scores, kind="stable"))


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_cohere_schema_and_scores(server, local_reranker, path):
    response = post(server, path, {"model": "tiny-ce", "query": QUERY, "documents": DOCUMENTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "results", "meta"}
    assert isinstance(body["id"], str) and body["id"]
    assert body["meta"] == {
        "api_version": {"version": path[2]},
        "billed_units": {"search_units": 1},
    }
    scores, order = expected(local_reranker)
    assert [r["index"] for r in body["results"]] == order
    for result in body["results"]:
        assert set(result) == {"index", "relevance_score"}
        assert 0.0 <= result["relevance_score"] <= 1.0
        assert result["relevance_score"] == pytest.approx(float(scores[result["index"]]), abs=1e-4)
    assert len({round(r["relevance_score"], 3) for r in body["results"]}) > 3  # spread scores


def test_cohere_top_n_and_documents(server, local_reranker):
    documents = [DOCUMENTS[0], {"text": DOCUMENTS[1], "id": "keep-me"}, *DOCUMENTS[2:]]
    body = post(
        server,
        "/v1/rerank",
        {"query": QUERY, "documents": documents, "top_n": 3, "return_documents": True},
    ).json()
    _, order = expected(local_reranker)
    assert [r["index"] for r in body["results"]] == order[:3]
    for result in body["results"]:
        original = documents[result["index"]]
        assert result["document"] == (
            original if isinstance(original, dict) else {"text": original}
        )
    v2 = post(server, "/v2/rerank", {"query": QUERY, "documents": DOCUMENTS, "top_n": 99}).json()
    assert len(v2["results"]) == len(DOCUMENTS)  # top_n above the count returns every document


def test_cohere_rank_fields(server, local_reranker):
    documents = [{"title": "t", "body": text} for text in DOCUMENTS]
    body = post(
        server, "/v1/rerank", {"query": QUERY, "documents": documents, "rank_fields": ["body"]}
    ).json()
    _, order = expected(local_reranker, documents=[f"body: {t}" for t in DOCUMENTS])
    assert [r["index"] for r in body["results"]] == order


def test_cohere_max_tokens_per_doc_cuts_documents(server, local_reranker):
    body = post(
        server, "/v2/rerank", {"query": QUERY, "documents": DOCUMENTS, "max_tokens_per_doc": 2}
    ).json()
    cut = [" ".join(text.split()[:2]) for text in DOCUMENTS]  # two whole-word tokens each
    scores, order = expected(local_reranker, documents=cut)
    assert [r["index"] for r in body["results"]] == order
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert [got[i] for i in range(len(cut))] == pytest.approx(scores.tolist(), abs=1e-4)


def test_tei_schema_and_scores(server, local_reranker):
    response = post(server, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "return_text": True})
    assert response.status_code == 200, response.text
    ranks = response.json()
    probabilities, order = expected(local_reranker)
    assert [r["index"] for r in ranks] == order
    for rank in ranks:
        assert set(rank) == {"index", "score", "text"}
        assert rank["text"] == DOCUMENTS[rank["index"]]
        assert rank["score"] == pytest.approx(float(probabilities[rank["index"]]), abs=1e-4)
    raw = post(server, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}).json()
    logits = np.log(probabilities / (1 - probabilities))
    assert [r["index"] for r in raw] == order
    for rank in raw:
        assert set(rank) == {"index", "score"}
        assert rank["score"] == pytest.approx(float(logits[rank["index"]]), abs=1e-3)


def test_health_models_metrics(server):
    health = httpx.get(server + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    models = httpx.get(server + "/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny-ce"]
    assert models["data"][0]["max_length"] == 128
    post(server, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS})
    metrics = httpx.get(server + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for family in (
        'rerank_request_duration_seconds_bucket{le="0.1",route="/v1/rerank"}',
        "rerank_pairs_scored_total",
        "rerank_batch_pairs_bucket",
        "rerank_queue_pairs",
        'rerank_requests_total{route="/v1/rerank",status="200"}',
    ):
        assert family in text, family
    pairs = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("rerank_pairs_scored_total")
    )
    assert pairs >= len(DOCUMENTS)


LONG_QUERY = " ".join(["vitamin"] * 200)
BAD_COHERE = [
    (b"not json", 400, "body"),
    (b"[1, 2]", 400, "body"),
    ({"documents": ["a"]}, 422, "query"),
    ({"query": "   ", "documents": ["a"]}, 422, "query"),
    ({"query": 7, "documents": ["a"]}, 422, "query"),
    ({"query": "q", "documents": ["a", 5]}, 422, "documents[1]"),
    ({"query": "q", "documents": ["a", {"title": "no text"}]}, 422, "documents[1].text"),
    ({"query": "q", "documents": "a"}, 422, "documents"),
    ({"query": "q", "documents": []}, 422, "documents"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
    ({"query": "q", "documents": ["a"], "top_n": "3"}, 422, "top_n"),
    ({"query": "q", "documents": ["a"], "topn": 3}, 422, "topn"),
    ({"query": "q", "documents": ["a"], "return_documents": "yes"}, 422, "return_documents"),
    ({"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, 422, "max_tokens_per_doc"),
    ({"query": "q", "documents": ["a"] * 65}, 413, "documents"),
    ({"query": "q", "documents": ["x" * 70000]}, 413, "body"),
    ({"query": LONG_QUERY, "documents": ["a"]}, 422, "query"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_COHERE)
def test_bad_cohere_input_names_the_field(server, body, status, field):
    response = post(server, "/v2/rerank", body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert isinstance(error["message"], str) and error["message"]
    if field != "body":
        assert field.split("[")[0].split(".")[0] in error["message"]


BAD_TEI = [
    (b"{", 400, "body"),
    ({"texts": ["a"]}, 422, "query"),
    ({"query": "q", "texts": ["a", None]}, 422, "texts[1]"),
    ({"query": "q", "texts": []}, 422, "texts"),
    ({"query": "q", "texts": ["a"], "raw_scores": 1}, 422, "raw_scores"),
    ({"query": "q", "texts": ["a"], "truncation_direction": "left"}, 422, "truncation_direction"),
    ({"query": "q", "texts": ["a"] * 65}, 413, "texts"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_TEI)
def test_bad_tei_input_names_the_field(server, body, status, field):
    response = post(server, "/rerank", body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert error["error_type"] == "validation"
    assert isinstance(error["error"], str) and error["error"]


def test_worker_survives_bad_input(server, local_reranker):
    """After every bad request above (including one the model itself refused), it still scores."""
    for body, _, _ in BAD_COHERE[-3:]:
        post(server, "/v1/rerank", body)
    body = post(server, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS}).json()
    _, order = expected(local_reranker)
    assert [r["index"] for r in body["results"]] == order
    assert all(math.isfinite(r["relevance_score"]) for r in body["results"])
