"""Framework adapters for rerank-plugins.

Each adapter lives in its own module and needs its framework's extra; this package itself
imports neither framework, so ``import rerank_plugins.integrations`` is always cheap.

* :mod:`rerank_plugins.integrations.langchain` (``pip install "rerank-plugins[langchain]"``):
  ``CrossEncoderCompressor``, ``RerankPluginsCrossEncoder``, ``HybridRetriever``.
* :mod:`rerank_plugins.integrations.llama_index` (``pip install "rerank-plugins[llamaindex]"``):
  ``CrossEncoderRerank``, ``HybridRetriever``.
* :mod:`rerank_plugins.integrations.filters`: LangChain dict filters and LlamaIndex
  ``MetadataFilters`` translated into the core filter grammar.

The adapters only convert types: scoring, batching, fusion and the retrieve-then-rerank
pipeline all live in the core (:class:`rerank_plugins.CrossEncoderReranker`,
:class:`rerank_plugins.HybridRetriever`, :class:`rerank_plugins.RerankPipeline`). Any
reranker with the core surface (:class:`rerank_plugins.types.Reranker`) plugs in.
"""

from __future__ import annotations

from ._shared import SCORE_KEYS, hit_metadata
from .filters import FilterTranslationError, from_langchain_filter, from_llama_index_filters

__all__ = [
    "SCORE_KEYS",
    "FilterTranslationError",
    "from_langchain_filter",
    "from_llama_index_filters",
    "hit_metadata",
]
