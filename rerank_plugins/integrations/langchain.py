"""LangChain adapters: a cross-encoder document compressor and a hybrid retriever.

Needs the ``[langchain]`` extra (``pip install "rerank-plugins[langchain]"``).

* :class:`CrossEncoderCompressor` reranks documents with
  :class:`rerank_plugins.CrossEncoderReranker`; use it on its own, in
  ``ContextualCompressionRetriever`` or in an LCEL chain.
* :class:`RerankPluginsCrossEncoder` plugs the same model into LangChain's own
  ``CrossEncoderReranker`` (``langchain_classic.retrievers.document_compressors``).
* :class:`HybridRetriever` exposes the core :class:`rerank_plugins.HybridRetriever` (and,
  with a reranker, the whole :class:`rerank_plugins.RerankPipeline`) as a LangChain retriever,
  with LangChain-style dict metadata filters.

The adapters only convert types; all scoring, batching and fusion happen in the core. Any
reranker with the core surface (:class:`rerank_plugins.types.Reranker`: ``score``,
``score_pairs``, ``rerank``, ``arerank``, ...) plugs in where a reranker is taken.
"""

from __future__ import annotations

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
        Callbacks,
    )
    from langchain_core.cross_encoders import BaseCrossEncoder
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "rerank_plugins.integrations.langchain needs LangChain: "
        'pip install "rerank-plugins[langchain]"'
    ) from error

import asyncio
import copy
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from ..cross_encoder import DEFAULT_MODEL
from ..types import Hit, Reranker, SearchesHits
from ._shared import (
    LazyReranker,
    SearchOptions,
    SearchRunner,
    build_adapter_reranker,
    build_cross_encoder,
    check_reranker,
    fusion_settings,
    hit_metadata,
)
from .filters import from_langchain_filter

__all__ = ["CrossEncoderCompressor", "HybridRetriever", "RerankPluginsCrossEncoder"]


