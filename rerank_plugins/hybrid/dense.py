"""Dense retrieval: an embedder (hub id, local path, SentenceTransformer or callable) + FAISS.

Vectors are L2-normalised float32, so inner product is cosine similarity. The embedding
matrix is the source of truth (it is what gets saved); the FAISS index is rebuilt from it on
delete. ``faiss_index="flat"`` (default) is exact ``IndexFlatIP``; ``"hnsw"`` and ``"ivf"`` are
approximate. Filtered searches are always exact: an inner product over the allowed subset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import directory_fingerprint, save_npy_atomic
from .._models import (
    DEFAULT_EMBEDDER,
    ModelNotFoundError,
    bundled_embedder_path,
    offline_hint,
    resolve_model_source,
)
from .._validation import check_positive_int
from ._deps import require

_DEFAULT_ALIASES = {DEFAULT_EMBEDDER, "all-MiniLM-L6-v2"}
FAISS_INDEXES = ("flat", "hnsw", "ivf")

logger = logging.getLogger(__name__)


def default_model_path(name: str) -> str | None:
    """Local path of the bundled MiniLM when ``name`` asks for it and the package is installed."""
    if name not in _DEFAULT_ALIASES or os.path.exists(name):
        return None
    return bundled_embedder_path()


def l2_normalise(vectors: Any, *, where: str = "embeddings") -> np.ndarray:
    """Check shape/finiteness and return row-normalised float32 (all-zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{where} must be a 2-D (n, dim) array, got shape {array.shape}")
    if array.size and not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise ValueError(f"{where} row {bad} contains NaN or inf")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.where(norms > 0, norms, 1.0), dtype=np.float32)


