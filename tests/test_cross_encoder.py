"""CrossEncoderReranker on a tiny random BERT: ordering, batching, long passages, inputs, cache."""

from __future__ import annotations

import random
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from rerank_plugins import CrossEncoderReranker, ModelNotFoundError, RerankResult
from rerank_plugins.cross_encoder import (
    CPU_HALF_TOKENS_PER_BATCH,
    CPU_TOKENS_PER_BATCH,
    plan_batches,
)
from tests.conftest import WORDS, build_tiny_cross_encoder

QUERY = "vitamin d deficiency risk"


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


@pytest.fixture(scope="module")
def ce_path(tiny_wide_ce_path) -> Path:
    """The tiny model with large weights (conftest): default-init scores are nearly constant."""
    return tiny_wide_ce_path


@pytest.fixture(scope="module")
def reranker(ce_path) -> CrossEncoderReranker:
    return CrossEncoderReranker(ce_path, device="cpu")


@pytest.fixture(scope="module")
def passages() -> list[str]:
    rng = random.Random(7)
    lengths = [1, 3, 90, 5, 40, 2, 120, 8, 60, 1, 25, 200, 4, 15, 33, 7, 70, 11]
    return [_text(rng, n) for n in lengths]


def _alone(reranker: CrossEncoderReranker, query: str, passages: list[str]) -> np.ndarray:
    return np.array([reranker.score(query, [p])[0] for p in passages], dtype=np.float32)


# ---------------------------------------------------------------------- order and batching
def test_scores_follow_input_order_for_shuffled_mixed_lengths(reranker, passages):
    expected = _alone(reranker, QUERY, passages)
    together = reranker.score(QUERY, passages)
    assert together.dtype == np.float32 and together.shape == (len(passages),)
    np.testing.assert_allclose(together, expected, atol=1e-5)
    for seed in range(3):
        order = list(range(len(passages)))
        random.Random(seed).shuffle(order)
        shuffled = reranker.score(QUERY, [passages[i] for i in order])
        np.testing.assert_allclose(shuffled, expected[order], atol=1e-5)


@pytest.mark.parametrize(
    ("batch_size", "max_tokens"), [(1, None), (3, None), (32, None), (32, 40), (4, 1)]
)
def test_batching_does_not_change_scores(ce_path, reranker, passages, batch_size, max_tokens):
    reference = reranker.score(QUERY, passages)
    reranker = CrossEncoderReranker(
        ce_path, device="cpu", batch_size=batch_size, max_tokens_per_batch=max_tokens
    )
    np.testing.assert_allclose(reranker.score(QUERY, passages), reference, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("batch_size", "budget"), [(1, 10), (8, 100), (32, 1000), (5, 7)])
def test_plan_batches_covers_each_pair_once_within_budget(seed, batch_size, budget):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=int(rng.integers(1, 80)))
    batches = plan_batches(lengths, batch_size, budget)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(len(b) >= 1 for b in batches)
    for batch in batches:
        padded = len(batch) * int(lengths[batch].max())
        assert len(batch) <= batch_size
        assert padded <= budget or len(batch) == 1
    # Longest first: lengths never increase along the plan.
    assert np.all(np.diff(lengths[flat]) <= 0)


def test_plan_batches_empty_and_ties_stable():
    assert plan_batches(np.array([], dtype=np.int64), 4, 100) == []
    batches = plan_batches(np.array([5, 5, 5, 9]), 2, 100)
    assert [b.tolist() for b in batches] == [[3, 0], [1, 2]]


# ---------------------------------------------------------------------- rerank semantics
def test_rerank_returns_every_passage_once_best_first(reranker, passages):
    results = reranker.rerank(QUERY, passages)
    assert all(isinstance(r, RerankResult) for r in results)
    assert sorted(r.index for r in results) == list(range(len(passages)))
    assert all(r.passage == passages[r.index] for r in results)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(
        [r.score for r in sorted(results, key=lambda r: r.index)],
        reranker.score(QUERY, passages),
        atol=1e-6,
    )


