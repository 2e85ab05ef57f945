"""Offline batch reranking on Ray Data: one cross-encoder per actor, every row scored once.

:func:`rerank_dataset` adds a score column to a :class:`ray.data.Dataset` of (query, passage)
rows with ``map_batches`` over a pool of :class:`PairScorer` actors. Each actor loads the
model once and scores each batch of rows with :meth:`CrossEncoderReranker.score_pairs`, which
sorts the batch's pairs by length and cuts them into token-budget forward passes, so a
bigger ``batch_size`` means less padding (and bigger objects through the object store).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_query
from .cluster import actor_reranker_kwargs

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

#: Rows per ``map_batches`` call: enough pairs for length-sorted token-budget batches inside
#: the actor to pad little; small enough that one batch is a few MB in the object store.
DEFAULT_BATCH_SIZE = 256


class PairScorer:
    """The Ray Data callable class behind :func:`rerank_dataset` (one model per actor).

    Takes a ``pyarrow.Table`` batch, returns it with ``score_column`` (float32) appended; every
    other column is passed through untouched. Usable directly with ``ds.map_batches(PairScorer,
    batch_format="pyarrow", fn_constructor_kwargs={...}, compute=ActorPoolStrategy(...))``
    when you need map options that :func:`rerank_dataset` does not expose.

    Args:
        model: Hub id or local directory of the cross-encoder; it must be readable on every
            node that runs an actor.
        query_column: Column holding the queries (non-blank str).
        passage_column: Column holding the passages (str).
        score_column: Column to add with the scores; must not exist yet.
        reranker_kwargs: Keyword arguments for :class:`~rerank_plugins.CrossEncoderReranker`.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        query_column: str = "query",
        passage_column: str = "passage",
        score_column: str = "score",
        reranker_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        from ..cross_encoder import CrossEncoderReranker

        self.query_column = query_column
        self.passage_column = passage_column
        self.score_column = score_column
        self.reranker = CrossEncoderReranker(model, **dict(reranker_kwargs or {}))

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        names = batch.column_names
        for name in (self.query_column, self.passage_column):
            if name not in names:
                raise ValueError(_missing_column(name, names))
        if self.score_column in names:
            raise ValueError(_existing_score_column(self.score_column))
        queries = batch.column(self.query_column).to_pylist()
        passages = batch.column(self.passage_column).to_pylist()
        for row, (query, passage) in enumerate(zip(queries, passages, strict=True)):
            check_query(query, where=f"column {self.query_column!r} (row {row} of a batch)")
            if not isinstance(passage, str):
                raise TypeError(
                    f"column {self.passage_column!r} (row {row} of a batch) must be a str, "
                    f"got {type(passage).__name__}"
                )
        scores = self.reranker.score_pairs(list(zip(queries, passages, strict=True)))
        return batch.append_column(
            self.score_column, pa.array(np.asarray(scores, dtype=np.float32), type=pa.float32())
        )


