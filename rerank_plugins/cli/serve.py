"""``rerank-plugins serve MODEL``: the rerank HTTP API (Cohere v1/v2, TEI) over one model.

Needs the ``[serve]`` extra. One process owns the model; concurrent requests share its
batches. SIGTERM (or Ctrl-C) stops accepting connections, answers the requests in flight,
then exits. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from . import serve_ray
from ._common import CLIError, log, non_negative_float, positive_int
from ._reranker_args import add_cross_encoder_args, load_reranker

DEFAULT_PORT = 8080


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 1..65535, got {text!r}")
    return value


def _api_key(variable: str | None) -> str | None:
    if variable is None:
        return None
    key = os.environ.get(variable, "")
    if not key.strip():
        raise CLIError(
            f"--api-key-env {variable}: the environment variable is unset or empty; export "
            "the key first (the server never starts unauthenticated by mistake)"
        )
    return key.strip()


def cmd_serve(args: argparse.Namespace) -> int:
    api_key = _api_key(args.api_key_env)
    if args.max_queue_pairs < args.max_documents:
        raise CLIError(
            f"--max-queue-pairs {args.max_queue_pairs} is below --max-documents "
            f"{args.max_documents}: a full-size request could never be accepted"
        )
    # A missing [serve] extra fails here (ImportError naming it), before the model loads.
    from ..serving.app import create_app

    uvicorn = importlib.import_module("uvicorn")

    model_name = args.served_model_name or (
        Path(args.model).name if Path(args.model).is_dir() else args.model
    )
    app_kwargs = {
        "model_name": model_name,
        "api_key": api_key,
        "max_documents": args.max_documents,
        "max_request_bytes": args.max_request_bytes,
        "max_queue_pairs": args.max_queue_pairs,
        "max_batch_pairs": args.max_batch_pairs,
        "max_wait_ms": args.max_wait_ms,
    }
    if args.engine == "ray":  # replicas on Ray Serve instead of this process
        return serve_ray.run(args, app_kwargs)
    reranker = load_reranker(args.model, args, long_passages=args.long_passages, activation="none")
    app = create_app(reranker, **app_kwargs)
    log(
        f"serving {model_name} on http://{args.host}:{args.port} "
        f"(POST /v1/rerank /v2/rerank /rerank; GET /health /metrics /v1/models"
        f"{'; bearer auth on' if api_key else ''}); SIGTERM or Ctrl-C drains and stops"
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=args.drain_timeout,
    )
    uvicorn.Server(config).run()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    from ..serving.batcher import (
        DEFAULT_MAX_BATCH_PAIRS,
        DEFAULT_MAX_QUEUE_PAIRS,
        DEFAULT_MAX_WAIT_MS,
    )

    serve = sub.add_parser(
        "serve",
        help="serve a cross-encoder over the Cohere (v1/v2) and TEI rerank HTTP APIs",
        description="Serve MODEL over HTTP: Cohere POST /v1/rerank and /v2/rerank, TEI POST "
        "/rerank, GET /health, /metrics (Prometheus), /v1/models. Needs the [serve] extra.",
    )
    serve.add_argument("model", metavar="MODEL", help="cross-encoder hub id or local directory")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    add_cross_encoder_args(serve)
    serve.add_argument(
        "--long-passages",
        choices=("truncate", "chunk"),
        default="truncate",
        help="passages longer than the window: keep the first window, or score overlapping "
        "windows and keep the best (MaxP)",
    )
    serve.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="require 'Authorization: Bearer <key>' with the key read from this environment "
        "variable (every route but /health; 401 otherwise)",
    )
    serve.add_argument(
        "--max-documents",
        type=positive_int,
        default=1000,
        help="most documents per request; more answers 413 (default 1000)",
    )
    serve.add_argument(
        "--max-request-bytes",
        type=positive_int,
        default=8 * 1024 * 1024,
        help="largest request body; more answers 413 (default 8 MiB)",
    )
    serve.add_argument(
        "--max-queue-pairs",
        type=positive_int,
        default=DEFAULT_MAX_QUEUE_PAIRS,
        help="most pairs accepted and not yet answered; past it requests get 503 with "
        f"Retry-After (default {DEFAULT_MAX_QUEUE_PAIRS}; at least --max-documents)",
    )
    serve.add_argument(
        "--max-batch-pairs",
        type=positive_int,
        default=DEFAULT_MAX_BATCH_PAIRS,
        help="most pairs (from all concurrent requests) scored in one step "
        f"(default {DEFAULT_MAX_BATCH_PAIRS})",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=non_negative_float,
        default=DEFAULT_MAX_WAIT_MS,
        help="how long a step waits for other requests to join once its first pair is "
        f"queued (default {DEFAULT_MAX_WAIT_MS:g}; pairs that arrive while the model is busy "
        "join the next step anyway)",
    )
    serve.add_argument(
        "--served-model-name",
        default=None,
        help="model id reported by /v1/models (default: MODEL, or its directory name)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM, wait at most this long for requests in flight (default: until done)",
    )
    serve.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="uvicorn log level (debug also logs every request)",
    )
    serve_ray.add_arguments(serve)
    serve.set_defaults(func=cmd_serve)
