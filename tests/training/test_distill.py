"""Student construction: N layers spread evenly over the teacher's, first and last kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerank_plugins import CrossEncoderReranker
from rerank_plugins.training.distill import student_layer_ids, truncate_layers


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
