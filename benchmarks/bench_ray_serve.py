"""Ray Serve replica batching: the app's own PairBatcher vs Ray Serve's ``@serve.batch``.

Same replica (one cross-encoder, the same FastAPI app from ``create_app``), same
``max_ongoing_requests``, same concurrent clients posting SciFact passages to ``/v2/rerank``;
only the cross-request batching differs:

* ``app``: ``serving.ray.build_app`` as shipped, the app's :class:`PairBatcher` (pairs from
  concurrent requests queued and scored together, up to ``max_batch_pairs`` pairs a step, in a
  model thread);
* ``serve.batch``: the app's batcher replaced by one whose ``submit`` goes through
  ``@serve.batch(max_batch_size=<requests>, batch_wait_timeout_s=...)``, each batch of
  requests scored with one ``score_pairs`` call in a thread.

The ``app`` row runs first and last (drift on a shared machine shows as their difference).

    nice -n 5 python benchmarks/bench_ray_serve.py --requests 24 --documents 16 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def _serve_batch_replica(max_batch_size: int, wait_s: float) -> Any:
    """The shipped replica with its batcher swapped for one built on ``@serve.batch``."""
    from ray import serve

    from rerank_plugins.serving.batcher import PairBatcher

    class ServeBatchBatcher(PairBatcher):
        async def submit(self, queries, passages):  # type: ignore[override]
            return await self._batched(list(queries), list(passages))

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_s)
        async def _batched(self, queries: list[list[str]], passages: list[list[str]]):
            pairs = [
                (q, p)
                for qs, ps in zip(queries, passages, strict=True)
                for q, p in zip(qs, ps, strict=True)
            ]
            scores = await asyncio.to_thread(self.reranker.score_pairs, pairs)
            bounds = np.cumsum([0, *(len(ps) for ps in passages)])
            return [scores[bounds[i] : bounds[i + 1]] for i in range(len(passages))]

    @serve.ingress()
    class ServeBatchReplica:
        def __init__(self, model: str, reranker_kwargs: dict) -> None:
            from rerank_plugins import CrossEncoderReranker

            self.reranker = CrossEncoderReranker(model, **reranker_kwargs)

        def __serve_build_asgi_app__(self):
            from rerank_plugins.serving import create_app

            return create_app(self.reranker, batcher=ServeBatchBatcher(self.reranker))

    return ServeBatchReplica


async def _drive(url: str, bodies: list[dict], clients: int) -> list[float]:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            response = await client.post("/v2/rerank", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=url, timeout=300.0) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--documents", type=int, default=16, help="documents per request")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the one replica")
    args = parser.parse_args()

    from bench_ray import scifact_pairs
    from ray import serve

    from rerank_plugins.distributed import ray_instance
    from rerank_plugins.serving.ray import build_app

    pairs = scifact_pairs(Path(args.data), args.requests * args.documents, args.documents, seed=0)
    bodies = [
        {
            "query": pairs[i * args.documents][0],
            "documents": [p for _, p in pairs[i * args.documents : (i + 1) * args.documents]],
        }
        for i in range(args.requests)
    ]
    kwargs = {"device": "cpu", "max_length": args.max_length, "num_threads": args.cpus}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    options = {"ray_actor_options": {"num_cpus": args.cpus}, "max_ongoing_requests": args.clients}
    rows = []
    with ray_instance(num_cpus=args.cpus, object_store_memory=256 * 1024**2, quiet=True):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for name in ("app", "serve.batch", "app"):
            if name == "app":
                app = build_app(
                    args.model,
                    num_cpus_per_replica=args.cpus,
                    max_ongoing_requests=args.clients,
                    **{k: v for k, v in kwargs.items() if k != "num_threads"},
                )
            else:
                replica = _serve_batch_replica(args.clients, 0.002)
                app = serve.deployment(replica, name="ServeBatch").options(**options)
                app = app.bind(args.model, kwargs)
            serve.run(app, name="bench", route_prefix="/")
            asyncio.run(_drive(url, bodies[:2], 2))  # warm-up
            start = time.perf_counter()
            latencies = asyncio.run(_drive(url, bodies, args.clients))
            seconds = time.perf_counter() - start
            total = args.requests * args.documents
            rows.append((name, total / seconds, np.percentile(latencies, [50, 95]) * 1000))
            serve.delete("bench")
        serve.shutdown()
    print(
        f"{args.requests} requests x {args.documents} SciFact documents, {args.clients} clients, "
        f"1 replica x {args.cpus} CPU, max_length {args.max_length}"
    )
    print("| batching | pairs/s | p50 ms | p95 ms |")
    print("|---|---:|---:|---:|")
    for name, rate, (p50, p95) in rows:
        print(f"| {name} | {rate:.1f} | {p50:.0f} | {p95:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
