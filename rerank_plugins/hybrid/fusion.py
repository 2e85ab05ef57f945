"""Rank fusion as pure numpy functions over aligned per-retriever arrays.

Every function works on one query. Rows are retrievers, columns are the union of the
documents any retriever returned (see :func:`align`):

* ``ranks``  — int array ``(R, N)``, 1-based rank of the document in that retriever's list,
  ``0`` where the retriever did not return it;
* ``scores`` — float array ``(R, N)``, the retriever's raw score, ``NaN`` where missing;
* ``weights`` — float array ``(R,)``, multiplied into each retriever's contribution.

A document a retriever did not return gets that retriever's *floor*: 0 for RRF and min-max
(the lowest possible contribution), and the lowest z-score of that retriever's list for
z-score fusion (as bad as its worst returned document, never better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .._scores import minmax_rows

FUSION_METHODS = ("rrf", "minmax", "zscore")


def align(
    positions: Sequence[np.ndarray], scores: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align per-retriever ranked lists by document.

    ``positions[r]`` are document positions in retriever ``r``'s ranked order (best first) and
    ``scores[r]`` their scores. Returns ``(union, score_matrix, rank_matrix)`` where ``union``
    is sorted ascending and the matrices are shaped ``(R, len(union))``.
    """
    if len(positions) != len(scores):
        raise ValueError("positions and scores must have one entry per retriever")
    arrays = [np.asarray(p, dtype=np.int64).ravel() for p in positions]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
    union, inverse = np.unique(flat, return_inverse=True)
    rows = np.repeat(np.arange(len(arrays)), lengths)
    within = np.concatenate([np.arange(n) for n in lengths]) if len(arrays) else flat
    score_matrix = np.full((len(arrays), union.size), np.nan, dtype=np.float64)
    rank_matrix = np.zeros((len(arrays), union.size), dtype=np.int64)
    flat_scores = (
        np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores])
        if arrays
        else np.empty(0)
    )
    if flat_scores.size != flat.size:
        raise ValueError("each retriever needs exactly one score per position")
    score_matrix[rows, inverse] = flat_scores
    rank_matrix[rows, inverse] = within + 1
    return union, score_matrix, rank_matrix


def rrf(ranks: np.ndarray, weights: np.ndarray, k: float = 60.0) -> np.ndarray:
    """Weighted reciprocal rank fusion: ``sum_r w_r / (k + rank_r)`` over retrievers that ranked it."""
    ranks = np.asarray(ranks, dtype=np.float64)
    present = ranks > 0
    contrib = np.where(present, 1.0 / (k + np.where(present, ranks, 1.0)), 0.0)
    return np.asarray(weights, dtype=np.float64) @ contrib


def minmax(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of per-retriever min-max normalised scores (missing -> 0).

    A retriever whose returned scores are all equal gives each returned document 1.0.
    """
    return np.asarray(weights, dtype=np.float64) @ minmax_rows(scores)


def zscore(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of per-retriever z-scores (population std; missing -> that list's minimum z).

    A retriever whose returned scores are all equal contributes 0 for every document.
    """
    scores = np.asarray(scores, dtype=np.float64)
    present = ~np.isnan(scores)
    count = present.sum(axis=1, keepdims=True)
    safe_count = np.maximum(count, 1)
    filled = np.where(present, scores, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / safe_count
    var = (np.where(present, scores - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / safe_count
    std = np.sqrt(var)
    z = np.where(std > 0, (filled - mean) / np.where(std > 0, std, 1.0), 0.0)
    floor = np.min(np.where(present, z, np.inf), axis=1, keepdims=True)
    floor = np.where(np.isfinite(floor), floor, 0.0)
    z = np.where(present, z, floor)
    return np.asarray(weights, dtype=np.float64) @ z


def fuse(
    method: str,
    scores: np.ndarray,
    ranks: np.ndarray,
    weights: np.ndarray,
    *,
    rrf_k: float = 60.0,
) -> np.ndarray:
    """Dispatch to :func:`rrf`, :func:`minmax` or :func:`zscore`; returns one score per column."""
    if method == "rrf":
        return rrf(ranks, weights, rrf_k)
    if method == "minmax":
        return minmax(scores, weights)
    if method == "zscore":
        return zscore(scores, weights)
    raise ValueError(f"unknown fusion {method!r}; choose one of {FUSION_METHODS}")


def floor_score(method: str, scores: np.ndarray, weights: np.ndarray) -> float:
    """Fused score of a document no retriever returned (used when padding up to ``k``)."""
    if method in ("rrf", "minmax"):
        return 0.0
    empty = np.full((np.asarray(scores).shape[0], 1), np.nan)
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
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"weights[{name!r}] must be a number, got {value!r}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"weights[{name!r}] must be finite and >= 0, got {value!r}")
            out[i] = float(value)
    if not np.any(out > 0):
        raise ValueError(f"at least one weight must be > 0, got {dict(weights)}")
    return out
