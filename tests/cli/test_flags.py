"""Every model/precision flag of every subcommand reaches the object it configures.

Each case records the keyword arguments the command passes to ``CrossEncoderReranker`` and to
``HybridRetriever`` (both replaced by recorders that stop the command early), so a flag that a
subcommand parses but drops fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rerank_plugins import cli

pytest.importorskip("bm25s")
pytest.importorskip("faiss")


class _Stop(Exception):
    """Raised by the retriever recorder: the command got as far as building the index."""


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    import rerank_plugins.cross_encoder as cross_encoder_module
    from rerank_plugins.hybrid import HybridRetriever

    seen: dict[str, dict[str, Any]] = {}

    class RecordingReranker:
        model_name = "recorded"
        device = "cpu"

        def __init__(self, model: str, **kwargs: Any) -> None:
            seen["reranker"] = {"model": model, **kwargs}

        def score(self, query: str, passages: list[str]) -> list[float]:
            return [0.0] * len(passages)

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        seen["retriever"] = kwargs
        raise _Stop

    monkeypatch.setattr(cross_encoder_module, "CrossEncoderReranker", RecordingReranker)
    monkeypatch.setattr(HybridRetriever, "__init__", recording_init)
    return seen


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flags-beir")
    (root / "qrels").mkdir()
    docs = [{"_id": f"d{i}", "title": "", "text": f"cell protein {i}"} for i in range(4)]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "cell"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    (root / "embedder").mkdir()  # passes the early embedder check; never loaded here
    (root / "embedder" / "config.json").write_text("{}")
    return root


# (flag, value, which recorder, keyword, expected value)
RERANKER_FLAGS = [
    ("--device", "cpu:1", "reranker", "device", "cpu:1"),
    ("--dtype", "bfloat16", "reranker", "dtype", "bfloat16"),
    ("--backend", "onnx", "reranker", "backend", "onnx"),
    ("--quantize", "int8", "reranker", "quantize", "int8"),
    ("--batch-size", "7", "reranker", "batch_size", 7),
    ("--max-length", "99", "reranker", "max_length", 99),
]
EMBEDDER_FLAGS = [
    ("--embed-dtype", "bfloat16", "retriever", "dtype", "bfloat16"),
    ("--embedder", "{data}/embedder", "retriever", "embedder", "{data}/embedder"),
]
CACHE_FLAG = [("--embedding-cache", "off", "retriever", "embedding_cache", False)]
FUSION_FLAGS = [
    ("--fusion", "dbsf", "retriever", "fusion", "dbsf"),
    ("--weights", "bm25=0.3,dense=0.7", "retriever", "weights", {"bm25": 0.3, "dense": 0.7}),
    ("--weights", " dense = 2 ", "retriever", "weights", {"dense": 2.0}),
    ("--rrf-k", "10", "retriever", "rrf_k", 10.0),
]


def _argv(command: str, beir_dir: Path) -> list[str]:
    base = [command, "--data", str(beir_dir), "--reranker", "some/model"]
    if command == "bench":
        return [*base, "--peers", "", "--queries", "1"]
    return base


CASES = [
    (command, *flag)
    for command, flags in (
        ("demo", RERANKER_FLAGS + EMBEDDER_FLAGS + CACHE_FLAG + FUSION_FLAGS),
        ("eval", RERANKER_FLAGS + EMBEDDER_FLAGS + CACHE_FLAG + FUSION_FLAGS),
        ("bench", RERANKER_FLAGS + EMBEDDER_FLAGS + FUSION_FLAGS),
    )
    for flag in flags
]


@pytest.mark.parametrize(("command", "flag", "value", "target", "keyword", "expected"), CASES)
def test_flag_reaches_its_target(
    recorded: dict[str, dict[str, Any]],
    beir_dir: Path,
    command: str,
    flag: str,
    value: str,
    target: str,
    keyword: str,
    expected: Any,
) -> None:
    value, expected = (
        (v.format(data=beir_dir) if isinstance(v, str) else v) for v in (value, expected)
    )
    with pytest.raises(_Stop):
        cli.main(["--debug", *_argv(command, beir_dir), flag, value])
    assert recorded[target].get(keyword) == expected, (command, flag, recorded[target])


def test_bench_refuses_embedding_cache(beir_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bench always encodes (fair index build times), so the cache flag is refused, not ignored."""
    with pytest.raises(SystemExit):
        cli.main([*_argv("bench", beir_dir), "--embedding-cache", "off"])
    assert "unrecognized arguments: --embedding-cache" in capsys.readouterr().err


# ------------------------------------------------------------------------- cascade flags
CASCADE_ARGV = [
    "--cascade-fast",
    "same",
    "--cascade-keep",
    "7",
    "--cascade-fast-quantize",
    "int8",
    "--cascade-fast-max-length",
    "64",
    "--cascade-skip-margin",
    "2.5",
]


