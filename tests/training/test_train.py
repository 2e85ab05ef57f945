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


# ---------------------------------------------------------------------------- precision
def test_auto_precision_follows_the_reranker_dtype_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from rerank_plugins import _device
    from rerank_plugins.training.train import resolve_precision

    monkeypatch.delenv(_device.CPU_AUTO_DTYPE_ENV, raising=False)
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"  # AMX / AVX512-BF16
    monkeypatch.setenv(_device.CPU_AUTO_DTYPE_ENV, "float32")
    assert resolve_precision("auto", "cpu") == "fp32"  # a fleet pinned to float32
    monkeypatch.delenv(_device.CPU_AUTO_DTYPE_ENV)
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"  # bf16 would be emulated, slower
    assert resolve_precision("fp32", "cpu") == "fp32"


def test_bad_or_slow_precisions_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from rerank_plugins import _device
    from rerank_plugins.training.train import resolve_precision

    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", "cpu")
    with pytest.raises(ValueError, match="precision='fp16' needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no AMX/AVX512-BF16"):
        assert resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", "float32"), ("bf16", "bfloat16")])
def test_training_runs_in_the_precision_it_reports(
    tiny_ce_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    one_thread: None,
    precision: str,
    dtype: str,
) -> None:
    """The head's output dtype during training steps: bf16 autocast really is on (or off)."""
    import warnings
    from types import SimpleNamespace

    import torch

    from rerank_plugins.training import train as train_module

    real = train_module.require_train()
    seen: set[torch.dtype] = set()

    def cross_encoder(*args, **kwargs):
        model = real.CrossEncoder(*args, **kwargs)
        head = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
        return model

    monkeypatch.setattr(
        train_module,
        "require_train",
        lambda: SimpleNamespace(**{**vars(real), "CrossEncoder": cross_encoder}),
    )
    columns = {
        "query": ["vitamin d", "heart attack", "bone loss", "fever"],
        "positive": ["vitamin d deficiency", "heart attack risk", "bone density", "fever cause"],
        "negative_1": ["heart", "vitamin", "fever", "bone"],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 on a CPU without native bf16
        _, summary = train_module.train(
            tiny_ce_path,
            columns,
            loss="mnrl",
            work_dir=tmp_path / "trainer",
            negatives_per_positive=1,
            max_length=32,
            device="cpu",
            epochs=1.0,
            max_steps=2,
            batch_size=2,
            lr=1e-4,
            head_lr=None,
            seed=0,
            precision=precision,
            show_progress=False,
        )
    assert summary["precision"] == precision and summary["steps"] == 2
    assert seen == {getattr(torch, dtype)}