def rerank_dataset(
    ds: Dataset,
    model: str | os.PathLike[str],
    *,
    query_column: str = "query",
    passage_column: str = "passage",
    score_column: str = "score",
    concurrency: int | tuple[int, int] = 2,
    num_gpus: float = 0,
    num_cpus: float = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    reranker_batch_size: int | None = None,
    map_batches_kwargs: Mapping[str, Any] | None = None,
    **reranker_kwargs: Any,
) -> Dataset:
    """Score every (query, passage) row of ``ds`` with a cross-encoder, on a pool of actors.

    Lazy like any Ray Data transform: nothing runs until the result is consumed
    (``write_parquet``, ``iter_batches``, ``take_all``, ...). Rows keep every other column;
    their order is not kept (Ray Data streams blocks), but every row comes out exactly once.
    Scores equal an in-process :class:`~rerank_plugins.CrossEncoderReranker` with the same
    settings (raw logits unless ``activation="sigmoid"``).

    Args:
        ds: The rows to score.
        model: Hub id or local directory of the cross-encoder (readable on every node).
        query_column: Column with the queries.
        passage_column: Column with the passages.
        score_column: Column to add; an existing column of that name is an error, not
            overwritten.
        concurrency: Actors in the pool (each loads the model once), or ``(min, max)`` for an
            autoscaling pool.
        num_gpus: GPUs per actor (fractions share a GPU). With ``num_gpus > 0`` the
            reranker's device defaults to ``"cuda"``, else to ``"cpu"``.
        num_cpus: CPUs reserved per actor; on CPU actors it is also the reranker's
            ``num_threads`` unless given.
        batch_size: Rows per ``map_batches`` call; the actor sorts them by length and cuts
            them into forward passes of at most ``reranker_batch_size`` pairs and
            ``max_tokens_per_batch`` padded tokens.
        reranker_batch_size: The cross-encoder's own ``batch_size`` (pairs per forward pass;
            default 64 on CPU, 128 on CUDA).
        map_batches_kwargs: Further ``Dataset.map_batches`` arguments (``memory``,
            ``accelerator_type``, ``resources``, ``runtime_env``, ...).
        **reranker_kwargs: Passed to :class:`~rerank_plugins.CrossEncoderReranker` in each
            actor (``dtype``, ``max_length``, ``activation``, ``backend``, ...).

    Returns:
        The lazy dataset with ``score_column`` (float32) added.

    Example:
        >>> import ray  # doctest: +SKIP
        >>> ds = ray.data.read_parquet("s3://bucket/pairs/")  # doctest: +SKIP
        >>> scored = rerank_dataset(ds, "my-ce", concurrency=4, num_gpus=1)  # doctest: +SKIP
        >>> scored.write_parquet("s3://bucket/scored/")  # doctest: +SKIP
    """
    import ray.data

    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    for name, value in (
        ("query_column", query_column),
        ("passage_column", passage_column),
        ("score_column", score_column),
    ):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    if score_column in (query_column, passage_column):
        raise ValueError(f"score_column {score_column!r} would overwrite an input column")
    compute = _actor_pool(concurrency)
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    if num_cpus <= 0:
        raise ValueError(f"num_cpus must be > 0, got {num_cpus}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    # Known without running anything for most sources (items, pandas, parquet metadata);
    # when it is not, PairScorer raises the same errors on its first batch.
    columns = ds.columns(fetch_if_missing=False)
    if columns is not None:
        for name in (query_column, passage_column):
            if name not in columns:
                raise ValueError(_missing_column(name, columns))
        if score_column in columns:
            raise ValueError(_existing_score_column(score_column))

    kwargs = actor_reranker_kwargs(reranker_kwargs, num_gpus=num_gpus, num_cpus=num_cpus)
    if reranker_batch_size is not None:
        kwargs["batch_size"] = reranker_batch_size
    return ds.map_batches(
        PairScorer,
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=compute,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_constructor_kwargs={
            "model": os.fspath(model),
            "query_column": query_column,
            "passage_column": passage_column,
            "score_column": score_column,
            "reranker_kwargs": kwargs,
        },
        **dict(map_batches_kwargs or {}),
    )


def _actor_pool(concurrency: int | tuple[int, int]) -> Any:
    from ray.data import ActorPoolStrategy

    if isinstance(concurrency, int) and not isinstance(concurrency, bool):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        return ActorPoolStrategy(size=concurrency)
    if (
        isinstance(concurrency, tuple)
        and len(concurrency) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in concurrency)
        and 1 <= concurrency[0] <= concurrency[1]
    ):
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    raise ValueError(f"concurrency must be an int >= 1 or a (min, max) tuple, got {concurrency!r}")


def _missing_column(name: str, columns: list[str]) -> str:
    return f"the dataset has no column {name!r} (columns: {', '.join(map(repr, columns))})"


def _existing_score_column(name: str) -> str:
    return (
        f"the dataset already has a column {name!r}; pass another score_column so it is "
        "not overwritten"
    )
