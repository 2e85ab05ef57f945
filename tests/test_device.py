"""Device and dtype resolution."""

from __future__ import annotations

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
