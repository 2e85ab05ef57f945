"""Real servers in subprocesses (127.0.0.1, free ports) and a tiny model with spread scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import ServerProcess


@pytest.fixture(scope="session")
def spread_ce_path(tmp_path_factory: pytest.TempPathFactory, tiny_ce_builder) -> Path:
    """The tiny cross-encoder's vocabulary and shape, re-initialised with a wide weight range
    (logits spread over several units, so rankings have no near-ties that float noise could
    flip) and a tokenizer built from the vocabulary dict: with transformers 5,
    ``BertTokenizerFast(vocab_file=...)`` (the shared builder's call) maps every word to
    [UNK], which would leave scores depending on text length only."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = tiny_ce_builder(tmp_path_factory.mktemp("spread-ce"), seed=3)
    words = (path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(path)
    assert tokenizer.tokenize("vitamin d") == ["vitamin", "d"]
    config = BertConfig.from_pretrained(path)
    config.initializer_range = 0.5
    torch.manual_seed(3)
    BertForSequenceClassification(config).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def local_reranker(spread_ce_path: Path):
    """The same model in-process, with the sigmoid: what the server's relevance_score is."""
    from rerank_plugins import CrossEncoderReranker

    return CrossEncoderReranker(spread_ce_path, device="cpu", activation="sigmoid")


@pytest.fixture(scope="session")
def server(spread_ce_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One default server for the schema, client, concurrency and bad-input tests."""
    process = ServerProcess(
        spread_ce_path,
        tmp_path_factory.mktemp("server-logs"),
        "--max-documents",
        "64",
        "--max-request-bytes",
        "65536",
        "--served-model-name",
        "tiny-ce",
    )
    try:
        process.wait_ready()
        yield process.url
    finally:
        process.stop()


@pytest.fixture()
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any HTTP client that honours proxy variables fails fast off loopback (port 9 refuses)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("CO_API_URL", raising=False)
