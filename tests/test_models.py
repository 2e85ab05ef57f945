"""Model resolution: local paths, hub ids, and a fast failure when the hub cannot be reached."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from rerank_plugins._models import ModelNotFoundError, resolve_model_source


def _closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty Hugging Face cache and a hub endpoint on a closed loopback port."""
    from huggingface_hub import constants

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_loopback_port()}")


def test_uncached_hub_id_fails_fast_when_the_hub_is_unreachable(unreachable_hub: None) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_source("some-org/some-reranker", what="cross-encoder")
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert "'some-org/some-reranker'" in message and "unreachable" in message
    assert "HF_HUB_OFFLINE" in message  # the offline hint says what to do


def test_offline_mode_and_proxies_skip_the_probe(
    unreachable_hub: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model_source("some-org/some-reranker", what="x") == "some-org/some-reranker"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # reachability unknown: no probe
    assert resolve_model_source("some-org/some-reranker", what="x") == "some-org/some-reranker"


def test_local_directory_needs_no_hub(tiny_ce_path: Path, unreachable_hub: None) -> None:
    assert resolve_model_source(tiny_ce_path, what="cross-encoder") == str(tiny_ce_path)
