"""Embedder device/precision: auto picks, bf16 opt-in, errors, and the cache keeps them apart."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from rerank_plugins.hybrid import HybridRetriever
from rerank_plugins.hybrid.dense import Embedder

TEXTS = ["vitamin d and bone health", "virus infection response", "stem cells", "gene expression"]


def test_auto_is_fp32_on_cpu_and_model_runs_there(tiny_embedder_path):
    if torch.cuda.is_available():
        pytest.skip("auto picks CUDA here")
    embedder = Embedder(str(tiny_embedder_path))
    assert (embedder.device.type, embedder.dtype) == ("cpu", torch.float32)
    vectors = embedder.encode(TEXTS)
    assert vectors.dtype == np.float32
    assert next(embedder.model.parameters()).dtype == torch.float32


def test_bfloat16_vectors_are_float32_unit_and_close_to_fp32(tiny_embedder_path):
    fp32 = Embedder(str(tiny_embedder_path), device="cpu").encode(TEXTS)
    with pytest.warns(RuntimeWarning) if not _fast_bf16() else contextlib.nullcontext():
        half = Embedder(str(tiny_embedder_path), device="cpu", dtype="bfloat16")
    vectors = half.encode(TEXTS)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float((vectors * fp32).sum(axis=1).min()) > 0.98  # same direction, bf16 rounding


def test_cache_keeps_precisions_apart(tiny_embedder_path, tmp_path):
    fp32 = Embedder(str(tiny_embedder_path), device="cpu", cache_dir=tmp_path)
    half = Embedder(str(tiny_embedder_path), device="cpu", dtype="bfloat16", cache_dir=tmp_path)
    assert fp32._cache_path(TEXTS) != half._cache_path(TEXTS)


def test_bad_device_or_dtype_is_refused(tiny_embedder_path):
    with pytest.raises(ValueError, match="dtype must be"):
        Embedder(str(tiny_embedder_path), dtype="int4")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            HybridRetriever(embedder=str(tiny_embedder_path), device="cuda")


def test_retriever_passes_device_and_dtype_and_load_takes_them(tiny_embedder_path, tmp_path):
    texts = ["apples are red", "bananas are yellow", "cherries are red and small"]
    retriever = HybridRetriever.from_texts(
        texts, embedder=str(tiny_embedder_path), device="cpu", dtype="float32", show_progress=False
    )
    assert retriever._embedder.dtype == torch.float32
    retriever.save(tmp_path / "index")
    loaded = HybridRetriever.load(tmp_path / "index", device="cpu", dtype="bfloat16")
    assert loaded._embedder.dtype == torch.bfloat16
    # bf16 query vectors against the stored fp32 document vectors: same hits, scores within
    # bf16 rounding of the fp32 run
    before = {h.id: h.scores["dense"] for h in retriever.search("red fruit", 3)}
    after = {h.id: h.scores["dense"] for h in loaded.search("red fruit", 3)}
    assert before.keys() == after.keys()
    assert all(abs(before[k] - after[k]) < 0.02 for k in before)


def _fast_bf16() -> bool:
    from rerank_plugins._device import cpu_supports_fast_bf16

    return cpu_supports_fast_bf16()
