"""Does ``rerank_timeout`` fall back only for the queries that are themselves too slow?

Two bounded scenarios with a fake reranker that sleeps (no model, no CPU load), run against
whatever ``rerank_plugins`` is on the path:

* ``poisoning``: ``--slow`` queries whose scoring takes ``--slow-s`` (past ``--timeout``) run
  one after another, then fast queries (``--fast-s``) for at most ``--fast-limit`` queries or
  ``--fast-budget-s`` seconds. Reported: how many fast queries fell back before the first one
  was reranked, and how long that took.
* ``concurrent``: ``--concurrent`` ``arun`` calls at once, each scoring in ``--fast-s``;
  reported: how many fell back (none should: each one's own scoring is within the timeout).

Usage::

    python benchmarks/bench_timeouts.py --timeout 0.05 --slow 50 --slow-s 0.5 --fast-s 0.03
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from rerank_plugins.pipeline import RerankPipeline
from rerank_plugins.types import Hit

DOCS = [Hit(id=str(i), text=f"passage {i}", score=float(-i)) for i in range(5)]


class SleepyReranker:
    """Sleeps ``slow_s`` for queries starting with "slow", ``fast_s`` otherwise."""

    def __init__(self, slow_s: float, fast_s: float) -> None:
        self.slow_s, self.fast_s = slow_s, fast_s

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        time.sleep(self.slow_s if query.startswith("slow") else self.fast_s)
        return np.arange(len(passages), dtype=np.float32)


def _pipeline(args: argparse.Namespace) -> RerankPipeline:
    return RerankPipeline(
        lambda q, k: DOCS[:k],
        SleepyReranker(args.slow_s, args.fast_s),
        candidates=5,
        top_k=5,
        rerank_timeout=args.timeout,
    )


def poisoning(args: argparse.Namespace) -> dict[str, object]:
    pipeline = _pipeline(args)
    slow_fallbacks = sum(not pipeline.run(f"slow {i}").reranked for i in range(args.slow))
    start = time.perf_counter()
    fast_fallbacks, first_ok_s, ran = 0, None, 0
    while ran < args.fast_limit and time.perf_counter() - start < args.fast_budget_s:
        result = pipeline.run(f"fast {ran}")
        ran += 1
        if result.reranked:
            first_ok_s = time.perf_counter() - start
            break
        fast_fallbacks += 1
    pipeline.close()
    return {
        "slow_fallbacks": slow_fallbacks,
        "fast_fallbacks_before_first_rerank": fast_fallbacks,
        "seconds_until_first_rerank": first_ok_s,
        "fast_queries_run": ran,
    }


async def _concurrent(args: argparse.Namespace) -> dict[str, object]:
    pipeline = _pipeline(args)
    start = time.perf_counter()
    results = await asyncio.gather(*(pipeline.arun(f"fast {i}") for i in range(args.concurrent)))
    wall = time.perf_counter() - start
    pipeline.close()
    queue = [r.timings.get("queue_s") for r in results]
    return {
        "calls": len(results),
        "fell_back": sum(not r.reranked for r in results),
        "wall_s": round(wall, 3),
        "max_queue_s": None if None in queue else round(max(queue), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=0.05)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--slow-s", type=float, default=0.5)
    parser.add_argument("--fast-s", type=float, default=0.03)
    parser.add_argument("--fast-limit", type=int, default=400)
    parser.add_argument("--fast-budget-s", type=float, default=15.0)
    parser.add_argument("--concurrent", type=int, default=32)
    parser.add_argument("--concurrent-timeout", type=float, default=0.1)
    args = parser.parse_args()
    report = {"poisoning": poisoning(args)}
    args.timeout = args.concurrent_timeout
    report["concurrent"] = asyncio.run(_concurrent(args))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
