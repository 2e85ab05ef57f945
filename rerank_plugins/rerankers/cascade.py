"""A reranking cascade: a fast reranker scores every candidate, an accurate one the best few.

Most of a cross-encoder's cost goes to candidates that end up far from the top. The cascade
spends the accurate model only where the order matters: ``fast`` (an int8 or shorter-window
copy of the model, or a smaller model) scores all of a query's candidates, ``accurate``
re-scores the ``keep`` best of them, and the result is those ``keep`` in the accurate
model's order above the rest in the fast model's order.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..types import ScoresPassages
from .base import BaseReranker

#: How far below the worst kept passage the best of the rest is placed (in score units).
REST_GAP = 1.0


class CascadeReranker(BaseReranker):
    """Score every candidate with ``fast``, re-score the best ``keep`` with ``accurate``.

    Each query's candidates (the pairs of one call that share a query string) are scored by
    ``fast`` in one batched call for all queries; per query the ``keep`` best by the fast
    score (ties: the earlier passage) are re-scored by ``accurate``, again in one batched call.
    Every passage comes back exactly once: the kept ones in the accurate model's order, above
    the rest in the fast model's order.

    How the two scales are joined (so that sorting :meth:`score`'s output gives that order):

    * a kept passage's score is the accurate model's score, unchanged;
    * the rest get the fast model's score plus one constant per query, which puts the best of
      them ``REST_GAP`` (1.0) below the worst kept passage. A constant shift keeps the fast
      order and the fast score differences (if rounding at extreme magnitudes would merge two
      different fast scores, the rest get successive float32 values in fast order instead);
    * with ``keep >= len(candidates)`` the fast pass is skipped and the scores are the
      accurate model's: the cascade is then exactly the accurate reranker;
    * with ``skip_margin``, a query whose fast top score leads its runner-up by at least
      ``skip_margin`` (fast-model score units) skips the accurate pass: its scores are the
      fast scores, unchanged. Off by default (measured in docs/cascade.md).

    A threshold on the scores therefore reads on the accurate model's scale for the kept
    passages; the rest always sort below them. A failing member raises (the pipeline then
    falls back to first-stage order); a member returning the wrong number of scores or
    non-finite scores raises a ``ValueError`` that names it.

    Because the kept set depends on which candidates are in the call, a passage's score
    depends on its neighbours (``scores_depend_on_candidates``); ``rerank-plugins eval``
    scores each rerank depth with its own call for such rerankers.

    Args:
        fast: Any reranker with ``score`` (a :class:`BaseReranker` such as
            ``CrossEncoderReranker(model, backend="onnx", quantize="int8")`` is called
            directly with validated pairs, others through ``score_pairs`` or ``score``).
        accurate: The reranker whose order the top of the result follows.
        keep: How many of each query's fast-ranked candidates the accurate model re-scores
            (>= 1).
        skip_margin: Skip the accurate pass for a query when the fast pass's top score leads
            the second by at least this much; ``None`` (default) never skips.

    Example:
        >>> import numpy as np
        >>> from rerank_plugins.rerankers import BaseReranker, CascadeReranker
        >>> class Length(BaseReranker):
        ...     def _score_checked(self, queries, passages):
        ...         return np.array([len(p) for p in passages], dtype=np.float32)
        >>> class Vowels(BaseReranker):
        ...     def _score_checked(self, queries, passages):
        ...         return np.array([sum(c in "aeiou" for c in p) for p in passages], "float32")
        >>> cascade = CascadeReranker(Length(), Vowels(), keep=2)
        >>> [r.passage for r in cascade.rerank("q", ["aa", "bbbb", "a", "ccccce"])]
        ['ccccce', 'bbbb', 'aa', 'a']
    """

    #: The kept set depends on the other candidates in the call (see the class docstring).
    scores_depend_on_candidates = True

    def __init__(
        self,
        fast: ScoresPassages,
        accurate: ScoresPassages,
        *,
        keep: int = 20,
        skip_margin: float | None = None,
    ) -> None:
        for name, member in (("fast", fast), ("accurate", accurate)):
            if not callable(getattr(member, "score", None)):
                raise TypeError(
                    f"{name} must be a reranker with score(query, passages), "
                    f"got {type(member).__name__}"
                )
        if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)):
            raise TypeError(f"keep must be an int, got {type(keep).__name__}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if skip_margin is not None:
            if isinstance(skip_margin, bool) or not isinstance(
                skip_margin, (int, float, np.integer, np.floating)
            ):
                raise TypeError(f"skip_margin must be a number, got {type(skip_margin).__name__}")
            if not math.isfinite(skip_margin) or skip_margin < 0:
                raise ValueError(f"skip_margin must be a finite number >= 0, got {skip_margin}")
        self.fast = fast
        self.accurate = accurate
        self.keep = int(keep)
        self.skip_margin = None if skip_margin is None else float(skip_margin)
        self._stats = {"queries": 0, "skipped": 0, "fast_pairs": 0, "accurate_pairs": 0}
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"CascadeReranker(fast={self.fast!r}, accurate={self.accurate!r}, "
            f"keep={self.keep}, skip_margin={self.skip_margin})"
        )

    @property
    def device(self) -> Any:
        """The accurate member's device (what ``eval`` records)."""
        return getattr(self.accurate, "device", None)

    @property
    def stats(self) -> dict[str, int]:
        """Counts since construction: queries, queries that skipped the accurate pass, and the
        pairs each member scored."""
        with self._stats_lock:
            return dict(self._stats)

    # ------------------------------------------------------------------ scoring
    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        plan = _Plan(queries, self.keep)
        fast = _member_scores(self.fast, "fast", *plan.fast_pairs(passages))
        plan.choose(fast, self.skip_margin)
        accurate = _member_scores(self.accurate, "accurate", *plan.accurate_pairs(passages))
        return self._finish(plan, accurate)

    async def _ascore_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        plan = _Plan(queries, self.keep)
        fast = await _amember_scores(self.fast, "fast", *plan.fast_pairs(passages))
        plan.choose(fast, self.skip_margin)
        pairs = plan.accurate_pairs(passages)
        accurate = await _amember_scores(self.accurate, "accurate", *pairs)
        return self._finish(plan, accurate)

    def _finish(self, plan: _Plan, accurate: np.ndarray) -> np.ndarray:
        out = plan.join(accurate)
        with self._stats_lock:
            self._stats["queries"] += len(plan.groups)
            self._stats["skipped"] += plan.skipped
            self._stats["fast_pairs"] += len(plan.fast_index)
            self._stats["accurate_pairs"] += len(plan.accurate_index)
        return out


class _Plan:
    """Which pairs each member scores, per query group, and how their scores are joined."""

    def __init__(self, queries: list[str], keep: int) -> None:
        self.queries = queries
        self.keep = keep
        groups: dict[str, list[int]] = {}
        for position, query in enumerate(queries):
            groups.setdefault(query, []).append(position)
        self.groups = [np.asarray(members, dtype=np.int64) for members in groups.values()]
        # Groups no bigger than ``keep`` go straight to the accurate model.
        self.cascaded = [g for g in self.groups if len(g) > keep]
        self.fast_index = (
            np.concatenate(self.cascaded) if self.cascaded else np.empty(0, dtype=np.int64)
        )
        self.fast = np.empty(len(queries), dtype=np.float32)
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []  # (kept, rest) per cascaded group
        self.skipped = 0
        self.accurate_index = np.empty(0, dtype=np.int64)

    def fast_pairs(self, passages: list[str]) -> tuple[list[str], list[str]]:
        return [self.queries[i] for i in self.fast_index], [passages[i] for i in self.fast_index]

    def choose(self, fast_scores: np.ndarray, skip_margin: float | None) -> None:
        """Pick each cascaded group's ``keep`` best by the fast score (or skip the group)."""
        self.fast[self.fast_index] = fast_scores
        to_accurate = [g for g in self.groups if len(g) <= self.keep]
        for group in self.cascaded:
            order = group[np.argsort(-self.fast[group], kind="stable")]
            if skip_margin is not None:
                best, second = self.fast[order[0]], self.fast[order[1]]
                if float(best) - float(second) >= skip_margin:
                    self.skipped += 1
                    continue
            kept = np.sort(order[: self.keep])
            self.kept.append((kept, np.sort(order[self.keep :])))
            to_accurate.append(kept)
        self.accurate_index = (
            np.sort(np.concatenate(to_accurate)) if to_accurate else np.empty(0, dtype=np.int64)
        )

    def accurate_pairs(self, passages: list[str]) -> tuple[list[str], list[str]]:
        index = self.accurate_index
        return [self.queries[i] for i in index], [passages[i] for i in index]

    def join(self, accurate_scores: np.ndarray) -> np.ndarray:
        """Kept: accurate scores; rest: fast scores shifted below them (see the class doc)."""
        out = self.fast.copy()  # skipped groups keep their fast scores
        out[self.accurate_index] = accurate_scores
        for kept, rest in self.kept:
            out[rest] = _below(self.fast[rest], out[kept].min())
        return out


def _below(fast: np.ndarray, floor: np.float32) -> np.ndarray:
    """``fast`` shifted so its maximum sits ``REST_GAP`` below ``floor``; order kept."""
    top = np.float32(floor - REST_GAP)
    if not top < floor:  # REST_GAP vanished in rounding at this magnitude
        top = np.nextafter(floor, np.float32(-np.inf))
    shifted = (fast - fast.max()).astype(np.float32) + top
    order = np.argsort(-fast, kind="stable")
    strict = np.diff(fast[order]) < 0
    if np.all(np.diff(shifted[order])[strict] < 0):
        return shifted
    # Rounding merged different fast scores: successive float32 values below ``top`` instead.
    steps = np.empty(len(fast), dtype=np.float32)
    value = top
    for position in range(len(fast)):
        steps[position] = value
        value = np.nextafter(value, np.float32(-np.inf))
    ranks = np.empty(len(fast), dtype=np.float32)
    ranks[order] = steps
    return ranks


# ---------------------------------------------------------------------- members
def _member_scores(member: Any, name: str, queries: list[str], passages: list[str]) -> np.ndarray:
    if not passages:
        return np.empty(0, dtype=np.float32)
    if isinstance(member, BaseReranker):
        scores = member._score_checked(queries, passages)
    elif callable(getattr(member, "score_pairs", None)):
        scores = member.score_pairs(list(zip(queries, passages, strict=True)))
    else:
        scores = _per_query(member.score, queries, passages)
    return _checked(scores, name, len(passages))


async def _amember_scores(
    member: Any, name: str, queries: list[str], passages: list[str]
) -> np.ndarray:
    if not passages:
        return np.empty(0, dtype=np.float32)
    if isinstance(member, BaseReranker):
        scores = await member._ascore_checked(queries, passages)
    elif callable(getattr(member, "ascore_pairs", None)):
        scores = await member.ascore_pairs(list(zip(queries, passages, strict=True)))
    else:
        return await asyncio.to_thread(_member_scores, member, name, queries, passages)
    return _checked(scores, name, len(passages))


def _per_query(score: Any, queries: list[str], passages: list[str]) -> np.ndarray:
    out = np.empty(len(passages), dtype=np.float32)
    groups: dict[str, list[int]] = {}
    for position, query in enumerate(queries):
        groups.setdefault(query, []).append(position)
    for query, members in groups.items():
        got = np.asarray(score(query, [passages[i] for i in members]), dtype=np.float32)
        if got.shape != (len(members),):
            raise ValueError(f"reranker returned {got.size} scores for {len(members)} passages")
        out[members] = got
    return out


def _checked(scores: Sequence[float] | np.ndarray, name: str, expected: int) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float32).reshape(-1)
    if array.shape != (expected,):
        raise ValueError(f"the {name} reranker returned {array.size} scores for {expected} pairs")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"the {name} reranker returned non-finite scores (NaN or inf)")
    return array
