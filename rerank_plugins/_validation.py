"""Input checks shared by every public entry point: fail loudly, name the culprit."""

from __future__ import annotations

from collections.abc import Sequence


def check_query(query: object, *, where: str = "query") -> str:
    """Return ``query`` if it is a non-blank string, else raise a clear error."""
    if not isinstance(query, str):
        raise TypeError(f"{where} must be a str, got {type(query).__name__}")
    if not query.strip():
        raise ValueError(f"{where} is empty or whitespace; a reranker needs a non-empty query")
    return query


def check_passages(passages: object, *, where: str = "passages") -> list[str]:
    """Return ``passages`` as a list of str; raise TypeError naming the first bad position."""
    if isinstance(passages, str):
        raise TypeError(f"{where} must be a sequence of str, not a single str")
    if not isinstance(passages, Sequence):
        try:
            passages = list(passages)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                f"{where} must be a sequence of str, got {type(passages).__name__}"
            ) from None
    out = list(passages)
    for position, passage in enumerate(out):
        if not isinstance(passage, str):
            raise TypeError(f"{where}[{position}] must be a str, got {type(passage).__name__}")
    return out


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
