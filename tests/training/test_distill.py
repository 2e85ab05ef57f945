"""Student construction (N layers spread evenly over the teacher's, first and last kept) and
the teacher's label rows."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rerank_plugins import CrossEncoderReranker, cli
from rerank_plugins.training import LOSSES, MinedQuery
from rerank_plugins.training.distill import student_layer_ids, teacher_scores, truncate_layers
from rerank_plugins.training.train import build_rows


@pytest.mark.parametrize(
    ("total", "keep", "expected"),
    [(6, 3, [0, 2, 5]), (6, 2, [0, 5]), (6, 1, [5]), (12, 4, [0, 4, 7, 11]), (2, 1, [1])],
)
def test_layer_ids(total: int, keep: int, expected: list[int]) -> None:
    assert student_layer_ids(total, keep) == expected


@pytest.mark.parametrize(("keep", "message"), [(0, "positive int"), (6, "must be below")])
def test_bad_layer_counts(keep: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        student_layer_ids(6, keep)


def test_truncated_model_keeps_the_chosen_layers_and_loads(
    tiny_ce_path: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_ce_path)
    top = model.bert.encoder.layer[1].state_dict()
    assert truncate_layers(model, 1) == [1]
    assert len(model.bert.encoder.layer) == 1 and model.config.num_hidden_layers == 1
    for name, tensor in model.bert.encoder.layer[0].state_dict().items():
        assert torch.equal(tensor, top[name])  # the teacher's top layer, unchanged
    model.save_pretrained(tmp_path / "student")
    AutoTokenizer.from_pretrained(tiny_ce_path).save_pretrained(tmp_path / "student")
    student = CrossEncoderReranker(tmp_path / "student", device="cpu")
    assert student.backend.model.config.num_hidden_layers == 1
    assert student.score("q", ["p"]).shape == (1,)


def _mined() -> list[MinedQuery]:
    return [
        MinedQuery("a", "qa", ["d1", "d2"], [1, 2], negatives=["d3", "d4"]),
        MinedQuery("b", "qb", ["d5"], [1], negatives=["d6", "d7"]),
    ]


def _scorer(calls: list[list[tuple[str, str]]]):
    def score_pairs(pairs):  # a score that names the pair, so rows can be checked by eye
        calls.append(list(pairs))
        return [float(ord(q[-1]) * 100 + int(text[1:])) for q, text in pairs]

    return score_pairs


def test_teacher_rows_per_positive_or_per_query_list() -> None:
    calls: list[list[tuple[str, str]]] = []
    pairwise = teacher_scores(_mined(), _scorer(calls), lambda d: d)
    # one row per (query, positive): [positive, *negatives]; the negatives are scored twice
    assert pairwise == [[9701, 9703, 9704], [9702, 9703, 9704], [9805, 9806, 9807]]
    listwise = teacher_scores(_mined(), _scorer(calls), lambda d: d, listwise=True)
    # one row per query: its whole list [*positives, *negatives], every pair scored once
    assert listwise == [[9701, 9702, 9703, 9704], [9805, 9806, 9807]]
    assert [len(c) for c in calls] == [9, 7] and len(set(calls[1])) == 7


def test_listnet_kd_rows_carry_the_teachers_list_scores() -> None:
    mined = _mined()
    teacher = teacher_scores(mined, _scorer([]), lambda d: d, listwise=True)
    columns = build_rows(mined, lambda d: f"text {d}", "listnet_kd", teacher=teacher)
    assert columns["query"] == ["qa", "qb"]
    assert columns["docs"] == [
        ["text d1", "text d2", "text d3", "text d4"],
        ["text d5", "text d6", "text d7"],
    ]
    assert columns["labels"] == teacher
    with pytest.raises(ValueError, match="distils a teacher"):
        build_rows(mined, str, "listnet_kd")
    with pytest.raises(ValueError, match="one teacher row per query"):
        build_rows(mined, str, "listnet_kd", teacher=teacher[:1])
    with pytest.raises(ValueError, match="'b' has 3 documents but 2 teacher scores"):
        build_rows(mined, str, "listnet_kd", teacher=[teacher[0], teacher[1][:2]])


def test_the_cli_offers_every_loss() -> None:
    parser = cli.build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    (option,) = (a for a in sub.choices["tune"]._actions if "--loss" in a.option_strings)
    assert tuple(option.choices) == LOSSES  # the CLI spells them out to stay import-light
