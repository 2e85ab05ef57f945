"""Scale-out on Ray: score (query, passage) pairs over a Ray Data dataset on a cluster.

Needs the ``[ray]`` extra; nothing else in rerank-plugins imports this package, so the core
and the other extras never load Ray. Names are imported on first use (Ray Data only when a
Ray Data name is asked for). The online half (Ray Serve replicas of the HTTP app) lives in
:mod:`rerank_plugins.serving.ray`. See docs/scaling.md.

Example:
    >>> import ray  # doctest: +SKIP
    >>> from rerank_plugins.distributed import rerank_dataset  # doctest: +SKIP
    >>> ds = ray.data.from_items([{"query": "q", "passage": "p", "doc": 7}])  # doctest: +SKIP
    >>> rerank_dataset(ds, "cross-encoder/ms-marco-MiniLM-L-6-v2").take_all()  # doctest: +SKIP
    [{'query': 'q', 'passage': 'p', 'doc': 7, 'score': -11.2}]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:
    import ray  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"rerank_plugins.distributed needs Ray ({error}); install it with: "
        'pip install "rerank-plugins[ray]"'
    ) from error

if TYPE_CHECKING:
    from .cluster import ray_instance
    from .dataset import DEFAULT_BATCH_SIZE, PairScorer, rerank_dataset
    from .reranker import RayDataReranker

_LAZY = {
    "DEFAULT_BATCH_SIZE": ".dataset",
    "PairScorer": ".dataset",
    "rerank_dataset": ".dataset",
    "RayDataReranker": ".reranker",
    "ray_instance": ".cluster",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'rerank_plugins.distributed' has no attribute {name!r}")


__all__ = ["DEFAULT_BATCH_SIZE", "PairScorer", "RayDataReranker", "ray_instance", "rerank_dataset"]
