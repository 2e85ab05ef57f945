"""Training data for ``tune``: a BEIR directory, the split to learn from and a held-out eval split.

The eval split is a named qrels file (default ``dev`` when the directory has one) or, when
there is none, a seeded random slice of the training queries (``eval_fraction``) that is then
removed from training. Either way the eval queries are disjoint from the training queries, and
every id a qrels file names must exist in ``corpus.jsonl`` / ``queries.jsonl``: a typo in a
qrels file fails here, in one line naming the file and the ids, not as a silent zero later.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluation.beir import BeirDataset, load_qrels, read_jsonl

logger = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]

#: The eval split used when ``eval_split`` is None and the directory has it.
DEFAULT_EVAL_SPLIT = "dev"
#: Held-out share of the training queries when there is no eval split file.
DEFAULT_EVAL_FRACTION = 0.1


class TrainingDataError(ValueError):
    """The BEIR directory or a split cannot be trained on; the message names what is wrong."""


@dataclass
class TrainingData:
    """The corpus, all queries, the training qrels and the disjoint eval qrels."""

    dataset: BeirDataset
    train_qrels: Qrels
    eval_qrels: Qrels
    split: str
    eval_source: str  # "qrels/dev.tsv" or "12 of 120 'train' queries held out (seed 0)"

    @property
    def queries(self) -> dict[str, str]:
        return self.dataset.queries

    def queries_for(self, qrels: Mapping[str, object]) -> dict[str, str]:
        """Query id -> text for the queries of ``qrels``, in qrels order."""
        return {qid: self.dataset.queries[qid] for qid in qrels}

    def text(self, doc_id: str) -> str:
        """The passage text a model sees for ``doc_id``: ``title + " " + text``."""
        doc = self.dataset.corpus[doc_id]
        return f"{doc.get('title', '')} {doc.get('text', '')}".strip()

    def summary(self) -> dict[str, object]:
        return {
            "documents": len(self.dataset.corpus),
            "split": self.split,
            "train_queries": len(self.train_qrels),
            "train_positives": count_positives(self.train_qrels),
            "eval_source": self.eval_source,
            "eval_queries": len(self.eval_qrels),
            "eval_positives": count_positives(self.eval_qrels),
        }


def positives(judged: Mapping[str, int]) -> list[str]:
    """Judged-relevant doc ids (grade > 0), highest grade first, then in file order."""
    relevant = [(doc, grade) for doc, grade in judged.items() if grade > 0]
    return [doc for doc, _ in sorted(relevant, key=lambda item: -item[1])]


def count_positives(qrels: Mapping[str, Mapping[str, int]]) -> int:
    return sum(len(positives(judged)) for judged in qrels.values())


def available_splits(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "qrels").glob("*.tsv"))


def _read_split(root: Path, split: str, what: str) -> Qrels:
    path = root / "qrels" / f"{split}.tsv"
    if not path.is_file():
        found = available_splits(root)
        raise TrainingDataError(
            f"{what} split {split!r} has no qrels: {path} does not exist "
            f"(qrels files found: {', '.join(found) if found else 'none'})"
        )
    qrels = load_qrels(path)
    if count_positives(qrels) == 0:
        raise TrainingDataError(
            f"{what} split {split!r} has no positive judgments (grade > 0) in {path}"
        )
    return qrels


def _check_ids(
    qrels: Qrels, path: Path, corpus: Mapping[str, object], queries: Mapping[str, str]
) -> None:
    missing_queries = [qid for qid in qrels if qid not in queries]
    if missing_queries:
        raise TrainingDataError(
            f"{path} names {len(missing_queries)} query ids missing from queries.jsonl: "
            f"{missing_queries[:5]}"
        )
    missing_docs = sorted({doc for judged in qrels.values() for doc in judged if doc not in corpus})
    if missing_docs:
        raise TrainingDataError(
            f"{path} names {len(missing_docs)} corpus ids missing from corpus.jsonl: "
            f"{missing_docs[:5]}"
        )
    blank = [qid for qid in qrels if not queries[qid].strip()]
    if blank:
        raise TrainingDataError(f"queries.jsonl has empty text for judged queries {blank[:5]}")


def hold_out(qrels: Qrels, fraction: float, seed: int) -> tuple[Qrels, Qrels]:
    """Split ``qrels`` by query: a seeded random ``fraction`` of the queries with a positive."""
    if not 0.0 < fraction < 1.0:
        raise TrainingDataError(f"eval_fraction must be between 0 and 1, got {fraction!r}")
    candidates = sorted(qid for qid, judged in qrels.items() if positives(judged))
    if len(candidates) < 2:
        raise TrainingDataError(
            f"cannot hold out eval queries from {len(candidates)} query with a positive "
            "judgment; add a dev split (qrels/dev.tsv) or more judged queries"
        )
    count = min(len(candidates) - 1, max(1, math.ceil(fraction * len(candidates))))
    picked = set(np.random.default_rng(seed).permutation(len(candidates))[:count].tolist())
    held = {candidates[i] for i in picked}
    train = {qid: judged for qid, judged in qrels.items() if qid not in held}
    evaluation = {qid: qrels[qid] for qid in candidates if qid in held}
    return train, evaluation


def load_training_data(
    path: str | os.PathLike[str],
    *,
    split: str = "train",
    eval_split: str | None = None,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    seed: int = 0,
) -> TrainingData:
    """Read a BEIR directory and pick the training and eval queries.

    Args:
        path: Directory with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: The qrels split to learn from.
        eval_split: A qrels split to evaluate on; None picks ``dev`` when present, else holds
            out ``eval_fraction`` of the training queries (seeded by ``seed``).
        eval_fraction: Share of the training queries held out when there is no eval split.
        seed: Seed of the held-out selection.

    Example:
        >>> data = load_training_data("../shared/data/scifact")  # doctest: +SKIP
        >>> data.summary()["eval_source"]  # doctest: +SKIP
        "81 of 809 'train' queries held out (seed 0)"
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise TrainingDataError(
            f"data directory {str(root)!r} {what}; pass a BEIR directory "
            "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"
        )
    if eval_split is not None and eval_split == split:
        raise TrainingDataError(
            f"eval split {eval_split!r} is the training split; pick another split or leave "
            "it unset to hold out a slice of the training queries"
        )
    train_qrels = _read_split(root, split, "training")
    named_eval = eval_split
    if named_eval is None and (root / "qrels" / f"{DEFAULT_EVAL_SPLIT}.tsv").is_file():
        named_eval = DEFAULT_EVAL_SPLIT
    eval_qrels = _read_split(root, named_eval, "eval") if named_eval is not None else None

    corpus = {
        str(row["_id"]): {"title": row.get("title") or "", "text": row.get("text") or ""}
        for _, row in read_jsonl(root / "corpus.jsonl")
    }
    queries = {
        str(row["_id"]): str(row.get("text") or "") for _, row in read_jsonl(root / "queries.jsonl")
    }
    _check_ids(train_qrels, root / "qrels" / f"{split}.tsv", corpus, queries)
    if eval_qrels is not None:
        assert named_eval is not None
        _check_ids(eval_qrels, root / "qrels" / f"{named_eval}.tsv", corpus, queries)
        overlap = sorted(set(train_qrels) & set(eval_qrels))
        if overlap:
            raise TrainingDataError(
                f"{len(overlap)} queries are judged in both {split!r} and {named_eval!r} "
                f"(e.g. {overlap[:5]}); held-out evaluation needs disjoint queries"
            )
        if named_eval == "test":
            logger.warning(
                "evaluating on the 'test' split while tuning: keep 'test' for the final report"
            )
        source = f"qrels/{named_eval}.tsv"
    else:
        total = len(train_qrels)
        train_qrels, eval_qrels = hold_out(train_qrels, eval_fraction, seed)
        source = f"{len(eval_qrels)} of {total} {split!r} queries held out (seed {seed})"
    eval_qrels = {qid: judged for qid, judged in eval_qrels.items() if positives(judged)}
    if not any(positives(judged) for judged in train_qrels.values()):
        raise TrainingDataError(f"no training query with a positive judgment is left in {split!r}")
    used = set(train_qrels) | set(eval_qrels)
    dataset = BeirDataset(
        corpus=corpus,
        queries={qid: text for qid, text in queries.items() if qid in used},
        qrels=train_qrels,
    )
    return TrainingData(
        dataset=dataset,
        train_qrels=train_qrels,
        eval_qrels=eval_qrels,
        split=split,
        eval_source=source,
    )
