"""Prometheus metrics of one server: latency per route, pairs scored, batch sizes, queue depth.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (several apps in one
process, as in tests or a Ray replica, never collide); ``GET /metrics`` renders it.
"""

from __future__ import annotations

from collections.abc import Callable

from ._deps import require_serve_extra

require_serve_extra()

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Seconds: from loopback sub-millisecond answers to long CPU requests.
LATENCY_BUCKETS = (
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Pairs per worker step (one ``score_pairs`` call).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ServerMetrics:
    """The server's metric families, registered in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rerank_requests",
            "HTTP requests by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "rerank_request_duration_seconds",
            "Time from request received to response sent, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pairs = Counter("rerank_pairs_scored", "(query, document) pairs scored", registry=r)
        self.documents = Histogram(
            "rerank_request_documents",
            "Documents per rerank request",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_pairs = Histogram(
            "rerank_batch_pairs",
            "Pairs per scoring step (pairs of concurrent requests scored together)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "rerank_batch_duration_seconds",
            "Model time per scoring step",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_pairs = Gauge(
            "rerank_queue_pairs", "Pairs accepted and not yet answered (queue depth)", registry=r
        )
        self.rejected = Counter(
            "rerank_queue_rejected",
            "Requests refused with 503 because the queue was full or the server was draining",
            registry=r,
        )

    def track_queue(self, depth: Callable[[], float]) -> None:
        """Read the queue depth from ``depth()`` at every scrape."""
        self.queue_pairs.set_function(depth)

    def observe_step(self, pairs: int, seconds: float) -> None:
        self.pairs.inc(pairs)
        self.batch_pairs.observe(pairs)
        self.batch_seconds.observe(seconds)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
