"""The rerank server under 1, 4 and 16 concurrent clients vs in-process scoring, in one run.

Each SciFact test query (every ``--stride``-th) brings its ``--candidates`` BM25 passages
(bm25s, as in bench_cpu_backends.py). The same (query, passage) pairs are scored

* in-process by ``CrossEncoderReranker.score_pairs`` over all pairs at once (the throughput
  baseline) and by ``score`` one query at a time (what one client does), before and after
  the server rows, so drift on a shared machine shows;
* by ``rerank-plugins serve`` (a subprocess on 127.0.0.1, same model settings) through
  ``POST /v2/rerank``, one request per query, from 1, 4 and 16 concurrent asyncio clients in
  this process.

Reports pairs/s, per-request p50/p95/p99 latency, the ratio to in-process pairs/s, the
server's scoring steps (pairs of concurrent requests scored together) and the largest score
difference to in-process (sigmoid of the logit). Loopback only; every loop is bounded.

    nice -n 5 python benchmarks/bench_serve.py --queries 32 --candidates 20 \
        --model ../shared/models/minilm-l6-scifact-ce --data ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared"

from bench_cpu_backends import bm25_candidates, load_scifact  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], url: str, timeout: float, env: dict | None = None):
    """Run a server command, wait until ``url``/health answers 200; return the process."""
    import httpx

    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[0]} exited with {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"{command[0]} not ready after {timeout} s")


def start_ours(model: str, extra: list[str], timeout: float):
    port = free_port()
    command = [sys.executable, "-m", "rerank_plugins", "serve", model, "--port", str(port)]
    command += ["--device", "cpu", "--log-level", "warning", *extra]
    url = f"http://127.0.0.1:{port}"
    return start(command, url, timeout, {"PYTHONPATH": str(ROOT)}), url


def start_infinity(binary: str, model: str, timeout: float):
    """infinity-emb's own server (its own virtualenv), offline, torch engine on CPU."""
    port = free_port()
    command = [binary, "v2", "--model-id", model, "--device", "cpu", "--engine", "torch"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-bettertransformer"]
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}
    url = f"http://127.0.0.1:{port}"
    return start(command, url, timeout, {**offline, "INFINITY_ANONYMOUS_USAGE_STATS": "0"}), url


def percentiles(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies) * 1000
    return {f"p{q}_ms": float(np.percentile(values, q)) for q in (50, 95, 99)}


def in_process(reranker, requests: list[tuple[str, list[str]]]) -> dict[str, dict]:
    pairs = [(q, p) for q, passages in requests for p in passages]
    started = time.perf_counter()
    flat = reranker.score_pairs(pairs)
    all_at_once = time.perf_counter() - started
    latencies = []
    for query, passages in requests:
        started = time.perf_counter()
        reranker.score(query, passages)
        latencies.append(time.perf_counter() - started)
    return {
        "score_pairs": {"pairs_per_s": len(pairs) / all_at_once, "seconds": all_at_once},
        "per_query": {"pairs_per_s": len(pairs) / sum(latencies), **percentiles(latencies)},
        "_scores": flat,
    }


async def serve_level(server: dict, requests: list[tuple[str, list[str]]], clients: int) -> dict:
    """Send every request once from ``clients`` concurrent clients; time each request."""
    import httpx

    url, path, extra = server["url"], server["path"], server["body"]
    queue = list(enumerate(requests))
    latencies: list[float] = []
    answers: dict[int, list[dict]] = {}

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            number, (query, passages) = queue.pop(0)
            started = time.perf_counter()
            body = {"query": query, "documents": passages, **extra}
            response = await http.post(path, json=body)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            answers[number] = response.json()["results"]

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        steps_before = await _steps(http, server)
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
        steps_after = await _steps(http, server)
    steps = None if steps_before is None else steps_after - steps_before
    pairs = sum(len(p) for _, p in requests)
    return {
        "server": server["name"],
        "clients": clients,
        "pairs_per_s": pairs / wall,
        "seconds": wall,
        "scoring_steps": steps,
        "requests": len(requests),
        **percentiles(latencies),
        "_answers": answers,
    }


