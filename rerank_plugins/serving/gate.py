"""In front of the app: bearer auth, the body-size limit and per-route metrics (plain ASGI).

Errors carry each API's own shape: TEI's ``{"error", "error_type"}`` on ``/rerank``, Cohere's
``{"message"}`` elsewhere, both plus ``field`` (the part of the request at fault).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Paths that get their own metrics label (anything else is ``other``).
ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank", "/health", "/metrics", "/v1/models")


class APIError(Exception):
    """An error answer: HTTP ``status``, a message, the field at fault, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        error_type: str = "validation",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.error_type = error_type
        self.headers = headers or {}

    def body(self, path: str) -> dict[str, Any]:
        """TEI's ``{"error", "error_type"}`` on ``/rerank``, Cohere's ``{"message"}`` elsewhere."""
        if path.rstrip("/") == "/rerank":
            body: dict[str, Any] = {"error": self.message, "error_type": self.error_type}
        else:
            body = {"message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class Gate:
    """Auth, body-size limit and per-route metrics in front of the app (plain ASGI, cheap)."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        api_key: str | None,
        max_request_bytes: int,
        metrics: ServerMetrics,
    ) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_request_bytes = max_request_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.expected is not None and path != "/health" and not self._authorized(scope):
                await _send_error(
                    send_status,
                    path,
                    APIError(
                        401,
                        "missing or wrong API key: send 'Authorization: Bearer <key>'",
                        field="Authorization",
                        error_type="unauthorized",
                        headers={"WWW-Authenticate": "Bearer"},
                    ),
                )
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, receive)
                if body is None:
                    await _send_error(
                        send_status,
                        path,
                        APIError(
                            413,
                            f"the request body is larger than {self.max_request_bytes} bytes",
                            field="body",
                        ),
                    )
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_status)
        finally:
            route = path if path in ROUTES else "other"
            self.metrics.observe_request(route, status, time.perf_counter() - started)

    def _authorized(self, scope: Scope) -> bool:
        assert self.expected is not None
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, token = value.partition(b" ")
                return hmac.compare_digest(b"Bearer " + token.strip(), self.expected) and (
                    scheme.lower() == b"bearer"
                )
        return False

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is (or declares itself) over the limit."""
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_request_bytes:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send: Send, path: str, error: APIError) -> None:
    payload = json.dumps(error.body(path)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
