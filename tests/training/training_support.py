"""A tiny BEIR data set (a dozen documents and queries) for the training tests."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = [
    ("vitamin", "vitamin d deficiency increased fracture risk in patients"),
    ("tumor", "tumor cells growth increased with protein expression"),
    ("immune", "immune response to virus infection in human blood"),
    ("brain", "brain tissue stem cells lead to reduced cell death"),
    ("heart", "heart disease risk associated with higher blood levels"),
    ("gene", "gene mutation causes cancer in mice model"),
    ("drug", "drug therapy treatment reduced disease activity in clinical trial"),
    ("bacteria", "bacteria infection caused immune response in tissue"),
    ("rna", "rna expression of receptor pathway signal in cells"),
    ("dna", "dna damage leads to tumor growth and cell death"),
    ("stem", "stem cells therapy for heart tissue"),
    ("blood", "blood levels of vitamin associated with lower risk"),
]


def write_beir(
    root: Path,
    *,
    splits: dict[str, list[tuple[str, str, int]]] | None = None,
    extra_queries: dict[str, str] | None = None,
) -> Path:
    """corpus.jsonl (12 docs + 4 distractors), queries.jsonl (12), qrels/train.tsv (10 queries)."""
    root.mkdir(parents=True, exist_ok=True)
    docs = [
        {"_id": f"d{i}", "title": topic, "text": f"{text} study"}
        for i, (topic, text) in enumerate(TOPICS)
    ]
    docs += [
        {"_id": f"x{i}", "title": "study", "text": f"{TOPICS[i][1]} was not the cause"}
        for i in range(4)
    ]
    queries = {
        f"q{i}": f"does {text.split(' ', 3)[0]} {text.split(' ')[1]} cause"
        for i, (_, text) in enumerate(TOPICS)
    }
    queries.update(extra_queries or {})
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in queries.items()) + "\n"
    )
    if splits is None:
        splits = {"train": [(f"q{i}", f"d{i}", 1) for i in range(10)] + [("q0", "x0", 0)]}
    (root / "qrels").mkdir(exist_ok=True)
    for name, rows in splits.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (root / "qrels" / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return root
