"""Ray Data offline scoring on a local Ray instance: rerank_dataset and ``eval --engine ray``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data", reason='needs the [ray] extra: pip install "rerank-plugins[ray]"')
pa = pytest.importorskip("pyarrow")

from rerank_plugins import CrossEncoderReranker, cli  # noqa: E402
from rerank_plugins.distributed import PairScorer, rerank_dataset  # noqa: E402

WORDS = ["vitamin", "d", "deficiency", "cancer", "risk", "cells", "protein", "gene", "immune"]


@pytest.fixture(scope="module")
def in_process(tiny_wide_ce_path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_wide_ce_path, device="cpu")


def _rows(n: int = 50) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        query = " ".join(rng.choice(WORDS, size=3))
        passage = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 40))))
        rows.append({"id": i, "query": query, "passage": passage, "tag": f"doc-{i}"})
    return rows


@pytest.mark.ray
def test_scores_match_in_process_and_every_row_comes_back_once(
    ray_local, tiny_wide_ce_path, in_process
):
    rows = _rows()
    ds = ray_local.data.from_items(rows, override_num_blocks=4)
    out = rerank_dataset(ds, tiny_wide_ce_path, concurrency=2, batch_size=8).take_all()

    assert sorted(r["id"] for r in out) == list(range(len(rows)))  # each row exactly once
    expected = in_process.score_pairs([(r["query"], r["passage"]) for r in rows])
    by_id = {r["id"]: r for r in out}
    got = np.array([by_id[i]["score"] for i in range(len(rows))], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.ptp(expected) > 0.5  # a model whose scores differ: 1e-4 is a real check
    for row in rows:  # every other column passes through unchanged
        assert {k: by_id[row["id"]][k] for k in row} == row


@pytest.mark.ray
def test_missing_or_taken_columns_are_named(ray_local, tiny_ce_path):
    ds = ray_local.data.from_items([{"question": "q", "passage": "p", "score": 1.0}])
    with pytest.raises(ValueError, match=r"no column 'query'.*'question'"):
        rerank_dataset(ds, tiny_ce_path)
    with pytest.raises(ValueError, match="already has a column 'score'"):
        rerank_dataset(ds, tiny_ce_path, query_column="question")
    with pytest.raises(ValueError, match="concurrency"):
        rerank_dataset(ds, tiny_ce_path, query_column="question", score_column="s", concurrency=0)


def test_pair_scorer_checks_batches_itself(tiny_wide_ce_path, in_process):
    """The actor-side checks (used when a lazy dataset's schema is unknown up front)."""
    scorer = PairScorer(tiny_wide_ce_path, reranker_kwargs={"device": "cpu"})
    batch = pa.table({"query": ["vitamin d", "cancer"], "passage": ["blood", "risk"], "k": [1, 2]})
    out = scorer(batch)
    assert out.column_names == ["query", "passage", "k", "score"]
    np.testing.assert_allclose(
        out.column("score").to_numpy(),
        in_process.score_pairs([("vitamin d", "blood"), ("cancer", "risk")]),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="no column 'passage'"):
        scorer(pa.table({"query": ["q"], "text": ["p"]}))
    with pytest.raises(TypeError, match=r"column 'passage' \(row 1 of a batch\) must be a str"):
        scorer(pa.table({"query": ["q", "q"], "passage": ["p", None]}))
    with pytest.raises(ValueError, match=r"column 'query'.*empty"):
        scorer(pa.table({"query": ["  "], "passage": ["p"]}))


def test_import_without_ray_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        import rerank_plugins
        assert "ray" not in sys.modules, "import rerank_plugins loaded ray"
        sys.modules["ray"] = None
        try:
            import rerank_plugins.distributed
        except ImportError as error:
            assert 'pip install "rerank-plugins[ray]"' in str(error), str(error)
            print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "ok", result.stderr


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 documents, 4 judged queries: enough for rankings that reranking changes."""
    rng = np.random.default_rng(3)  # a seed where reranking changes every depth's metrics
    root = tmp_path_factory.mktemp("ray-beir")
    (root / "qrels").mkdir()
    docs = [
        {
            "_id": f"d{i}",
            "title": "",
            "text": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 8)))),
        }
        for i in range(12)
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [
        {"_id": f"q{q}", "text": " ".join(docs[q * 3]["text"].split()[:2])} for q in range(4)
    ]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    qrels = "".join(f"q{q}\td{q * 3 + 1}\t1\n" for q in range(4))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


def _eval(capsys, beir_dir: Path, model: Path, out: Path, *extra: str) -> dict:
    argv = ["eval", "--data", str(beir_dir), "--retriever", "bm25", "--reranker", str(model)]
    argv += ["--candidates", "8", "--rerank-top", "4,8", "--blend", "0.5", "--quiet"]
    code = cli.main([*argv, "--out", str(out), *extra])
    assert code == 0, capsys.readouterr().err
    return json.loads(out.read_text())


@pytest.mark.ray
def test_eval_engine_ray_gives_the_in_process_metrics(
    ray_local, beir_dir, tiny_wide_ce_path, tmp_path, capsys
):
    pytest.importorskip("bm25s")
    local = _eval(
        capsys, beir_dir, tiny_wide_ce_path, tmp_path / "local.json", "--latency", "batch"
    )
    on_ray = _eval(
        capsys,
        beir_dir,
        tiny_wide_ce_path,
        tmp_path / "ray.json",
        "--engine",
        "ray",
        "--actors",
        "1",
    )
    assert [r["setting"] for r in on_ray["results"]] == [r["setting"] for r in local["results"]]
    for mine, theirs in zip(on_ray["results"], local["results"], strict=True):
        assert mine["metrics"] == pytest.approx(theirs["metrics"], abs=1e-9)
    first_stage = local["results"][0]["metrics"]
    assert all(r["metrics"] != first_stage for r in local["results"][1:])  # reranking matters
    assert on_ray["settings"]["engine"] == "ray" and on_ray["settings"]["latency"] == "batch"
    assert on_ray["timings"]["ray_job_s"] > 0
    assert ray_local.is_initialized()  # a Ray session the command joined stays up


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--latency", "measured"), "--latency batch"),
        (("--reranker", ""), "give --reranker MODEL"),
    ],
)
def test_eval_engine_ray_refuses_settings_it_cannot_honour(beir_dir, capsys, extra, message):
    argv = ["eval", "--data", str(beir_dir), "--retriever", "bm25", "--engine", "ray"]
    code = cli.main([*argv, "--reranker", "some-model", *extra])
    assert code == 2
    assert message in capsys.readouterr().err
