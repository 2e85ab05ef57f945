"""Input checks shared by every public entry point: fail loudly, name the culprit."""

from __future__ import annotations

import inspect
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from numbers import Integral, Real
from typing import Any, Literal, overload

import numpy as np

_SURROGATE = re.compile("[\ud800-\udfff]")
#: Unicode categories that render as nothing: controls, format characters (zero-width space,
#: joiners, BOM, soft hyphen), separators, and combining marks with nothing to combine with.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})
#: Letters and symbols that are drawn blank (Hangul fillers, the braille blank).
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


class RerankerOutputError(ValueError):
    """A reranker's output is unusable (wrong count, not numbers, NaN/inf): its fault, not the
    caller's input; the pipeline falls back on it and the server answers 500."""


class NonFiniteScoreError(RerankerOutputError):
    """A reranker produced NaN or an infinity; the pipeline falls back on it (``error`` says)."""


def _is_visible(char: str) -> bool:
    return not (
        char.isspace()
        or char in _BLANK_GLYPHS
        or unicodedata.category(char) in _INVISIBLE_CATEGORIES
    )


def check_text(text: str, *, where: str) -> str:
    """Raise if ``text`` holds a lone surrogate (unencodable: tokenizers fail obscurely on it)."""
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found is not None:
            raise ValueError(
                f"{where} has a lone surrogate {found.group()!r} at position {found.start()}; "
                "it is not valid Unicode text (decode the source with errors='replace')"
            )
    return text


def check_query(query: object, *, where: str = "query") -> str:
    """Return ``query`` if it is a string with at least one visible character, else raise."""
    if not isinstance(query, str):
        raise TypeError(f"{where} must be a str, got {type(query).__name__}")
    if not query.strip():
        raise ValueError(f"{where} is empty or whitespace; a reranker needs a non-empty query")
    check_text(query, where=where)
    if not any(map(_is_visible, query)):
        raise ValueError(
            f"{where} holds only invisible characters (zero-width, control or format "
            f"characters: {query[:8]!r}); a reranker needs a non-empty query"
        )
    return query


def check_passages(passages: object, *, where: str = "passages") -> list[str]:
    """Return ``passages`` as a list of str; raise naming the first bad position.

    A sequence or an iterator (a generator) is accepted; a ``str``, a mapping (its keys would
    be ranked) and a set (no order to map results back to) are not.
    """
    if isinstance(passages, str):
        raise TypeError(f"{where} must be a sequence of str, not a single str")
    if isinstance(passages, (Mapping, Set)):
        raise TypeError(
            f"{where} must be a sequence of str (a list), got a {type(passages).__name__}: "
            "its order is not a ranking input order (pass list(values) explicitly)"
        )
    if not isinstance(passages, Iterable):
        raise TypeError(f"{where} must be a sequence of str, got {type(passages).__name__}")
    out = list(passages)
    for position, passage in enumerate(out):
        if not isinstance(passage, str):
            raise TypeError(f"{where}[{position}] must be a str, got {type(passage).__name__}")
        check_text(passage, where=f"{where}[{position}]")
    return out


