"""Reading a tuned model directory's blend recommendation (rerank_plugins._tuned)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_plugins._tuned import (
    REPORT_FILE,
    NoRecommendationError,
    read_recommended_blend,
    recommended_blend_weight,
    resolve_blend_weight,
)


def _write(directory: Path, text: str) -> Path:
    path = directory / REPORT_FILE
    path.write_text(text, encoding="utf-8")
    return path


def _report(weight: object) -> str:
    return json.dumps({"format_version": 1, "evaluation": {"recommended_blend_weight": weight}})


class DirectoryModel:
    """A reranker stand-in that, like CrossEncoderReranker, keeps where it was loaded from."""

    def __init__(self, model_name: object) -> None:
        self.model_name = model_name


def test_the_recommended_weight_is_read_back_from_a_model_directory(tmp_path: Path) -> None:
    _write(tmp_path, _report(0.6))
    assert read_recommended_blend(tmp_path) == 0.6
    assert recommended_blend_weight(tmp_path) == 0.6
    _write(tmp_path, _report(None))  # the model alone ranked best: a recommendation too
    assert read_recommended_blend(tmp_path) is None
    assert recommended_blend_weight(tmp_path) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "has no training_report.json"),
        ('{"evaluation": {"after": {}}}', "records no recommended_blend_weight"),  # older run
        ("{not json", "records no recommended_blend_weight"),
        ("[]", "records no recommended_blend_weight"),
        (_report(1.5), "not a number in \\[0, 1\\]"),
        (_report("0.4"), "not a number in \\[0, 1\\]"),
        (_report(True), "not a number in \\[0, 1\\]"),
    ],
)
def test_no_recommendation_is_an_error_that_names_it(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    if text is not None:
        _write(tmp_path, text)
    with pytest.raises(NoRecommendationError, match=problem):
        read_recommended_blend(tmp_path)
    assert recommended_blend_weight(tmp_path) is None  # the lenient form, for hints


def test_resolve_reads_the_rerankers_own_directory(tmp_path: Path) -> None:
    _write(tmp_path, _report(0.4))
    assert resolve_blend_weight("recommended", DirectoryModel(str(tmp_path))) == 0.4
    assert resolve_blend_weight(0.7, DirectoryModel(str(tmp_path))) == 0.7  # numbers pass
    assert resolve_blend_weight(None, object()) is None


def test_resolve_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="None or 'recommended', got 'best'"):
        resolve_blend_weight("best", DirectoryModel(str(tmp_path)))
    with pytest.raises(NoRecommendationError, match="this object keeps no model_name"):
        resolve_blend_weight("recommended", object())
    hub_id = "cross-encoder/ms-marco-MiniLM-L-6-v2"
    with pytest.raises(NoRecommendationError, match="was loaded from 'cross-encoder/"):
        resolve_blend_weight("recommended", DirectoryModel(hub_id))
    with pytest.raises(NoRecommendationError, match=r"has no training_report\.json"):
        resolve_blend_weight("recommended", DirectoryModel(str(tmp_path)))
