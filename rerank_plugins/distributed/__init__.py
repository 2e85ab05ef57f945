"""Scale-out on Ray: score (query, passage) pairs over a Ray Data dataset on a cluster.

Needs the ``[ray]`` extra; nothing else in rerank-plugins imports this package, so the core
and the other extras never load Ray. The online half (Ray Serve replicas of the HTTP app)
lives in :mod:`rerank_plugins.serving.ray`. See docs/scaling.md.

Example:
    >>> import ray  # doctest: +SKIP
    >>> from rerank_plugins.distributed import rerank_dataset  # doctest: +SKIP
    >>> ds = ray.data.from_items([{"query": "q", "passage": "p", "doc": 7}])  # doctest: +SKIP
    >>> rerank_dataset(ds, "cross-encoder/ms-marco-MiniLM-L-6-v2").take_all()  # doctest: +SKIP
    [{'query': 'q', 'passage': 'p', 'doc': 7, 'score': -11.2}]
"""

from __future__ import annotations

try:
    import ray
    import ray.data  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"rerank_plugins.distributed needs Ray Data ({error}); install it with: "
        'pip install "rerank-plugins[ray]"'
    ) from error

from .cluster import ray_instance
from .dataset import DEFAULT_BATCH_SIZE, PairScorer, rerank_dataset
from .reranker import RayDataReranker

__all__ = ["DEFAULT_BATCH_SIZE", "PairScorer", "RayDataReranker", "ray_instance", "rerank_dataset"]