def test_top_n_bounds(reranker, passages):
    full = reranker.rerank(QUERY, passages)
    assert reranker.rerank(QUERY, passages, top_n=len(passages) + 10) == full
    assert reranker.rerank(QUERY, passages, top_n=3) == full[:3]
    assert reranker.rerank(QUERY, passages, top_n=0) == []
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="top_n"):
            reranker.rerank(QUERY, passages, top_n=bad)


def test_ties_keep_input_order(reranker):
    same = ["cell growth", "brain", "cell growth", "cell growth"]
    results = reranker.rerank(QUERY, same)
    tied = [r.index for r in results if r.passage == "cell growth"]
    assert tied == [0, 2, 3]


def test_sigmoid_scores_and_threshold(ce_path, reranker, passages):
    sig = CrossEncoderReranker(ce_path, device="cpu", activation="sigmoid")
    raw = reranker.score(QUERY, passages)
    probs = sig.score(QUERY, passages)
    assert np.all((probs > 0) & (probs < 1))
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-raw.astype(np.float64))), atol=1e-6)
    threshold = float(np.median(probs))
    kept = sig.rerank(QUERY, passages, score_threshold=threshold)
    assert {r.index for r in kept} == {i for i, p in enumerate(probs) if p >= threshold}
    assert sig.rerank(QUERY, passages, score_threshold=1.0) == []
    assert len(sig.rerank(QUERY, passages, score_threshold=0.0)) == len(passages)
    assert len(sig.rerank(QUERY, passages, score_threshold=0.0, top_n=2)) == 2
    with pytest.raises(ValueError, match="NaN"):
        sig.rerank(QUERY, passages, score_threshold=float("nan"))


def test_rerank_many_matches_per_query(reranker, passages):
    queries = [QUERY, "immune response to virus infection", "heart disease"]
    lists = [passages, passages[3:9][::-1], []]
    together = reranker.rerank_many(queries, lists, top_n=5)
    assert len(together) == 3 and together[2] == []
    for query, plist, got in zip(queries, lists, together, strict=True):
        alone = reranker.rerank(query, plist, top_n=5)
        assert [r.index for r in got] == [r.index for r in alone]
        np.testing.assert_allclose([r.score for r in got], [r.score for r in alone], atol=1e-5)
    with pytest.raises(ValueError, match="2 queries but 1"):
        reranker.rerank_many(queries[:2], lists[:1])
    with pytest.raises(TypeError, match=r"passage_lists\[1\]\[0\]"):
        reranker.rerank_many(queries[:2], [["a"], [None]])


def test_score_pairs_matches_score(reranker, passages):
    pairs = [(QUERY, p) for p in passages[:6]] + [("heart disease", p) for p in passages[:6]]
    got = reranker.score_pairs(pairs)
    np.testing.assert_allclose(got[:6], reranker.score(QUERY, passages[:6]), atol=1e-5)
    np.testing.assert_allclose(got[6:], reranker.score("heart disease", passages[:6]), atol=1e-5)
    assert reranker.score_pairs([]).shape == (0,)
    with pytest.raises(TypeError, match=r"pairs\[1\]"):
        reranker.score_pairs([(QUERY, "a"), (QUERY,)])
    with pytest.raises(TypeError, match=r"pairs\[0\]\[1\]"):
        reranker.score_pairs([(QUERY, 3)])
    with pytest.raises(ValueError, match=r"pairs\[0\]\[0\]"):
        reranker.score_pairs([("  ", "a")])


# ---------------------------------------------------------------------- long passages
@pytest.fixture(scope="module")
def chunker(ce_path):
    return CrossEncoderReranker(
        ce_path, device="cpu", max_length=48, long_passages="chunk", chunk_overlap=8
    )


@pytest.fixture(scope="module")
def truncator(ce_path):
    return CrossEncoderReranker(ce_path, device="cpu", max_length=48)