class CrossEncoderCompressor(BaseDocumentCompressor):
    """Rerank LangChain documents with a cross-encoder and keep the best ``top_n``.

    Returns copies of the documents, best first, each with ``metadata["relevance_score"]``
    (a Python float); ``Document.id`` and all other metadata are kept (deep-copied) and the
    input documents are never modified. The model is loaded once, on first use, unless
    ``reranker`` is given. The async path awaits the reranker's own ``arerank``.

    Example:
        >>> compressor = CrossEncoderCompressor(
        ...     model="path/to/cross-encoder", top_n=3,
        ...     reranker_kwargs={"backend": "onnx", "quantize": "int8"})
        >>> docs = compressor.compress_documents(documents, "what causes scurvy?")
    """

    model: str | Path = DEFAULT_MODEL
    """Hub id or local directory of the cross-encoder (ignored when ``reranker`` is set)."""
    reranker: Reranker | None = None
    """A ready reranker to share (a :class:`rerank_plugins.CrossEncoderReranker` or any with
    the core surface); overrides ``model`` and the model settings below."""
    top_n: int | None = Field(default=3, ge=0)
    """How many documents to return; ``None`` returns all of them (reordered)."""
    score_threshold: float | None = None
    """Drop documents scoring below this (raw logits unless ``activation="sigmoid"``)."""
    batch_size: int | None = Field(default=None, ge=1)
    """Most pairs per forward pass (default: the core's, 64 on CPU within a 1024-token budget
    in fp32/int8, 128 on CUDA)."""
    device: str | None = "auto"
    """``"auto"`` (CUDA, then MPS, then CPU) or any torch device string."""
    max_length: int | None = None
    """Token window per (query, passage) pair; defaults to the model's limit."""
    activation: Literal["none", "sigmoid"] = "none"
    """``"none"`` for raw logits, ``"sigmoid"`` for 0..1 scores."""
    reranker_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Further :class:`rerank_plugins.CrossEncoderReranker` settings for the model loaded
    from ``model``: ``dtype``, ``backend``, ``quantize``, ``backend_options``, ..."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    _lazy: LazyReranker = PrivateAttr(default_factory=LazyReranker)

    def get_reranker(self) -> Reranker:
        """The reranker: ``reranker`` if given, else the model, built on first use (thread-safe)."""
        if self.reranker is None:
            self.reranker = self._lazy.get(partial(build_adapter_reranker, self))
        return self.reranker

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` against ``query``; copies, best first, with relevance scores."""
        documents = list(documents)
        if not documents:
            return []
        results = self.get_reranker().rerank(
            query,
            [doc.page_content for doc in documents],
            top_n=self.top_n,
            score_threshold=self.score_threshold,
        )
        return [_with_metadata(documents[r.index], relevance_score=float(r.score)) for r in results]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: awaits the reranker's native ``arerank``."""
        documents = list(documents)
        if not documents:
            return []
        reranker = self.reranker
        if reranker is None:  # load the model off the event loop
            reranker = await asyncio.to_thread(self.get_reranker)
        results = await reranker.arerank(
            query,
            [doc.page_content for doc in documents],
            top_n=self.top_n,
            score_threshold=self.score_threshold,
        )
        return [_with_metadata(documents[r.index], relevance_score=float(r.score)) for r in results]


class RerankPluginsCrossEncoder(BaseCrossEncoder):
    """A LangChain ``BaseCrossEncoder`` backed by :class:`rerank_plugins.CrossEncoderReranker`.

    Plug it into LangChain's own reranker::

        from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        compressor = CrossEncoderReranker(model=RerankPluginsCrossEncoder("path/to/ce"), top_n=3)

    Args:
        model: Hub id or local directory of the cross-encoder.
        reranker: A ready reranker with the core surface to share instead of loading ``model``.
        **kwargs: Passed to :class:`rerank_plugins.CrossEncoderReranker` (``device``,
            ``batch_size``, ``max_length``, ``activation``, ``dtype``, ``backend``, ...).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        reranker: Reranker | None = None,
        **kwargs: Any,
    ) -> None:
        if reranker is not None and kwargs:
            raise ValueError("pass either reranker or reranker settings, not both")
        self.reranker: Reranker = (
            check_reranker(reranker)
            if reranker is not None
            else build_cross_encoder(model, None, **kwargs)
        )

    def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        """Score (query, passage) pairs; Python floats aligned with ``text_pairs``."""
        return [float(s) for s in self.reranker.score_pairs(list(text_pairs))]


class HybridRetriever(BaseRetriever):
    """LangChain retriever over the core :class:`rerank_plugins.HybridRetriever`.

    Without ``reranker`` it returns the fused first-stage hits; with one it runs the whole
    :class:`rerank_plugins.RerankPipeline` (retrieve ``candidates``, rerank, keep ``k``),
    built once on the first query and reused. Each document's ``id`` is the hit id and its
    metadata holds a deep copy of the hit's metadata plus ``scores``/``ranks`` (per
    first-stage retriever), ``retrieval_score`` and, when reranked, ``relevance_score``.

    ``filter`` (and ``invoke(query, filter=...)``, which replaces it for one call) takes the
    dict filters LangChain vector stores accept, translated into the core grammar by
    :func:`rerank_plugins.integrations.filters.from_langchain_filter`; an operator with no
    translation raises instead of being dropped.

    Example:
        >>> core = rerank_plugins.HybridRetriever.from_texts(texts, embedder=embedder)
        >>> retriever = HybridRetriever(retriever=core, reranker=reranker, k=5, candidates=30)
        >>> retriever.invoke("does vitamin D prevent fractures?", k=3, filter={"year": {"$gte": 2015}})
    """

    retriever: SearchesHits
    """The core :class:`rerank_plugins.HybridRetriever` (anything with ``search(query, k)``)."""
    reranker: Reranker | None = None
    """Optional reranker with the core surface; turns on the rerank pipeline."""
    k: int = Field(default=4, ge=1)
    """How many documents to return; ``invoke(query, k=...)`` overrides it per call. With a
    reranker it must not exceed ``candidates``."""
    candidates: int | None = Field(default=None, ge=1)
    """With a reranker: how many first-stage hits it rescores (default: the pipeline's, 100)."""
    pipeline_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra :class:`rerank_plugins.RerankPipeline` settings (``rerank_timeout``, ...)."""
    filter: dict[str, Any] | None = None
    """A LangChain-style metadata filter applied to every query (see the class docs)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    _runner: SearchRunner = PrivateAttr(default_factory=SearchRunner)

    @field_validator("filter")
    @classmethod
    def _check_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from_langchain_filter(value)  # fail at construction, not on the first query
        return value

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        *,
        reranker: Reranker | None = None,
        k: int = 4,
        candidates: int | None = None,
        pipeline_kwargs: Mapping[str, Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
        rrf_k: float | None = None,
        **index_kwargs: Any,
    ) -> HybridRetriever:
        """Index ``texts`` with the core retriever, then wrap it.

        ``fusion`` (``"rrf"``, ``"minmax"``, ``"zscore"``, ...), ``weights`` (per retriever,
        e.g. ``{"bm25": 1.0, "dense": 2.0}``) and ``rrf_k`` go to the core
        :class:`rerank_plugins.HybridRetriever` unchanged (it validates them; ``None`` keeps
        its default), as do ``embedder=``, ``retrievers=`` and every other ``index_kwargs``.
        """
        from ..hybrid import HybridRetriever as CoreHybridRetriever

        settings = fusion_settings(fusion=fusion, weights=weights, rrf_k=rrf_k)
        core = CoreHybridRetriever.from_texts(
            list(texts), ids, metadatas, **settings, **index_kwargs
        )
        return cls(
            retriever=core,
            reranker=reranker,
            k=k,
            candidates=candidates,
            pipeline_kwargs=dict(pipeline_kwargs or {}),
            filter=None if filter is None else dict(filter),
        )

    @classmethod
    def from_documents(cls, documents: Sequence[Document], **kwargs: Any) -> HybridRetriever:
        """Index LangChain documents (settings as for :meth:`from_texts`).

        A document's ``id`` becomes its hit id. Documents without one get a fresh
        ``uuid4`` hex id (as LangChain's vector stores do); the given ids are kept. When no
        document has an id, the core numbers them ``"0"``, ``"1"``, ... Metadata is
        deep-copied, so the index never shares a nested list with the caller.
        """
        documents = list(documents)
        given = [doc.id for doc in documents]
        ids = None
        if any(doc_id is not None for doc_id in given):
            ids = [doc_id if doc_id is not None else uuid.uuid4().hex for doc_id in given]
        return cls.from_texts(
            [doc.page_content for doc in documents],
            ids,
            [copy.deepcopy(dict(doc.metadata)) for doc in documents],
            **kwargs,
        )

    def _options(self, k: int | None, filter: Mapping[str, Any] | None) -> SearchOptions:
        return SearchOptions(
            k=self.k if k is None else k,
            reranker=self.reranker,
            candidates=self.candidates,
            pipeline_kwargs=self.pipeline_kwargs,
            filter=from_langchain_filter(self.filter if filter is None else filter),
        )

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[Document]:
        hits = self._runner.search(self.retriever, query, self._options(k, filter))
        return [_hit_to_document(hit) for hit in hits]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[Document]:
        hits = await self._runner.asearch(self.retriever, query, self._options(k, filter))
        return [_hit_to_document(hit) for hit in hits]

    def close(self) -> None:
        """Release the pipeline's worker threads (a later query builds it again)."""
        self._runner.close()


def _with_metadata(document: Document, **extra: Any) -> Document:
    """A copy of ``document`` (same class and id) with ``extra`` merged into new metadata."""
    metadata = {**copy.deepcopy(document.metadata), **extra}
    return document.model_copy(update={"metadata": metadata})


def _hit_to_document(hit: Hit) -> Document:
    return Document(page_content=hit.text, metadata=hit_metadata(hit), id=hit.id)
