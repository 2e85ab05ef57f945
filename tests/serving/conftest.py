"""Real servers in subprocesses (127.0.0.1, free ports) and a tiny model with spread scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import ServerProcess


@pytest.fixture(scope="session")
def spread_ce_path(tmp_path_factory: pytest.TempPathFactory, tiny_ce_builder) -> Path:
    """The tiny cross-encoder with a wide weight range: logits spread over several units, so
    rankings have no near-ties that float noise could flip."""
    path = tiny_ce_builder(tmp_path_factory.mktemp("spread-ce"), seed=3, initializer_range=0.5)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(path).tokenize("vitamin d") == ["vitamin", "d"]
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