def test_chunk_equals_truncate_for_short_passages(chunker, truncator):
    short = ["cell growth", "vitamin d deficiency in mice", "brain"]
    np.testing.assert_allclose(
        chunker.score(QUERY, short), truncator.score(QUERY, short), atol=1e-5
    )


def test_chunk_score_is_max_over_windows_and_windows_overlap(chunker, passages):
    long = [p for p in passages if len(p.split()) > 50]
    encoding, owners = chunker._encode([QUERY] * len(long), long)
    assert len(owners) > len(long)  # long passages were split
    special = chunker.tokenizer.num_special_tokens_to_add(pair=True)
    for row in range(len(owners)):
        assert len(encoding["input_ids"][row]) <= chunker.max_length
    # Consecutive windows of one passage share chunk_overlap passage tokens.
    for row in range(1, len(owners)):
        if owners[row] != owners[row - 1]:
            continue
        prev = _passage_ids(encoding, row - 1)
        cur = _passage_ids(encoding, row)
        assert prev[-chunker.chunk_overlap :] == cur[: chunker.chunk_overlap]
    assert special > 0
    # The score is the best window: score each window's text alone with the truncator.
    window_scores = {}
    for row, owner in enumerate(owners):
        ids = _passage_ids(encoding, row)
        text = chunker.tokenizer.decode(ids)
        window_scores.setdefault(int(owner), []).append(text)
    got = chunker.score(QUERY, long)
    for owner, texts in window_scores.items():
        best = max(chunker.score(QUERY, [t])[0] for t in texts)
        assert got[owner] == pytest.approx(best, abs=1e-4)


def _passage_ids(encoding, row: int) -> list[int]:
    sequence_ids = encoding.sequence_ids(row)
    ids = encoding["input_ids"][row]
    return [tok for tok, seq in zip(ids, sequence_ids, strict=True) if seq == 1]


def test_chunk_never_below_truncate_because_first_window_is_the_truncated_pair(
    chunker, truncator, passages
):
    # What *is* guaranteed: the first chunk window is exactly the truncated pair, so the MaxP
    # score is >= the truncated score (up to float noise from different batch padding).
    # Chunk > truncate is not guaranteed for a given passage: when the first window is the
    # best one they are equal.
    chunked = chunker.score(QUERY, passages)
    truncated = truncator.score(QUERY, passages)
    assert np.all(chunked >= truncated - 1e-5)
    short = [i for i, p in enumerate(passages) if len(p.split()) < 10]
    np.testing.assert_allclose(chunked[short], truncated[short], atol=1e-5)


def test_query_is_never_truncated(reranker, chunker):
    long_query = " ".join(["vitamin"] * 200)
    for model in (reranker, chunker):
        with pytest.raises(ValueError, match="never truncated") as info:
            model.score(long_query, ["cell"])
        assert "max_length" in str(info.value)
    # A query that leaves the passage its minimum room is fine, and stays whole.
    room = reranker.max_length - 3 - 16
    ok_query = " ".join(["vitamin"] * room)
    encoding, _ = reranker._encode([ok_query], [" ".join(["cell"] * 300)])
    assert encoding.sequence_ids(0).count(0) == room


