"""Training data: split selection, a held-out eval slice disjoint from training, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_support import write_beir

from rerank_plugins.training import TrainingDataError, load_training_data


def test_held_out_eval_is_disjoint_and_seeded(tiny_beir: Path) -> None:
    data = load_training_data(tiny_beir, eval_fraction=0.2, seed=3)
    assert set(data.train_qrels).isdisjoint(data.eval_qrels)
    assert len(data.eval_qrels) == 2  # ceil(0.2 * 10)
    assert set(data.train_qrels) | set(data.eval_qrels) == {f"q{i}" for i in range(10)}
    assert "held out (seed 3)" in data.eval_source
    again = load_training_data(tiny_beir, eval_fraction=0.2, seed=3)
    assert again.eval_qrels == data.eval_qrels
    other = load_training_data(tiny_beir, eval_fraction=0.2, seed=4)
    assert set(other.train_qrels).isdisjoint(other.eval_qrels)
    assert (
        data.text("d0") == "vitamin vitamin d deficiency increased fracture risk in patients study"
    )


def test_dev_split_is_the_default_eval_split(tmp_path: Path) -> None:
    root = write_beir(
        tmp_path / "beir",
        splits={
            "train": [(f"q{i}", f"d{i}", 1) for i in range(8)],
            "dev": [("q8", "d8", 1), ("q9", "d9", 2)],
        },
    )
    data = load_training_data(root)
    assert data.eval_source == "qrels/dev.tsv"
    assert set(data.eval_qrels) == {"q8", "q9"}
    assert len(data.train_qrels) == 8  # nothing held out of train when dev exists


@pytest.mark.parametrize(
    ("splits", "kwargs", "message"),
    [
        (
            {"test": [("q0", "d0", 1)]},
            {},
            r"training split 'train' has no qrels: .*train\.tsv does not exist \(qrels files found: test\)",
        ),
        ({"train": [("q0", "d0", 0)]}, {}, r"training split 'train' has no positive judgments"),
        (
            {"train": [("q0", "nope", 1), ("q1", "d1", 1)]},
            {},
            r"train\.tsv names 1 corpus ids missing from corpus\.jsonl: \['nope'\]",
        ),
        (
            {"train": [("ghost", "d0", 1), ("q1", "d1", 1)]},
            {},
            r"train\.tsv names 1 query ids missing from queries\.jsonl: \['ghost'\]",
        ),
        (
            {"train": [("q0", "d0", 1), ("q1", "d1", 1)]},
            {"eval_split": "dev"},
            r"eval split 'dev' has no qrels",
        ),
        (
            {"train": [("q0", "d0", 1), ("q1", "d1", 1)]},
            {"eval_split": "train"},
            r"eval split 'train' is the training split",
        ),
        (
            {"train": [("q0", "d0", 1), ("q1", "d1", 1)], "dev": [("q1", "d1", 1)]},
            {},
            r"1 queries are judged in both 'train' and 'dev'",
        ),
        ({"train": [("q0", "d0", 1)]}, {}, r"cannot hold out eval queries from 1 query"),
        (
            {"train": [("q0", "d0", 1), ("q1", "d1", 1)]},
            {"eval_fraction": 1.5},
            r"eval_fraction must be between 0 and 1",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(
    tmp_path: Path, splits: dict, kwargs: dict, message: str
) -> None:
    root = write_beir(tmp_path / "beir", splits=splits)
    with pytest.raises(TrainingDataError, match=message) as info:
        load_training_data(root, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_directory_and_blank_query(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_training_data(tmp_path / "absent")
    root = write_beir(
        tmp_path / "beir",
        splits={"train": [("q0", "d0", 1), ("blank", "d1", 1)]},
        extra_queries={"blank": "  "},
    )
    with pytest.raises(TrainingDataError, match=r"empty text for judged queries \['blank'\]"):
        load_training_data(root)
