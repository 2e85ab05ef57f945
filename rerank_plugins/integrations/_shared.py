"""What both adapters share, framework-free: hit metadata, the lazy reranker, the search runner.

* :func:`hit_metadata` turns a core :class:`~rerank_plugins.Hit` into framework metadata (a
  deep copy: nothing the caller mutates reaches the index);
* :class:`LazyReranker` + :func:`build_cross_encoder` load a ``CrossEncoderReranker`` once, on
  first use, from the adapter's settings and ``reranker_kwargs``;
* :class:`SearchRunner` runs a query: the core retriever's ``search`` or, with a reranker, a
  :class:`~rerank_plugins.RerankPipeline` built once per adapter and reused by every query.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from .._validation import accepts_keyword, check_positive_int
from ..types import Hit, Reranker, SearchesHits

#: Metadata keys the adapters add; kept out of the text a model or an LLM sees.
SCORE_KEYS = ("scores", "ranks", "retrieval_score", "relevance_score")
#: Settings the adapters pass to the core retriever's constructor by name.
FUSION_SETTINGS = ("fusion", "weights", "rrf_k")


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """Metadata for a framework document built from a core :class:`~rerank_plugins.Hit`.

    A deep copy of the hit's own metadata (mutating a nested list in the output leaves the
    index alone) plus ``scores``/``ranks`` (per first-stage retriever), ``retrieval_score``
    (the fused first-stage score) and, when the hit was reranked, ``relevance_score`` (the
    cross-encoder score). All scores are Python floats.
    """
    metadata = copy.deepcopy(dict(hit.metadata))
    metadata["scores"] = {name: float(value) for name, value in hit.scores.items()}
    metadata["ranks"] = {name: int(value) for name, value in hit.ranks.items()}
    retrieval = hit.retrieval_score if hit.retrieval_score is not None else hit.score
    metadata["retrieval_score"] = float(retrieval)
    if hit.rerank_score is not None:
        metadata["relevance_score"] = float(hit.rerank_score)
    return metadata


def fusion_settings(**settings: Any) -> dict[str, Any]:
    """The fusion settings the caller gave (``None`` means "the core's default")."""
    return {name: value for name, value in settings.items() if value is not None}


# ---------------------------------------------------------------------------- rerankers
def check_reranker(reranker: object, *, where: str = "reranker") -> Reranker:
    """``reranker`` if it has the core reranker surface (:class:`rerank_plugins.types.Reranker`)."""
    if not isinstance(reranker, Reranker):
        raise TypeError(
            f"{where} must have the core reranker surface (score, score_pairs, rerank, "
            f"rerank_many, ascore, arerank), e.g. rerank_plugins.CrossEncoderReranker; got "
            f"{type(reranker).__name__}"
        )
    return reranker


def reranker_name(reranker: object) -> str:
    """A name to report for ``reranker``: its ``model_name`` when it has one."""
    name = getattr(reranker, "model_name", None)
    return os.fspath(name) if isinstance(name, (str, os.PathLike)) else type(reranker).__name__


def build_cross_encoder(
    model: str | os.PathLike[str],
    reranker_kwargs: Mapping[str, Any] | None,
    **settings: Any,
) -> Reranker:
    """``CrossEncoderReranker(model, **settings, **reranker_kwargs)``.

    ``settings`` are the adapter's own fields (``device``, ``batch_size``, ...);
    ``reranker_kwargs`` carries everything else the core reranker takes (``dtype``,
    ``backend``, ``quantize``, ``backend_options``, ...). A name in both is an error: it is
    not clear which one the caller meant.
    """
    from ..cross_encoder import CrossEncoderReranker

    extra = dict(reranker_kwargs or {})
    clash = sorted(set(extra) & (set(settings) | {"model"}))
    if clash:
        raise ValueError(
            f"reranker_kwargs {clash} are settings of the adapter itself; set them there, "
            "not in reranker_kwargs"
        )
    return CrossEncoderReranker(model, **settings, **extra)


#: The adapters' own reranker settings, passed to ``CrossEncoderReranker`` by name.
RERANKER_FIELDS = ("device", "batch_size", "max_length", "activation")


def build_adapter_reranker(adapter: Any) -> Reranker:
    """The cross-encoder an adapter describes: ``model``, :data:`RERANKER_FIELDS` and
    ``reranker_kwargs`` (see :func:`build_cross_encoder`)."""
    settings = {name: getattr(adapter, name) for name in RERANKER_FIELDS}
    return build_cross_encoder(adapter.model, adapter.reranker_kwargs, **settings)


class LazyReranker:
    """A reranker given up front, or built on first use exactly once (thread-safe)."""

    def __init__(self, reranker: Reranker | None = None) -> None:
        self._reranker = reranker
        self._lock = threading.Lock()

    @property
    def built(self) -> Reranker | None:
        """The reranker if it was given or has been built, else ``None``."""
        return self._reranker

    def get(self, build: Callable[[], Reranker]) -> Reranker:
        """The reranker, calling ``build()`` the first time it is needed."""
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = build()
        return self._reranker


# ---------------------------------------------------------------------------- searching
@dataclass(frozen=True)
class SearchOptions:
    """One query's settings: how many hits, the reranker and its pipeline, the core filter."""

    k: int
    reranker: Reranker | None = None
    candidates: int | None = None
    pipeline_kwargs: Mapping[str, Any] | None = None
    filter: Mapping[str, Any] | None = None

    def search_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``retriever.search`` beyond ``k``."""
        return {} if self.filter is None else {"filter": self.filter}


class SearchRunner:
    """Runs the adapters' queries against one core retriever (and reranker), built once.

    Without a reranker a query is ``retriever.search(query, k=k[, filter=...])``. With one it
    is a :class:`~rerank_plugins.RerankPipeline` (retrieve ``candidates``, rerank, keep ``k``)
    built on the first query and reused until the retriever, reranker, ``candidates`` or
    ``pipeline_kwargs`` change. The pipeline keeps every reranked candidate
    (``top_k=candidates``) and each query takes its first ``k``, so ``k`` may change per
    call; a ``k`` above ``candidates`` is an error (the reranked list cannot hold more).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipeline: Any = None
        self._key: tuple[Any, ...] | None = None

    def pipeline(
        self,
        retriever: SearchesHits,
        reranker: Reranker,
        *,
        candidates: int | None,
        pipeline_kwargs: Mapping[str, Any] | None,
    ) -> Any:
        """The :class:`~rerank_plugins.RerankPipeline` for these settings (built once)."""
        kwargs = dict(pipeline_kwargs or {})
        taken = sorted(set(kwargs) & {"retriever", "reranker", "candidates", "top_k"})
        if taken:
            raise ValueError(
                f"pipeline_kwargs {taken} are set by the adapter (retriever, reranker, "
                "candidates, k): pass them as the adapter's own settings"
            )
        key = (id(retriever), id(reranker), candidates, repr(sorted(kwargs.items())))
        with self._lock:
            if self._pipeline is None or self._key != key:
                from ..pipeline import RerankPipeline

                depth = candidates if candidates is not None else _default_candidates()
                pipeline = RerankPipeline(
                    retriever, reranker, candidates=depth, top_k=depth, **kwargs
                )
                if self._pipeline is not None:
                    self._pipeline.close()
                self._pipeline, self._key = pipeline, key
            return self._pipeline

    def _prepare(self, retriever: SearchesHits, options: SearchOptions) -> Any:
        """The pipeline to run ``options`` with (``None``: search only), after checking them."""
        check_positive_int(options.k, "k")
        if options.filter is not None and not accepts_keyword(retriever.search, "filter"):
            raise TypeError(
                f"a metadata filter needs a retriever whose search() takes filter=; "
                f"{type(retriever).__name__} does not"
            )
        if options.reranker is None:
            return None
        pipeline = self.pipeline(
            retriever,
            options.reranker,
            candidates=options.candidates,
            pipeline_kwargs=options.pipeline_kwargs,
        )
        if options.k > pipeline.candidates:
            raise ValueError(
                f"k={options.k} is above candidates={pipeline.candidates}: the reranker orders "
                "the first-stage candidates, so at most that many hits come back; raise candidates"
            )
        return pipeline

    def search(self, retriever: SearchesHits, query: str, options: SearchOptions) -> list[Hit]:
        """The top ``options.k`` hits for ``query`` (reranked when a reranker is set)."""
        pipeline = self._prepare(retriever, options)
        if pipeline is None:
            return list(retriever.search(query, k=options.k, **options.search_kwargs()))
        result = pipeline.run(query, search_kwargs=options.search_kwargs())
        return list(result.hits[: options.k])

    async def asearch(
        self, retriever: SearchesHits, query: str, options: SearchOptions
    ) -> list[Hit]:
        """Async :meth:`search`: the first stage runs in a worker thread (it is CPU work)."""
        pipeline = self._prepare(retriever, options)
        if pipeline is None:
            search = partial(retriever.search, query, k=options.k, **options.search_kwargs())
            return list(await asyncio.to_thread(search))
        result = await pipeline.arun(query, search_kwargs=options.search_kwargs())
        return list(result.hits[: options.k])

    def close(self) -> None:
        """Shut the pipeline's timeout worker threads down (it is rebuilt on the next query)."""
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.close()
            self._pipeline, self._key = None, None


def _default_candidates() -> int:
    """``RerankPipeline``'s own default for ``candidates``."""
    from ..pipeline import RerankPipeline

    return int(inspect.signature(RerankPipeline).parameters["candidates"].default)
