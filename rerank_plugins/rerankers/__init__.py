"""Rerankers that share one surface (:class:`BaseReranker`): local, cascaded, remote.

``RemoteReranker`` / ``RemoteRerankError`` are imported on first use (they need httpx, the
``[remote]`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BaseReranker

if TYPE_CHECKING:
    from .remote import RemoteReranker, RemoteRerankError

_LAZY = {"RemoteReranker", "RemoteRerankError"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import remote

        return getattr(remote, name)
    raise AttributeError(f"module 'rerank_plugins.rerankers' has no attribute {name!r}")


__all__ = ["BaseReranker", "RemoteRerankError", "RemoteReranker"]
