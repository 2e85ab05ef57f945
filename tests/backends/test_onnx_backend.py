"""ONNX Runtime backend: parity with torch, int8 quality guard, and the export cache."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from rp_test_support import persistent_cache

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from rerank_plugins import CrossEncoderReranker
from rerank_plugins._files import sha256_file
from rerank_plugins.backends.onnx import (
    MANIFEST_FILE,
    MODEL_FILE,
    OnnxBackend,
    OnnxCacheWarning,
)
from rerank_plugins.backends.onnx import cache as onnx_cache

QUERIES = ["vitamin d deficiency causes cancer", "stem cells in the brain", "virus infection"]
PASSAGES = [
    "vitamin d deficiency is associated with increased cancer risk in patients",
    "the protein level was decreased in mice",
    "stem cells in the brain lead to tissue growth " * 12,
    "a clinical trial of drug therapy for heart disease",
    "immune response to virus infection in human cells " * 30,
    "dna mutation of the receptor gene",
    "no",
]


def _pairs() -> list[tuple[str, str]]:
    return [(q, p) for q in QUERIES for p in PASSAGES]


def _entry(cache: Path) -> Path:
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1, entries
    return entries[0]


@pytest.fixture(scope="module")
def tiny_torch(tiny_ce_path: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_ce_path, device="cpu")


def test_fp32_matches_torch_on_tiny_model(tiny_ce_path, tiny_torch, tmp_path):
    onnx = CrossEncoderReranker(tiny_ce_path, backend="onnx", cache_dir=tmp_path)
    assert onnx.device == "cpu"
    assert isinstance(onnx.backend, OnnxBackend)
    assert onnx.backend.input_names == tiny_torch.backend.input_names
    assert onnx.max_length == tiny_torch.max_length
    assert onnx.max_tokens_per_batch == tiny_torch.max_tokens_per_batch  # fp32/int8 CPU budget
    expected = tiny_torch.score_pairs(_pairs())
    got = onnx.score_pairs(_pairs())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # Same reranker logic on top: chunked long passages and rerank order agree too.
    chunked_t = CrossEncoderReranker(
        tiny_ce_path, device="cpu", long_passages="chunk", max_length=32
    )
    chunked_o = CrossEncoderReranker(
        tiny_ce_path, backend="onnx", cache_dir=tmp_path, long_passages="chunk", max_length=32
    )
    np.testing.assert_allclose(
        chunked_o.score(QUERIES[0], PASSAGES), chunked_t.score(QUERIES[0], PASSAGES), atol=1e-4
    )


def test_backend_protocol_shapes(tiny_ce_path, tmp_path):
    backend = OnnxBackend(str(tiny_ce_path), cache_dir=tmp_path, num_threads=1)
    assert backend.num_labels == 1
    assert backend.config.model_type == "bert"
    features = {
        "input_ids": np.array([[2, 10, 11, 3, 12, 3], [2, 10, 3, 13, 3, 0]], dtype=np.int64),
        "attention_mask": np.array([[1] * 6, [1] * 5 + [0]], dtype=np.int64),
        "token_type_ids": np.array([[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]], dtype=np.int64),
    }
    out = backend(features)
    assert out.shape == (2, 1) and out.dtype == np.float32


def test_int8_tiny_model_runs(tiny_ce_path, tiny_torch, tmp_path):
    int8 = CrossEncoderReranker(tiny_ce_path, backend="onnx", quantize="int8", cache_dir=tmp_path)
    scores = int8.score_pairs(_pairs())
    assert np.all(np.isfinite(scores))
    manifest = int8.backend.manifest
    assert manifest["quantize"] == "int8"
    assert "int8" not in _entry(tmp_path).name  # key is a hash; mode lives in the manifest


def test_int8_batch_size_one_scores_each_pair_on_its_own(tiny_ce_path, tmp_path):
    # Documented: with batch_size=1 an int8 score no longer depends on the pair's neighbours.
    int8 = CrossEncoderReranker(
        tiny_ce_path, backend="onnx", quantize="int8", cache_dir=tmp_path, batch_size=1
    )
    together = int8.score(QUERIES[0], PASSAGES)
    alone = np.array([int8.score(QUERIES[0], [p])[0] for p in PASSAGES], dtype=np.float32)
    np.testing.assert_array_equal(together, alone)


def test_backend_options_reach_the_backend(tiny_ce_path, tmp_path):
    default = CrossEncoderReranker(
        tiny_ce_path, backend="onnx", quantize="int8", cache_dir=tmp_path
    )
    assert default.backend.manifest["keep_fp32"] == "none"
    assert default.backend.manifest["nodes_kept_fp32"] == []
    ffn_out = CrossEncoderReranker(
        tiny_ce_path,
        backend="onnx",
        quantize="int8",
        cache_dir=tmp_path,
        backend_options={"keep_fp32": "ffn_output"},
    )
    assert ffn_out.backend.manifest["keep_fp32"] == "ffn_output"
    kept = ffn_out.backend.manifest["nodes_kept_fp32"]
    assert kept and all(name.endswith("/output/dense/MatMul") for name in kept)
    assert default.backend.cache_key != ffn_out.backend.cache_key
    with pytest.raises(ValueError, match=r"\['kep_fp32'\].*keep_fp32"):
        CrossEncoderReranker(
            tiny_ce_path, backend="onnx", cache_dir=tmp_path, backend_options={"kep_fp32": "none"}
        )
    with pytest.raises(ValueError, match="pass num_threads to CrossEncoderReranker directly"):
        CrossEncoderReranker(
            tiny_ce_path, backend="onnx", cache_dir=tmp_path, backend_options={"num_threads": 1}
        )


def test_second_construction_reuses_cache(tiny_ce_path, tmp_path, monkeypatch):
    first = OnnxBackend(str(tiny_ce_path), cache_dir=tmp_path)
    model_file = first.cache_path / MODEL_FILE
    mtime = model_file.stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("export_onnx must not run on a cache hit")

    monkeypatch.setattr(onnx_cache, "export_onnx", boom)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OnnxCacheWarning)
        second = OnnxBackend(str(tiny_ce_path), cache_dir=tmp_path)
    assert second.cache_path == first.cache_path
    assert model_file.stat().st_mtime_ns == mtime
    manifest = json.loads((first.cache_path / MANIFEST_FILE).read_text())
    assert manifest["onnx_sha256"] == sha256_file(model_file)
    assert manifest["fp32_max_abs_diff_vs_torch"] < 1e-4


def test_env_var_sets_default_cache(tiny_ce_path, tmp_path, monkeypatch):
    monkeypatch.setenv("RERANK_PLUGINS_CACHE", str(tmp_path / "env-cache"))
    backend = OnnxBackend(str(tiny_ce_path))
    assert backend.cache_path.parent == tmp_path / "env-cache" / "onnx"
    assert (backend.cache_path / MODEL_FILE).is_file()
    assert not [p for p in backend.cache_path.parent.iterdir() if p.name.startswith(".")]


def test_cache_rebuilt_when_source_model_changes(tmp_path, tiny_ce_builder):
    build_tiny_cross_encoder = tiny_ce_builder
    model_dir = build_tiny_cross_encoder(tmp_path / "model", seed=0)
    cache = tmp_path / "cache"
    pairs = _pairs()
    old = CrossEncoderReranker(model_dir, backend="onnx", cache_dir=cache)
    old_scores = old.score_pairs(pairs)
    old_key = old.backend.cache_key

    build_tiny_cross_encoder(model_dir, seed=1)  # same files, new weights
    torch_new = CrossEncoderReranker(model_dir, device="cpu").score_pairs(pairs)
    new = CrossEncoderReranker(model_dir, backend="onnx", cache_dir=cache)
    assert new.backend.cache_key != old_key
    new_scores = new.score_pairs(pairs)
    assert not np.allclose(new_scores, old_scores, atol=1e-6)
    np.testing.assert_allclose(new_scores, torch_new, atol=1e-4)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupted_cache_is_detected_and_rebuilt(tiny_ce_path, tiny_torch, tmp_path, damage):
    first = OnnxBackend(str(tiny_ce_path), cache_dir=tmp_path)
    model_file = first.cache_path / MODEL_FILE
    data = model_file.read_bytes()
    if damage == "truncate":
        model_file.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        model_file.write_bytes(data[:-64] + bytes(b ^ 0xFF for b in data[-64:]))
    else:
        model_file.unlink()
    with pytest.warns(OnnxCacheWarning, match="rebuilding"):
        rebuilt = CrossEncoderReranker(tiny_ce_path, backend="onnx", cache_dir=tmp_path)
    assert model_file.read_bytes() == data  # deterministic export, restored intact
    np.testing.assert_allclose(
        rebuilt.score_pairs(_pairs()), tiny_torch.score_pairs(_pairs()), atol=1e-4
    )
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path.name]


def test_public_surface_the_benchmarks_use(tiny_ce_path, tmp_path):
    from rerank_plugins.backends import onnx as ort_backend
    from rerank_plugins.backends import onnx_backend  # the former module: an alias now

    assert onnx_backend.OnnxBackend is ort_backend.OnnxBackend
    assert onnx_backend.OnnxCacheWarning is ort_backend.OnnxCacheWarning
    fp32 = tmp_path / "fp32.onnx"
    info = ort_backend.export_onnx(str(tiny_ce_path), fp32)
    assert ort_backend.optimize_graph(fp32, info) is True
    int8 = tmp_path / "int8.onnx"
    ort_backend.quantize_dynamic_int8(fp32, int8, per_channel=True, reduce_range=False)
    for path, tolerance in ((fp32, 1e-4), (int8, 1.0)):
        session = ort_backend.create_session(path, 1)
        logits = session.run(["logits"], info["check_inputs"])[0]
        assert logits.shape == info["check_logits"].shape
        np.testing.assert_allclose(logits, info["check_logits"], atol=tolerance)
    assert ort_backend.physical_cores() >= 1


def test_missing_onnxruntime_names_the_extra(tiny_ce_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install "rerank-plugins\[onnx\]"'):
        CrossEncoderReranker(tiny_ce_path, backend="onnx", cache_dir=tmp_path)


def test_argument_validation(tiny_ce_path, tmp_path):
    with pytest.raises(ValueError, match="backend='onnx'"):
        CrossEncoderReranker(tiny_ce_path, device="cpu", quantize="int8")
    with pytest.raises(ValueError, match="quantize"):
        CrossEncoderReranker(tiny_ce_path, backend="onnx", quantize="int4", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="CPU"):
        CrossEncoderReranker(tiny_ce_path, backend="onnx", device="cuda", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="backend must be"):
        CrossEncoderReranker(tiny_ce_path, backend="tensorrt")


# ---------------------------------------------------------------------------- shared model
#: The SciFact model's exports (fp32 and int8, ~10 s each to build on 2 cores) are kept across
#: runs: entries are keyed by the model's fingerprint and toolchain and sha256-checked on load,
#: and the tiny-model tests above exercise building, checking and rebuilding.
SCIFACT_ONNX_CACHE = persistent_cache("onnx")


@pytest.fixture(scope="module")
def scifact_pairs(scifact_dir: Path) -> list[tuple[str, str]]:
    queries, docs = [], []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            queries.append(json.loads(line)["text"])
            if len(queries) == 2:
                break
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            docs.append(doc["title"] + " " + doc["text"])
            if len(docs) == 8:
                break
    return [(q, d) for q in queries for d in docs]  # 16 pairs


@pytest.mark.shared
def test_fp32_matches_torch_on_scifact_model(scifact_ce_path, scifact_pairs):
    cache = SCIFACT_ONNX_CACHE
    torch_scores = CrossEncoderReranker(scifact_ce_path, device="cpu").score_pairs(scifact_pairs)
    onnx_scores = CrossEncoderReranker(
        scifact_ce_path, backend="onnx", cache_dir=cache
    ).score_pairs(scifact_pairs)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-3, rtol=0)


@pytest.mark.shared
def test_int8_ranking_tracks_fp32_on_scifact_model(scifact_ce_path, scifact_pairs):
    from scipy.stats import spearmanr

    cache = SCIFACT_ONNX_CACHE
    fp32 = CrossEncoderReranker(scifact_ce_path, backend="onnx", cache_dir=cache)
    int8 = CrossEncoderReranker(scifact_ce_path, backend="onnx", quantize="int8", cache_dir=cache)
    a = fp32.score_pairs(scifact_pairs)
    b = int8.score_pairs(scifact_pairs)
    assert spearmanr(a, b).correlation > 0.9
    for start in range(0, len(scifact_pairs), 8):  # same best passage per query
        assert np.argmax(a[start : start + 8]) == np.argmax(b[start : start + 8])
