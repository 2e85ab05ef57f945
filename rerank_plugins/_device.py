"""Pick the device and precision a model runs at: CUDA, then MPS, then CPU."""

from __future__ import annotations

import warnings

import torch

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> cuda if available, then mps, then cpu; otherwise as given."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"`` -> bf16 on CUDA that supports it, else fp16 on CUDA, fp32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(
            f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}"
        ) from None


def cpu_supports_fast_bf16() -> bool:
    """True when this CPU runs bfloat16 matrix maths natively (AMX or AVX512-BF16).

    There, ``dtype="bfloat16"`` on CPU is several times faster than float32 (measured in
    docs/benchmarks.md); elsewhere bf16 is emulated and slower than float32.
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def warn_if_slow_dtype(dtype: torch.dtype, device: torch.device) -> None:
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_supports_fast_bf16():
        warnings.warn(
            "bfloat16 on this CPU has no AMX/AVX512-BF16 support and will likely be slower "
            "than float32; use dtype='float32' or the ONNX backend",
            RuntimeWarning,
            stacklevel=3,
        )
    if device.type == "cpu" and dtype == torch.float16:
        warnings.warn(
            "float16 on CPU is slow and can be inaccurate; use float32 or bfloat16",
            RuntimeWarning,
            stacklevel=3,
        )