async def _steps(http, server: dict) -> int | None:
    """Scoring steps so far (our server's metric; None for a server without it)."""
    if server["name"] != "ours":
        return None
    response = await http.get("/metrics")
    for line in response.text.splitlines():
        if line.startswith("rerank_batch_pairs_count "):
            return int(float(line.split()[-1]))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--stride", type=int, default=7)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--server-args", default="", help="extra flags for rerank-plugins serve")
    parser.add_argument(
        "--infinity",
        default=None,
        metavar="BIN",
        help="infinity_emb executable (in its own virtualenv) to serve the same model side by side",
    )
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    from rerank_plugins import CrossEncoderReranker

    corpus, queries, _ = load_scifact(Path(args.data), args.queries, args.stride)
    candidates = bm25_candidates(corpus, queries, args.candidates)
    requests = [(queries[q], [corpus[d] for d in candidates[q]]) for q in queries]
    pairs = sum(len(p) for _, p in requests)
    print(f"# {len(requests)} queries x {args.candidates} candidates = {pairs} pairs", flush=True)

    reranker = CrossEncoderReranker(args.model, device="cpu")
    reranker.score_pairs([(requests[0][0], requests[0][1][0])])  # warm-up
    processes = []
    servers = []
    try:
        process, url = start_ours(args.model, args.server_args.split(), args.startup_timeout)
        processes.append(process)
        servers.append({"name": "ours", "url": url, "path": "/v2/rerank", "body": {}})
        if args.infinity:
            import httpx

            process, url = start_infinity(args.infinity, args.model, args.startup_timeout)
            processes.append(process)
            model_id = httpx.get(url + "/models").json()["data"][0]["id"]
            servers.append(
                {"name": "infinity", "url": url, "path": "/rerank", "body": {"model": model_id}}
            )
        before = in_process(reranker, requests)
        print(f"# in-process: {before['score_pairs']['pairs_per_s']:.1f} pairs/s", flush=True)
        for server in servers:  # warm-up: connections, first batches
            asyncio.run(serve_level(server, requests[:2], 1))
        levels = []
        for clients in (int(c) for c in args.clients.split(",")):
            for server in servers:  # side by side, level by level
                level = asyncio.run(serve_level(server, requests, clients))
                levels.append(level)
                print(
                    f"# {server['name']}, {clients} clients: {level['pairs_per_s']:.1f} pairs/s",
                    flush=True,
                )
        after = in_process(reranker, requests)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
    report = summarise(args, requests, before, after, levels)
    print(json.dumps(report, indent=2))
    print_table(report, before, after)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def summarise(args, requests, before: dict, after: dict, levels: list[dict]) -> dict:
    """Ratios to the in-process mean, and each server's largest score difference to it."""
    baseline = (before["score_pairs"]["pairs_per_s"] + after["score_pairs"]["pairs_per_s"]) / 2
    probabilities = 1 / (1 + np.exp(-before["_scores"].astype(np.float64)))
    bounds = np.cumsum([0, *(len(p) for _, p in requests)])
    worst: dict[str, float] = {}
    for level in levels:
        for number, results in level.pop("_answers").items():
            want = probabilities[bounds[number] : bounds[number + 1]]
            got = np.array(
                [r["relevance_score"] for r in sorted(results, key=lambda r: r["index"])]
            )
            diff = float(np.abs(got - want).max())
            worst[level["server"]] = max(worst.get(level["server"], 0.0), diff)
        level["ratio_to_in_process"] = level["pairs_per_s"] / baseline
    return {
        "pairs": int(bounds[-1]),
        "queries": len(requests),
        "candidates": args.candidates,
        "in_process_before": {k: v for k, v in before.items() if not k.startswith("_")},
        "in_process_after": {k: v for k, v in after.items() if not k.startswith("_")},
        "in_process_pairs_per_s": baseline,
        "server": levels,
        "max_abs_score_diff": worst,
    }


def print_table(report: dict, before: dict, after: dict) -> None:
    baseline = report["in_process_pairs_per_s"]
    print("\n| row | pairs/s | × in-process | p50 ms | p95 ms | p99 ms | scoring steps |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, run in (("before", before), ("after", after)):
        print(
            f"| in-process `score_pairs`, all pairs at once ({label}) | "
            f"{run['score_pairs']['pairs_per_s']:.1f} | | | | | |"
        )
        q = run["per_query"]
        print(
            f"| in-process `score`, one query at a time ({label}) | {q['pairs_per_s']:.1f} | "
            f"{q['pairs_per_s'] / baseline:.2f} | {q['p50_ms']:.0f} | {q['p95_ms']:.0f} | "
            f"{q['p99_ms']:.0f} | |"
        )
    for level in report["server"]:
        steps = level["scoring_steps"]
        shared = "-" if steps is None else f"{steps} for {level['requests']} requests"
        print(
            f"| {level['server']}, {level['clients']} client(s) | {level['pairs_per_s']:.1f} | "
            f"{level['ratio_to_in_process']:.2f} | {level['p50_ms']:.0f} | {level['p95_ms']:.0f} "
            f"| {level['p99_ms']:.0f} | {shared} |"
        )


if __name__ == "__main__":
    main()
