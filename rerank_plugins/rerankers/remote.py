"""``RemoteReranker``: the reranker surface over a rerank HTTP server (Cohere API or TEI).

Works against ``rerank-plugins serve``, Hugging Face TEI, infinity, vLLM, LiteLLM and the
Cohere API itself. Results are always mapped back by their ``index`` (never by position: the
servers sort by score), and every answer is checked: each index exactly once, in range, with a
finite score, else :class:`RemoteRerankError`. Needs the ``[remote]`` extra (httpx).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from .base import BaseReranker

try:
    import httpx
except ImportError as error:  # pragma: no cover - exercised by tests/rerankers/test_remote.py
    raise ImportError('RemoteReranker needs httpx: pip install "rerank-plugins[remote]"') from error

RemoteAPI = Literal["cohere", "tei"]

#: Default request path per API (``path=`` overrides: infinity serves Cohere's body at
#: ``/rerank``, Cohere's v2 API at ``/v2/rerank``).
DEFAULT_PATHS: dict[str, str] = {"cohere": "/v1/rerank", "tei": "/rerank"}
#: Default most documents per request: Cohere recommends at most 1,000; TEI's default
#: ``--max-client-batch-size`` is 32.
DEFAULT_BATCH_DOCUMENTS: dict[str, int] = {"cohere": 1000, "tei": 32}
#: HTTP statuses worth retrying: overloaded or temporarily unavailable.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class RemoteRerankError(RuntimeError):
    """A rerank server failed, refused the request or answered something unusable.

    ``status_code`` is the HTTP status (None for connection errors and bad answers).
    :class:`~rerank_plugins.RerankPipeline` catches it and keeps the first-stage order.
    """

    def __init__(self, message: str, *, status_code: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url


class RemoteReranker(BaseReranker):
    """Score and rerank through a remote rerank server; same surface as CrossEncoderReranker.

    Scores: with ``api="cohere"`` a score is the server's ``relevance_score`` (0..1; for our
    server and most cross-encoder servers the sigmoid of the logit). With ``api="tei"`` the
    request asks for ``raw_scores``, so a score is the model's raw logit, the same number
    :class:`~rerank_plugins.CrossEncoderReranker` returns by default. One HTTP request
    carries one query: ``score_pairs`` / ``rerank_many`` with several distinct queries send
    one request (or more, above ``batch_documents``) per distinct query.

    Args:
        base_url: The server's root, e.g. ``"http://10.0.0.5:8080"``.
        api: ``"cohere"`` (``{query, documents}`` -> ``results[{index, relevance_score}]``)
            or ``"tei"`` (``{query, texts}`` -> ``[{index, score}]``).
        model: Sent as ``model`` with ``api="cohere"`` (Cohere's API and vLLM need it).
        api_key: Sent as ``Authorization: Bearer <api_key>``.
        timeout: Seconds per HTTP request (connect, read, write, pool).
        max_retries: Retries after a connection error, a timeout, or HTTP 429/502/503/504;
            other errors raise at once.
        batch_documents: Most documents per request; longer lists are split (default 1000
            for cohere, 32 for TEI, whose default client batch limit is 32).
        path: Request path (default ``/v1/rerank`` for cohere, ``/rerank`` for TEI).
        backoff: First retry delay in seconds, doubled per retry (with jitter); a
            ``Retry-After`` header replaces it. Every delay is capped at ``max_backoff``.
        max_backoff: Longest single wait between retries, in seconds.
        max_concurrency: Most requests in flight at once from the async methods.
        headers: Extra HTTP headers for every request.
        client_kwargs: Extra keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient``
            (``verify``, ``proxy``, ``transport``, ...).

    Example:
        >>> from rerank_plugins import RemoteReranker
        >>> reranker = RemoteReranker("http://127.0.0.1:8080", api="tei")
        >>> reranker.rerank("what is a cell?", ["a cell is ...", "the sky"])  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        *,
        api: RemoteAPI = "cohere",
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 2,
        batch_documents: int | None = None,
        path: str | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if api not in DEFAULT_PATHS:
            raise ValueError(f"api must be 'cohere' or 'tei', got {api!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        batch_documents = (
            DEFAULT_BATCH_DOCUMENTS[api] if batch_documents is None else batch_documents
        )
        for name, value in (
            ("batch_documents", batch_documents),
            ("max_concurrency", max_concurrency),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        for name, seconds in (
            ("timeout", timeout),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
        ):
            if not math.isfinite(seconds) or seconds < 0 or (name == "timeout" and seconds == 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
        self.base_url = base_url.rstrip("/")
        self.api: RemoteAPI = api
        self.model = model
        self.url = self.base_url + (path if path is not None else DEFAULT_PATHS[api])
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.batch_documents = batch_documents
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_concurrency = max_concurrency
        from .. import __version__

        self._headers = {"user-agent": f"rerank-plugins/{__version__}", **(headers or {})}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._client_kwargs = dict(client_kwargs or {})
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._async: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None

    @property
    def model_name(self) -> str:
        return self.model or self.base_url

    @property
    def activation(self) -> str:
        """``"sigmoid"`` when scores are 0..1 (cohere), ``"none"`` for raw logits (TEI)."""
        return "sigmoid" if self.api == "cohere" else "none"

    def __repr__(self) -> str:
        return f"RemoteReranker({self.url!r}, api={self.api!r}, model={self.model!r})"

    # ------------------------------------------------------------------ scoring
    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        out = np.empty(len(passages), dtype=np.float32)
        for query, positions in self._requests(queries):
            out[positions] = self._post(query, [passages[i] for i in positions])
        return out

    async def _ascore_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        out = np.empty(len(passages), dtype=np.float32)
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(query: str, positions: list[int]) -> None:
            async with gate:
                out[positions] = await self._apost(query, [passages[i] for i in positions])

        await asyncio.gather(*(one(q, pos) for q, pos in self._requests(queries)))
        return out

    def _requests(self, queries: list[str]) -> list[tuple[str, list[int]]]:
        """(query, positions) per request: one per distinct query, split at batch_documents."""
        groups: dict[str, list[int]] = {}
        for position, query in enumerate(queries):
            groups.setdefault(query, []).append(position)
        size = self.batch_documents
        return [
            (query, positions[start : start + size])
            for query, positions in groups.items()
            for start in range(0, len(positions), size)
        ]

    # ------------------------------------------------------------------ HTTP
    def _body(self, query: str, texts: list[str]) -> dict[str, Any]:
        if self.api == "tei":
            return {"query": query, "texts": texts, "raw_scores": True, "truncate": True}
        body: dict[str, Any] = {"query": query, "documents": texts}
        if self.model is not None:
            body["model"] = self.model
        return body

    def _post(self, query: str, texts: list[str]) -> np.ndarray:
        body = self._body(query, texts)
        client = self._sync_client()
        failure: RemoteRerankError | None = None
        for attempt in range(self.max_retries + 1):
            try:
                response = client.post(self.url, json=body)
            except httpx.TransportError as error:
                failure, delay = self._transport_failure(error, attempt), None
            else:
                failure, delay = self._check_status(response, attempt)
                if failure is None:
                    return self._scores(response, len(texts))
            if attempt == self.max_retries and failure is not None:
                raise failure
            time.sleep(delay if delay is not None else self._delay(attempt, None))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apost(self, query: str, texts: list[str]) -> np.ndarray:
        body = self._body(query, texts)
        client = self._async_client()
        failure: RemoteRerankError | None = None
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.post(self.url, json=body)
            except httpx.TransportError as error:
                failure, delay = self._transport_failure(error, attempt), None
            else:
                failure, delay = self._check_status(response, attempt)
                if failure is None:
                    return self._scores(response, len(texts))
            if attempt == self.max_retries and failure is not None:
                raise failure
            await asyncio.sleep(delay if delay is not None else self._delay(attempt, None))
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_failure(self, error: httpx.TransportError, attempt: int) -> RemoteRerankError:
        return RemoteRerankError(
            f"cannot reach the rerank server at {self.url} ({type(error).__name__}: {error}) "
            f"after {attempt + 1} attempt(s)",
            url=self.url,
        )

    def _check_status(
        self, response: httpx.Response, attempt: int
    ) -> tuple[RemoteRerankError | None, float | None]:
        """(None, None) for a success; (error, retry delay) for a retryable status; raise
        otherwise."""
        status = response.status_code
        if status < 400:
            return None, None
        detail = _error_detail(response)
        error = RemoteRerankError(
            f"rerank server {self.url} answered HTTP {status}: {detail}"
            + (f" (after {attempt + 1} attempts)" if status in RETRY_STATUSES else ""),
            status_code=status,
            url=self.url,
        )
        if status not in RETRY_STATUSES:
            raise error
        return error, self._delay(attempt, response.headers.get("retry-after"))

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before the next try: ``Retry-After`` if given, else jittered doubling."""
        if retry_after is not None:
            seconds = _parse_retry_after(retry_after)
            if seconds is not None:
                return min(self.max_backoff, seconds)
        base = self.backoff * (2**attempt)
        return min(self.max_backoff, base * (0.5 + random.random() / 2))

    def _scores(self, response: httpx.Response, count: int) -> np.ndarray:
        """Scores in request order, from an answer validated index by index."""
        try:
            data = response.json()
        except ValueError:
            raise self._bad_answer("its body is not JSON") from None
        if self.api == "cohere":
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise self._bad_answer("expected an object with a 'results' list")
            items, score_key = data["results"], "relevance_score"
        else:
            if not isinstance(data, list):
                raise self._bad_answer("expected a list of {index, score}")
            items, score_key = data, "score"
        if len(items) != count:
            raise self._bad_answer(f"{len(items)} results for {count} documents")
        out = np.full(count, np.nan, dtype=np.float32)
        seen = np.zeros(count, dtype=bool)
        for position, item in enumerate(items):
            index = item.get("index") if isinstance(item, dict) else None
            score = item.get(score_key) if isinstance(item, dict) else None
            if isinstance(index, bool) or not isinstance(index, int):
                raise self._bad_answer(f"result {position} has no integer 'index'")
            if not 0 <= index < count:
                raise self._bad_answer(
                    f"result {position} has index {index}, outside 0..{count - 1}"
                )
            if seen[index]:
                raise self._bad_answer(f"index {index} appears twice")
            if (
                isinstance(score, bool)
                or not isinstance(score, (int, float))
                or not math.isfinite(score)
            ):
                raise self._bad_answer(f"result {position} has no finite '{score_key}'")
            seen[index] = True
            out[index] = score
        return out

    def _bad_answer(self, problem: str) -> RemoteRerankError:
        return RemoteRerankError(f"unusable answer from {self.url}: {problem}", url=self.url)

    # ------------------------------------------------------------------ clients
    def _sync_client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None or self._client.is_closed:
                self._client = httpx.Client(
                    headers=self._headers, timeout=self.timeout, **self._client_kwargs
                )
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        """One AsyncClient per event loop (a client's connections belong to its loop)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop or self._async[1].is_closed:
            client = httpx.AsyncClient(
                headers=self._headers, timeout=self.timeout, **self._client_kwargs
            )
            self._async = (loop, client)
        return self._async[1]

    def close(self) -> None:
        """Close the sync client's connections (the async one closes with :meth:`aclose`)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def aclose(self) -> None:
        """Close both clients' connections."""
        self.close()
        if self._async is not None and self._async[0] is asyncio.get_running_loop():
            await self._async[1].aclose()
        self._async = None

    def __enter__(self) -> RemoteReranker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteReranker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _parse_retry_after(value: str) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None if unreadable."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error_detail(response: httpx.Response) -> str:
    """The server's own error message (Cohere ``message``, TEI ``error``), else the text."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            if data.get(key):
                return str(data[key])[:300]
    return str(data)[:300]
