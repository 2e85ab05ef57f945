"""What HybridRetriever's safety costs: the reader-writer lock, filters, verified loads.

All in one process, side by side (the machine is shared and noisy; read the ratios):

* ``search``: ``search(query, k=10)`` with the real lock vs the lock swapped for a no-op
  (same index, alternating rounds);
* ``filter``: building the filter mask with this version's compiled grammar vs a copy of the
  previous ``filters.py`` given with ``--old-filters`` (optional);
* ``load``: ``HybridRetriever.load`` with ``verify=True`` (sha256 of every file) vs
  ``verify=False``, on a saved index of ``--docs`` documents with random ``--dim``-d vectors.

Usage::

    python benchmarks/bench_hybrid_safety.py --docs 20000 --dim 384 --queries 200
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from rp_test_support import HashEmbedder

from rerank_plugins.hybrid import HybridRetriever
from rerank_plugins.hybrid.filters import filter_mask


class _NoLock:
    @contextlib.contextmanager
    def read(self):
        yield

    write = read


def _time(function, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-filters", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    texts = [f"document {i} topic {i % 97} word{i % 13} term{i % 7}" for i in range(args.docs)]
    metadatas = [{"year": 2000 + i % 25, "topic": f"t{i % 97}"} for i in range(args.docs)]
    vectors = rng.normal(size=(args.docs, args.dim)).astype(np.float32)
    embedder = HashEmbedder(args.dim)
    retriever = HybridRetriever.from_texts(
        texts, metadatas=metadatas, embeddings=vectors, embedder=embedder, show_progress=False
    )
    queries = [f"topic {i % 97} word{i % 13}" for i in range(args.queries)]
    real_lock = retriever._lock
    locked, unlocked = [], []
    for _ in range(args.rounds):
        retriever._lock = real_lock
        locked.append(_time(lambda: [retriever.search(q, k=10) for q in queries], 1))
        retriever._lock = _NoLock()
        unlocked.append(_time(lambda: [retriever.search(q, k=10) for q in queries], 1))
    retriever._lock = real_lock
    report: dict[str, object] = {
        "docs": args.docs,
        "search_ms_locked": round(min(locked) / args.queries * 1e3, 4),
        "search_ms_no_lock": round(min(unlocked) / args.queries * 1e3, 4),
    }
    report["lock_overhead_ratio"] = round(min(locked) / min(unlocked), 3)
    flt = {"year": {"$in": [2001, 2010]}, "topic": "t5"}
    report["filter_mask_ms"] = round(_time(lambda: filter_mask(metadatas, flt), 5) * 1e3, 2)
    if args.old_filters is not None:
        spec = importlib.util.spec_from_file_location("old_filters", args.old_filters)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        report["old_filter_mask_ms"] = round(
            _time(lambda: old.filter_mask(metadatas, flt), 5) * 1e3, 2
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index"
        save_s = _time(lambda: retriever.save(path), 1)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        verified = min(
            _time(lambda: HybridRetriever.load(path, embedder=embedder), 1)
            for _ in range(args.rounds)
        )
        trusted = min(
            _time(lambda: HybridRetriever.load(path, embedder=embedder, verify=False), 1)
            for _ in range(args.rounds)
        )
    report.update(
        index_mib=round(size / 2**20, 1),
        save_s=round(save_s, 3),
        load_s_verify=round(verified, 3),
        load_s_no_verify=round(trusted, 3),
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
