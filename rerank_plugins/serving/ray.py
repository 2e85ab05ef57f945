"""Ray Serve replicas of the rerank HTTP app: the same API, many processes, GPUs placed by Ray.

:func:`build_app` returns a bound Ray Serve deployment whose replicas each load the
cross-encoder once and serve :func:`~rerank_plugins.serving.create_app`'s FastAPI app as the
deployment's ingress (Cohere v1/v2, TEI, /health, /metrics, /v1/models), with the app's own
cross-request :class:`~rerank_plugins.serving.PairBatcher` inside each replica (measured
faster than ``@serve.batch`` here: docs/benchmarks.md). Ray Serve's proxy spreads requests over
the replicas, queues what they cannot take yet, and restarts a replica that dies.

Failure contract: a replica works on at most ``max_ongoing_requests`` requests at once (the
rest wait in Serve's queue and go to live replicas), so a replica that dies fails at most that
many requests, each with an explicit HTTP 500 from Serve's proxy; none hangs or is lost
silently. The replacement replica loads the model and joins without a restart of anything
else. Needs the ``[ray]`` extra.

Example:
    >>> from ray import serve  # doctest: +SKIP
    >>> from rerank_plugins.serving.ray import build_app  # doctest: +SKIP
    >>> serve.run(build_app("my-ce", num_replicas=4, num_gpus_per_replica=1))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

try:
    from ray import serve
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"rerank_plugins.serving.ray needs Ray Serve ({error}); install it with: "
        'pip install "rerank-plugins[ray]"'
    ) from error

from .._validation import check_positive_int
from ..distributed.cluster import actor_reranker_kwargs
from ._deps import require_serve_extra

require_serve_extra()

#: Requests one replica works on at once: enough that its batcher always has the next
#: request queued while one is scored, few enough that a replica's death fails at most
#: this many requests (Serve queues the rest and routes them to live replicas).
DEFAULT_MAX_ONGOING_REQUESTS = 2
#: Name of the deployment (and the default Serve application name of ``serve --engine ray``).
DEPLOYMENT_NAME = "RerankPlugins"


@serve.ingress()
class RerankReplica:
    """One replica: loads the cross-encoder, then serves ``create_app`` over it.

    Ray Serve calls ``__serve_build_asgi_app__`` after the constructor, on the replica, and
    runs the app's lifespan (so the batcher starts, and drains when Serve stops the replica).
    """

    def __init__(
        self,
        model: str,
        reranker_kwargs: Mapping[str, Any],
        app_kwargs: Mapping[str, Any],
    ) -> None:
        from ..cross_encoder import CrossEncoderReranker

        self.reranker = CrossEncoderReranker(model, **dict(reranker_kwargs))
        self.app_kwargs = dict(app_kwargs)

    def __serve_build_asgi_app__(self) -> Any:
        from .app import create_app

        return create_app(self.reranker, **self.app_kwargs)


def build_app(
    model: str | os.PathLike[str],
    *,
    num_replicas: int = 1,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    target_ongoing_requests: float | None = None,
    num_gpus_per_replica: float = 0,
    num_cpus_per_replica: float = 1,
    max_ongoing_requests: int = DEFAULT_MAX_ONGOING_REQUESTS,
    app_kwargs: Mapping[str, Any] | None = None,
    deployment_options: Mapping[str, Any] | None = None,
    **reranker_kwargs: Any,
) -> serve.Application:
    """The rerank app as a bound Ray Serve deployment, for ``serve.run`` or your own graph.

    Fixed size by default (``num_replicas``); give ``min_replicas``/``max_replicas`` (and
    optionally ``target_ongoing_requests``) for Serve's autoscaler instead.

    Args:
        model: Hub id or local directory of the cross-encoder (readable on every node).
        num_replicas: Replicas of a fixed-size deployment.
        min_replicas: Autoscaling: fewest replicas (default 1 when ``max_replicas`` is set).
        max_replicas: Autoscaling: most replicas.
        target_ongoing_requests: Autoscaling: requests per replica Serve aims for (Serve's
            default 2); at most ``max_ongoing_requests``.
        num_gpus_per_replica: GPUs per replica (fractions share a GPU). With GPUs the
            reranker's device defaults to ``"cuda"``, else ``"cpu"``.
        num_cpus_per_replica: CPUs reserved per replica; on CPU also the torch threads.
        max_ongoing_requests: Requests a replica works on at once (see the module docstring:
            more gives its batcher more to batch, and more to lose if the replica dies).
        app_kwargs: :func:`~rerank_plugins.serving.create_app` settings per replica
            (``api_key``, ``max_documents``, ``max_batch_pairs``, ``max_wait_ms``, ...).
        deployment_options: Further ``serve.deployment`` options (``max_queued_requests``,
            ``health_check_period_s``, ``name``, ...).
        **reranker_kwargs: :class:`~rerank_plugins.CrossEncoderReranker` settings.

    Example:
        >>> from ray import serve  # doctest: +SKIP
        >>> app = build_app("my-ce", min_replicas=1, max_replicas=8, num_gpus_per_replica=1)
        >>> serve.run(app, route_prefix="/")  # doctest: +SKIP
    """
    options = _deployment_options(
        num_replicas=num_replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_ongoing_requests=target_ongoing_requests,
        num_gpus=num_gpus_per_replica,
        num_cpus=num_cpus_per_replica,
        max_ongoing_requests=max_ongoing_requests,
    )
    options.update(deployment_options or {})
    kwargs = actor_reranker_kwargs(
        reranker_kwargs, num_gpus=num_gpus_per_replica, num_cpus=num_cpus_per_replica
    )
    kwargs.setdefault("activation", "none")  # the app applies the sigmoid for relevance_score
    deployment: Any = serve.deployment(RerankReplica, name=DEPLOYMENT_NAME)
    deployment = deployment.options(**options)
    return deployment.bind(os.fspath(model), kwargs, dict(app_kwargs or {}))


def _deployment_options(
    *,
    num_replicas: int,
    min_replicas: int | None,
    max_replicas: int | None,
    target_ongoing_requests: float | None,
    num_gpus: float,
    num_cpus: float,
    max_ongoing_requests: int,
) -> dict[str, Any]:
    """Serve deployment options from the arguments, each checked with a message naming it."""
    check_positive_int(num_replicas, "num_replicas")
    check_positive_int(max_ongoing_requests, "max_ongoing_requests")
    if num_gpus < 0:
        raise ValueError(f"num_gpus_per_replica must be >= 0, got {num_gpus}")
    if num_cpus <= 0:
        raise ValueError(f"num_cpus_per_replica must be > 0, got {num_cpus}")
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus},
        "max_ongoing_requests": max_ongoing_requests,
    }
    autoscaling = min_replicas is not None or max_replicas is not None
    if not autoscaling:
        if target_ongoing_requests is not None:
            raise ValueError("target_ongoing_requests needs autoscaling: give max_replicas")
        options["num_replicas"] = num_replicas
        return options
    if max_replicas is None:
        raise ValueError("autoscaling needs max_replicas (min_replicas alone sets no ceiling)")
    low = 1 if min_replicas is None else min_replicas
    if isinstance(low, bool) or not isinstance(low, int) or low < 0:
        raise ValueError(f"min_replicas must be an int >= 0, got {min_replicas!r}")
    check_positive_int(max_replicas, "max_replicas")
    if low > max_replicas:
        raise ValueError(f"min_replicas={low} is above max_replicas={max_replicas}")
    config: dict[str, Any] = {"min_replicas": low, "max_replicas": max_replicas}
    if target_ongoing_requests is not None:
        if not 0 < target_ongoing_requests <= max_ongoing_requests:
            raise ValueError(
                f"target_ongoing_requests must be within (0, max_ongoing_requests="
                f"{max_ongoing_requests}], got {target_ongoing_requests}"
            )
        config["target_ongoing_requests"] = target_ongoing_requests
    options["autoscaling_config"] = config
    return options
