"""Sparse retrieval: a bm25s index (lowercase, stopwords, optional PyStemmer stemming).

bm25s builds an immutable sparse matrix, so :meth:`BM25Index.add` and :meth:`BM25Index.delete`
rebuild it from the cached token lists (tokenising only the new texts). A rebuild costs about
as much as the first build: batch your updates. ``engine="rank_bm25"`` scores with
``rank_bm25.BM25Okapi`` instead; it exists for parity checks and benchmarks, never as default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._deps import require

Tokenizer = Callable[[str], Sequence[str]]
ENGINES = ("bm25s", "rank_bm25")


class BM25Index:
    """A BM25 index over texts at positions ``0..n-1``; search returns positions and scores."""

    def __init__(
        self,
        *,
        stemmer: str | None = "english",
        stopwords: str | Sequence[str] | None = "en",
        tokenizer: Tokenizer | None = None,
        engine: str = "bm25s",
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"bm25_engine must be one of {ENGINES}, got {engine!r}")
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError("tokenizer must be a callable str -> list[str] or None")
        self.bm25s = require("bm25s")
        self.engine = engine
        self.stemmer_name = stemmer
        self.stopwords = stopwords
        self.tokenizer = tokenizer
        self._stemmer: Any = None
        if stemmer is not None:
            stemmer_module = require("Stemmer")
            try:
                self._stemmer = stemmer_module.Stemmer(stemmer)
            except KeyError:
                raise ValueError(
                    f"unknown stemmer language {stemmer!r}; "
                    f"PyStemmer knows {stemmer_module.algorithms()}"
                ) from None
        self._tokens: list[list[str]] | None = []
        self._model: Any = None
        self._n = 0

    # ------------------------------------------------------------------ tokenising
    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """Token lists for ``texts``: the custom tokenizer if given, else bm25s's tokenizer."""
        if self.tokenizer is not None:
            out = []
            for position, text in enumerate(texts):
                tokens = self.tokenizer(text)
                if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
                    raise TypeError(
                        f"tokenizer must return a list of str; got {type(tokens).__name__} "
                        f"for text {position}"
                    )
                out.append(list(tokens))
            return out
        if not texts:
            return []
        return self.bm25s.tokenize(
            list(texts),
            lower=True,
            stopwords=self.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )

    # ------------------------------------------------------------------ building
    def __len__(self) -> int:
        return self._n

    def build(self, texts: Sequence[str]) -> None:
        self._tokens = self.tokenize(texts)
        self._reindex()

    def add(self, texts: Sequence[str], *, existing: Sequence[str]) -> None:
        """Append ``texts``; ``existing`` (the texts already indexed) is only read after a load."""
        if self._tokens is None:
            self._tokens = self.tokenize(existing)
        self._tokens.extend(self.tokenize(texts))
        self._reindex()

    def delete(self, keep: np.ndarray, *, existing: Sequence[str]) -> None:
        """Keep only the positions where the boolean array ``keep`` is true, then rebuild."""
        if self._tokens is None:
            self._tokens = self.tokenize(existing)
        self._tokens = [t for t, k in zip(self._tokens, keep.tolist(), strict=True) if k]
        self._reindex()

    def _reindex(self) -> None:
        tokens = self._tokens or []
        self._n = len(tokens)
        if not any(tokens):  # empty corpus, or no document has a single term
            self._model = None
            return
        if self.engine == "rank_bm25":
            rank_bm25 = require("rank_bm25", extra_hint='pip install "rerank-plugins[rank-bm25]"')
            self._model = rank_bm25.BM25Okapi(tokens)
        else:
            model = self.bm25s.BM25()
            model.index(tokens, show_progress=False)
            self._model = model

    # ------------------------------------------------------------------ searching
    def search_many(
        self, queries: Sequence[str], k: int, *, mask: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-``k`` (positions, scores) per query, best first; only documents with score > 0.

        ``mask`` (bool, one per document) restricts the search to the allowed documents.
        """
        if self._model is None or k <= 0 or not queries:
            empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
            return [empty for _ in queries]
        query_tokens = self.tokenize(queries)
        k = min(k, self._n)
        if self.engine == "rank_bm25":
            out = []
            for tokens in query_tokens:
                scores = np.asarray(self._model.get_scores(tokens), dtype=np.float32)
                if mask is not None:
                    scores = np.where(mask, scores, 0.0).astype(np.float32)
                out.append(_top_k(scores, k))
            return out
        if len(query_tokens) <= _PER_QUERY_LIMIT:
            # bm25s.retrieve's per-call set-up (progress bars, threading) costs more than the
            # scoring itself for a query or two: score directly and take the top k.
            out = []
            for tokens in query_tokens:
                if not tokens:  # only stopwords / no terms: nothing matches
                    out.append((np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)))
                    continue
                scores = np.asarray(self._model.get_scores(tokens), dtype=np.float32)
                if mask is not None:
                    scores = np.where(mask, scores, np.float32(0.0))
                out.append(_top_k(scores, k))
            return out
        weight_mask = None if mask is None else mask.astype(np.float32)
        result = self._model.retrieve(
            query_tokens, k=k, show_progress=False, n_threads=0, weight_mask=weight_mask
        )
        documents = np.asarray(result.documents, dtype=np.int64)
        scores = np.asarray(result.scores, dtype=np.float32)
        keep = scores > 0
        return [(documents[i][keep[i]], scores[i][keep[i]]) for i in range(len(query_tokens))]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> None:
        """bm25s's own format (numpy arrays + JSON); nothing is written for rank_bm25/empty."""
        if self.engine == "bm25s" and self._model is not None:
            self._model.save(os.fspath(directory), show_progress=False)

    def load(
        self, directory: str | os.PathLike[str] | None, *, count: int, texts: Sequence[str]
    ) -> None:
        """Restore from :meth:`save`. Token lists are rebuilt lazily on the next add/delete."""
        self._n = count
        if directory is None or self.engine == "rank_bm25":
            self.build(texts)
            return
        model = self.bm25s.BM25.load(os.fspath(directory), show_progress=False)
        found = int(model.scores["num_docs"])
        if found != count:
            raise ValueError(f"holds {found} documents, the manifest says {count}")
        self._model = model
        self._tokens = None


#: Up to this many queries per call are scored one by one instead of via bm25s.retrieve.
_PER_QUERY_LIMIT = 4


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the ``k`` best positive scores, best first (ties: lower position)."""
    k = min(k, scores.size)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=scores.dtype)
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.lexsort((part, -scores[part]))]
    order = order[scores[order] > 0]
    return order.astype(np.int64), scores[order]
