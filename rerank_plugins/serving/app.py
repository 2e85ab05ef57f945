"""``create_app``: the de-facto rerank HTTP API over one :class:`PairBatcher`.

Routes: Cohere ``POST /v1/rerank`` and ``POST /v2/rerank``, TEI ``POST /rerank``,
``GET /health``, ``GET /metrics`` (Prometheus), ``GET /v1/models``. Bad input answers 4xx
JSON naming the field: Cohere routes ``{"message", "field"}``, the TEI route
``{"error", "error_type", "field"}`` (each API's own error shape, plus ``field``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np

from .._validation import RerankerOutputError, check_positive_int
from ..types import Reranker
from ._deps import require_serve_extra

require_serve_extra()

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402

from .batcher import (  # noqa: E402
    DEFAULT_MAX_BATCH_PAIRS,
    DEFAULT_MAX_QUEUE_PAIRS,
    DEFAULT_MAX_WAIT_MS,
    BatcherClosedError,
    PairBatcher,
    QueueFullError,
)
from .gate import APIError, Gate  # noqa: E402
from .metrics import ServerMetrics  # noqa: E402
from .schemas import (  # noqa: E402
    CohereRerankRequest,
    FieldError,
    TEIRerankRequest,
    document_texts,
    parse_body,
)

logger = logging.getLogger(__name__)

ScoreKind = Literal["logits", "probabilities"]

DEFAULT_MAX_DOCUMENTS = 1000
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
#: Cohere bills one search unit per 100 documents; the meta block reports the same count.
DOCUMENTS_PER_SEARCH_UNIT = 100


def create_app(
    reranker: Reranker,
    *,
    model_name: str | None = None,
    api_key: str | None = None,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_queue_pairs: int = DEFAULT_MAX_QUEUE_PAIRS,
    max_batch_pairs: int = DEFAULT_MAX_BATCH_PAIRS,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    scores: ScoreKind | None = None,
    batcher: PairBatcher | None = None,
    metrics: ServerMetrics | None = None,
) -> FastAPI:
    """Build the ASGI app that serves ``reranker`` (mount it, or run it with uvicorn).

    The app's lifespan starts the batcher's worker on the serving event loop and, at
    shutdown, drains it: requests accepted before shutdown are answered. A host that does
    not run the lifespan (some ASGI wrappers) still works: the worker starts on the first
    request.

    Args:
        reranker: What scores pairs (``score_pairs``). Only the batcher's model thread calls it.
        model_name: The id ``/v1/models`` reports (default: ``reranker.model_name``).
        api_key: When set, every route but ``/health`` needs ``Authorization: Bearer <key>``.
        max_documents: Most documents (texts) per request; more answers 413.
        max_request_bytes: Largest request body; more answers 413.
        max_queue_pairs: Most pairs accepted and not yet answered; past it, 503 +
            ``Retry-After``. At least ``max_documents``, so every valid request can fit.
        max_batch_pairs: Most pairs scored in one step (pairs of concurrent requests together).
        max_wait_ms: How long a step waits for more requests once its first pair is queued.
        scores: What ``reranker`` returns: ``"logits"`` (the server applies the sigmoid for
            ``relevance_score``) or ``"probabilities"`` (0..1 already; TEI ``raw_scores`` is
            then refused). Default: ``"probabilities"`` if ``reranker.activation ==
            "sigmoid"``, else ``"logits"``.
        batcher: A :class:`PairBatcher` built elsewhere (then the queue settings above are
            its own); default: one built here around ``reranker``.
        metrics: A :class:`ServerMetrics` (default: a fresh registry for this app).

    Example:
        >>> from rerank_plugins import CrossEncoderReranker
        >>> from rerank_plugins.serving import create_app
        >>> app = create_app(CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2"))
        >>> # uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    for name, value in (
        ("max_documents", max_documents),
        ("max_request_bytes", max_request_bytes),
    ):
        check_positive_int(value, name)
    if scores is None:
        scores = "probabilities" if getattr(reranker, "activation", None) == "sigmoid" else "logits"
    if scores not in ("logits", "probabilities"):
        raise ValueError(f"scores must be 'logits' or 'probabilities', got {scores!r}")
    metrics = metrics or ServerMetrics()
    if batcher is None:
        batcher = PairBatcher(
            reranker,
            max_queue_pairs=max_queue_pairs,
            max_batch_pairs=max_batch_pairs,
            max_wait_ms=max_wait_ms,
            on_step=metrics.observe_step,
        )
    if batcher.max_queue_pairs < max_documents:
        raise ValueError(
            f"max_queue_pairs={batcher.max_queue_pairs} is below max_documents={max_documents}: "
            "a full-size request could never be accepted"
        )
    metrics.track_queue(lambda: batcher.pending_pairs)
    name = model_name or str(getattr(reranker, "model_name", type(reranker).__name__))
    service = _RerankService(
        batcher,
        metrics=metrics,
        max_documents=max_documents,
        scores=scores,
        tokenizer=getattr(reranker, "tokenizer", None),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop(drain=True)

    from .. import __version__

    app = FastAPI(title="rerank-plugins", version=__version__, lifespan=lifespan, docs_url="/docs")
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.add_middleware(Gate, api_key=api_key, max_request_bytes=max_request_bytes, metrics=metrics)
    started = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(
            error.body(request.url.path), status_code=error.status, headers=error.headers
        )

    @app.post("/v1/rerank", summary="Cohere v1 rerank")
    async def cohere_v1(request: Request) -> JSONResponse:
        return JSONResponse(await service.cohere(await request.body(), version="1"))

    @app.post("/v2/rerank", summary="Cohere v2 rerank")
    async def cohere_v2(request: Request) -> JSONResponse:
        return JSONResponse(await service.cohere(await request.body(), version="2"))

    @app.post("/rerank", summary="TEI rerank")
    async def tei(request: Request) -> JSONResponse:
        return JSONResponse(await service.tei(await request.body()))

    @app.get("/health", summary="Liveness/readiness: 200 while serving, 503 while draining")
    async def health() -> JSONResponse:
        if not batcher.accepting:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok", "model": name, "queue_pairs": batcher.pending_pairs})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", summary="The served model (OpenAI-style list)")
    async def models() -> JSONResponse:
        card: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": started,
            "owned_by": "rerank-plugins",
            "scores": scores,
        }
        max_length = getattr(reranker, "max_length", None)
        if isinstance(max_length, int):
            card["max_length"] = max_length
        return JSONResponse({"object": "list", "data": [card]})

    return app


