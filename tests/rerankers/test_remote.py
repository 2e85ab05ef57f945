"""RemoteReranker against scripted servers (httpx.MockTransport): index mapping, answer
checks, splitting, retries, errors. The real-server tests live in tests/serving/."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from rerank_plugins import RemoteReranker, RemoteRerankError, RerankPipeline
from rerank_plugins.rerankers import BaseReranker

PASSAGES = ["aaaa", "b", "ccc", "dd"]


def length_server(api: str = "cohere", shuffle: bool = True, log: list | None = None):
    """A handler scoring len(text) (+ 10 * len(query)), answering best-first or reversed."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if log is not None:
            log.append((request, body))
        texts = body["texts"] if api == "tei" else body["documents"]
        scores = [len(t) + 10 * len(body["query"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -scores[i])
        if not shuffle:
            order = order[::-1]
        if api == "tei":
            return httpx.Response(200, json=[{"index": i, "score": scores[i]} for i in order])
        results = [{"index": i, "relevance_score": scores[i] / 100} for i in order]
        return httpx.Response(200, json={"id": "x", "results": results, "meta": {}})

    return handler


def remote(handler, **kwargs) -> RemoteReranker:
    kwargs.setdefault("backoff", 0.0)
    return RemoteReranker(
        "http://rerank.test", client_kwargs={"transport": httpx.MockTransport(handler)}, **kwargs
    )


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("api", ["cohere", "tei"])
def test_scores_map_by_index_whatever_the_answer_order(api, shuffle):
    reranker = remote(length_server(api, shuffle), api=api)
    scores = reranker.score("q", PASSAGES)
    scale = 100 if api == "cohere" else 1
    assert scores.tolist() == pytest.approx([(len(p) + 10) / scale for p in PASSAGES])
    assert [r.index for r in reranker.rerank("q", PASSAGES)] == [0, 2, 3, 1]
    assert isinstance(reranker, BaseReranker)


def test_request_bodies_headers_and_paths():
    log: list = []
    reranker = remote(length_server(log=log), model="m", api_key="k", headers={"x-team": "t"})
    reranker.score("q", ["a"])
    request, body = log[-1]
    assert str(request.url) == "http://rerank.test/v1/rerank"
    assert body == {"query": "q", "documents": ["a"], "model": "m"}
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["x-team"] == "t"
    tei = remote(length_server("tei", log=log), api="tei", path="/custom")
    tei.score("q", ["a"])
    request, body = log[-1]
    assert str(request.url) == "http://rerank.test/custom"
    assert body == {"query": "q", "texts": ["a"], "raw_scores": True, "truncate": True}
    assert "authorization" not in request.headers


def test_splits_above_batch_documents_and_one_request_per_distinct_query():
    log: list = []
    reranker = remote(length_server(log=log), batch_documents=2)
    pairs = [("q", "a"), ("rr", "bb"), ("q", "ccc"), ("q", "dddd"), ("rr", "e")]
    scores = reranker.score_pairs(pairs)
    assert scores.tolist() == pytest.approx([(len(p) + 10 * len(q)) / 100 for q, p in pairs])
    sent = [(body["query"], body["documents"]) for _, body in log]
    assert sent == [("q", ["a", "ccc"]), ("q", ["dddd"]), ("rr", ["bb", "e"])]
    assert reranker.score("q", []).shape == (0,)
    assert len(log) == 3  # no request for an empty list


async def test_async_matches_sync():
    reranker = remote(length_server(), batch_documents=1, max_concurrency=2)
    many = await reranker.arerank_many(["q", "rr"], [PASSAGES, PASSAGES[:2]])
    assert many == reranker.rerank_many(["q", "rr"], [PASSAGES, PASSAGES[:2]])
    assert (await reranker.ascore("q", PASSAGES)).tolist() == reranker.score("q", PASSAGES).tolist()
    await reranker.aclose()


def answer(body: object, status: int = 200):
    return lambda request: httpx.Response(status, json=body)


BAD_ANSWERS = [
    ({"results": [{"index": 0, "relevance_score": 0.5}]}, "1 results for 2"),
    (
        {"results": [{"index": 0, "relevance_score": 1}, {"index": 0, "relevance_score": 1}]},
        "twice",
    ),
    (
        {"results": [{"index": 0, "relevance_score": 1}, {"index": 2, "relevance_score": 1}]},
        "outside",
    ),
    (
        {"results": [{"index": 0, "relevance_score": 1}, {"index": 1, "relevance_score": None}]},
        "finite",
    ),
    (
        {"results": [{"index": 0, "relevance_score": 1}, {"index": 1, "relevance_score": "nan"}]},
        "finite",
    ),
    (
        {"results": [{"index": "0", "relevance_score": 1}, {"index": 1, "relevance_score": 1}]},
        "integer",
    ),
    (
        {"results": [{"index": True, "relevance_score": 1}, {"index": 1, "relevance_score": 1}]},
        "integer",
    ),
    ([{"index": 0, "score": 1}, {"index": 1, "score": 1}], "'results' list"),
]


@pytest.mark.parametrize(("body", "problem"), BAD_ANSWERS)
def test_unusable_answers_raise(body, problem):
    with pytest.raises(RemoteRerankError, match=problem):
        remote(answer(body), max_retries=0).score("q", ["a", "b"])


def test_non_json_and_nan_answers_raise():
    not_json = remote(lambda r: httpx.Response(200, content=b"<html>"), max_retries=0)
    with pytest.raises(RemoteRerankError, match="not JSON"):
        not_json.score("q", ["a"])
    nan = remote(
        lambda r: httpx.Response(200, content=b'[{"index": 0, "score": NaN}]'),
        api="tei",
        max_retries=0,
    )
    with pytest.raises(RemoteRerankError, match="finite"):
        nan.score("q", ["a"])


def test_retries_429_and_503_honouring_retry_after():
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx.Response(
                429, json={"message": "slow down"}, headers={"retry-after": "0.2"}
            )
        if len(calls) == 2:
            return httpx.Response(503, json={"error": "overloaded"}, headers={"retry-after": "0"})
        return length_server()(request)

    reranker = remote(handler, max_retries=2)
    assert reranker.score("q", ["a"]).tolist() == pytest.approx([0.11])
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.18  # waited out Retry-After


def test_retry_after_is_bounded_by_max_backoff():
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        return httpx.Response(503, headers={"retry-after": "3600"})

    started = time.monotonic()
    with pytest.raises(RemoteRerankError, match=r"HTTP 503.*after 2 attempts"):
        remote(handler, max_retries=1, max_backoff=0.05).score("q", ["a"])
    assert time.monotonic() - started < 2
    assert len(calls) == 2


def test_client_errors_raise_at_once_with_the_servers_message():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(422, json={"message": "top_n: must be >= 1", "field": "top_n"})

    with pytest.raises(RemoteRerankError, match="HTTP 422: top_n: must be >= 1") as error:
        remote(handler, max_retries=3).score("q", ["a"])
    assert error.value.status_code == 422
    assert calls == [1]


def test_connection_errors_are_retried_then_named():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(RemoteRerankError, match=r"cannot reach .* after 3 attempt"):
        remote(handler, max_retries=2).score("q", ["a"])
    assert len(calls) == 3


def test_pipeline_falls_back_on_remote_errors():
    hits = [("d0", "aaaa", 0.9), ("d1", "b", 0.8), ("d2", "ccc", 0.7)]
    failing = remote(answer({"message": "boom"}, status=500), max_retries=0)
    result = RerankPipeline(lambda q, k: hits, failing, candidates=3, top_k=3).run("q")
    assert not result.reranked and "RemoteRerankError" in result.error
    assert [h.id for h in result.hits] == ["d0", "d1", "d2"]
    working = remote(length_server())
    result = RerankPipeline(lambda q, k: hits, working, candidates=3, top_k=3).run("q")
    assert result.reranked and [h.id for h in result.hits] == ["d0", "d2", "d1"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api": "openai"}, "api"),
        ({"batch_documents": 0}, "batch_documents"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RemoteReranker("http://x", **kwargs)
    with pytest.raises(ValueError, match="base_url"):
        RemoteReranker("localhost:8080")


def test_score_semantics_attributes():
    assert RemoteReranker("http://x").activation == "sigmoid"
    assert RemoteReranker("http://x", api="tei").activation == "none"
    assert np.asarray(remote(length_server()).score("q", ["a"])).dtype == np.float32


def test_import_does_not_load_httpx_and_missing_httpx_names_the_extra():
    script = (
        "import sys, rerank_plugins\n"
        "assert 'httpx' not in sys.modules\n"
        "sys.modules['httpx'] = None\n"
        "try:\n"
        "    rerank_plugins.RemoteReranker\n"
        "except ImportError as error:\n"
        "    assert 'rerank-plugins[remote]' in str(error), error\n"
        "else:\n"
        "    raise AssertionError('imported without httpx')\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
