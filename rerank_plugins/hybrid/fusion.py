"""Rank fusion as pure numpy functions over aligned per-retriever arrays.

Every function works on one query, or on a batch of queries along leading axes (what
:mod:`.tuning` uses to fuse hundreds of queries per numpy call). Rows are retrievers, columns
are the union of the documents any retriever returned (see :func:`align`, :func:`align_many`):

* ``ranks``  — int array ``(..., R, N)``, 1-based rank of the document in that retriever's
  list, ``0`` where the retriever did not return it;
* ``scores`` — float array ``(..., R, N)``, the retriever's raw score, ``NaN`` where missing;
* ``weights`` — float array ``(R,)``, finite and >= 0, multiplied into each retriever's
  contribution. Only their ratios change the order: ``(3, 1)`` and ``(0.75, 0.25)`` rank alike.

A document a retriever did not return gets that retriever's *floor*: 0 for RRF, min-max and
DBSF (the lowest possible contribution), and the lowest z-score of that retriever's list for
z-score fusion (as bad as its worst returned document, never better).

Fused scores are only comparable within one query. RRF scores live in a narrow band
(``sum_r w_r / (rrf_k + 1)`` at best, e.g. 0.0328 for two lists at ``rrf_k=60``); min-max and
DBSF scores are each retriever's score mapped to about [0, 1] per list, then weighted and
summed; z-scores are centred on each list's mean and can be negative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

import numpy as np

FusionMethod = Literal["rrf", "minmax", "zscore", "dbsf"]
FUSION_METHODS: tuple[str, ...] = ("rrf", "minmax", "zscore", "dbsf")
#: Methods that use the retrievers' scores (RRF uses only ranks).
SCORE_METHODS: tuple[str, ...] = ("minmax", "zscore", "dbsf")
#: The default fusion of :class:`~rerank_plugins.hybrid.HybridRetriever`, chosen on SciFact
#: train and TREC DL 2020 (docs/benchmarks.md, "Fusion on a second domain"): with equal
#: weights no method holds on DL20, where dense is far ahead of BM25; z-score with the dense
#: list weighted 0.7 of the total holds on both (and on the SciFact test confirmation).
DEFAULT_FUSION: FusionMethod = "zscore"
#: Default per-retriever weights (only ratios matter): dense 0.7, BM25 0.3 of the total.
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType({"bm25": 0.6, "dense": 1.4})
DEFAULT_RRF_K: float = 60.0


# --------------------------------------------------------------------------- checks
def check_method(method: object) -> str:
    """Return ``method`` if it is one of :data:`FUSION_METHODS`, else raise ValueError naming it."""
    if not isinstance(method, str) or method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion {method!r}; choose one of {FUSION_METHODS}")
    return method


def check_rrf_k(value: object) -> float:
    """``rrf_k`` as a float: a finite number >= 0 (NaN, inf, negatives and bools are refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(float(value))
        or value < 0
    ):
        raise ValueError(f"rrf_k must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_weights(weights: object, rows: int) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (rows,):
        raise ValueError(f"weights must have one entry per retriever ({rows}), got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {array.tolist()}")
    return array


def _check_ranks(ranks: object) -> np.ndarray:
    array = np.asarray(ranks)
    if array.ndim < 2:
        raise ValueError(f"ranks must be a (retrievers, documents) array, got {array.shape}")
    if array.size and (array < 0).any():
        raise ValueError("ranks must be >= 0 (1-based rank, 0 for 'not returned')")
    return array.astype(np.float64)


def _check_scores(scores: object) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim < 2:
        raise ValueError(f"scores must be a (retrievers, documents) array, got {array.shape}")
    if np.isinf(array).any():
        raise ValueError("scores must be finite (NaN marks a document a retriever did not return)")
    return array


# --------------------------------------------------------------------------- alignment
def align(
    positions: Sequence[np.ndarray], scores: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align per-retriever ranked lists by document.

    ``positions[r]`` are document positions in retriever ``r``'s ranked order (best first) and
    ``scores[r]`` their scores (finite). Returns ``(union, score_matrix, rank_matrix)`` where
    ``union`` is sorted ascending and the matrices are shaped ``(R, len(union))``.
    """
    if len(positions) != len(scores):
        raise ValueError("positions and scores must have one entry per retriever")
    arrays = [np.asarray(p, dtype=np.int64).ravel() for p in positions]
    score_arrays = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    for r, (array, values) in enumerate(zip(arrays, score_arrays, strict=True)):
        if array.size != values.size:
            raise ValueError(
                f"retriever {r} has {array.size} positions but {values.size} scores; "
                "each retriever needs exactly one score per position"
            )
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"retriever {r} returned a non-finite score at rank {bad + 1}")
        if np.unique(array).size != array.size:
            raise ValueError(f"retriever {r} returned the same document twice")
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
    union, inverse = np.unique(flat, return_inverse=True)
    rows = np.repeat(np.arange(len(arrays)), lengths)
    within = np.concatenate([np.arange(n) for n in lengths]) if len(arrays) else flat
    score_matrix = np.full((len(arrays), union.size), np.nan, dtype=np.float64)
    rank_matrix = np.zeros((len(arrays), union.size), dtype=np.int64)
    flat_scores = np.concatenate(score_arrays) if arrays else np.empty(0)
    score_matrix[rows, inverse] = flat_scores
    rank_matrix[rows, inverse] = within + 1
    return union, score_matrix, rank_matrix


def align_many(
    lists: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`align` for a batch of queries, padded to the widest union.

    ``lists[q][r]`` is retriever ``r``'s ``(positions, scores)`` for query ``q``. Returns
    ``(union, scores, ranks, valid)`` shaped ``(Q, N)``, ``(Q, R, N)``, ``(Q, R, N)`` and
    ``(Q, N)``; padding columns have union ``-1``, NaN scores, rank 0 and ``valid`` False.
    Fuse the batch, then set ``fused[~valid] = -inf`` before :func:`top_order`.
    """
    aligned = [align([p for p, _ in q], [s for _, s in q]) for q in lists]
    rows = len(lists[0]) if lists else 0
    width = max((u.size for u, _, _ in aligned), default=0)
    union = np.full((len(aligned), width), -1, dtype=np.int64)
    scores = np.full((len(aligned), rows, width), np.nan)
    ranks = np.zeros((len(aligned), rows, width), dtype=np.int64)
    valid = np.zeros((len(aligned), width), dtype=bool)
    for q, (u, s, r) in enumerate(aligned):
        if s.shape[0] != rows:
            raise ValueError(f"query {q} has {s.shape[0]} lists, query 0 has {rows}")
        union[q, : u.size], scores[q, :, : u.size], ranks[q, :, : u.size] = u, s, r
        valid[q, : u.size] = True
    return union, scores, ranks, valid


# --------------------------------------------------------------------------- methods
def rrf(ranks: np.ndarray, weights: np.ndarray, k: float = DEFAULT_RRF_K) -> np.ndarray:
    """Weighted reciprocal rank fusion: ``sum_r w_r / (k + rank_r)`` over retrievers that ranked it."""
    ranks = _check_ranks(ranks)
    k = check_rrf_k(k)
    weights = _check_weights(weights, ranks.shape[-2])
    present = ranks > 0
    contrib = np.where(present, 1.0 / (k + np.where(present, ranks, 1.0)), 0.0)
    return _weighted_sum(weights, contrib)


def minmax(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of per-retriever min-max normalised scores (missing -> 0).

    A retriever whose returned scores are all equal gives each returned document 1.0.
    """
    scores = _check_scores(scores)
    weights = _check_weights(weights, scores.shape[-2])
    present = ~np.isnan(scores)
    low = np.min(np.where(present, scores, np.inf), axis=-1, keepdims=True, initial=np.inf)
    high = np.max(np.where(present, scores, -np.inf), axis=-1, keepdims=True, initial=-np.inf)
    span = high - low
    safe_span = np.where(span > 0, span, 1.0)
    normalised = np.where(span > 0, (np.where(present, scores, 0.0) - low) / safe_span, 1.0)
    normalised = np.where(present, normalised, 0.0)
    return _weighted_sum(weights, normalised)


def _weighted_sum(weights: np.ndarray, per_retriever: np.ndarray) -> np.ndarray:
    """``sum_r w_r x_r`` over the retriever axis (-2), for one query or a batch."""
    return np.einsum("r,...rn->...n", weights, per_retriever)


def _mean_std(scores: np.ndarray, *, ddof: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row mean and std over the present (non-NaN) entries, and the presence mask."""
    present = ~np.isnan(scores)
    count = present.sum(axis=-1, keepdims=True)
    filled = np.where(present, scores, 0.0)
    mean = filled.sum(axis=-1, keepdims=True) / np.maximum(count, 1)
    squares = (np.where(present, scores - mean, 0.0) ** 2).sum(axis=-1, keepdims=True)
    std = np.sqrt(squares / np.maximum(count - ddof, 1))
    std = np.where(count > ddof, std, 0.0)
    return mean, std, present


def zscore(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of per-retriever z-scores (population std; missing -> that list's minimum z).

    A retriever whose returned scores are all equal contributes 0 for every document.
    """
    scores = _check_scores(scores)
    weights = _check_weights(weights, scores.shape[-2])
    mean, std, present = _mean_std(scores, ddof=0)
    filled = np.where(present, scores, 0.0)
    z = np.where(std > 0, (filled - mean) / np.where(std > 0, std, 1.0), 0.0)
    floor = np.min(np.where(present, z, np.inf), axis=-1, keepdims=True, initial=np.inf)
    floor = np.where(np.isfinite(floor), floor, 0.0)
    z = np.where(present, z, floor)
    return _weighted_sum(weights, z)


def dbsf(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Distribution-based score fusion (as Qdrant's ``dbsf``): weighted sum of per-list scores
    mapped by ``(s - (mean - 3 std)) / (6 std)`` (sample std; missing -> 0).

    ``mean +- 3 std`` maps to 0 and 1; scores further out are not clipped. A list of one
    document, or whose scores are all equal, gives each returned document 0.5.
    """
    scores = _check_scores(scores)
    weights = _check_weights(weights, scores.shape[-2])
    mean, std, present = _mean_std(scores, ddof=1)
    filled = np.where(present, scores, 0.0)
    safe_std = np.where(std > 0, std, 1.0)
    normalised = np.where(std > 0, (filled - (mean - 3.0 * std)) / (6.0 * safe_std), 0.5)
    normalised = np.where(present, normalised, 0.0)
    return _weighted_sum(weights, normalised)


def fuse(
    method: str,
    scores: np.ndarray,
    ranks: np.ndarray,
    weights: np.ndarray,
    *,
    rrf_k: float = DEFAULT_RRF_K,
) -> np.ndarray:
    """Dispatch to :func:`rrf`, :func:`minmax`, :func:`zscore` or :func:`dbsf`; one score per column."""
    method = check_method(method)
    if method == "rrf":
        return rrf(ranks, weights, rrf_k)
    if method == "minmax":
        return minmax(scores, weights)
    if method == "zscore":
        return zscore(scores, weights)
    return dbsf(scores, weights)


def top_order(fused: np.ndarray, union: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best fused scores; ties: lower document position first.

    Works along the last axis, so a batch ``(Q, N)`` gives ``(Q, min(k, N))``.
    """
    return np.lexsort((union, -fused), axis=-1)[..., :k]


def floor_score(method: str, scores: np.ndarray, weights: np.ndarray) -> float:
    """Fused score of a document no retriever returned (used when padding up to ``k``)."""
    if check_method(method) != "zscore":
        return 0.0
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"floor_score takes one query's (R, N) scores, got {scores.shape}")
    empty = np.full((scores.shape[0], 1), np.nan)
    return float(zscore(np.concatenate([scores, empty], axis=1), weights)[-1])


def weight_vector(weights: Mapping[str, float] | None, retrievers: Sequence[str]) -> np.ndarray:
    """Turn ``{"bm25": 1.0, "dense": 0.5}`` into an array in ``retrievers`` order (default 1.0)."""
    if weights is None:
        return np.ones(len(retrievers), dtype=np.float64)
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"weights must be a dict like {{'bm25': 1.0}}, got {type(weights).__name__}"
        )
    unknown = sorted(set(weights) - set(retrievers))
    if unknown:
        raise ValueError(
            f"weights name unknown retrievers {unknown}; this index has {list(retrievers)}"
        )
    out = np.ones(len(retrievers), dtype=np.float64)
    for i, name in enumerate(retrievers):
        if name in weights:
            value = weights[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise TypeError(f"weights[{name!r}] must be a number, got {value!r}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"weights[{name!r}] must be finite and >= 0, got {value!r}")
            out[i] = float(value)
    if not np.any(out > 0):
        raise ValueError(f"at least one weight must be > 0, got {dict(weights)}")
    return out
