"""create_app in-process (httpx.ASGITransport, no lifespan run): failures that need a fake
reranker, score kinds, auth details and settings. Cheap; no subprocess."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins.rerankers import BaseReranker
from rerank_plugins.serving import PairBatcher, create_app

httpx = pytest.importorskip("httpx")


class Fake(BaseReranker):
    """Score = len(passage); 'explode' raises RuntimeError, 'nan' gives NaN."""

    model_name = "fake"

    def __init__(self, activation: str = "none") -> None:
        self.activation = activation

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        if "explode" in passages:
            raise RuntimeError("GPU on fire")
        scores = np.array([float(len(p)) for p in passages], dtype=np.float32)
        scores[[p == "nan" for p in passages]] = np.nan
        return scores / (100.0 if self.activation == "sigmoid" else 1.0)


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


async def test_model_failure_is_a_json_500_and_the_worker_lives_on():
    app = create_app(Fake())
    async with client(app) as http:
        failed = await http.post("/v1/rerank", json={"query": "q", "documents": ["explode"]})
        assert failed.status_code == 500
        assert "GPU on fire" in failed.json()["message"]
        nan = await http.post("/rerank", json={"query": "q", "texts": ["nan", "a"]})
        assert nan.status_code == 500 and nan.json()["error_type"] == "backend"
        ok = await http.post("/rerank", json={"query": "q", "texts": ["a", "abc"]})
        assert ok.status_code == 200
        assert [r["index"] for r in ok.json()] == [1, 0]
    await app.state.batcher.stop()


async def test_probability_reranker_is_served_as_is_and_refuses_raw_scores():
    app = create_app(Fake(activation="sigmoid"))  # scores already 0..1
    async with client(app) as http:
        body = (await http.post("/v2/rerank", json={"query": "q", "documents": ["ab", "a"]})).json()
        assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [
            (0, pytest.approx(0.02)),
            (1, pytest.approx(0.01)),
        ]
        raw = await http.post("/rerank", json={"query": "q", "texts": ["a"], "raw_scores": True})
        assert raw.status_code == 422 and raw.json()["field"] == "raw_scores"
        models = (await http.get("/v1/models")).json()
        assert models["data"][0]["scores"] == "probabilities"
    await app.state.batcher.stop()


async def test_logits_get_the_sigmoid():
    app = create_app(Fake())
    async with client(app) as http:
        body = (await http.post("/v1/rerank", json={"query": "q", "documents": ["a", "ab"]})).json()
        tei = (
            await http.post("/rerank", json={"query": "q", "texts": ["a"], "raw_scores": True})
        ).json()
    assert body["results"][0]["relevance_score"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert tei == [{"index": 0, "score": 1.0}]
    await app.state.batcher.stop()


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Bearer k3y", 200),
        ("bearer k3y", 200),
        ("Bearer  k3y ", 200),
        ("Basic k3y", 401),
        ("k3y", 401),
        ("Bearer k3", 401),
        (None, 401),
    ],
)
async def test_bearer_auth(header, status):
    app = create_app(Fake(), api_key="k3y")
    headers = {"authorization": header} if header else {}
    async with client(app) as http:
        response = await http.post(
            "/v1/rerank", json={"query": "q", "documents": ["a"]}, headers=headers
        )
        assert response.status_code == status, response.text
        assert (await http.get("/health")).status_code == 200
    await app.state.batcher.stop()


async def test_declared_body_size_over_the_limit_is_refused_unread():
    app = create_app(Fake(), max_request_bytes=100)
    async with client(app) as http:
        response = await http.post(
            "/rerank",
            content=b"{" + b" " * 200 + b"}",
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json() == {
        "error": "the request body is larger than 100 bytes",
        "error_type": "validation",
        "field": "body",
    }


async def test_health_reports_draining():
    app = create_app(Fake())
    batcher: PairBatcher = app.state.batcher
    async with client(app) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        await batcher.stop()
        health = await http.get("/health")
        assert health.status_code == 503 and health.json() == {"status": "draining"}
        late = await http.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
        assert late.status_code == 503 and late.headers["retry-after"] == "1"


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_queue_pairs=10 is below max_documents=20"):
        create_app(Fake(), max_documents=20, max_queue_pairs=10)
    with pytest.raises(ValueError, match="max_request_bytes"):
        create_app(Fake(), max_request_bytes=0)
    with pytest.raises(ValueError, match="scores"):
        create_app(Fake(), scores="logit")  # type: ignore[arg-type]
