"""Test helpers importable from every test folder (tests/ is on sys.path via conftest.py)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

_TOKEN = re.compile(r"\w+")


def persistent_cache(kind: str) -> Path:
    """Where tests keep costly artefacts across runs: SciFact embeddings, the SciFact ONNX export.

    ``$RERANK_PLUGINS_TEST_CACHE/<kind>`` when set; else the core's own cache
    ``$RERANK_PLUGINS_CACHE/<kind>`` when that is set (so the vectors ``rerank-plugins eval``
    computed, or a teammate's run, are reused); else ``~/.cache/rerank-plugins/tests/<kind>``.
    Entries are keyed by model fingerprint and content and checked on load, so sharing is
    safe. Read when the test modules are imported, before the session fixture points
    ``RERANK_PLUGINS_CACHE`` at a temporary directory.
    """
    for variable in ("RERANK_PLUGINS_TEST_CACHE", "RERANK_PLUGINS_CACHE"):
        value = os.environ.get(variable)
        if value:
            return Path(value).expanduser() / kind
    return Path.home() / ".cache" / "rerank-plugins" / "tests" / kind


class HashEmbedder:
    """Deterministic hashed bag-of-words embedder (L2-normalised); no model, instant."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def build_tiny_sentence_transformer(
    directory: Path, tokenizer_source: Path, *, seed: int = 1
) -> Path:
    """A random 2-layer BERT + mean pooling saved as a sentence-transformers model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:  # sentence-transformers >= 6 moved the modules; the old path warns there
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models  # type: ignore[no-redef]

    bert_dir = directory / "bert"
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_source)
    tokenizer.save_pretrained(bert_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(bert_dir)
    transformer = models.Transformer(str(bert_dir), max_seq_length=64)
    dim = (
        getattr(transformer, "get_embedding_dimension", None)
        or transformer.get_word_embedding_dimension
    )
    pooling = models.Pooling(dim(), pooling_mode="mean")
    out = directory / "st"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(out))
    return out
