"""Score normalisation shared by fusion (per retriever) and the pipeline's blending."""

from __future__ import annotations

import numpy as np


def minmax_rows(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise each row of ``scores`` to [0, 1]; ``NaN`` (missing) becomes 0.

    A row whose present scores are all equal, or whose range is not finite, gives each
    present entry 1.0: every document that row returned ranks alike.

    Example:
        >>> minmax_rows(np.array([[1.0, 3.0, np.nan], [2.0, 2.0, 2.0]])).tolist()
        [[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    present = ~np.isnan(scores)
    low = np.min(np.where(present, scores, np.inf), axis=1, keepdims=True)
    high = np.max(np.where(present, scores, -np.inf), axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        span = high - low
    usable = np.isfinite(span) & (span > 0)
    safe_low = np.where(usable, low, 0.0)
    safe_span = np.where(usable, span, 1.0)
    with np.errstate(invalid="ignore"):
        normalised = np.where(usable, (scores - safe_low) / safe_span, 1.0)
    return np.where(present, normalised, 0.0)
