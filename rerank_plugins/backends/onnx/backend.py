"""``OnnxBackend``: score padded int64 features with a cached ONNX Runtime CPU session."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..._files import directory_fingerprint
from ..._models import load_pretrained
from ..._validation import check_positive_int
from .cache import (
    MODEL_FILE,
    ExportRecipe,
    build_entry,
    default_cache_root,
    load_entry,
    recipe_key,
    resolve_local_dir,
)
from .export import DEFAULT_OPSET, STANDARD_INPUTS
from .quantize import KEEP_FP32_PATTERNS, KeepFp32
from .session import create_session, physical_cores, require_onnx

Quantize = Literal["int8"]


class OnnxBackend:
    """Scores padded int64 features with an ONNX Runtime CPU session (fp32 or int8).

    The first construction for a model and recipe exports it (and quantizes it) into the
    cache (:mod:`rerank_plugins.backends.onnx.cache`); later ones load the checked entry.

    Args:
        source: Local model directory or hub id (as resolved by the reranker).
        quantize: ``None`` for the fp32 export, ``"int8"`` for dynamic int8 quantization.
        cache_dir: Root of the export cache; defaults to :func:`default_cache_root`.
        num_threads: ONNX Runtime intra-op threads; ``None`` uses the physical core count.
        opset: ONNX opset of the export.
        optimize: Run ONNX Runtime's BERT fusions (attention, LayerNorm, GELU) before saving.
        per_channel, reduce_range: Passed to ``quantize_dynamic`` for ``quantize="int8"``.
        keep_fp32: Feed-forward MatMuls left in fp32 under int8: ``"none"`` (default: every
            MatMul int8; fastest, and it ranked as well as fp32 on SciFact), ``"ffn_output"``
            (the GELU-fed output projections; logits closer to fp32, ~25% slower) or
            ``"ffn"`` (both FFN MatMuls; closest to fp32, most of the speed-up lost).
        spin: Let idle ONNX Runtime threads spin-wait (ORT's default). Off by default: it
            only pays on a dedicated, otherwise idle CPU.
        device, dtype: Accepted for signature parity with the torch backend; only CPU and
            float32 (``"auto"``) are supported.

    Example:
        >>> backend = OnnxBackend("path/to/cross-encoder", quantize="int8")  # doctest: +SKIP
        >>> backend(features).shape  # doctest: +SKIP
        (16, 1)
    """

    def __init__(
        self,
        source: str,
        *,
        quantize: Quantize | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        num_threads: int | None = None,
        opset: int = DEFAULT_OPSET,
        optimize: bool = True,
        per_channel: bool = True,
        reduce_range: bool = False,
        keep_fp32: KeepFp32 = "none",
        spin: bool = False,
        device: str | None = "auto",
        dtype: str | None = "auto",
        revision: str | None = None,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        require_onnx()
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        if device not in (None, "auto", "cpu"):
            raise ValueError(f"backend='onnx' runs on CPU only; got device={device!r}")
        if dtype not in (None, "auto", "float32", "fp32"):
            raise ValueError(
                f"backend='onnx' runs in float32 (or int8 with quantize='int8'); got dtype={dtype!r}"
            )
        if keep_fp32 not in KEEP_FP32_PATTERNS:
            raise ValueError(
                f"keep_fp32 must be one of {sorted(KEEP_FP32_PATTERNS)}, got {keep_fp32!r}"
            )
        check_positive_int(num_threads, "num_threads", allow_none=True)
        from transformers import AutoConfig

        self.device = "cpu"
        #: Precision of the weights the session runs: ``"float32"``, or ``"int8"`` when quantized.
        self.dtype = "int8" if quantize else "float32"
        self.quantize = quantize
        self.source = source
        self.recipe = ExportRecipe(
            opset=opset,
            quantize=quantize,
            optimize=optimize,
            per_channel=per_channel,
            reduce_range=reduce_range,
            keep_fp32=keep_fp32,
            revision=revision,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )
        config_kwargs = {
            k: v
            for k, v in {
                "revision": revision,
                "local_files_only": local_files_only,
                "trust_remote_code": trust_remote_code,
            }.items()
            if v is not None
        }
        self.config = load_pretrained(
            AutoConfig.from_pretrained, source, "cross-encoder", **config_kwargs
        )
        self.num_labels = int(self.config.num_labels)

        local_dir = resolve_local_dir(source, revision, local_files_only)
        self.fingerprint = directory_fingerprint(local_dir)
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
        self.cache_key = recipe_key(self.fingerprint, self.recipe)
        self.cache_path = self.cache_root / self.cache_key

        manifest = load_entry(self.cache_path, self.fingerprint)
        if manifest is None:
            manifest = build_entry(source, self.cache_path, self.recipe, self.fingerprint)
        self.manifest: dict[str, Any] = manifest
        self.model_path = self.cache_path / MODEL_FILE
        self.num_threads = int(num_threads or physical_cores())
        self.session = create_session(self.model_path, self.num_threads, spin=spin)
        present = {i.name for i in self.session.get_inputs()}
        self.input_names: tuple[str, ...] = tuple(
            name for name in STANDARD_INPUTS if name in present
        )

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        inputs = {
            name: np.ascontiguousarray(features[name], dtype=np.int64)
            for name in self.input_names
            if name in features
        }
        if "token_type_ids" in self.input_names and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
        logits = self.session.run(["logits"], inputs)[0]
        return np.asarray(logits, dtype=np.float32).reshape(len(inputs["input_ids"]), -1)

    def __repr__(self) -> str:
        return (
            f"OnnxBackend(source={self.source!r}, quantize={self.quantize!r}, "
            f"threads={self.num_threads}, cache={str(self.cache_path)!r})"
        )
