"""The pipeline's blend under three normalisations, on tuned models' own candidates.

``RerankPipeline(blend_weight=w)`` mixes min-max normalised scores. This scores SciFact's
held-out slice (as ``tune`` holds it out, seed 0) and its test split, hybrid top 30, once per
model (cached as JSON under ``--cache``, default the rerank-plugins cache), then ranks the same scores by
``(1 - w) * norm(model) + w * norm(first stage)`` with min-max, z-scores and reciprocal ranks
(``1 / (60 + rank)``) for w = 0.1 .. 0.9::

    python benchmarks/blend_normalisation.py /work/tune_runs/x6-pq0-e3 /work/tune_runs/x2-pq728-e1
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rerank_plugins import CrossEncoderReranker
from rerank_plugins._files import cache_root
from rerank_plugins._scores import minmax_rows
from rerank_plugins.evaluation.metrics import ndcg_at_k
from rerank_plugins.evaluation.runner import build_retriever
from rerank_plugins.training import report as reporting
from rerank_plugins.training.data import load_training_data

WEIGHTS = [w / 10 for w in range(1, 10)]


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def _reciprocal_rank(x: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(x))
    ranks[np.argsort(-x, kind="stable")] = np.arange(len(x))
    return 1.0 / (60.0 + ranks)


NORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "minmax": lambda x: minmax_rows(x)[0],
    "zscore": _zscore,
    "rank": _reciprocal_rank,
}


def _ndcg(
    cands: reporting.Candidates,
    rows: list[np.ndarray],
    qrels: dict,
    norm: Callable[[np.ndarray], np.ndarray] | None,
    w: float,
) -> float:
    """NDCG@10 of the model's scores alone (``norm`` None) or blended at ``w``."""
    if norm is not None:
        rows = [
            (1 - w) * norm(row) + w * norm(np.asarray(first))
            for row, first in zip(rows, cands.first_scores, strict=True)
        ]
    run = reporting._run(cands, rows)
    return ndcg_at_k(run, qrels, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="directories written by tune")
    parser.add_argument("--data", default="../shared/data/scifact")
    parser.add_argument("--cache", type=Path, default=cache_root("blend-norms"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    for split in ("held-out", "test"):
        data = load_training_data(
            args.data, eval_split=None if split == "held-out" else "test", seed=0
        )
        retriever = build_retriever(
            data.dataset, "hybrid", embedding_cache=cache_root("embeddings")
        )
        cands = reporting.retrieve_candidates(
            retriever, data.queries_for(data.eval_qrels), depth=30
        )
        for model in args.models:
            cached = args.cache / f"{split}-{model.name}.json"
            if not cached.is_file():
                scores = CrossEncoderReranker(model, device="cpu").score_pairs(cands.flat())
                cached.write_text(json.dumps([float(s) for s in scores]))
            flat = json.loads(cached.read_text())
            rows = reporting._rows(cands, flat)
            print(
                f"{split} {model.name}: NDCG@10 alone {_ndcg(cands, rows, data.eval_qrels, None, 0):.4f}; w = 0.1 .. 0.9"
            )
            for name, norm in NORMS.items():
                values = [_ndcg(cands, rows, data.eval_qrels, norm, w) for w in WEIGHTS]
                best = int(np.argmax(values))
                print(
                    f"  {name:7s}", " ".join(f"{v:.4f}" for v in values), f" best {WEIGHTS[best]:g}"
                )


if __name__ == "__main__":
    main()
