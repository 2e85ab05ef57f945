"""A reranker whose every call is one Ray Data job: for big offline batches, not per-query use.

:class:`RayDataReranker` is a :class:`~rerank_plugins.BaseReranker`, so ``score_pairs``,
``rerank_many`` and the rest take it unchanged; each call ships its pairs to a pool of
actors through :func:`~rerank_plugins.distributed.rerank_dataset` and puts the scores back
in input order. A job starts its actors (and loads the model in each) afresh, which costs
seconds, so hand it all pairs at once: ``rerank-plugins eval --engine ray`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..rerankers.base import BaseReranker
from .dataset import DEFAULT_BATCH_SIZE, rerank_dataset

_POSITION = "__rerank_plugins_position"


class RayDataReranker(BaseReranker):
    """Score pairs on a Ray cluster (or a local Ray instance), one Ray Data job per call.

    Args:
        model: Hub id or local directory of the cross-encoder (readable on every node).
        concurrency: Actors per job, or ``(min, max)`` for an autoscaling pool.
        num_gpus: GPUs per actor.
        num_cpus: CPUs per actor.
        batch_size: Rows per actor call (one block each, so the pool shares the work).
        reranker_batch_size: The cross-encoder's pairs per forward pass.
        map_batches_kwargs: Further ``Dataset.map_batches`` arguments.
        **reranker_kwargs: :class:`~rerank_plugins.CrossEncoderReranker` settings per actor.

    Example:
        >>> reranker = RayDataReranker("my-ce", concurrency=4, num_gpus=1)  # doctest: +SKIP
        >>> reranker.rerank_many(queries, candidate_lists, top_n=10)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        concurrency: int | tuple[int, int] = 2,
        num_gpus: float = 0,
        num_cpus: float = 1,
        batch_size: int = DEFAULT_BATCH_SIZE,
        reranker_batch_size: int | None = None,
        map_batches_kwargs: Mapping[str, Any] | None = None,
        **reranker_kwargs: Any,
    ) -> None:
        self.model_name = os.fspath(model)
        self.concurrency = concurrency
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.batch_size = batch_size
        self.reranker_batch_size = reranker_batch_size
        self.map_batches_kwargs = dict(map_batches_kwargs or {})
        self.reranker_kwargs = dict(reranker_kwargs)
        #: What the last call cost: pairs, seconds, actors (read by ``eval --engine ray``).
        self.last_job: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (
            f"RayDataReranker(model={self.model_name!r}, concurrency={self.concurrency!r}, "
            f"num_gpus={self.num_gpus}, batch_size={self.batch_size})"
        )

    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        import time

        import pyarrow as pa
        import ray.data

        total = len(queries)
        if total == 0:
            return np.zeros(0, dtype=np.float32)
        start = time.perf_counter()
        step = self.batch_size
        blocks = [
            pa.table(
                {
                    _POSITION: np.arange(lo, min(lo + step, total), dtype=np.int64),
                    "query": queries[lo : lo + step],
                    "passage": passages[lo : lo + step],
                }
            )
            for lo in range(0, total, step)
        ]
        scored = rerank_dataset(
            ray.data.from_arrow(blocks),
            self.model_name,
            concurrency=self.concurrency,
            num_gpus=self.num_gpus,
            num_cpus=self.num_cpus,
            batch_size=self.batch_size,
            reranker_batch_size=self.reranker_batch_size,
            map_batches_kwargs=self.map_batches_kwargs,
            **self.reranker_kwargs,
        )
        out = np.full(total, np.nan, dtype=np.float32)
        seen = np.zeros(total, dtype=bool)
        for batch in scored.select_columns([_POSITION, "score"]).iter_batches(
            batch_format="numpy", batch_size=None
        ):
            positions = batch[_POSITION]
            if seen[positions].any():
                raise RuntimeError("Ray Data returned a pair twice")  # pragma: no cover
            seen[positions] = True
            out[positions] = batch["score"]
        if not seen.all():
            raise RuntimeError(
                f"Ray Data returned {int(seen.sum())} of {total} pairs"
            )  # pragma: no cover
        self.last_job = {"pairs": total, "seconds": time.perf_counter() - start}
        return out
