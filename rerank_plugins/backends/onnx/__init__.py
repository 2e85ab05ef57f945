"""ONNX Runtime CPU inference for Hugging Face sequence-classification cross-encoders.

One module per job: :mod:`.export` (``torch.onnx.export`` with dynamic batch/sequence axes),
:mod:`.quantize` (ONNX Runtime's BERT fusions and dynamic int8 recipes), :mod:`.cache` (the
on-disk export cache keyed by model fingerprint, recipe and toolchain, with a parity check
against torch before anything is cached), :mod:`.session` (CPU session options, physical
cores) and :mod:`.backend` (:class:`OnnxBackend`, what ``CrossEncoderReranker(...,
backend="onnx")`` runs). Needs the ``[onnx]`` extra; see docs/cpu_fast_path.md.

The functions below are the public surface the benchmarks build on::

    from rerank_plugins.backends import onnx as ort_backend

    info = ort_backend.export_onnx(model_dir, fp32_path)
    ort_backend.optimize_graph(fp32_path, info)
    ort_backend.quantize_dynamic_int8(fp32_path, int8_path)
    session = ort_backend.create_session(int8_path, num_threads=2)
"""

from __future__ import annotations

from .backend import OnnxBackend, Quantize
from .cache import (
    EXPORT_FORMAT,
    MANIFEST_FILE,
    MODEL_FILE,
    ExportRecipe,
    OnnxCacheWarning,
    cache_key,
    default_cache_root,
)
from .export import DEFAULT_OPSET, export_onnx
from .quantize import (
    KEEP_FP32_PATTERNS,
    KeepFp32,
    optimize_graph,
    quantize_dynamic_int8,
    quantize_int8,
)
from .session import create_session, physical_cores

__all__ = [
    "DEFAULT_OPSET",
    "EXPORT_FORMAT",
    "KEEP_FP32_PATTERNS",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "ExportRecipe",
    "KeepFp32",
    "OnnxBackend",
    "OnnxCacheWarning",
    "Quantize",
    "cache_key",
    "create_session",
    "default_cache_root",
    "export_onnx",
    "optimize_graph",
    "physical_cores",
    "quantize_dynamic_int8",
    "quantize_int8",
]
