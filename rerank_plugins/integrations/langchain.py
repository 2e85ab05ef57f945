"""LangChain adapters: a cross-encoder document compressor and a hybrid retriever.

Needs the ``[langchain]`` extra (``pip install "rerank-plugins[langchain]"``).

* :class:`CrossEncoderCompressor` reranks documents with
  :class:`rerank_plugins.CrossEncoderReranker`; use it on its own, in
  ``ContextualCompressionRetriever`` or in an LCEL chain.
* :class:`RerankPluginsCrossEncoder` plugs the same model into LangChain's own
  ``CrossEncoderReranker`` (``langchain_classic.retrievers.document_compressors``).
* :class:`HybridRetriever` exposes the core :class:`rerank_plugins.HybridRetriever` (and,
  with a reranker, the whole :class:`rerank_plugins.RerankPipeline`) as a LangChain retriever.

The adapters only convert types; all scoring, batching and fusion happen in the core.
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
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr

from ..cross_encoder import DEFAULT_MODEL, CrossEncoderReranker
from ..types import Hit, Reranker
from . import hit_metadata, run_search

__all__ = ["CrossEncoderCompressor", "HybridRetriever", "RerankPluginsCrossEncoder"]


class CrossEncoderCompressor(BaseDocumentCompressor):
    """Rerank LangChain documents with a cross-encoder and keep the best ``top_n``.

    Returns copies of the documents, best first, each with ``metadata["relevance_score"]``
    (a Python float); ``Document.id`` and all other metadata are kept and the input documents
    are never modified. The model is loaded once, on first use, unless ``reranker`` is given.

    Example:
        >>> compressor = CrossEncoderCompressor(model="path/to/cross-encoder", top_n=3)
        >>> docs = compressor.compress_documents(documents, "what causes scurvy?")
    """

    model: str | Path = DEFAULT_MODEL
    """Hub id or local directory of the cross-encoder (ignored when ``reranker`` is set)."""
    reranker: Reranker | None = None
    """A ready reranker to share (a :class:`rerank_plugins.CrossEncoderReranker`, a
    ``RemoteReranker``, any :class:`rerank_plugins.Reranker`); overrides ``model``,
    ``batch_size``, ``device``, ``max_length`` and ``activation``."""
    top_n: int | None = Field(default=3, ge=0)
    """How many documents to return; ``None`` returns all of them (reordered)."""
    score_threshold: float | None = None
    """Drop documents scoring below this (raw logits unless ``activation="sigmoid"``)."""
    batch_size: int | None = Field(default=None, ge=1)
    """Most pairs per forward pass (default: the core's, 64 on CPU within a 4096-token budget, 128 on CUDA)."""
    device: str | None = "auto"
    """``"auto"`` (CUDA, then MPS, then CPU) or any torch device string."""
    max_length: int | None = None
    """Token window per (query, passage) pair; defaults to the model's limit."""
    activation: Literal["none", "sigmoid"] = "none"
    """``"none"`` for raw logits, ``"sigmoid"`` for 0..1 scores."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def get_reranker(self) -> CrossEncoderReranker:
        """The core reranker, built on first use and reused (thread-safe)."""
        if self.reranker is None:
            with self._lock:
                if self.reranker is None:
                    self.reranker = CrossEncoderReranker(
                        self.model,
                        device=self.device,
                        batch_size=self.batch_size,
                        max_length=self.max_length,
                        activation=self.activation,
                    )
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
        """Async :meth:`compress_documents`: scoring runs in a worker thread."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)


class RerankPluginsCrossEncoder(BaseCrossEncoder):
    """A LangChain ``BaseCrossEncoder`` backed by :class:`rerank_plugins.CrossEncoderReranker`.

    Plug it into LangChain's own reranker::

        from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        compressor = CrossEncoderReranker(model=RerankPluginsCrossEncoder("path/to/ce"), top_n=3)

    Args:
        model: Hub id or local directory of the cross-encoder.
        reranker: A ready core reranker to share instead of loading ``model``.
        **kwargs: Passed to :class:`rerank_plugins.CrossEncoderReranker` (``device``,
            ``batch_size``, ``max_length``, ``activation``, ...).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        reranker: CrossEncoderReranker | None = None,
        **kwargs: Any,
    ) -> None:
        if reranker is not None and kwargs:
            raise ValueError("pass either reranker or reranker settings, not both")
        self.reranker = reranker if reranker is not None else CrossEncoderReranker(model, **kwargs)

    def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        """Score (query, passage) pairs; Python floats aligned with ``text_pairs``."""
        return [float(s) for s in self.reranker.score_pairs(list(text_pairs))]


class HybridRetriever(BaseRetriever):
    """LangChain retriever over the core :class:`rerank_plugins.HybridRetriever`.

    Without ``reranker`` it returns the fused first-stage hits; with one it runs the whole
    :class:`rerank_plugins.RerankPipeline` (retrieve ``candidates``, rerank, keep ``k``).
    Each document's ``id`` is the hit id and its metadata holds the hit's metadata plus
    ``scores``/``ranks`` (per first-stage retriever), ``retrieval_score`` and, when reranked,
    ``relevance_score``.

    Example:
        >>> core = rerank_plugins.HybridRetriever.from_texts(texts, embedder=embedder)
        >>> retriever = HybridRetriever(retriever=core, reranker=reranker, k=5)
        >>> retriever.invoke("does vitamin D prevent fractures?", k=3)
    """

    retriever: Any
    """The core :class:`rerank_plugins.HybridRetriever` (anything with ``search(query, k)``)."""
    reranker: Any = None
    """Optional :class:`rerank_plugins.CrossEncoderReranker`; turns on the rerank pipeline."""
    k: int = Field(default=4, ge=1)
    """How many documents to return; ``invoke(query, k=...)`` overrides it per call."""
    candidates: int | None = Field(default=None, ge=1)
    """With a reranker: how many first-stage hits it rescores (default: the pipeline's)."""
    pipeline_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra :class:`rerank_plugins.RerankPipeline` settings (``rerank_timeout``, ...)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[dict[str, Any]] | None = None,
        *,
        reranker: Any = None,
        k: int = 4,
        candidates: int | None = None,
        **index_kwargs: Any,
    ) -> HybridRetriever:
        """Index ``texts`` with the core retriever (``embedder=``, ``retrievers=``, ...)."""
        from ..hybrid import HybridRetriever as CoreHybridRetriever

        core = CoreHybridRetriever.from_texts(list(texts), ids, metadatas, **index_kwargs)
        return cls(retriever=core, reranker=reranker, k=k, candidates=candidates)

    @classmethod
    def from_documents(cls, documents: Sequence[Document], **kwargs: Any) -> HybridRetriever:
        """Index LangChain documents; a document's ``id`` becomes the hit id when set."""
        documents = list(documents)
        ids = [doc.id for doc in documents]
        return cls.from_texts(
            [doc.page_content for doc in documents],
            ids if all(i is not None for i in ids) else None,
            [dict(doc.metadata) for doc in documents],
            **kwargs,
        )

    def _search(self, query: str, k: int | None) -> list[Document]:
        hits = run_search(
            self.retriever,
            query,
            self.k if k is None else k,
            reranker=self.reranker,
            candidates=self.candidates,
            pipeline_kwargs=self.pipeline_kwargs,
        )
        return [_hit_to_document(hit) for hit in hits]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
    ) -> list[Document]:
        return self._search(query, k)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, k)


def _with_metadata(document: Document, **extra: Any) -> Document:
    """A copy of ``document`` (same class and id) with ``extra`` merged into new metadata."""
    return document.model_copy(update={"metadata": {**document.metadata, **extra}})


def _hit_to_document(hit: Hit) -> Document:
    return Document(page_content=hit.text, metadata=hit_metadata(hit), id=hit.id)
