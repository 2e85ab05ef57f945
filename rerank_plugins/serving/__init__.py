"""Serve a reranker over the rerank HTTP APIs the ecosystem speaks (Cohere v1/v2, TEI).

``create_app`` needs the ``[serve]`` extra (FastAPI, uvicorn, prometheus-client); the
batcher (:class:`PairBatcher`) needs nothing beyond the core, so another host (a Ray Serve
replica) can drive it directly. The core never imports this package; ``rerank-plugins serve
MODEL`` runs it from the command line. Names are imported on first use.

Example:
    >>> from rerank_plugins import CrossEncoderReranker
    >>> from rerank_plugins.serving import create_app
    >>> app = create_app(CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2"))
    >>> # uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import APIError, create_app
    from .batcher import BatcherClosedError, PairBatcher, QueueFullError
    from .metrics import ServerMetrics

_LAZY = {
    "APIError": ".app",
    "create_app": ".app",
    "ServerMetrics": ".metrics",
    "BatcherClosedError": ".batcher",
    "PairBatcher": ".batcher",
    "QueueFullError": ".batcher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'rerank_plugins.serving' has no attribute {name!r}")


__all__ = [
    "APIError",
    "BatcherClosedError",
    "PairBatcher",
    "QueueFullError",
    "ServerMetrics",
    "create_app",
]
