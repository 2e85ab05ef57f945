"""``rerank-plugins serve MODEL --engine ray``: the same HTTP app as Ray Serve replicas.

Not a subcommand of its own: ``serve`` adds these flags and hands over when ``--engine ray``.
Without ``--address`` the command starts a local Ray instance; with it, it joins that cluster.
SIGTERM or Ctrl-C deletes the Serve app (its replicas finish their requests in flight first),
then stops Serve and Ray if this command started them; a joined cluster keeps running.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from types import FrameType
from typing import Any

from ._common import log, positive_float, positive_int
from ._ray import add_engine_args, ray_session, require_ray
from ._reranker_args import reranker_kwargs

#: Serve application name (``serve status`` / the dashboard show it).
APP_NAME = "rerank-plugins"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--engine ray`` flags of ``serve`` (Ray is not imported here)."""
    group = add_engine_args(
        p,
        title="Ray Serve",
        local_help="one server process",
        ray_help="Ray Serve replicas of the same app behind Serve's HTTP proxy on --host/--port",
        unit="replica",
    )
    group.add_argument(
        "--replicas", type=positive_int, default=1, help="replicas of a fixed-size deployment"
    )
    group.add_argument(
        "--min-replicas",
        type=int,
        default=None,
        help="autoscaling: fewest replicas (default 1 with --max-replicas)",
    )
    group.add_argument(
        "--max-replicas", type=positive_int, default=None, help="autoscaling: most replicas"
    )
    group.add_argument(
        "--target-ongoing-requests",
        type=positive_float,
        default=None,
        help="autoscaling: requests per replica Serve aims for (Serve's default: 2)",
    )
    group.add_argument(
        "--max-ongoing-requests",
        type=positive_int,
        default=None,
        help="requests one replica works on at once (default 2): more gives its batcher more "
        "to batch, and more requests fail if the replica dies; Serve queues the rest",
    )


def run(args: argparse.Namespace, app_kwargs: dict[str, Any]) -> int:
    """Deploy, serve until SIGTERM/SIGINT, then undo what this command set up."""
    require_ray()
    from ray import serve

    from ..serving.ray import DEFAULT_MAX_ONGOING_REQUESTS, build_app

    kwargs = reranker_kwargs(args)
    if kwargs.get("device") == "auto":  # each replica's resources decide: cuda with GPUs
        del kwargs["device"]
    deployment_options: dict[str, Any] = {"logging_config": {"log_level": args.log_level.upper()}}
    if args.drain_timeout is not None:
        deployment_options["graceful_shutdown_timeout_s"] = args.drain_timeout
    app = build_app(  # argument errors surface here, before Ray starts
        args.model,
        num_replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests,
        num_gpus_per_replica=args.num_gpus_per_replica,
        num_cpus_per_replica=args.num_cpus_per_replica,
        max_ongoing_requests=args.max_ongoing_requests or DEFAULT_MAX_ONGOING_REQUESTS,
        app_kwargs=app_kwargs,
        deployment_options=deployment_options,
        long_passages=args.long_passages,
        **kwargs,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        raise KeyboardInterrupt  # also interrupts a deployment that is still starting

    with ray_session(args) as started_ray:
        # After ray.init, which installs its own SIGTERM handler (exit at once) in the driver.
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        started_serve = False
        try:
            log(f"starting Ray Serve on http://{args.host}:{args.port} ...")
            serve.start(http_options={"host": args.host, "port": args.port})
            started_serve = started_ray
            serve.run(app, name=APP_NAME, route_prefix="/")
            log(
                f"serving {app_kwargs['model_name']} with Ray Serve on "
                f"http://{args.host}:{args.port} ({_replicas(args)}); SIGTERM or Ctrl-C "
                "drains and stops"
            )
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            for sig in previous:  # a second signal must not cut the drain short
                signal.signal(sig, signal.SIG_IGN)
            log("stopping: replicas finish their requests in flight ...")
            started = time.perf_counter()
            if started_serve:
                serve.shutdown()  # our own Ray instance: all of Serve goes
            else:
                serve.delete(APP_NAME)  # a joined cluster: only our app goes
            log(f"  stopped in {time.perf_counter() - started:.1f} s")
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return 0


def _replicas(args: argparse.Namespace) -> str:
    if args.max_replicas is not None:
        low = 1 if args.min_replicas is None else args.min_replicas
        return f"autoscaling {low}..{args.max_replicas} replicas"
    return f"{args.replicas} replica(s)"