class Embedder:
    """Wraps whatever the user passed into ``encode(texts) -> (n, dim) normalised float32``.

    A name/path is resolved at once (a missing local path fails here) but the model itself is
    loaded on first use, so an index built from precomputed ``embeddings`` never loads it.
    ``device``/``dtype`` apply to a model loaded by name: ``"auto"`` runs on CUDA in
    fp16/bf16 when present (then MPS), else on CPU in bf16 where the CPU runs it natively
    (AMX/AVX512-BF16: 2.4x faster SciFact indexing, same Recall@100) and fp32 elsewhere;
    ``dtype="float32"`` is the exact path. A model object or callable runs as it is.
    """

    def __init__(
        self,
        embedder: Any,
        *,
        batch_size: int = 64,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str | None = "auto",
        dtype: str | None = "auto",
    ) -> None:
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self._model: Any = None
        self._fn: Callable[[list[str]], Any] | None = None
        self.name: str | None = None
        self.device: Any = None
        self.dtype: Any = None
        if isinstance(embedder, (str, os.PathLike)):
            self.name = os.fspath(embedder)
            self._source = default_model_path(self.name) or resolve_model_source(
                self.name, what="embedding"
            )
            from .._device import resolve_device, resolve_dtype, warn_if_slow_dtype

            self.device = resolve_device(device)
            self.dtype = resolve_dtype(dtype, self.device)
            warn_if_slow_dtype(self.dtype, self.device)
        elif hasattr(embedder, "encode") and callable(embedder.encode):
            self._model = embedder
        elif callable(embedder):
            self._fn = embedder
        else:
            raise TypeError(
                "embedder must be a hub id or local path, a SentenceTransformer, or a callable "
                f"list[str] -> array; got {type(embedder).__name__}"
            )

    @property
    def model(self) -> Any:
        if self._model is None and self._fn is None:
            st = require("sentence_transformers")
            try:
                model = st.SentenceTransformer(self._source, device=str(self.device))
            except ModelNotFoundError:
                raise
            except (OSError, ValueError) as error:
                raise offline_hint(self._source, "embedding", error) from error
            self._model = model.to(self.dtype)
        return self._model

    def _cache_path(self, texts: list[str]) -> Path | None:
        """Where document embeddings of ``texts`` are cached; None when caching does not apply.

        Only named models are cached (a callable or model object has no stable identity).
        The key covers the model (a local directory's file sizes, mtimes and small-file
        hashes; a hub id's name), the batch-independent settings and every text.
        """
        if self.cache_dir is None or self.name is None:
            return None
        source = Path(self._source)
        identity = directory_fingerprint(source) if source.is_dir() else {"hub_id": self._source}
        if str(self.dtype) != "torch.float32":  # half-precision vectors differ slightly
            identity = {"model": identity, "dtype": str(self.dtype)}
        digest = hashlib.blake2b(digest_size=20)
        digest.update(json.dumps(identity, sort_keys=True).encode())
        for text in texts:
            encoded = text.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
        return self.cache_dir / f"{digest.hexdigest()}.npy"

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """:meth:`encode`, reusing embeddings cached on disk for the same model and texts."""
        texts = list(texts)
        path = self._cache_path(texts) if texts else None
        if path is not None and path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                logger.warning("ignoring unreadable embedding cache %s: %s", path, error)
            else:
                if (
                    cached.dtype == np.float32
                    and cached.ndim == 2
                    and cached.shape[0] == len(texts)
                    and np.isfinite(cached).all()
                ):
                    logger.info("document embeddings: %d read from cache %s", len(texts), path)
                    return np.ascontiguousarray(cached)  # saved already normalised
                logger.warning("ignoring embedding cache %s (shape %s)", path, cached.shape)
        vectors = self.encode(texts, show_progress=show_progress)
        if path is not None:
            save_npy_atomic(path, vectors)
            logger.info("document embeddings: %d encoded, cached at %s", len(texts), path)
        return vectors

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        if self._fn is None:
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
            return l2_normalise(np.asarray(vectors, dtype=np.float32), where="embedder output")
        # A plain callable: length-sorted batches (as sentence-transformers does), then unsort.
        order = np.argsort(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
        starts = range(0, len(texts), self.batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Encoding", unit="batch")
        parts = []
        for start in starts:
            batch = [texts[i] for i in order[start : start + self.batch_size]]
            out = np.asarray(self._fn(batch), dtype=np.float32)
            if out.ndim != 2 or out.shape[0] != len(batch):
                raise ValueError(
                    f"embedder returned shape {out.shape} for {len(batch)} texts; "
                    "expected (len(texts), dim)"
                )
            parts.append(out)
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(parts)
        return l2_normalise(vectors, where="embedder output")


class DenseIndex:
    """Normalised embeddings at positions ``0..n-1`` plus a FAISS index over them."""

    def __init__(self, *, kind: str = "flat") -> None:
        if kind not in FAISS_INDEXES:
            raise ValueError(f"faiss_index must be one of {FAISS_INDEXES}, got {kind!r}")
        self.faiss = require("faiss")
        self.kind = kind
        self.embeddings = np.empty((0, 0), dtype=np.float32)
        self._index: Any = None

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1]) if len(self) else 0

    def _new_index(self, vectors: np.ndarray) -> Any:
        faiss, dim = self.faiss, vectors.shape[1]
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
        elif self.kind == "ivf":
            nlist = int(max(1, min(4 * np.sqrt(len(vectors)), len(vectors) // 39 or 1)))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = max(1, nlist // 8)
        else:
            index = faiss.IndexFlatIP(dim)
        return index

    def rebuild(self, embeddings: np.ndarray) -> None:
        self.embeddings = embeddings
        self._index = None
        if len(embeddings):
            self._index = self._new_index(embeddings)
            self._index.add(embeddings)

    def add(self, vectors: np.ndarray) -> None:
        if not len(vectors):
            return
        if len(self) and vectors.shape[1] != self.dim:
            raise ValueError(
                f"new embeddings have dim {vectors.shape[1]}, the index has {self.dim}"
            )
        if self._index is None:
            self.rebuild(vectors)
            return
        self.embeddings = np.concatenate([self.embeddings, vectors])
        self._index.add(vectors)

    def delete(self, keep: np.ndarray) -> None:
        self.rebuild(np.ascontiguousarray(self.embeddings[keep]))

    def search_many(
        self, queries: np.ndarray, k: int, *, mask: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-``k`` (positions, scores) per query vector, best first."""
        if self._index is None or k <= 0 or not len(queries):
            empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
            return [empty for _ in range(len(queries))]
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"query embeddings have dim {queries.shape[1]} but the index has {self.dim}: "
                "load the index with the embedder it was built with"
            )
        if mask is not None:
            allowed = np.flatnonzero(mask)
            k = min(k, allowed.size)
            if k == 0:
                return [(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))] * len(queries)
            sims = queries @ self.embeddings[allowed].T  # (nq, n_allowed), exact
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            part_scores = np.take_along_axis(sims, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            positions = allowed[np.take_along_axis(part, order, axis=1)]
            scores = np.take_along_axis(part_scores, order, axis=1)
            return [(positions[i].astype(np.int64), scores[i]) for i in range(len(queries))]
        k = min(k, len(self))
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = max(64, k)
        scores, positions = self._index.search(np.ascontiguousarray(queries), k)
        keep = positions >= 0
        return [
            (positions[i][keep[i]].astype(np.int64), scores[i][keep[i]])
            for i in range(len(queries))
        ]

    def save(self, embeddings_path: str, index_path: str) -> None:
        np.save(embeddings_path, self.embeddings, allow_pickle=False)
        if self._index is not None:
            self.faiss.write_index(self._index, index_path)

    def load(self, embeddings: np.ndarray, index_path: str | None) -> None:
        self.embeddings = embeddings
        if index_path is None:
            self.rebuild(embeddings)
            return
        index = self.faiss.read_index(index_path)
        if index.ntotal != len(embeddings):
            raise ValueError(f"holds {index.ntotal} vectors, embeddings.npy has {len(embeddings)}")
        if index.d != self.dim:
            raise ValueError(f"has dim {index.d}, embeddings.npy has dim {self.dim}")
        self._index = index
