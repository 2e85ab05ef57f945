"""Device and dtype resolution."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rerank_plugins._device import resolve_device, resolve_dtype


def test_auto_device_and_dtype(monkeypatch):
    from rerank_plugins import _device

    device = resolve_device("auto")
    assert resolve_device(None) == device
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps")
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: False)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32


def test_auto_dtype_on_cpu_is_bf16_only_where_the_cpu_runs_it_natively(monkeypatch):
    from rerank_plugins import _device

    monkeypatch.delenv(_device.CPU_AUTO_DTYPE_ENV, raising=False)
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: True)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype(None, torch.device("cpu")) == torch.bfloat16
    # float32 stays the exact path, and other devices do not ask the CPU
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("mps")) == torch.float32
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: False)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_the_environment_can_pin_auto_to_float32_on_cpu(monkeypatch):
    from rerank_plugins import _device

    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: True)
    monkeypatch.setenv(_device.CPU_AUTO_DTYPE_ENV, "float32")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setenv(_device.CPU_AUTO_DTYPE_ENV, "int4")
    with pytest.raises(ValueError, match="RERANK_PLUGINS_CPU_AUTO_DTYPE must be"):
        resolve_dtype("auto", torch.device("cpu"))


@pytest.mark.parametrize(("native", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_reranker_and_embedder_auto_dtype_follow_the_cpu_check(
    monkeypatch, tiny_ce_path, tiny_embedder_path, native, dtype
):
    import warnings

    from rerank_plugins import CrossEncoderReranker, _device
    from rerank_plugins.cross_encoder import CPU_HALF_TOKENS_PER_BATCH, CPU_TOKENS_PER_BATCH
    from rerank_plugins.hybrid.dense import Embedder

    monkeypatch.delenv(_device.CPU_AUTO_DTYPE_ENV, raising=False)
    monkeypatch.setattr(_device, "cpu_supports_fast_bf16", lambda: native)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # auto never picks a slow dtype
        reranker = CrossEncoderReranker(tiny_ce_path, device="cpu")
        embedder = Embedder(str(tiny_embedder_path), device="cpu")
    assert reranker.backend.dtype == dtype
    assert reranker.backend.model.dtype == dtype
    budget = CPU_HALF_TOKENS_PER_BATCH if native else CPU_TOKENS_PER_BATCH
    assert reranker.max_tokens_per_batch == budget
    assert embedder.dtype == dtype
    exact = CrossEncoderReranker(tiny_ce_path, device="cpu", dtype="float32")
    assert exact.backend.dtype == torch.float32


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


# ---------------------------------------------------------------------------- CPU threads
def test_physical_cores_is_capped_by_the_affinity_mask(monkeypatch):
    from rerank_plugins import _device

    assert 1 <= _device.physical_cores() <= (os.cpu_count() or 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert _device.physical_cores() == 1


def test_threads_for_a_call_explicit_env_and_cap(monkeypatch):
    from rerank_plugins import _device

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_device, "physical_cores", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert _device.torch_threads_for_call(3) == 3  # explicit wins
    assert _device.torch_threads_for_call(None) == 2  # capped: never oversubscribe
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert _device.torch_threads_for_call(None) is None  # within the cores: left alone
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert _device.torch_threads_for_call(None) is None  # the process chose it


def test_intra_op_threads_is_scoped():
    from rerank_plugins._device import intra_op_threads

    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_num_threads_applies_to_the_forward_pass_only(tiny_ce_path):
    """Regression: num_threads used to call torch.set_num_threads from the constructor."""
    from rerank_plugins import CrossEncoderReranker

    before = torch.get_num_threads()
    reranker = CrossEncoderReranker(tiny_ce_path, device="cpu", num_threads=1)
    assert torch.get_num_threads() == before
    seen: list[int] = []
    reranker.backend.model.register_forward_pre_hook(
        lambda module, args: seen.append(torch.get_num_threads())
    )
    reranker.score("vitamin d", ["vitamin d deficiency", "the cell"])
    assert seen == [1]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        CrossEncoderReranker(tiny_ce_path, device="cpu", num_threads=0)


@pytest.mark.parametrize(
    ("contended", "num_threads", "expected"),
    [(False, None, 1024), (True, None, 8192), (True, 1, 1024)],
)
def test_default_fp32_budget_grows_only_when_contended_and_multithreaded(
    monkeypatch, tiny_ce_path, contended, num_threads, expected
):
    import rerank_plugins.cross_encoder as cross_encoder
    from rerank_plugins import CrossEncoderReranker, _device

    monkeypatch.setattr(_device, "cpu_contended", lambda: contended)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(_device, "physical_cores", lambda: 2)
    budgets: list[int] = []
    real = cross_encoder.plan_batches

    def spy(lengths, batch_size, max_tokens):
        budgets.append(max_tokens)
        return real(lengths, batch_size, max_tokens)

    monkeypatch.setattr(cross_encoder, "plan_batches", spy)
    reranker = CrossEncoderReranker(tiny_ce_path, device="cpu", num_threads=num_threads)
    reranker.score("vitamin d", ["vitamin d deficiency", "the cell"])
    explicit = CrossEncoderReranker(tiny_ce_path, device="cpu", max_tokens_per_batch=1024)
    explicit.score("vitamin d", ["vitamin d deficiency"])
    assert budgets == [expected, 1024]
    assert reranker.max_tokens_per_batch == cross_encoder.CPU_TOKENS_PER_BATCH


def test_cpu_contended_reads_the_load_average(monkeypatch):
    from rerank_plugins import _device

    monkeypatch.setattr(_device, "physical_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 0.0, 0.0))
    assert not _device.cpu_contended()
    monkeypatch.setattr(os, "getloadavg", lambda: (3.1, 0.0, 0.0))
    assert _device.cpu_contended()
