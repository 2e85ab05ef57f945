"""BEIR loading: every malformed input names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerank_plugins.evaluation.beir import read_jsonl


def test_read_jsonl_keeps_line_numbers_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "a"}\n\n{"_id": "b", "text": "x"}\n', encoding="utf-8")
    assert read_jsonl(path) == [(1, {"_id": "a"}), (3, {"_id": "b", "text": "x"})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_id": "a"}\n{"_id": \n', ":2: invalid JSON"),
        ('{"_id": "a"}\n["a list"]\n', ":2: expected a JSON object"),
        ('{"text": "no id"}\n', ":1: record has no '_id'"),
    ],
)
def test_read_jsonl_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_jsonl(path)


def test_read_jsonl_without_id_requirement_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text('{"text": "no id"}\n', encoding="utf-8")
    assert read_jsonl(path, require_id=False) == [(1, {"text": "no id"})]
    with pytest.raises(FileNotFoundError, match="missing"):
        read_jsonl(tmp_path / "absent.jsonl")