# ---------------------------------------------------------------------- bad inputs
def test_bad_queries_and_passages(reranker):
    for query in ("", "   \n\t"):
        with pytest.raises(ValueError, match="query is empty"):
            reranker.rerank(query, ["a"])
    with pytest.raises(TypeError, match="query must be a str"):
        reranker.rerank(None, ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"passages\[2\] must be a str, got int"):
        reranker.rerank(QUERY, ["a", "b", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single str"):
        reranker.rerank(QUERY, "a passage")  # type: ignore[arg-type]
    assert reranker.rerank(QUERY, []) == []
    empty = reranker.score(QUERY, [])
    assert empty.shape == (0,) and empty.dtype == np.float32
    # Generators are accepted; empty passages are scored, not rejected.
    assert len(reranker.rerank(QUERY, (p for p in ["a", ""]))) == 2


def test_missing_model_paths(tmp_path):
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        CrossEncoderReranker(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        CrossEncoderReranker("./definitely-not-a-model-dir/")
    a_file = tmp_path / "model.bin"
    a_file.write_text("x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        CrossEncoderReranker(a_file)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (empty_dir / "weights.safetensors").write_text("x")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json") as info:
        CrossEncoderReranker(empty_dir)
    assert "weights.safetensors" in str(info.value)
    assert issubclass(ModelNotFoundError, OSError)


def test_bad_settings(ce_path):
    cases = [
        ({"max_length": 4096}, "exceeds the model's limit of 128"),
        ({"max_length": 8}, "too small"),
        ({"activation": "softmax"}, "activation"),
        ({"long_passages": "split"}, "long_passages"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_overlap": -1}, "chunk_overlap"),
        ({"cache_size": -1}, "cache_size"),
        ({"dtype": "int8"}, "dtype"),
        ({"backend": "tensorrt"}, "backend"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            CrossEncoderReranker(ce_path, device="cpu", **kwargs)


def test_device_and_dtype_resolution(ce_path, reranker):
    auto = CrossEncoderReranker(ce_path, device="auto", dtype="auto")
    if not torch.cuda.is_available():
        assert auto.device in ("cpu", "mps")
    if auto.device == "cpu":
        assert auto.backend.dtype == torch.float32
    assert reranker.device == "cpu"
    assert next(reranker.backend.model.parameters()).dtype == torch.float32
    assert "device='cpu'" in repr(reranker)
    bf16 = CrossEncoderReranker(ce_path, device="cpu", dtype="bfloat16")
    assert bf16.backend.dtype == torch.bfloat16
    scores = bf16.score(QUERY, ["cell growth", "brain"])
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, reranker.score(QUERY, ["cell growth", "brain"]), atol=0.1)


def test_torch_backend_rejects_onnx_options(ce_path):
    with pytest.raises(ValueError, match=r"\['keep_fp32'\] not accepted by backend='torch'"):
        CrossEncoderReranker(ce_path, device="cpu", backend_options={"keep_fp32": "none"})
    with pytest.raises(ValueError, match="max_tokens_per_batch must be a positive int"):
        CrossEncoderReranker(ce_path, device="cpu", max_tokens_per_batch=0)


def test_default_token_budget_follows_precision(ce_path, reranker):
    assert reranker.max_tokens_per_batch == CPU_TOKENS_PER_BATCH
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 is emulated (and warned about) without AMX
        bf16 = CrossEncoderReranker(ce_path, device="cpu", dtype="bfloat16")
        explicit = CrossEncoderReranker(
            ce_path, device="cpu", dtype="bfloat16", max_tokens_per_batch=77
        )
    assert bf16.max_tokens_per_batch == CPU_HALF_TOKENS_PER_BATCH > CPU_TOKENS_PER_BATCH
    assert explicit.max_tokens_per_batch == 77


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CUDA-missing error")
def test_cuda_requested_without_cuda(ce_path):
    with pytest.raises(ValueError, match="CUDA is not available"):
        CrossEncoderReranker(ce_path, device="cuda")


# ---------------------------------------------------------------------- labels
def test_two_label_model_scores_log_odds(tmp_path):
    path = build_tiny_cross_encoder(tmp_path / "two", seed=1, num_labels=2)
    reranker = CrossEncoderReranker(path, device="cpu")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    docs = ["cell growth in mice", "brain", "vitamin d deficiency causes disease"]
    with torch.inference_mode():
        logits = model(**tokenizer([QUERY] * 3, docs, padding=True, return_tensors="pt")).logits
    expected = (logits[:, 1] - logits[:, 0]).numpy()
    np.testing.assert_allclose(reranker.score(QUERY, docs), expected, atol=1e-5)


def test_more_than_two_labels_rejected(tmp_path):
    path = build_tiny_cross_encoder(tmp_path / "three", num_labels=3)
    with pytest.raises(ValueError, match="3 output labels"):
        CrossEncoderReranker(path, device="cpu")


# ---------------------------------------------------------------------- cache
def test_cache_hits_and_identical_results(ce_path, passages):
    reranker = CrossEncoderReranker(ce_path, device="cpu", cache_size=1000)
    first = reranker.rerank(QUERY, passages)
    assert reranker.cache.hits == 0 and reranker.cache.misses == len(passages)
    second = reranker.rerank(QUERY, passages)
    assert reranker.cache.hits == len(passages)
    assert second == first
    # A different query is a different key.
    reranker.score("heart disease", passages[:2])
    assert reranker.cache.misses == len(passages) + 2


def test_cache_off_by_default(reranker, passages):
    reranker.score(QUERY, passages)
    assert reranker.cache.maxsize == 0 and len(reranker.cache) == 0


def test_cache_lru_eviction(ce_path):
    reranker = CrossEncoderReranker(ce_path, device="cpu", cache_size=2)
    reranker.score(QUERY, ["a", "b"])
    reranker.score(QUERY, ["a"])  # refresh "a": "b" is now least recent
    reranker.score(QUERY, ["c"])  # evicts "b"
    assert len(reranker.cache) == 2
    hits = reranker.cache.hits
    reranker.score(QUERY, ["a", "c"])
    assert reranker.cache.hits == hits + 2
    misses = reranker.cache.misses
    reranker.score(QUERY, ["b"])
    assert reranker.cache.misses == misses + 1


def test_cache_stores_raw_scores_activation_applied_after(ce_path):
    sig = CrossEncoderReranker(ce_path, device="cpu", cache_size=10, activation="sigmoid")
    first = sig.score(QUERY, ["cell", "brain"])
    second = sig.score(QUERY, ["cell", "brain"])
    np.testing.assert_array_equal(first, second)
    assert np.all((second > 0) & (second < 1))


def test_concurrent_calls_match_sequential(ce_path, passages):
    reranker = CrossEncoderReranker(ce_path, device="cpu", cache_size=64, batch_size=4)
    chunker = CrossEncoderReranker(
        ce_path, device="cpu", max_length=48, long_passages="chunk", cache_size=0
    )
    queries = [QUERY, "heart disease", "immune response", "stem cell therapy"] * 2
    for model in (reranker, chunker):
        sequential = [model.score(q, passages) for q in queries]
        model.cache.clear()
        with ThreadPoolExecutor(max_workers=8) as pool:
            concurrent = list(pool.map(lambda q, m=model: m.score(q, passages), queries))
        for a, b in zip(sequential, concurrent, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------------- parity and imports
def test_parity_with_sentence_transformers(ce_path, reranker, passages):
    from sentence_transformers import CrossEncoder

    pairs = [(QUERY, p) for p in passages] + [("brain tumor growth", p) for p in passages[::-1]]
    for max_length in (128, 32):
        ours = CrossEncoderReranker(ce_path, device="cpu", max_length=max_length)
        st = CrossEncoder(
            str(ce_path),
            max_length=max_length,
            activation_fn=torch.nn.Identity(),
            device="cpu",
        )
        expected = st.predict(pairs, batch_size=5, show_progress_bar=False)
        got = ours.score_pairs(pairs)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        # Same ranking: walking our order, ST's scores never go up (beyond float noise; the
        # wide random model has a few near-ties that float noise may order either way).
        in_our_order = expected[np.argsort(-got, kind="stable")]
        assert np.all(np.diff(in_our_order) <= 1e-4)
        assert len(np.unique(np.round(expected, 3))) > len(pairs) // 2  # not all tied


def test_import_does_not_pull_frameworks():
    code = (
        "import sys, rerank_plugins; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('langchain', 'langchain_core', 'langchain_community', 'llama_index', 'ray')]; "
        "print(bad); assert not bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
