"""Sparse retrieval: a bm25s index (lowercase, stopwords, optional PyStemmer stemming).

Documents are tokenized once by a ``bm25s.tokenization.Tokenizer`` into token ids over a
vocabulary that grows with the corpus; the ids (one flat int32 array plus per-document
lengths) and the vocabulary are kept, and saved with the index, so :meth:`BM25Index.add`
tokenizes only the new texts and :meth:`BM25Index.delete` tokenizes nothing, even after a
load. bm25s builds an immutable sparse matrix, so both rebuild it from the ids: about as
costly as the first build's scoring step, so batch your updates. Queries are tokenized the
same way (same splitter, stopwords, stemmer) without touching the vocabulary, so concurrent
searches never mutate shared state and query words never grow it.

``engine="rank_bm25"`` scores with ``rank_bm25.BM25Okapi`` instead; it exists for parity
checks and benchmarks, never as default.

Saved layout (inside the index's ``bm25/`` directory, see :mod:`.storage`): bm25s's own files
(``params.index.json``, ``vocab.index.json``, ``*.csc.index.npy``) plus
``vocab.tokenizer.json`` (bm25s's Tokenizer vocabulary), ``corpus_token_ids.npy``,
``corpus_token_lengths.npy`` and ``tokens.json`` (``{"version": 1, ...}``). Indexes saved
before these files existed still load; their first add/delete re-tokenizes the stored texts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require

Tokenizer = Callable[[str], Sequence[str]]
ENGINES = ("bm25s", "rank_bm25")
#: Version of the token-id files this module writes next to bm25s's own.
TOKENS_VERSION = 1
TOKENS_FILE = "tokens.json"
TOKEN_IDS_FILE = "corpus_token_ids.npy"
TOKEN_LENGTHS_FILE = "corpus_token_lengths.npy"
VOCAB_FILE = "vocab.tokenizer.json"
#: bm25s's default splitter (scikit-learn's token pattern): words of two or more characters.
_WORDS = re.compile(r"(?u)\b\w\w+\b").findall


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
        self._vocab = self._new_vocab()
        self._stopword_set = frozenset(self._vocab.stopwords)
        # Corpus token ids: None after loading an index saved without them (rebuilt lazily).
        self._token_ids: np.ndarray | None = np.empty(0, dtype=np.int32)
        self._lengths: np.ndarray | None = np.empty(0, dtype=np.int64)
        self._model: Any = None
        self._n = 0

    # ------------------------------------------------------------------ tokenising
    def _split(self, text: str) -> list[str]:
        if self.tokenizer is None:
            return _WORDS(text)
        tokens = self.tokenizer(text)
        if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
            preview = text[:40] + ("..." if len(text) > 40 else "")
            raise TypeError(
                f"tokenizer must return a list of str; got {type(tokens).__name__} "
                f"for text {preview!r}"
            )
        return list(tokens)

    def _new_vocab(self) -> Any:
        """A bm25s ``Tokenizer``: ours (lowercase, stopwords, stemmer) or the custom callable."""
        custom = self.tokenizer is not None
        return self.bm25s.tokenization.Tokenizer(
            lower=not custom,
            splitter=self._split,
            stopwords=None if custom else self.stopwords,
            stemmer=None if custom else self._stemmer,
        )

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """The terms BM25 matches for each text (stems, or the custom tokenizer's tokens).

        Lowercased, split, stopwords removed and stemmed exactly as documents are; the
        vocabulary is not changed, so this is safe to call from several threads.
        """
        if self.tokenizer is not None:
            return [self._split(text) for text in texts]
        out = []
        for text in texts:
            words = [w for w in _WORDS(text.lower()) if w not in self._stopword_set]
            out.append(list(self._stemmer.stemWords(words)) if self._stemmer else words)
        return out

    def _tokenize_documents(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of ``texts`` (growing the vocabulary): flat int32 ids and per-text lengths."""
        if not texts:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
        ids = self._vocab.tokenize(
            list(texts), update_vocab=True, return_as="ids", show_progress=False, allow_empty=False
        )
        lengths = np.fromiter((len(doc) for doc in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(
            (token for doc in ids for token in doc), dtype=np.int32, count=int(lengths.sum())
        )
        return flat, lengths

    def _ensure_token_ids(self, existing: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The corpus token ids, re-tokenizing ``existing`` for an index saved without them."""
        if self._token_ids is None or self._lengths is None:
            self._vocab = self._new_vocab()
            self._token_ids, self._lengths = self._tokenize_documents(existing)
        return self._token_ids, self._lengths

    # ------------------------------------------------------------------ building
    def __len__(self) -> int:
        return self._n

    def build(self, texts: Sequence[str]) -> None:
        self._vocab = self._new_vocab()
        self._token_ids, self._lengths = self._tokenize_documents(texts)
        self._reindex()

    def add(self, texts: Sequence[str], *, existing: Sequence[str]) -> None:
        """Append ``texts``; ``existing`` (the texts already indexed) is only read for an
        index loaded from a save without token ids."""
        ids, lengths = self._ensure_token_ids(existing)
        new_ids, new_lengths = self._tokenize_documents(texts)
        self._token_ids = np.concatenate([ids, new_ids])
        self._lengths = np.concatenate([lengths, new_lengths])
        self._reindex()

    def delete(self, keep: np.ndarray, *, existing: Sequence[str]) -> None:
        """Keep only the positions where the boolean array ``keep`` is true, then rebuild."""
        ids, lengths = self._ensure_token_ids(existing)
        self._token_ids = ids[np.repeat(keep, lengths)]
        self._lengths = lengths[keep]
        self._reindex()

    def _corpus_ids(self) -> list[list[int]]:
        assert self._token_ids is not None and self._lengths is not None
        bounds = np.concatenate([[0], np.cumsum(self._lengths)])
        flat = self._token_ids.tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(len(self._lengths))]

    def _reindex(self) -> None:
        assert self._token_ids is not None and self._lengths is not None
        self._n = len(self._lengths)
        if not self._token_ids.size:  # empty corpus, or no document has a single term
            self._model = None
            return
        corpus = self._corpus_ids()
        if self.engine == "rank_bm25":
            rank_bm25 = require("rank_bm25", extra_hint='pip install "rerank-plugins[rank-bm25]"')
            self._model = rank_bm25.BM25Okapi(self._vocab.decode(corpus))
        else:
            model = self.bm25s.BM25()
            # A copy: bm25s adds its empty-query token to the dict it is given.
            model.index((corpus, dict(self._vocab.get_vocab_dict())), show_progress=False)
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
        """bm25s's own format plus the tokenizer vocabulary and corpus token ids (numpy + JSON).

        Nothing is written for ``engine="rank_bm25"`` or an index with no terms.
        """
        if self.engine != "bm25s" or self._model is None:
            return
        target = Path(directory)
        self._model.save(os.fspath(target), show_progress=False)
        if self._token_ids is None or self._lengths is None:
            return  # loaded from an older save and unchanged: keep that save's layout
        self._vocab.save_vocab(os.fspath(target), vocab_name=VOCAB_FILE)
        np.save(target / TOKEN_IDS_FILE, self._token_ids, allow_pickle=False)
        np.save(target / TOKEN_LENGTHS_FILE, self._lengths, allow_pickle=False)
        state = {
            "version": TOKENS_VERSION,
            "documents": len(self._lengths),
            "tokens": int(self._token_ids.size),
        }
        (target / TOKENS_FILE).write_text(json.dumps(state), encoding="utf-8")

    def load(
        self, directory: str | os.PathLike[str] | None, *, count: int, texts: Sequence[str]
    ) -> None:
        """Restore from :meth:`save`; raises ValueError when the files disagree with ``count``."""
        self._n = count
        if directory is None or self.engine == "rank_bm25":
            self.build(texts)
            return
        model = self.bm25s.BM25.load(os.fspath(directory), show_progress=False)
        found = int(model.scores["num_docs"])
        if found != count:
            raise ValueError(f"holds {found} documents, the manifest says {count}")
        self._model = model
        self._token_ids, self._lengths = None, None  # an older save: re-tokenized on change
        if (Path(directory) / TOKENS_FILE).is_file():
            self._load_token_ids(Path(directory), count)

    def _load_token_ids(self, directory: Path, count: int) -> None:
        state = json.loads((directory / TOKENS_FILE).read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("version") != TOKENS_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ValueError(
                f"{TOKENS_FILE} has version {version!r}; this version reads {TOKENS_VERSION}"
            )
        vocab = self._new_vocab()
        vocab.load_vocab(os.fspath(directory), vocab_name=VOCAB_FILE)
        ids = np.load(directory / TOKEN_IDS_FILE, allow_pickle=False)
        lengths = np.load(directory / TOKEN_LENGTHS_FILE, allow_pickle=False)
        size = len(vocab.get_vocab_dict())
        if (
            ids.ndim != 1
            or lengths.ndim != 1
            or ids.dtype.kind not in "iu"
            or lengths.dtype.kind not in "iu"
        ):
            raise ValueError(f"{TOKEN_IDS_FILE}/{TOKEN_LENGTHS_FILE} must be 1-D integer arrays")
        if len(lengths) != count or (lengths < 0).any() or int(lengths.sum()) != ids.size:
            raise ValueError(
                f"{TOKEN_LENGTHS_FILE} describes {len(lengths)} documents / "
                f"{int(lengths.sum())} tokens; expected {count} documents / {ids.size} tokens"
            )
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= size):
            raise ValueError(f"{TOKEN_IDS_FILE} has ids outside the {size}-term vocabulary")
        self._vocab = vocab
        self._token_ids = ids.astype(np.int32, copy=False)
        self._lengths = lengths.astype(np.int64, copy=False)


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
