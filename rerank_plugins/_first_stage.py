"""The pipeline's first stage: any retriever (or search function) behind one checked call.

:class:`FirstStage` turns whatever the user passed (an object with ``search(query, k)``, a
batched ``search_many``, or a plain function ``(query, k)``) into lists of :class:`Hit`, adds
the pipeline's own keywords (``candidates=retriever_depth``) and each call's
``search_kwargs``, and refuses keywords the retriever does not take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ._validation import accepts_keyword, check_retriever_depth
from .types import Hit, SearchesHits

#: A plain function first stage: ``(query, k) -> iterable of (id, text, score)`` or Hits.
SearchFunction = Callable[[str, int], Iterable[Any]]
#: Keywords the pipeline sets itself; a call's ``search_kwargs`` may not.
_OWN_KEYWORDS = ("k", "candidates")


def as_hit(item: Any, position: int) -> Hit:
    """A first-stage result as a Hit whose ``retrieval_score`` is set (blending reads it)."""
    if isinstance(item, Hit):
        return (
            item if item.retrieval_score is not None else replace(item, retrieval_score=item.score)
        )
    if isinstance(item, (tuple, list)) and len(item) >= 3:
        doc_id, text, score = item[0], item[1], item[2]
        metadata = dict(item[3]) if len(item) > 3 and item[3] is not None else {}
        if not isinstance(text, str):
            raise TypeError(
                f"first-stage result {position} has a {type(text).__name__} text; expected str"
            )
        return Hit(
            id=str(doc_id),
            text=text,
            score=float(score),
            metadata=metadata,
            retrieval_score=float(score),
        )
    raise TypeError(
        f"first-stage result {position} must be a Hit or an (id, text, score[, metadata]) "
        f"tuple, got {type(item).__name__}"
    )


class FirstStage:
    """One retriever, its fixed keywords, and the batched path when it has one."""

    def __init__(
        self,
        retriever: SearchesHits | SearchFunction,
        *,
        candidates: int,
        retriever_depth: int | None = None,
    ) -> None:
        self.retriever = retriever
        self.fixed: dict[str, Any] = {}
        self._accepts: dict[tuple[str, str], bool] = {}
        if retriever_depth is not None:
            if isinstance(retriever_depth, bool) or not isinstance(retriever_depth, int):
                raise TypeError(f"retriever_depth must be an int, got {retriever_depth!r}")
            if not accepts_keyword(getattr(retriever, "search", None), "candidates"):
                raise TypeError(
                    "retriever_depth needs a retriever whose search() takes a 'candidates' "
                    f"keyword (like HybridRetriever); {type(retriever).__name__} does not"
                )
            check_retriever_depth(retriever_depth, candidates)
            self.fixed["candidates"] = retriever_depth
        search_many = getattr(retriever, "search_many", None)
        self.search_many = (
            search_many
            if callable(search_many)
            and (not self.fixed or accepts_keyword(search_many, "candidates"))
            else None
        )

    def keywords(self, search_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
        """The fixed keywords plus one call's ``search_kwargs``, checked.

        ``k`` and ``candidates`` belong to the pipeline (``candidates``, ``retriever_depth``);
        every other key must be a keyword the retriever's ``search`` takes, so a misspelt
        ``filtr=`` is an error here rather than silently unfiltered results.
        """
        if search_kwargs is None:
            return self.fixed
        if not isinstance(search_kwargs, Mapping):
            raise TypeError(f"search_kwargs must be a mapping, got {type(search_kwargs).__name__}")
        if not search_kwargs:
            return self.fixed
        if not isinstance(self.retriever, SearchesHits):
            raise TypeError(
                "search_kwargs needs a retriever with search(query, k, **kwargs); "
                "a plain function first stage takes only (query, k)"
            )
        for key in search_kwargs:
            if key in _OWN_KEYWORDS:
                raise ValueError(
                    f"search_kwargs may not set {key!r}: it is the pipeline's own "
                    "(set candidates= or retriever_depth= on RerankPipeline)"
                )
            if not self._takes("search", str(key)):
                raise TypeError(
                    f"search_kwargs has {key!r}, which {type(self.retriever).__name__}.search "
                    "does not take"
                )
        return {**self.fixed, **search_kwargs}

    def _takes(self, method: str, key: str) -> bool:
        """Whether the retriever's ``method`` takes keyword ``key``; one signature read per
        (method, key), not one per call."""
        known = self._accepts.get((method, key))
        if known is None:
            known = accepts_keyword(getattr(self.retriever, method, None), key)
            self._accepts[(method, key)] = known
        return known

    def retrieve(
        self, query: str, k: int, search_kwargs: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """``k`` hits for ``query`` in first-stage order."""
        kwargs = self.keywords(search_kwargs)
        raw: Iterable[Any]
        if isinstance(self.retriever, SearchesHits):
            raw = self.retriever.search(query, k=k, **kwargs)
        else:
            raw = self.retriever(query, k)
        return [as_hit(item, position) for position, item in enumerate(raw)]

    def retrieve_many(
        self, queries: Sequence[str], k: int, search_kwargs: Mapping[str, Any] | None = None
    ) -> list[list[Hit]]:
        """:meth:`retrieve` for each query, in one ``search_many`` call when the retriever has one."""
        kwargs = self.keywords(search_kwargs)
        many = self.search_many
        if many is None or any(not self._takes("search_many", str(key)) for key in kwargs):
            return [self.retrieve(query, k, search_kwargs) for query in queries]
        raw_lists = many(list(queries), k=k, **kwargs)
        return [[as_hit(item, i) for i, item in enumerate(raw)] for raw in raw_lists]