def check_int(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; bools and floats (even ``2.0``) are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_number(
    value: object, name: str, *, low: float | None = None, positive: bool = False
) -> float:
    """``value`` as a finite float (not a bool), ``>= low`` and ``> 0`` when asked."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value!r}")
    return number


def check_finite_scores(
    scores: object,
    expected: int,
    *,
    what: str = "passage",
    positions: Sequence[int] | None = None,
    source: str = "reranker",
) -> np.ndarray:
    """``scores`` as an array of ``expected`` finite numbers, else an error naming the input.

    ``positions`` maps score ``i`` back to the caller's index (when only some inputs were
    scored, e.g. on cache misses).
    """
    array = np.asarray(scores)
    if array.ndim != 1 or len(array) != expected:
        raise RerankerOutputError(f"{source} returned {array.shape} scores for {expected} {what}s")
    if array.dtype.kind not in "fiu":
        raise RerankerOutputError(f"{source} returned {array.dtype} scores; expected numbers")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        first = int(bad[0]) if positions is None else int(positions[int(bad[0])])
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise NonFiniteScoreError(
            f"{source} returned a non-finite score ({array[bad[0]]}) for {what} {first}{more}"
        )
    return array


def check_threshold(score_threshold: object) -> float | None:
    """A ``score_threshold`` is None or a finite number."""
    if score_threshold is None:
        return None
    try:
        return check_number(score_threshold, "score_threshold")
    except ValueError:
        if isinstance(score_threshold, float) and math.isnan(score_threshold):
            raise ValueError("score_threshold is NaN; pass a finite number or None") from None
        raise


def check_retriever_depth(retriever_depth: int | None, candidates: int) -> None:
    """Per-retriever depth before fusion must cover the candidates asked of the fused list."""
    if retriever_depth is not None and retriever_depth < candidates:
        raise ValueError(
            f"retriever_depth={retriever_depth} is below candidates={candidates}: the first "
            "stage would pad its results with documents no retriever ranked"
        )


def check_top_n(top_n: int | None) -> int | None:
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0:
        raise ValueError(f"top_n must be a non-negative int or None, got {top_n!r}")
    return top_n


@overload
def check_positive_int(
    value: object, name: str, *, allow_none: Literal[False] = False, minimum: int = 1
) -> int: ...
@overload
def check_positive_int(
    value: object, name: str, *, allow_none: Literal[True], minimum: int = 1
) -> int | None: ...
def check_positive_int(
    value: object, name: str, *, allow_none: bool = False, minimum: int = 1
) -> int | None:
    """Return ``value`` as an int if it is one and >= ``minimum`` (``None`` too with ``allow_none``).

    Rejects bools and floats (``2.5``, ``2.0``) with a ValueError naming ``name``, so a bad
    setting fails where it is given, not later where it is used. (:func:`check_int` is the
    same check raising TypeError for a non-int, for arguments of the Python API where the
    type is the mistake; this one is for settings, which arrive from configs and CLIs.)

    Example:
        >>> check_positive_int(3, "top_k")
        3
        >>> check_positive_int(0, "top_k")
        Traceback (most recent call last):
        ...
        ValueError: top_k must be a positive int (>= 1), got 0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        also = " or None" if allow_none else ""
        kind = "a positive int" if minimum == 1 else "an int"
        raise ValueError(f"{name} must be {kind} (>= {minimum}){also}, got {value!r}")
    return int(value)


def accepts_keyword(function: object, name: str) -> bool:
    """Whether ``function`` takes keyword ``name`` (explicitly or through ``**kwargs``).

    How the pipeline and the adapters decide whether a retriever's ``search`` can take
    ``candidates=`` or ``filter=`` before passing it (a clear error instead of a TypeError
    from deep inside a user's retriever).

    Example:
        >>> accepts_keyword(lambda query, k=10, *, filter=None: [], "filter")
        True
        >>> accepts_keyword(lambda query, k=10: [], "filter")
        False
    """
    if not callable(function):
        return False
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == name and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )


def check_doc_ids(ids: Any, count: int, *, existing: Mapping[str, int]) -> list[str] | None:
    """``ids`` for ``count`` new documents: strs, non-empty, unique, not in ``existing``."""
    if ids is None:
        return None
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise TypeError(f"ids must be a list of str, got {type(ids).__name__}")
    ids = list(ids)
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} ids for {count} texts")
    for position, doc_id in enumerate(ids):
        if not isinstance(doc_id, str):
            raise TypeError(f"ids[{position}] must be a str, got {type(doc_id).__name__}")
        if not doc_id:
            raise ValueError(f"ids[{position}] is an empty string")
    repeated = sorted(doc_id for doc_id, n in Counter(ids).items() if n > 1)
    if repeated:
        raise ValueError(f"duplicate ids in this call: {repeated[:10]}")
    clash = sorted(i for i in ids if i in existing)
    if clash:
        raise ValueError(f"ids already in the index: {clash[:10]}")
    return ids


def check_metadatas(metadatas: Any, count: int) -> list[dict[str, Any]]:
    """One dict per document (``None`` -> ``{}``), copied so the caller's stay untouched."""
    if metadatas is None:
        return [{} for _ in range(count)]
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence):
        raise TypeError("metadatas must be a list of dicts (one per text) or None")
    metadatas = list(metadatas)
    if len(metadatas) != count:
        raise ValueError(f"got {len(metadatas)} metadatas for {count} texts")
    out = []
    for position, metadata in enumerate(metadatas):
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadatas[{position}] must be a dict, got {type(metadata).__name__}")
        out.append(dict(metadata))
    return out
