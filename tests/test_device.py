"""Device and dtype resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rerank_plugins._device import resolve_device, resolve_dtype


def test_auto_device_and_dtype():
    device = resolve_device("auto")
    assert resolve_device(None) == device
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("float32", torch.float32), ("fp16", torch.float16), ("BF16", torch.bfloat16)],
)
def test_named_dtypes(name, dtype):
    assert resolve_dtype(name, torch.device("cpu")) == dtype
    assert resolve_dtype(dtype, torch.device("cpu")) == dtype


def test_bad_dtype_and_device():
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("int8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(RuntimeError):
        resolve_device("not-a-device")


def test_bf16_on_cpu_warns_only_without_native_support(monkeypatch):
    import warnings

    from rerank_plugins import _device

    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="AMX"):
        _device.warn_if_slow_dtype(torch.bfloat16, torch.device("cpu"))
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _device.warn_if_slow_dtype(torch.bfloat16, torch.device("cpu"))
        _device.warn_if_slow_dtype(torch.float32, torch.device("cpu"))
    assert isinstance(_device.cpu_supports_fast_bf16(), bool)


def test_bf16_reranker_runs_on_cpu_and_returns_float32(tiny_ce_path):
    import warnings

    from rerank_plugins import CrossEncoderReranker

    passages = ["vitamin d deficiency", "the cell", "brain tumor growth", "blood levels"]
    fp32 = CrossEncoderReranker(tiny_ce_path, device="cpu").score("vitamin d", passages)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # CPUs without AMX warn; fine here
        bf16 = CrossEncoderReranker(tiny_ce_path, device="cpu", dtype="bfloat16")
    assert bf16.backend.dtype == torch.bfloat16
    got = bf16.score("vitamin d", passages)
    assert got.dtype == np.float32 and got.shape == fp32.shape
    assert np.all(np.isfinite(got))
    assert np.abs(got - fp32).max() < 0.05  # bf16 keeps ~3 significant digits
