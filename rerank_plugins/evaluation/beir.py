"""Read BEIR-format data sets: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BeirDataset:
    """A BEIR split: the whole corpus, the queries judged in the split, and their qrels."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def doc_texts(self) -> tuple[list[str], list[str]]:
        """Corpus ids and the text to index for each: ``title + " " + text``."""
        ids = list(self.corpus)
        texts = [
            f"{doc.get('title', '')} {doc.get('text', '')}".strip() for doc in self.corpus.values()
        ]
        return ids, texts


def read_jsonl(path: Path, *, require_id: bool = True) -> list[tuple[int, dict]]:
    """``(line number, record)`` for every non-blank line of a JSON-lines file.

    Raises FileNotFoundError for a missing file and ValueError naming the line for invalid JSON
    (or, with ``require_id``, a record without ``_id``).
    """
    if not path.is_file():
        raise FileNotFoundError(f"BEIR file missing: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            if require_id and "_id" not in row:
                raise ValueError(f"{path}:{number}: record has no '_id'")
            rows.append((number, row))
    return rows


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise FileNotFoundError(f"BEIR qrels missing: {path}")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(reader, 1):
            if not row or (number == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{number}: expected 'query-id corpus-id score'")
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR directory; only queries that have judgments in ``split`` are kept."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"BEIR data directory not found: {root}")
    corpus = {
        str(row["_id"]): {"title": row.get("title") or "", "text": row.get("text") or ""}
        for _, row in read_jsonl(root / "corpus.jsonl")
    }
    qrels = load_qrels(root / "qrels" / f"{split}.tsv")
    all_queries = {
        str(row["_id"]): row.get("text") or "" for _, row in read_jsonl(root / "queries.jsonl")
    }
    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        raise ValueError(
            f"{len(missing)} judged queries are missing from queries.jsonl: {missing[:5]}"
        )
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)
