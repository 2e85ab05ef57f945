"""Shared fixtures: tiny randomly initialised models built in a temp dir, and ../shared paths."""

from __future__ import annotations

import faulthandler
import os
import string
import sys
from pathlib import Path

import pytest
from rp_test_support import HashEmbedder, build_tiny_sentence_transformer

# The suite checks the exact fp32 path (parity with sentence-transformers to 1e-4) on every
# CPU, subprocesses included; tests of dtype="auto" on bf16-native CPUs unset this themselves.
os.environ.setdefault("RERANK_PLUGINS_CPU_AUTO_DTYPE", "float32")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Keep native crashes readable after pytest's own faulthandler is switched off.

    Native threads (Ray, ONNX Runtime, FAISS, torch) are torn down at interpreter exit, after
    pytest unconfigures; a crash there printed no stack at all. This prints every thread's.
    """
    faulthandler.enable(file=sys.__stderr__, all_threads=True)


ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCIFACT_DIR = SHARED / "data" / "scifact"
SCIFACT_CE = SHARED / "models" / "minilm-l6-scifact-ce"

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "that",
    "this",
    "it",
    "be",
    "are",
    "were",
    "which",
    "cell",
    "cells",
    "protein",
    "gene",
    "genes",
    "cancer",
    "tumor",
    "patients",
    "disease",
    "risk",
    "study",
    "effect",
    "increased",
    "decreased",
    "level",
    "levels",
    "blood",
    "brain",
    "heart",
    "vitamin",
    "d",
    "deficiency",
    "treatment",
    "therapy",
    "drug",
    "mice",
    "human",
    "expression",
    "activity",
    "response",
    "immune",
    "infection",
    "virus",
    "bacteria",
    "dna",
    "rna",
    "mutation",
    "receptor",
    "pathway",
    "signal",
    "growth",
    "death",
    "stem",
    "tissue",
    "model",
    "clinical",
    "trial",
    "associated",
    "reduced",
    "higher",
    "lower",
    "not",
    "no",
    "cause",
    "causes",
    "caused",
    "lead",
    "leads",
]


def build_tiny_cross_encoder(
    directory: Path, *, seed: int = 0, num_labels: int = 1, initializer_range: float = 0.02
) -> Path:
    """Write a 2-layer random BERT cross-encoder with a small WordPiece vocab to ``directory``.

    The default init gives nearly constant scores (spread ~1e-5); ``initializer_range=0.5``
    spreads them over a few logits, for checks that would otherwise be vacuous.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces]
    vocab += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in dict.fromkeys(WORDS) if w not in vocab]
    # vocab= (a dict), not vocab_file=: transformers 5 builds the fast tokenizer from a
    # vocab_file without its WordPiece vocab, so every word became [UNK].
    tokenizer = BertTokenizerFast(
        vocab={piece: i for i, piece in enumerate(vocab)}, do_lower_case=True
    )
    tokenizer.model_max_length = 128
    probe = tokenizer.tokenize(f"{WORDS[0]} xyz")
    assert "[UNK]" not in probe, f"the tiny tokenizer lost its vocabulary: {probe}"
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
        initializer_range=initializer_range,
    )
    model = BertForSequenceClassification(config)
    model.eval()
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_ce_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))


@pytest.fixture(scope="session")
def tiny_wide_ce_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny cross-encoder with large random weights: scores spread over a few logits."""
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce-wide"), initializer_range=0.5)


@pytest.fixture(scope="session")
def tiny_reranker(tiny_ce_path: Path):
    from rerank_plugins import CrossEncoderReranker

    return CrossEncoderReranker(tiny_ce_path, device="cpu")


@pytest.fixture(scope="session")
def scifact_ce_path() -> Path:
    if not (SCIFACT_CE / "config.json").is_file():
        pytest.skip("../shared/models/minilm-l6-scifact-ce is absent")
    return SCIFACT_CE


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT_DIR / "corpus.jsonl").is_file():
        pytest.skip("../shared/data/scifact is absent")
    return SCIFACT_DIR


@pytest.fixture(scope="session")
def tiny_ce_builder():
    """The builder itself, for tests that need a second model (another seed or label count)."""
    return build_tiny_cross_encoder


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache_root(tmp_path_factory: pytest.TempPathFactory):
    """Keep ONNX exports and embedding caches written by tests out of the user's home."""
    import os

    previous = os.environ.get("RERANK_PLUGINS_CACHE")
    os.environ["RERANK_PLUGINS_CACHE"] = str(tmp_path_factory.mktemp("rerank-plugins-cache"))
    yield
    if previous is None:
        os.environ.pop("RERANK_PLUGINS_CACHE", None)
    else:
        os.environ["RERANK_PLUGINS_CACHE"] = previous


@pytest.fixture()
def fake_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def tiny_embedder_path(tiny_ce_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random sentence-transformers embedder sharing the tiny cross-encoder's vocab."""
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-embedder"), tiny_ce_path)


@pytest.fixture(scope="module")
def ray_local():
    """A small local Ray instance for one test module (2 CPUs, no dashboard), shut down after.

    It never joins a cluster someone else started on this machine (``address="local"``).
    """
    ray = pytest.importorskip(
        "ray", reason='Ray tests need the [ray] extra: pip install "rerank-plugins[ray]"'
    )
    pytest.importorskip("ray.data", reason="Ray tests need ray[data]")
    from rerank_plugins.distributed.cluster import ray_instance

    with ray_instance(num_cpus=2, object_store_memory=128 * 1024**2, quiet=True):
        yield ray
