"""LlamaIndex adapters: a cross-encoder node postprocessor and a hybrid retriever.

Needs the ``[llamaindex]`` extra (``pip install "rerank-plugins[llamaindex]"``).

* :class:`CrossEncoderRerank` reranks ``NodeWithScore`` lists with
  :class:`rerank_plugins.CrossEncoderReranker` (use it in ``node_postprocessors=[...]``).
* :class:`HybridRetriever` exposes the core :class:`rerank_plugins.HybridRetriever` (and,
  with a reranker, the whole :class:`rerank_plugins.RerankPipeline`) as a LlamaIndex
  retriever, with ``MetadataFilters``.

The adapters only convert types; all scoring, batching and fusion happen in the core. Any
reranker with the core surface (:class:`rerank_plugins.types.Reranker`) plugs in.
"""

from __future__ import annotations

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
    from llama_index.core.vector_stores.types import MetadataFilters
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "rerank_plugins.integrations.llama_index needs LlamaIndex: "
        'pip install "rerank-plugins[llamaindex]"'
    ) from error

import asyncio
import copy
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

from .._validation import check_positive_int
from ..cross_encoder import DEFAULT_MODEL
from ..types import Hit, Reranker, RerankResult, SearchesHits
from ._shared import (
    SCORE_KEYS,
    LazyReranker,
    SearchOptions,
    SearchRunner,
    build_adapter_reranker,
    check_reranker,
    fusion_settings,
    hit_metadata,
    reranker_name,
)
from .filters import from_langchain_filter, from_llama_index_filters

__all__ = ["CrossEncoderRerank", "HybridRetriever"]

dispatcher = get_dispatcher(__name__)


class CrossEncoderRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with a cross-encoder and keep the best ``top_n``.

    Returns new ``NodeWithScore`` objects (with copied nodes: same ids, deep-copied metadata),
    best first, scored with Python floats; each node's previous score is kept in its
    metadata as ``retrieval_score``. The inputs are never modified. The text scored is
    ``node.get_content(metadata_mode=MetadataMode.EMBED)``. Like LlamaIndex's own rerankers
    it opens an instrumentation span, emits ``ReRankStartEvent``/``ReRankEndEvent`` and a
    ``RERANKING`` callback event; the async path awaits the reranker's native ``arerank``.

    Example:
        >>> rerank = CrossEncoderRerank(model="path/to/cross-encoder", top_n=3,
        ...                             reranker_kwargs={"dtype": "bfloat16"})
        >>> engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])
    """

    model: str = Field(
        default=DEFAULT_MODEL, description="Hub id or local directory of the cross-encoder."
    )
    top_n: int | None = Field(
        default=3, ge=0, description="Nodes to return; None keeps all (reordered)."
    )
    score_threshold: float | None = Field(
        default=None,
        description="Drop nodes scoring below this (raw logits unless activation='sigmoid').",
    )
    batch_size: int | None = Field(default=None, ge=1, description="Most pairs per forward pass.")
    device: str | None = Field(default="auto", description="'auto' or a torch device string.")
    max_length: int | None = Field(
        default=None, description="Token window per pair (default: model limit)."
    )
    activation: Literal["none", "sigmoid"] = Field(
        default="none", description="'none' for raw logits, 'sigmoid' for 0..1 scores."
    )
    reranker_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Further CrossEncoderReranker settings for the model loaded from `model` "
        "(dtype, backend, quantize, backend_options, ...).",
    )

    _lazy: LazyReranker = PrivateAttr(default_factory=LazyReranker)

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        """Settings as keywords; pass ``reranker=`` to share a ready reranker (core surface)."""
        if reranker is not None:
            check_reranker(reranker)
            data.setdefault("model", reranker_name(reranker))
        if isinstance(data.get("model"), os.PathLike):
            data["model"] = os.fspath(data["model"])
        super().__init__(**data)
        self._lazy = LazyReranker(reranker)

    @classmethod
    def class_name(cls) -> str:
        return "CrossEncoderRerank"

    @property
    def reranker(self) -> Reranker:
        """The reranker: the one given, else the model, built on first use (thread-safe)."""
        return self._lazy.get(partial(build_adapter_reranker, self))

    @contextmanager
    def _instrumented(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> Iterator[tuple[QueryBundle, list[NodeWithScore]]]:
        """Start/end events around one rerank; the caller fills the yielded result list."""
        if query_bundle is None:
            raise ValueError("CrossEncoderRerank needs a query: pass query_bundle or query_str")
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=len(nodes) if self.top_n is None else self.top_n,
                model_name=self.model,
            )
        )
        payload: dict[str, Any] = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: self.top_n,
        }
        reranked: list[NodeWithScore] = []
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            yield query_bundle, reranked
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))

    def _texts(self, nodes: list[NodeWithScore]) -> list[str]:
        return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]

    @dispatcher.span
    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        nodes = list(nodes)
        with self._instrumented(nodes, query_bundle) as (query, reranked):
            if nodes:
                results = self.reranker.rerank(
                    query.query_str,
                    self._texts(nodes),
                    top_n=self.top_n,
                    score_threshold=self.score_threshold,
                )
                reranked.extend(_reranked_nodes(nodes, results))
        return reranked

    @dispatcher.span
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        nodes = list(nodes)
        with self._instrumented(nodes, query_bundle) as (query, reranked):
            if nodes:
                reranker = self._lazy.built
                if reranker is None:  # load the model off the event loop
                    reranker = await asyncio.to_thread(lambda: self.reranker)
                results = await reranker.arerank(
                    query.query_str,
                    self._texts(nodes),
                    top_n=self.top_n,
                    score_threshold=self.score_threshold,
                )
                reranked.extend(_reranked_nodes(nodes, results))
        return reranked


class HybridRetriever(BaseRetriever):
    """LlamaIndex retriever over the core :class:`rerank_plugins.HybridRetriever`.

    Without ``reranker`` it returns the fused first-stage hits; with one it runs the whole
    :class:`rerank_plugins.RerankPipeline`, built once on the first query and reused. Nodes
    are ``TextNode(id_=hit.id)`` with a deep copy of the hit's metadata plus
    ``scores``/``ranks`` (per first-stage retriever), ``retrieval_score`` and, when
    reranked, ``relevance_score``; these score keys are excluded from the text that
    embedders, rerankers and LLMs see.

    Args:
        retriever: The core hybrid retriever (anything with ``search(query, k)``).
        k: How many nodes to return (with a reranker, at most ``candidates``).
        reranker: Optional reranker with the core surface (e.g.
            :class:`rerank_plugins.CrossEncoderReranker`).
        candidates: With a reranker, how many first-stage hits it rescores (default 100).
        pipeline_kwargs: Extra :class:`rerank_plugins.RerankPipeline` settings.
        filters: ``MetadataFilters`` (or a dict in the core / LangChain grammar) applied to
            every query, translated by :mod:`rerank_plugins.integrations.filters`; an
            operator with no translation raises here, not silently at query time.

    Example:
        >>> retriever = HybridRetriever(core, k=5, reranker=reranker, candidates=30,
        ...     filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2015, operator=">=")]))
        >>> retriever.retrieve("does vitamin D prevent fractures?")
    """

    def __init__(
        self,
        retriever: SearchesHits,
        *,
        k: int = 10,
        reranker: Reranker | None = None,
        candidates: int | None = None,
        pipeline_kwargs: Mapping[str, Any] | None = None,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(retriever, SearchesHits):
            raise TypeError(f"retriever must have search(query, k), got {type(retriever).__name__}")
        self.retriever = retriever
        self.k = check_positive_int(k, "k")
        self.reranker = None if reranker is None else check_reranker(reranker)
        self.candidates = check_positive_int(candidates, "candidates", allow_none=True)
        self.pipeline_kwargs = dict(pipeline_kwargs or {})
        self.filters = filters
        self._core_filter = (
            from_langchain_filter(filters)
            if isinstance(filters, Mapping)
            else from_llama_index_filters(filters)
        )
        self._runner = SearchRunner()
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        ids: list[str] | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        k: int = 10,
        reranker: Reranker | None = None,
        candidates: int | None = None,
        pipeline_kwargs: Mapping[str, Any] | None = None,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
        rrf_k: float | None = None,
        **index_kwargs: Any,
    ) -> HybridRetriever:
        """Index ``texts`` with the core retriever, then wrap it.

        ``fusion``, ``weights`` and ``rrf_k`` go to the core
        :class:`rerank_plugins.HybridRetriever` unchanged (it validates them; ``None`` keeps
        its default), as do ``embedder=``, ``retrievers=`` and every other ``index_kwargs``.
        Metadata is deep-copied, so the index never shares a nested list with the caller.
        """
        from ..hybrid import HybridRetriever as CoreHybridRetriever

        settings = fusion_settings(fusion=fusion, weights=weights, rrf_k=rrf_k)
        copied = None if metadatas is None else [copy.deepcopy(m) for m in metadatas]
        core = CoreHybridRetriever.from_texts(list(texts), ids, copied, **settings, **index_kwargs)
        return cls(
            core,
            k=k,
            reranker=reranker,
            candidates=candidates,
            pipeline_kwargs=pipeline_kwargs,
            filters=filters,
        )

    def _options(self) -> SearchOptions:
        return SearchOptions(
            k=self.k,
            reranker=self.reranker,
            candidates=self.candidates,
            pipeline_kwargs=self.pipeline_kwargs,
            filter=self._core_filter,
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._runner.search(self.retriever, query_bundle.query_str, self._options())
        return [_hit_to_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self._runner.asearch(self.retriever, query_bundle.query_str, self._options())
        return [_hit_to_node(hit) for hit in hits]

    def close(self) -> None:
        """Release the pipeline's worker threads (a later query builds it again)."""
        self._runner.close()


def _hide_score_keys(keys: list[str]) -> list[str]:
    return [*keys, *(key for key in SCORE_KEYS if key not in keys)]


def _reranked_nodes(nodes: list[NodeWithScore], results: list[RerankResult]) -> list[NodeWithScore]:
    return [NodeWithScore(node=_copy_node(nodes[r.index]), score=float(r.score)) for r in results]


def _copy_node(scored: NodeWithScore) -> Any:
    """A copy of ``scored.node`` with the previous score kept as ``retrieval_score``."""
    node = scored.node
    metadata = copy.deepcopy(dict(node.metadata))
    if scored.score is not None:
        metadata["retrieval_score"] = float(scored.score)
    return node.model_copy(
        update={
            "metadata": metadata,
            "excluded_embed_metadata_keys": _hide_score_keys(
                list(node.excluded_embed_metadata_keys)
            ),
            "excluded_llm_metadata_keys": _hide_score_keys(list(node.excluded_llm_metadata_keys)),
        }
    )


def _hit_to_node(hit: Hit) -> NodeWithScore:
    node = TextNode(
        id_=hit.id,
        text=hit.text,
        metadata=hit_metadata(hit),
        excluded_embed_metadata_keys=list(SCORE_KEYS),
        excluded_llm_metadata_keys=list(SCORE_KEYS),
    )
    return NodeWithScore(node=node, score=float(hit.score))
