"""Hybrid first-stage retrieval: BM25 (bm25s) + dense (sentence-transformers + FAISS), fused.

Needs the ``[hybrid]`` extra (``pip install "rerank-plugins[hybrid]"``); the heavy packages are
imported only when an index is built.
"""

from __future__ import annotations

from .fusion import FUSION_METHODS
from .retriever import HybridRetriever
from .storage import FORMAT_VERSION, IndexFormatError

__all__ = ["FORMAT_VERSION", "FUSION_METHODS", "HybridRetriever", "IndexFormatError"]