class _RerankService:
    """Request bodies in, answers out: validation, scoring through the batcher, ranking."""

    def __init__(
        self,
        batcher: PairBatcher,
        *,
        metrics: ServerMetrics,
        max_documents: int,
        scores: ScoreKind,
        tokenizer: Any,
    ) -> None:
        self.batcher = batcher
        self.metrics = metrics
        self.max_documents = max_documents
        self.scores = scores
        self.tokenizer = tokenizer if getattr(tokenizer, "is_fast", False) else None

    async def cohere(self, raw: bytes, *, version: str) -> dict[str, Any]:
        request = _parse(CohereRerankRequest, raw)
        try:
            texts = document_texts(request)
        except FieldError as error:
            raise APIError(422, error.message, field=error.field) from None
        self._check_count("documents", len(texts))
        if request.max_tokens_per_doc is not None:
            texts = await self._cut(texts, request.max_tokens_per_doc)
        relevance = self._probabilities(await self._score(request.query, texts))
        order = _ranking(relevance, request.top_n)
        results = []
        for i in order:
            result: dict[str, Any] = {"index": int(i), "relevance_score": float(relevance[i])}
            if request.return_documents:
                document = request.documents[i]
                result["document"] = {"text": document} if isinstance(document, str) else document
            results.append(result)
        return {
            "id": str(uuid.uuid4()),
            "results": results,
            "meta": {
                "api_version": {"version": version},
                "billed_units": {
                    "search_units": max(1, math.ceil(len(texts) / DOCUMENTS_PER_SEARCH_UNIT))
                },
            },
        }

    async def tei(self, raw: bytes) -> list[dict[str, Any]]:
        request = _parse(TEIRerankRequest, raw)
        if request.truncation_direction.lower() == "left":
            raise APIError(
                422,
                "truncation_direction 'left' is not supported: the model keeps the start of "
                "each text (use 'right')",
                field="truncation_direction",
            )
        if request.raw_scores and self.scores == "probabilities":
            raise APIError(
                422,
                "raw_scores=true needs a server whose reranker returns logits; this one "
                "returns 0..1 probabilities",
                field="raw_scores",
            )
        self._check_count("texts", len(request.texts))
        scores = await self._score(request.query, request.texts)
        if not request.raw_scores:
            scores = self._probabilities(scores)
        ranks = []
        for i in _ranking(scores, None):
            rank: dict[str, Any] = {"index": int(i), "score": float(scores[i])}
            if request.return_text:
                rank["text"] = request.texts[i]
            ranks.append(rank)
        return ranks

    # ------------------------------------------------------------------ helpers
    def _check_count(self, field: str, count: int) -> None:
        self.metrics.documents.observe(count)
        if count > self.max_documents:
            raise APIError(
                413,
                f"{field} holds {count} texts; this server takes at most {self.max_documents} "
                "per request (split the request)",
                field=field,
            )

    async def _cut(self, texts: list[str], max_tokens: int) -> list[str]:
        if self.tokenizer is None:
            raise APIError(
                422,
                "max_tokens_per_doc needs a reranker with a fast tokenizer; this server's "
                "reranker has none",
                field="max_tokens_per_doc",
            )
        return await self.batcher.run_in_model_thread(
            _truncate_tokens, self.tokenizer, texts, max_tokens
        )

    async def _score(self, query: str, texts: list[str]) -> np.ndarray:
        try:
            scores = await self.batcher.submit([query] * len(texts), texts)
        except QueueFullError as error:
            self.metrics.rejected.inc()
            raise APIError(
                503,
                f"server busy: {error}; retry after {error.retry_after} s",
                error_type="overloaded",
                headers={"Retry-After": str(error.retry_after)},
            ) from None
        except BatcherClosedError as error:
            self.metrics.rejected.inc()
            raise APIError(
                503, str(error), error_type="unhealthy", headers={"Retry-After": "1"}
            ) from None
        except RerankerOutputError as error:  # the model's fault (NaN, wrong count): not a 4xx
            logger.error("the reranker returned unusable scores: %s", error)
            raise APIError(500, f"scoring failed: {error}", error_type="backend") from None
        except ValueError as error:  # e.g. a query longer than the model window allows
            message = str(error)
            field = "query" if message.startswith("query") else None
            raise APIError(422, message, field=field) from None
        except Exception as error:
            logger.exception("scoring failed")
            raise APIError(
                500, f"scoring failed: {type(error).__name__}: {error}", error_type="backend"
            ) from None
        if not np.isfinite(scores).all():
            raise APIError(500, "the model returned a non-finite score", error_type="backend")
        return scores

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        if self.scores == "probabilities":
            return scores.astype(np.float64)
        return 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))


def _parse(model: type[Any], raw: bytes) -> Any:
    try:
        return parse_body(model, raw)
    except FieldError as error:
        status = 400 if error.field == "body" else 422
        raise APIError(status, error.message, field=error.field) from None


def _ranking(scores: np.ndarray, top_n: int | None) -> np.ndarray:
    """Indices best first; ties keep input order (the order TEI and Cohere clients expect)."""
    order = np.argsort(-scores, kind="stable")
    return order if top_n is None else order[:top_n]


def _truncate_tokens(tokenizer: Any, texts: list[str], max_tokens: int) -> list[str]:
    """Cut each text after its ``max_tokens``-th token, at the token's end offset."""
    encoded = tokenizer(
        texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False
    )
    out = []
    for text, offsets in zip(texts, encoded["offset_mapping"], strict=True):
        out.append(text[: offsets[max_tokens - 1][1]] if len(offsets) > max_tokens else text)
    return out
