"""Pick the device, precision and CPU threads a model runs at: CUDA, then MPS, then CPU."""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator

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
    """``"auto"`` -> the fastest precision that keeps the ranking, per device.

    CUDA: bf16 where supported, else fp16. CPU: bf16 where :func:`cpu_supports_fast_bf16`
    says the CPU runs it natively (AMX or AVX512-BF16: 3.68x sentence-transformers with
    SciFact NDCG@10 +0.0032 over all 300 test queries, docs/benchmarks.md), else fp32 (bf16
    is emulated and slower there). MPS: fp32. ``"float32"`` is always the exact path, and
    ``RERANK_PLUGINS_CPU_AUTO_DTYPE=float32`` in the environment pins ``"auto"`` on CPU to it
    (for fleets that must score identically on every CPU; the test suite sets it).
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and _cpu_auto_bf16():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(
            f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}"
        ) from None


#: Set to ``float32`` to keep ``dtype="auto"`` at float32 on CPU even where bf16 is native.
CPU_AUTO_DTYPE_ENV = "RERANK_PLUGINS_CPU_AUTO_DTYPE"


def _cpu_auto_bf16() -> bool:
    pinned = os.environ.get(CPU_AUTO_DTYPE_ENV, "").strip().lower()
    if pinned not in ("", "auto", "float32", "fp32"):
        raise ValueError(
            f"{CPU_AUTO_DTYPE_ENV} must be 'auto' or 'float32', got {os.environ[CPU_AUTO_DTYPE_ENV]!r}"
        )
    return pinned in ("", "auto") and cpu_supports_fast_bf16()


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


# ---------------------------------------------------------------------------- CPU threads
@functools.lru_cache(maxsize=1)
def _cpuinfo_cores() -> int:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; 0 when it can't be read."""
    cores: set[tuple[str, str]] = set()
    try:
        physical = core = ""
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not key and (physical or core):
                    cores.add((physical, core))
                    physical = core = ""
        if physical or core:
            cores.add((physical, core))
    except OSError:
        pass
    return len(cores)


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads do not help GEMMs).

    The machine's physical cores, capped by the CPU affinity mask (``taskset``, container
    cpusets), which torch's own default ignores.
    """
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    return max(1, min(allowed, _cpuinfo_cores() or allowed))


def cpu_contended() -> bool:
    """True when more tasks are runnable than this process has cores (1-minute load average
    above ``physical_cores() + 0.5``): other work then preempts our threads mid-pass."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on Linux/macOS
        return False
    return load > physical_cores() + 0.5


#: Environment variables through which a process chooses its own intra-op thread count.
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def torch_threads_for_call(num_threads: int | None) -> int | None:
    """Intra-op threads one of our torch forward passes should use; ``None``: leave as is.

    An explicit ``num_threads`` wins. Otherwise the process's count is kept when the process
    chose it through ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, and capped at
    :func:`physical_cores` when it is above it (torch counts every core of the machine, not
    the ones this process may use, so a pinned or containerised process would oversubscribe).
    """
    if num_threads is not None:
        return num_threads
    if any(os.environ.get(name) for name in _THREAD_ENV):
        return None
    cores = physical_cores()
    return cores if torch.get_num_threads() > cores else None


@contextlib.contextmanager
def intra_op_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` torch intra-op threads, then restore the count.

    Scoped, so a reranker's setting never changes the thread count the rest of the process
    (the first stage, an LLM client, other models) runs with. ``None`` changes nothing.
    """
    previous = torch.get_num_threads()
    if num_threads is None or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
