"""``training/settings.py``: defaults that depend on the run."""

from __future__ import annotations

import pytest

from rerank_plugins.training.settings import resolve_logit_scale, resolve_pseudo_queries
from rerank_plugins.training.train import NEW_HEAD_LOGIT_SCALE


@pytest.mark.parametrize(
    ("requested", "new_head", "distils", "expected"),
    [
        ("auto", True, False, 728),  # a bi-encoder base learning from judgements
        ("auto", False, False, 0),  # a cross-encoder already scores pairs
        ("auto", True, True, 0),  # distillation: pseudo-queries cost teacher time, opt in
        (50, False, False, 50),  # an explicit count always wins
        (0, True, False, 0),
    ],
)
def test_auto_pseudo_queries_only_for_a_new_head_on_judgements(
    requested: int | str, new_head: bool, distils: bool, expected: int
) -> None:
    got = resolve_pseudo_queries(requested, new_head=new_head, distils=distils, train_queries=728)
    assert got == expected


@pytest.mark.parametrize(
    ("requested", "loss", "new_head", "expected"),
    [
        (None, "mnrl", True, NEW_HEAD_LOGIT_SCALE),  # a new head's logits start near zero
        (None, "mnrl", False, 1.0),  # a cross-encoder's logits already have their scale
        (4.0, "mnrl", True, 4.0),  # an explicit scale always wins
        (None, "bce", True, None),  # losses without a softmax scale have none
    ],
)
def test_logit_scale_default_follows_the_head(
    requested: float | None, loss: str, new_head: bool, expected: float | None
) -> None:
    assert resolve_logit_scale(requested, loss=loss, new_head=new_head) == expected


def test_the_cli_and_the_function_share_the_measured_defaults():
    """3 epochs over the judged queries, no titles: the recipe chosen on the held-out slice
    (docs/benchmarks.md, seventh session); the CLI must not drift from ``tune``."""
    import inspect

    from rerank_plugins.cli import build_parser
    from rerank_plugins.training import tune

    defaults = inspect.signature(tune).parameters
    args = build_parser().parse_args(["tune", "--data", "D", "--out", "O"])
    for name in ("epochs", "pseudo_queries", "negatives_per_query", "max_length", "lr"):
        assert getattr(args, name) == defaults[name].default, name
    assert (args.epochs, args.pseudo_queries) == (3.0, 0)
