"""rerank-plugins: hybrid retrieval, then a batched cross-encoder that reorders the candidates.

The core never imports LangChain or LlamaIndex; adapters live in
:mod:`rerank_plugins.integrations`. Hybrid-retrieval classes need the ``[hybrid]`` extra and
are imported lazily.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from ._models import ModelNotFoundError
from .cross_encoder import CrossEncoderReranker
from .rerankers import BaseReranker
from .types import Hit, Reranker, RerankResult

if TYPE_CHECKING:
    from .hybrid import HybridRetriever
    from .pipeline import PipelineResult, RerankPipeline
    from .rerankers.remote import RemoteReranker, RemoteRerankError

try:  # the version lives in pyproject.toml only
    __version__ = _metadata.version("rerank-plugins")
except _metadata.PackageNotFoundError:  # pragma: no cover - source tree without an install
    __version__ = "0+unknown"

_LAZY = {
    "HybridRetriever": ("rerank_plugins.hybrid", "HybridRetriever"),
    "RerankPipeline": ("rerank_plugins.pipeline", "RerankPipeline"),
    "PipelineResult": ("rerank_plugins.pipeline", "PipelineResult"),
    "RemoteReranker": ("rerank_plugins.rerankers.remote", "RemoteReranker"),
    "RemoteRerankError": ("rerank_plugins.rerankers.remote", "RemoteRerankError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'rerank_plugins' has no attribute {name!r}")


__all__ = [
    "BaseReranker",
    "CrossEncoderReranker",
    "Hit",
    "HybridRetriever",
    "ModelNotFoundError",
    "PipelineResult",
    "RemoteRerankError",
    "RemoteReranker",
    "RerankPipeline",
    "RerankResult",
    "Reranker",
    "__version__",
]