@pytest.mark.parametrize("command", ["demo", "eval", "bench"])
def test_cascade_flags_build_a_cascade_that_reaches_the_command(
    monkeypatch: pytest.MonkeyPatch, beir_dir: Path, command: str
) -> None:
    import rerank_plugins.cross_encoder as cross_encoder_module
    import rerank_plugins.evaluation.peers as peers_module
    import rerank_plugins.rerankers as rerankers_module
    from rerank_plugins.hybrid import HybridRetriever

    built: list[dict[str, Any]] = []
    cascades: list[dict[str, Any]] = []

    class RecordingReranker:
        model_name = "recorded"
        device = "cpu"

        def __init__(self, model: str, **kwargs: Any) -> None:
            built.append({"model": model, **kwargs})

        def score(self, query: str, passages: list[str]) -> list[float]:
            return [0.0] * len(passages)

    real_cascade = rerankers_module.CascadeReranker

    def recording_cascade(fast: Any, accurate: Any, **kwargs: Any) -> Any:
        cascades.append(kwargs)
        return real_cascade(fast, accurate, **kwargs)

    reached: list[Any] = []
    real_ours_build = peers_module.Ours.build

    def recording_build(self: Any) -> None:
        reached.append(self.reranker)
        real_ours_build(self)

    def stop(self: Any, *args: Any, **kwargs: Any) -> None:
        raise _Stop

    monkeypatch.setattr(cross_encoder_module, "CrossEncoderReranker", RecordingReranker)
    monkeypatch.setattr(rerankers_module, "CascadeReranker", recording_cascade)
    monkeypatch.setattr(peers_module.Ours, "build", recording_build)
    monkeypatch.setattr(HybridRetriever, "__init__", stop)
    with pytest.raises(_Stop):
        cli.main(["--debug", *_argv(command, beir_dir), "--max-length", "99", *CASCADE_ARGV])
    accurate, fast = built
    assert accurate["model"] == fast["model"] == "some/model"
    assert accurate.get("max_length") == 99 and "quantize" not in accurate
    assert fast["backend"] == "onnx" and fast["quantize"] == "int8"
    assert fast["max_length"] == 64
    assert cascades == [{"keep": 7, "skip_margin": 2.5}]
    if command == "bench":
        assert isinstance(reached[0], real_cascade)


@pytest.mark.parametrize("command", ["demo", "eval", "bench"])
def test_cascade_options_without_cascade_fast_are_an_error(
    beir_dir: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([*_argv(command, beir_dir), "--cascade-keep", "5"])
    assert code == 2
    assert "--cascade-keep needs --cascade-fast MODEL" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "eval", "bench"])
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--weights", "bm25=x", "'x' is not a number"),
        ("--weights", "colbert=1", "unknown retriever 'colbert'"),
        ("--weights", "bm25=-1", "must be finite and >= 0"),
        ("--weights", "bm25=nan", "must be finite and >= 0"),
        ("--weights", "bm25=0,dense=0", "at least one weight must be > 0"),
        ("--weights", "bm25=1,bm25=2", "weighted twice"),
        ("--weights", "0.3,0.7", "NAME=NUMBER"),
        ("--rrf-k", "-1", "finite number >= 0"),
        ("--rrf-k", "inf", "finite number >= 0"),
        ("--rrf-k", "sixty", "expected a number"),
        ("--fusion", "max", "invalid choice"),
    ],
)
def test_bad_fusion_flags_are_usage_errors(
    beir_dir: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    flag: str,
    value: str,
    message: str,
) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([*_argv(command, beir_dir), flag, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and flag in err, err


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_fusion_flags_without_a_hybrid_index_are_refused(
    recorded: dict[str, dict[str, Any]],
    beir_dir: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    code = cli.main([*_argv(command, beir_dir), "--retriever", "bm25", "--fusion", "zscore"])
    assert code == 2 and "retriever" not in recorded
    assert "--fusion need a hybrid index" in capsys.readouterr().err


def test_tune_fusion_needs_a_hybrid_index(
    beir_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["eval", "--data", str(beir_dir), "--retriever", "dense", "--tune-fusion"]) == 2
    assert "--tune-fusion needs --retriever hybrid" in capsys.readouterr().err


def test_rrf_k_with_a_score_fusion_is_warned(
    recorded: dict[str, dict[str, Any]], beir_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(_Stop):
        cli.main(["--debug", *_argv("eval", beir_dir), "--fusion", "zscore", "--rrf-k", "5"])
    assert "--rrf-k is ignored with --fusion zscore" in capsys.readouterr().err
    assert recorded["retriever"]["rrf_k"] == 5.0  # still passed on: nothing the user gave is lost
