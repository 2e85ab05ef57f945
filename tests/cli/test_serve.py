"""``rerank-plugins serve``: every flag reaches the reranker, create_app or uvicorn."""

from __future__ import annotations

from typing import Any

import pytest

from rerank_plugins import cli

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import rerank_plugins.cross_encoder as cross_encoder_module
    import rerank_plugins.serving.app as app_module

    seen: dict[str, Any] = {}

    class RecordingReranker:
        device = "cpu"

        def __init__(self, model: str, **kwargs: Any) -> None:
            seen["reranker"] = {"model": model, **kwargs}

    def recording_create_app(reranker: Any, **kwargs: Any) -> str:
        seen["app"] = kwargs
        return "app"

    def recording_run(self: Any) -> None:
        seen["uvicorn"] = self.config

    monkeypatch.setattr(cross_encoder_module, "CrossEncoderReranker", RecordingReranker)
    monkeypatch.setattr(app_module, "create_app", recording_create_app)
    monkeypatch.setattr(uvicorn.Server, "run", recording_run)
    return seen


def test_defaults(recorded, tmp_path):
    model = tmp_path / "my-ce"
    model.mkdir()
    assert cli.main(["serve", str(model)]) == 0
    assert recorded["reranker"]["model"] == str(model)
    assert recorded["reranker"]["activation"] == "none"  # the server applies the sigmoid
    assert recorded["reranker"]["long_passages"] == "truncate"
    assert recorded["app"] == {
        "model_name": "my-ce",
        "api_key": None,
        "max_documents": 1000,
        "max_request_bytes": 8 * 1024 * 1024,
        "max_queue_pairs": 8192,
        "max_batch_pairs": 256,
        "max_wait_ms": 2.0,
    }
    config = recorded["uvicorn"]
    assert (config.host, config.port) == ("127.0.0.1", 8080)


# (flag, value, recorder, keyword, expected)
FLAGS = [
    ("--device", "cpu:1", "reranker", "device", "cpu:1"),
    ("--dtype", "bfloat16", "reranker", "dtype", "bfloat16"),
    ("--backend", "onnx", "reranker", "backend", "onnx"),
    ("--quantize", "int8", "reranker", "quantize", "int8"),
    ("--batch-size", "7", "reranker", "batch_size", 7),
    ("--max-length", "99", "reranker", "max_length", 99),
    ("--long-passages", "chunk", "reranker", "long_passages", "chunk"),
    ("--max-documents", "5", "app", "max_documents", 5),
    ("--max-request-bytes", "1234", "app", "max_request_bytes", 1234),
    ("--max-queue-pairs", "9999", "app", "max_queue_pairs", 9999),
    ("--max-batch-pairs", "17", "app", "max_batch_pairs", 17),
    ("--max-wait-ms", "0", "app", "max_wait_ms", 0.0),
    ("--served-model-name", "prod-ce", "app", "model_name", "prod-ce"),
]


@pytest.mark.parametrize(("flag", "value", "where", "keyword", "expected"), FLAGS)
def test_flag_reaches_its_target(recorded, flag, value, where, keyword, expected):
    assert cli.main(["serve", "hub/model", flag, value]) == 0
    assert recorded[where][keyword] == expected


def test_server_flags_reach_uvicorn(recorded):
    args = ["serve", "m", "--host", "0.0.0.0", "--port", "9001", "--drain-timeout", "30"]
    assert cli.main([*args, "--log-level", "debug"]) == 0
    config = recorded["uvicorn"]
    assert (config.host, config.port, config.timeout_graceful_shutdown) == ("0.0.0.0", 9001, 30)
    assert config.access_log is True


def test_api_key_env(recorded, monkeypatch, capsys):
    monkeypatch.setenv("RP_KEY", "  hunter2 ")
    assert cli.main(["serve", "m", "--api-key-env", "RP_KEY"]) == 0
    assert recorded["app"]["api_key"] == "hunter2"
    monkeypatch.delenv("RP_KEY")
    recorded.clear()
    assert cli.main(["serve", "m", "--api-key-env", "RP_KEY"]) == 2
    assert "RP_KEY" in capsys.readouterr().err
    assert "reranker" not in recorded  # refused before the model loads


def test_queue_smaller_than_a_request_is_refused(recorded, capsys):
    assert cli.main(["serve", "m", "--max-documents", "100", "--max-queue-pairs", "10"]) == 2
    assert "--max-queue-pairs 10 is below --max-documents 100" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [["--port", "0"], ["--port", "70000"], ["--max-wait-ms", "-1"], ["--max-documents", "0"]],
)
def test_bad_values_are_argparse_errors(args):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "m", *args])
    assert exit_info.value.code == 2


def test_missing_extra_is_named_before_loading(recorded, monkeypatch, capsys):
    import sys

    monkeypatch.delitem(sys.modules, "rerank_plugins.serving.app", raising=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert cli.main(["serve", "m"]) == 2
    assert 'pip install "rerank-plugins[serve]"' in capsys.readouterr().err
    assert "reranker" not in recorded
