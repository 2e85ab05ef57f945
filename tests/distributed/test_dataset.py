"""rerank_dataset on a local Ray instance: same scores as in-process, every row once, columns kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("ray.data", reason='needs the [ray] extra: pip install "rerank-plugins[ray]"')
pa = pytest.importorskip("pyarrow")

from rerank_plugins import CrossEncoderReranker  # noqa: E402
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
