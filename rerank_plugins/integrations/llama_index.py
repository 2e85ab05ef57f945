"""LlamaIndex adapters: a cross-encoder node postprocessor and a hybrid retriever.

Needs the ``[llamaindex]`` extra (``pip install "rerank-plugins[llamaindex]"``).

* :class:`CrossEncoderRerank` reranks ``NodeWithScore`` lists with
  :class:`rerank_plugins.CrossEncoderReranker` (use it in ``node_postprocessors=[...]``).
* :class:`HybridRetriever` exposes the core :class:`rerank_plugins.HybridRetriever` (and,
  with a reranker, the whole :class:`rerank_plugins.RerankPipeline`) as a LlamaIndex retriever.

The adapters only convert types; all scoring, batching and fusion happen in the core.
"""

from __future__ import annotations

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "rerank_plugins.integrations.llama_index needs LlamaIndex: "
        'pip install "rerank-plugins[llamaindex]"'
    ) from error

import asyncio
import os
import threading
from typing import Any, Literal

from ..cross_encoder import DEFAULT_MODEL, CrossEncoderReranker
from ..types import Hit
from . import SCORE_KEYS, hit_metadata, run_search

__all__ = ["CrossEncoderRerank", "HybridRetriever"]

dispatcher = get_dispatcher(__name__)


class CrossEncoderRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with a cross-encoder and keep the best ``top_n``.

    Returns new ``NodeWithScore`` objects (with copied nodes: same ids, new metadata dicts),
    best first, scored with Python floats; each node's previous score is kept in its
    metadata as ``retrieval_score``. The inputs are never modified. The text scored is
    ``node.get_content(metadata_mode=MetadataMode.EMBED)``.

    Example:
        >>> rerank = CrossEncoderRerank(model="path/to/cross-encoder", top_n=3)
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

    _reranker: CrossEncoderReranker | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, *, reranker: CrossEncoderReranker | None = None, **data: Any) -> None:
        """Settings as keywords; pass ``reranker=`` to share a ready core reranker."""
        if reranker is not None and "model" not in data:
            data["model"] = reranker.model_name
        if isinstance(data.get("model"), os.PathLike):
            data["model"] = os.fspath(data["model"])
        super().__init__(**data)
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "CrossEncoderRerank"

    @property
    def reranker(self) -> CrossEncoderReranker:
        """The core reranker, built on first use and reused (thread-safe)."""
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = CrossEncoderReranker(
                        self.model,
                        device=self.device,
                        batch_size=self.batch_size,
                        max_length=self.max_length,
                        activation=self.activation,
                    )
        return self._reranker

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("CrossEncoderRerank needs a query: pass query_bundle or query_str")
        nodes = list(nodes)
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=len(nodes) if self.top_n is None else self.top_n,
                model_name=self.model,
            )
        )
        if nodes:
            results = self.reranker.rerank(
                query_bundle.query_str,
                [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes],
                top_n=self.top_n,
                score_threshold=self.score_threshold,
            )
            reranked = [
                NodeWithScore(node=_copy_node(nodes[r.index]), score=float(r.score))
                for r in results
            ]
        else:
            reranked = []
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)


class HybridRetriever(BaseRetriever):
    """LlamaIndex retriever over the core :class:`rerank_plugins.HybridRetriever`.

    Without ``reranker`` it returns the fused first-stage hits; with one it runs the whole
    :class:`rerank_plugins.RerankPipeline`. Nodes are ``TextNode(id_=hit.id)`` with the hit's
    metadata plus ``scores``/``ranks`` (per first-stage retriever), ``retrieval_score`` and,
    when reranked, ``relevance_score``; these score keys are excluded from the text that
    embedders, rerankers and LLMs see.

    Args:
        retriever: The core hybrid retriever (anything with ``search(query, k)``).
        k: How many nodes to return.
        reranker: Optional :class:`rerank_plugins.CrossEncoderReranker`.
        candidates: With a reranker, how many first-stage hits it rescores.
        pipeline_kwargs: Extra :class:`rerank_plugins.RerankPipeline` settings.
    """

    def __init__(
        self,
        retriever: Any,
        *,
        k: int = 10,
        reranker: Any = None,
        candidates: int | None = None,
        pipeline_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.retriever = retriever
        self.k = k
        self.reranker = reranker
        self.candidates = candidates
        self.pipeline_kwargs = dict(pipeline_kwargs or {})
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        ids: list[str] | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        k: int = 10,
        reranker: Any = None,
        candidates: int | None = None,
        **index_kwargs: Any,
    ) -> HybridRetriever:
        """Index ``texts`` with the core retriever (``embedder=``, ``retrievers=``, ...)."""
        from ..hybrid import HybridRetriever as CoreHybridRetriever

        core = CoreHybridRetriever.from_texts(list(texts), ids, metadatas, **index_kwargs)
        return cls(core, k=k, reranker=reranker, candidates=candidates)

    def _search(self, query: str) -> list[NodeWithScore]:
        hits = run_search(
            self.retriever,
            query,
            self.k,
            reranker=self.reranker,
            candidates=self.candidates,
            pipeline_kwargs=self.pipeline_kwargs,
        )
        return [_hit_to_node(hit) for hit in hits]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._search(query_bundle.query_str)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._search, query_bundle.query_str)


def _hide_score_keys(keys: list[str]) -> list[str]:
    return [*keys, *(key for key in SCORE_KEYS if key not in keys)]


def _copy_node(scored: NodeWithScore) -> Any:
    """A copy of ``scored.node`` with the previous score kept as ``retrieval_score``."""
    node = scored.node
    metadata = dict(node.metadata)
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
