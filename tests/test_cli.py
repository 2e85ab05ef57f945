"""End-to-end tests of the ``rerank-plugins`` command line on a tiny BEIR fixture and tiny models."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_plugins import cli

# Words in the tiny models' vocabulary (see conftest.build_tiny_cross_encoder).
_VOCAB_TEXT = (
    "cell cells protein gene genes cancer tumor patients disease risk study effect increased "
    "decreased level levels blood brain heart vitamin d deficiency treatment therapy drug "
    "mice human expression activity response immune infection virus bacteria dna rna "
    "mutation receptor pathway signal growth death stem tissue model clinical trial"
)
WORDS = _VOCAB_TEXT.split()

pytest.importorskip("bm25s")
pytest.importorskip("faiss")


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 documents, 5 test queries (each with 1-2 relevant documents), BEIR layout."""
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("tiny-beir")
    (root / "qrels").mkdir()
    docs = [
        {"_id": f"doc{i}", "title": _sentence(rng, 3), "text": _sentence(rng, 25)}
        for i in range(30)
    ]
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc) + "\n")
    queries, qrels = [], []
    for q in range(6):
        target = docs[q * 4]
        words = (target["title"] + " " + target["text"]).split()
        queries.append({"_id": f"q{q}", "text": " ".join(words[2:8])})
        if q < 5:  # q5 is unjudged: load_beir must leave it out of the test split
            qrels.append((f"q{q}", target["_id"], 1))
            if q % 2:
                qrels.append((f"q{q}", docs[q * 4 + 1]["_id"], 2))
    with (root / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query in queries:
            handle.write(json.dumps(query) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in qrels)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_hybrid_writes_json_and_plot(
    beir_dir: Path, tiny_ce_path: Path, tiny_embedder_path: Path, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("matplotlib")
    out, plot = tmp_path / "res" / "results.json", tmp_path / "tradeoff.png"
    code, stdout, stderr = _run(
        capsys,
        "eval",
        "--data",
        str(beir_dir),
        "--retriever",
        "hybrid",
        "--reranker",
        str(tiny_ce_path),
        "--embedder",
        str(tiny_embedder_path),
        "--candidates",
        "8",
        "--retriever-depth",
        "12",
        "--embed-dtype",
        "bfloat16",
        "--rerank-top",
        "2,5,50",
        "--batch-size",
        "4",
        "--max-length",
        "64",
        "--out",
        str(out),
        "--plot",
        str(plot),
        "--quiet",
    )
    assert code == 0, stderr
    assert "NDCG@10" in stdout and "hybrid + rerank@5" in stdout and "rerank p50/p95 ms" in stdout
    data = json.loads(out.read_text())
    assert data["settings"]["retriever_depth"] == 12
    assert data["settings"]["embed_dtype"] == "bfloat16"
    assert set(data) >= {"settings", "dataset", "results", "timings", "machine"}
    s = data["settings"]
    assert s["retriever"] == "hybrid" and s["candidates"] == 8 and s["queries"] == 5
    assert s["rerank_top"] == [2, 5, 8]  # 50 is clipped to the candidate count
    assert s["batch_size"] == 4 and s["max_length"] == 64 and s["latency"] == "measured"
    assert data["dataset"]["documents"] == 30
    rows = data["results"]
    assert [r["depth"] for r in rows] == [0, 2, 5, 8]
    assert rows[0]["setting"] == "hybrid"
    for row in rows:
        for value in row["metrics"].values():
            assert 0.0 <= value <= 1.0
        lat = row["latency_ms"]
        assert lat["retrieve"]["p50"] > 0
        assert lat["retrieve"]["p95"] >= lat["retrieve"]["p50"]
        if row["depth"]:
            assert lat["rerank"]["p50"] > 0
            assert lat["total"]["p50"] >= lat["rerank"]["p50"]
        else:
            assert lat["rerank"]["p50"] == 0
    # Reranking only reorders the candidates: recall@100 (all 8 candidates) cannot change.
    assert len({r["metrics"]["recall@100"] for r in rows}) == 1
    # Queries are copies of their target document's words, so the first stage finds them.
    assert rows[0]["metrics"]["recall@10"] > 0.5
    assert data["timings"]["index_build_s"] > 0
    assert data["machine"]["python"] and data["machine"]["cpu_count"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_first_stage_only_without_reranker(beir_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bm25.json"
    code, stdout, stderr = _run(
        capsys,
        "eval",
        "--data",
        str(beir_dir),
        "--retriever",
        "bm25",
        "--queries",
        "3",
        "--latency",
        "estimated",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stderr
    data = json.loads(out.read_text())
    assert [r["depth"] for r in data["results"]] == [0]
    assert data["settings"]["queries"] == 3 and data["settings"]["reranker"] is None
    assert "rerank@" not in stdout


def test_eval_estimated_latency(beir_dir: Path, tiny_ce_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "est.json"
    code, _, stderr = _run(
        capsys,
        "eval",
        "--data",
        str(beir_dir),
        "--retriever",
        "bm25",
        "--reranker",
        str(tiny_ce_path),
        "--candidates",
        "10",
        "--rerank-top",
        "5,10",
        "--latency",
        "estimated",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stderr
    rows = json.loads(out.read_text())["results"]
    # depth 5's time is the depth-10 call's time scaled by its token share (< all of it)
    assert 0 < rows[1]["latency_ms"]["rerank"]["mean"] <= rows[2]["latency_ms"]["rerank"]["mean"]


def test_eval_blend_rows_follow_the_pipeline(
    beir_dir: Path, tiny_ce_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "blend.json"
    args = ["eval", "--data", str(beir_dir), "--retriever", "bm25", "--reranker", str(tiny_ce_path)]
    args += ["--candidates", "10", "--rerank-top", "10", "--latency", "estimated"]
    code, _, stderr = _run(capsys, *args, "--blend", "0,1", "--out", str(out), "--quiet")
    assert code == 0, stderr
    rows = {row["setting"]: row for row in json.loads(out.read_text())["results"]}
    # weight 0 orders by the cross-encoder alone, weight 1 gives back the first-stage order
    assert rows["bm25 + rerank@10 blend=0"]["metrics"] == rows["bm25 + rerank@10"]["metrics"]
    assert rows["bm25 + rerank@10 blend=1"]["metrics"] == rows["bm25"]["metrics"]
    with pytest.raises(SystemExit) as info:
        cli.main([*args, "--blend", "1.5"])
    assert info.value.code == 2
    assert "blend" in capsys.readouterr().err


def test_bad_data_dir_exits_2(tmp_path: Path, capsys) -> None:
    code, _stdout, stderr = _run(capsys, "eval", "--data", str(tmp_path / "nope"))
    assert code == 2
    assert "error:" in stderr and "not found" in stderr and "Traceback" not in stderr


def test_data_dir_without_qrels_exits_2(beir_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, stderr = _run(capsys, "eval", "--data", str(beir_dir), "--split", "dev")
    assert code == 2
    assert "qrels" in stderr and "dev.tsv" in stderr


def test_bad_reranker_path_exits_2(beir_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, stderr = _run(
        capsys,
        "eval",
        "--data",
        str(beir_dir),
        "--retriever",
        "bm25",
        "--reranker",
        str(tmp_path / "missing-model"),
    )
    assert code == 2
    assert "error:" in stderr and "does not exist" in stderr and "Traceback" not in stderr


def test_bad_embedder_path_exits_2(beir_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, stderr = _run(
        capsys,
        "eval",
        "--data",
        str(beir_dir),
        "--retriever",
        "dense",
        "--embedder",
        str(tmp_path / "missing-embedder"),
        "--quiet",
    )
    assert code == 2
    assert "error:" in stderr and "missing-embedder" in stderr


def test_bad_rerank_top_is_a_usage_error(beir_dir: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--data", str(beir_dir), "--rerank-top", "10,x"])
    assert info.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_demo_on_beir_dir(
    beir_dir: Path, tiny_ce_path: Path, tiny_embedder_path: Path, capsys
) -> None:
    code, stdout, stderr = _run(
        capsys,
        "demo",
        "--data",
        str(beir_dir),
        "--reranker",
        str(tiny_ce_path),
        "--embedder",
        str(tiny_embedder_path),
        "--queries",
        "2",
        "--top-k",
        "3",
        "--candidates",
        "10",
        "--rerank-top",
        "5",
        "--limit",
        "10",
    )
    assert code == 0, stderr
    assert "[1]" in stdout and "[2]" in stdout and "[3]" not in stdout
    assert stdout.count("first-stage") == 6
    assert "timings: retrieve" in stdout and "rerank" in stdout
    assert "bm25 + dense" in stdout


def test_demo_on_corpus_file_with_own_query(
    tmp_path: Path, tiny_ce_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(cli.demo, "default_embedder", lambda: None)  # BM25 only
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"_id": f"p{i}", "text": t})
            for i, t in enumerate(
                [
                    "vitamin d deficiency and bone risk",
                    "immune response to virus infection",
                    "stem cell growth in tissue",
                    "gene expression in cancer cells",
                ]
            )
        )
        + "\n",
        encoding="utf-8",
    )
    code, stdout, stderr = _run(
        capsys,
        "demo",
        "--data",
        str(corpus),
        "--reranker",
        str(tiny_ce_path),
        "--query",
        "virus infection",
        "--top-k",
        "2",
    )
    assert code == 0, stderr
    assert "virus infection" in stdout and "p1" in stdout
    assert "(4 documents indexed, bm25)" in stdout


def test_demo_bad_reranker_exits_2(beir_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, stderr = _run(
        capsys, "demo", "--data", str(beir_dir), "--reranker", str(tmp_path / "x" / "y")
    )
    assert code == 2 and "error:" in stderr


def test_default_models_respect_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RERANK_PLUGINS_CE_MODEL", str(tmp_path))
    assert cli.default_reranker() == str(tmp_path)
    monkeypatch.delenv("RERANK_PLUGINS_CE_MODEL")
    assert cli.default_reranker()  # shared model path or the hub id


def test_python_dash_m_help_and_error_without_traceback(tmp_path: Path) -> None:
    help_run = subprocess.run(
        [sys.executable, "-m", "rerank_plugins", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_run.returncode == 0
    assert "demo" in help_run.stdout and "eval" in help_run.stdout and "bench" in help_run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rerank_plugins", "eval", "--data", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_bench_runs_ours_and_peers(
    beir_dir: Path, tiny_ce_path: Path, tiny_embedder_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "bench.json"
    code, stdout, stderr = _run(
        capsys,
        "bench",
        "--data",
        str(beir_dir),
        "--reranker",
        str(tiny_ce_path),
        "--embedder",
        str(tiny_embedder_path),
        "--queries",
        "3",
        "--candidates",
        "6",
        "--retriever-depth",
        "6",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    data = json.loads(out.read_text())
    systems = [r["system"] for r in data["results"]]
    assert systems[0].startswith("rerank-plugins") and "depth 6" in systems[0]
    assert data["settings"]["retriever_depth"] == 6
    # What ran, defaults resolved (the retriever's), not just the flags given.
    assert data["settings"]["fusion"] == {
        "fusion": "zscore",
        "weights": {"bm25": 0.6, "dense": 1.4},
        "rrf_k": 60.0,
    }
    for r in data["results"]:
        assert 0.0 <= r["ndcg@10"] <= 1.0
        assert r["rerank_pairs"] == 3 * 6 and r["rerank_pairs_per_s"] > 0
        assert r["query_ms"]["p95"] >= r["query_ms"]["p50"] > 0
    import importlib.util

    installed = {
        "langchain": all(
            importlib.util.find_spec(m)
            for m in ("langchain_classic", "langchain_community", "rank_bm25")
        ),
        "llamaindex": importlib.util.find_spec("llama_index") is not None,
    }
    skipped = " ".join(data["notes"])
    for peer, present in installed.items():
        ran = any(s.startswith(peer) for s in systems)
        assert ran if present else f"{peer} skipped" in skipped
    assert "vs ours" in stdout and "1.00x" in stdout


def test_a_bm25_only_bench_reports_no_fusion(
    beir_dir: Path, tiny_ce_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "bench.json"
    code, _, stderr = _run(
        capsys,
        "bench",
        *("--data", str(beir_dir), "--retriever", "bm25", "--reranker", str(tiny_ce_path)),
        *("--peers", "langchain", "--queries", "2", "--candidates", "4", "--out", str(out)),
    )
    assert code == 0, stderr
    data = json.loads(out.read_text())
    assert data["settings"]["fusion"] is None  # nothing was fused
    assert not any("fusion=" in note for note in data["notes"])


def test_demo_corpus_file_with_bad_line_names_the_line(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b", "text": \n', encoding="utf-8")
    code, _, stderr = _run(capsys, "demo", "--data", str(corpus), "--query", "fine")
    assert code == 2
    assert f"{corpus}:2: invalid JSON" in stderr


def test_retriever_depth_below_candidates_is_refused(beir_dir: Path, capsys) -> None:
    for command in ("eval", "bench"):
        args = [command, "--data", str(beir_dir), "--candidates", "10", "--retriever-depth", "5"]
        code, _, stderr = _run(capsys, *args)
        assert code == 2
        assert "--retriever-depth 5 is below --candidates 10" in stderr


def test_bad_precision_or_device_is_a_clean_error(beir_dir: Path, tiny_ce_path: Path, capsys):
    base = ["eval", "--data", str(beir_dir), "--retriever", "bm25", "--reranker", str(tiny_ce_path)]
    for flag in ("--dtype", "--embed-dtype"):
        with pytest.raises(SystemExit) as info:
            cli.main([*base, flag, "int4"])
        assert info.value.code == 2
        assert "invalid choice: 'int4'" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        code, _, stderr = _run(capsys, *base, "--device", "cuda", "--queries", "1")
        assert code == 2
        assert "error: device='cuda' was requested but CUDA is not available" in stderr
        assert "Traceback" not in stderr


def test_bad_embedder_fails_before_the_cross_encoder_loads(
    beir_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import rerank_plugins.cross_encoder as cross_encoder_module

    def must_not_load(*args, **kwargs):
        raise AssertionError("the cross-encoder was loaded before the embedder was checked")

    monkeypatch.setattr(cross_encoder_module, "CrossEncoderReranker", must_not_load)
    missing = tmp_path / "no-such-embedder"
    for command in ("eval", "demo"):
        argv = [command, "--data", str(beir_dir), "--reranker", "x/y", "--embedder", str(missing)]
        code, _, stderr = _run(capsys, *argv)
        assert code == 2
        assert f"embedding model directory {str(missing)!r} does not exist" in stderr
        assert "sentence-transformers/all-MiniLM-L6-v2" in stderr  # an embedder example


def test_eval_on_a_file_asks_for_a_beir_directory(beir_dir: Path, capsys) -> None:
    corpus = beir_dir / "corpus.jsonl"
    code, _, stderr = _run(capsys, "eval", "--data", str(corpus), "--retriever", "bm25")
    assert code == 2
    assert "is a file; this command needs a BEIR directory" in stderr


def test_rerank_top_above_candidates_is_warned(beir_dir: Path, tiny_ce_path: Path, capsys):
    argv = ["eval", "--data", str(beir_dir), "--retriever", "bm25", "--reranker", str(tiny_ce_path)]
    code, _, stderr = _run(
        capsys, *argv, "--candidates", "5", "--rerank-top", "3,8", "--queries", "1"
    )
    assert code == 0
    assert "--rerank-top 8 is above --candidates 5" in stderr


def test_eval_tune_fusion_reports_before_and_after_on_held_back_queries(
    beir_dir: Path, tiny_embedder_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "tuned.json"
    code, stdout, stderr = _run(
        capsys,
        "eval",
        "--data",
        str(beir_dir),
        "--embedder",
        str(tiny_embedder_path),
        "--embedding-cache",
        "off",
        "--tune-fusion",
        "--tune-share",
        "0.6",
        "--weights",
        "dense=0.5",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stderr
    data = json.loads(out.read_text())
    tuning = data["settings"]["fusion_tuning"]
    assert tuning["tune_queries"] == 3 and data["settings"]["queries"] == 2  # 5 judged queries
    before, after = data["results"]
    assert before["setting"] == "hybrid (before tuning: zscore, dense=0.5)"  # the default fusion
    assert after["setting"].startswith("hybrid (tuned: ")
    assert data["settings"]["fusion"] == tuning["settings"]  # what ran is what was tuned
    assert "held back" in stdout and "before tuning" in stdout and "tuned" in stdout
    assert "tuning fusion on 3 queries (2 held back)" in stderr


def test_eval_tune_fusion_with_too_few_queries_is_a_clean_error(beir_dir: Path, capsys) -> None:
    code, _, stderr = _run(
        capsys, "eval", "--data", str(beir_dir), "--queries", "1", "--tune-fusion"
    )
    assert code == 2 and "--tune-fusion: tuning needs at least 2 queries" in stderr
