"""``training/train.py``: the mnrl logit scale and its folding into the saved head."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerank_plugins.training.train import fold_logit_scale, make_loss

pytest.importorskip("sentence_transformers")


def test_folding_the_scale_multiplies_every_logit_exactly(tiny_ce_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_ce_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_ce_path)
    batch = tokenizer(
        ["vitamin d", "heart"], ["vitamin d deficiency", "bone"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        before = model(**batch).logits
        fold_logit_scale(model, 10.0)
        after = model(**batch).logits
    assert not torch.allclose(before, torch.zeros_like(before))
    torch.testing.assert_close(after, before * 10.0, rtol=1e-5, atol=1e-6)


def test_a_model_without_a_one_logit_layer_is_refused() -> None:
    import torch

    with pytest.raises(ValueError, match="no one-logit output layer"):
        fold_logit_scale(torch.nn.Sequential(torch.nn.Linear(4, 3)), 10.0)


def test_mnrl_uses_the_scale_and_raw_logits(tiny_ce_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(tiny_ce_path), num_labels=1, device="cpu", local_files_only=True)
    loss = make_loss(model, "mnrl", negatives_per_positive=3, logit_scale=10.0)
    assert loss.scale == 10.0 and loss.activation_fn is None
    assert make_loss(model, "mnrl", negatives_per_positive=3).scale == 1.0
