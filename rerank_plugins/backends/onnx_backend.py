"""ONNX Runtime CPU inference for Hugging Face sequence-classification cross-encoders.

The model is exported once with ``torch.onnx.export`` (dynamic batch and sequence axes),
optionally fused with ONNX Runtime's BERT graph optimizer and dynamically quantized to int8,
and cached on disk. Later constructions load the cached ``.onnx`` file directly, after checking
its sha256 against the manifest written next to it.

Cache layout (``<root>`` is ``cache_dir``, else ``$RERANK_PLUGINS_CACHE/onnx``, else
``~/.cache/rerank-plugins/onnx``)::

    <root>/<key>/model.onnx
    <root>/<key>/manifest.json

``<key>`` hashes the source model's fingerprint (file names, sizes and mtimes), the opset, the
quantization mode, the graph-optimization flag and the versions of torch, transformers, onnx
and onnxruntime, so a changed model or toolchain gets a fresh export. Entries are written to a
temporary directory and moved into place with :func:`os.replace`, so a crashed or concurrent
export never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._device import physical_cores
from .._files import cache_root, directory_fingerprint, sha256_file
from .._models import offline_hint, pretrained_kwargs

logger = logging.getLogger(__name__)

Quantize = Literal["int8"]

#: Bump when the export recipe changes in a way that makes old cache entries wrong.
EXPORT_FORMAT = 1
DEFAULT_OPSET = 17
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
_STANDARD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INSTALL_HINT = 'the ONNX backend needs onnxruntime and onnx: pip install "rerank-plugins[onnx]"'


class OnnxCacheWarning(UserWarning):
    """A cached ONNX export was unusable (corrupted, truncated, stale) and is being rebuilt."""


# ---------------------------------------------------------------------------- helpers
def _require_onnx() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as error:
        raise ImportError(f"{_INSTALL_HINT} ({error})") from error
    return onnxruntime


def default_cache_root() -> Path:
    """``$RERANK_PLUGINS_CACHE/onnx`` when set, else ``~/.cache/rerank-plugins/onnx``."""
    return cache_root("onnx")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _resolve_local_dir(source: str, revision: str | None, local_files_only: bool | None) -> Path:
    """The directory holding the model's files: ``source`` itself or its hub-cache snapshot."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    from transformers.utils import cached_file

    kwargs: dict[str, Any] = {}
    if revision is not None:
        kwargs["revision"] = revision
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        config_file = cached_file(source, "config.json", **kwargs)
    except OSError as error:
        raise offline_hint(source, "cross-encoder", error) from error
    if config_file is None:
        raise offline_hint(source, "cross-encoder", FileNotFoundError("config.json"))
    return Path(config_file).resolve().parent


def cache_key(
    fingerprint: Mapping[str, Any],
    *,
    opset: int,
    quantize: str | None,
    optimize: bool,
    revision: str | None = None,
    quant_options: Mapping[str, Any] | None = None,
) -> str:
    """Hash everything an export depends on into a short directory name."""
    payload = {
        "format": EXPORT_FORMAT,
        "source": fingerprint,
        "revision": revision,
        "opset": opset,
        "quantize": quantize,
        "quant_options": dict(quant_options or {}) if quantize else None,
        "optimize": optimize,
        "versions": {
            name: _version(name)
            for name in ("torch", "transformers", "onnx", "onnxruntime", "rerank-plugins")
        },
    }
    blob = json.dumps(payload, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


# ---------------------------------------------------------------------------- export
def _dummy_inputs(config: Any, input_names: tuple[str, ...]) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    batch, length = 2, 16
    vocab = int(getattr(config, "vocab_size", 100) or 100)
    ids = torch.randint(min(5, vocab - 1), vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.int64)
    mask[1, length // 2 :] = 0  # a padded row, so no all-ones shortcut is traced
    types = torch.zeros(batch, length, dtype=torch.int64)
    if int(getattr(config, "type_vocab_size", 1) or 1) > 1:
        types[:, length // 4 :] = 1
    pad = getattr(config, "pad_token_id", 0) or 0
    ids[mask == 0] = pad
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {name: values[name] for name in input_names}


def export_onnx(
    source: str,
    output: Path,
    *,
    opset: int = DEFAULT_OPSET,
    revision: str | None = None,
    local_files_only: bool | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Export ``source`` to ``output`` (fp32, dynamic batch/sequence axes); returns export info.

    Uses the TorchScript exporter (``dynamo=False``): on torch 2.13 it exports a MiniLM in well
    under a second, needs no ``onnxscript`` and yields a graph ONNX Runtime's BERT fusions
    recognise. The dynamo exporter is the fallback for torch builds without it.
    """
    import inspect

    import torch
    from transformers import AutoModelForSequenceClassification

    kwargs = pretrained_kwargs(
        revision=revision, local_files_only=local_files_only, trust_remote_code=trust_remote_code
    )
    try:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                source, attn_implementation="eager", **kwargs
            )
        except (ValueError, TypeError):
            model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except OSError as error:
        raise offline_hint(source, "cross-encoder", error) from error
    model.eval()
    model.float()
    accepted = set(inspect.signature(model.forward).parameters)
    input_names = tuple(name for name in _STANDARD_INPUTS if name in accepted)

    class _Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(input_names, args, strict=True))).logits

    wrapper = _Logits(model).eval()
    dummy = _dummy_inputs(model.config, input_names)
    args = tuple(dummy[name] for name in input_names)
    with torch.inference_mode():
        expected = wrapper(*args).float().numpy()
    started = time.perf_counter()
    exporter = "torchscript"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                args,
                str(output),
                dynamo=False,
                input_names=list(input_names),
                output_names=["logits"],
                dynamic_axes={
                    **{name: {0: "batch", 1: "sequence"} for name in input_names},
                    "logits": {0: "batch"},
                },
                opset_version=opset,
                do_constant_folding=True,
            )
        except Exception as legacy_error:  # exporter removed or failed: try dynamo
            logger.info("TorchScript ONNX export failed (%s); trying dynamo", legacy_error)
            exporter = "dynamo"
            batch = torch.export.Dim("batch")
            sequence = torch.export.Dim("sequence")
            torch.onnx.export(
                wrapper,
                args,
                str(output),
                dynamo=True,
                input_names=list(input_names),
                output_names=["logits"],
                dynamic_shapes=[{0: batch, 1: sequence} for _ in input_names],
                opset_version=max(opset, 18),
                external_data=False,
            )
    return {
        "exporter": exporter,
        "export_seconds": round(time.perf_counter() - started, 3),
        "input_names": list(input_names),
        "num_labels": int(model.config.num_labels),
        "num_heads": int(getattr(model.config, "num_attention_heads", 0) or 0),
        "hidden_size": int(getattr(model.config, "hidden_size", 0) or 0),
        "model_type": str(getattr(model.config, "model_type", "")),
        "check_inputs": {name: dummy[name].numpy() for name in input_names},
        "check_logits": expected,
    }


def _optimize_graph(path: Path, info: Mapping[str, Any]) -> bool:
    """Fuse attention / LayerNorm / GELU with ONNX Runtime's transformer optimizer, in place."""
    if info["model_type"] not in {"bert", "roberta", "xlm-roberta", "electra", "distilbert"}:
        return False
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(
                str(path),
                model_type="bert",
                num_heads=info["num_heads"],
                hidden_size=info["hidden_size"],
                opt_level=1,
                use_gpu=False,
            )
            optimized.save_model_to_file(str(path))
    except Exception as error:  # optimizer is best effort; the plain graph still works
        logger.warning("ONNX Runtime transformer fusion skipped: %s", error)
        return False
    return True


#: Which feed-forward MatMuls stay fp32 under ``quantize="int8"``. The default ``"none"``
#: quantizes them all: on all 300 SciFact test queries x 100 BM25 candidates it ranked as well
#: as fp32 (NDCG@10 -0.0012; ``"ffn_output"``: -0.0065), at 2.2x instead of 1.7x the
#: sentence-transformers speed (docs/benchmarks.md).
#: ``"ffn_output"`` (the GELU-fed output projections, whose outliers per-tensor activation
#: quantization handles worst) and ``"ffn"`` keep logits closer to fp32.
KEEP_FP32_PATTERNS = {
    "none": None,
    "ffn_output": r"/output/dense/MatMul$",
    "ffn": r"/(intermediate|output)/dense/MatMul$",
}


def _quantize_int8(
    source: Path,
    target: Path,
    *,
    per_channel: bool,
    reduce_range: bool,
    keep_fp32: str = "none",
) -> list[str]:
    """Dynamic int8: MatMul (and fused Attention) weights int8, activations quantized per batch.

    Embedding lookups (Gather) and the pooler/classifier head (Gemm) stay fp32: quantizing
    them saves little time and costs ranking quality; so do the MatMuls ``keep_fp32`` names.
    Returns the names of the nodes kept fp32.
    """
    import re

    import onnx

    pattern = KEEP_FP32_PATTERNS[keep_fp32]
    excluded: list[str] = []
    if pattern is not None:
        graph = onnx.load(str(source), load_external_data=False).graph
        excluded = [
            node.name
            for node in graph.node
            if node.op_type == "MatMul"
            and "attention" not in node.name
            and re.search(pattern, node.name)
        ]
    root = logging.getLogger()  # the quantizer logs a pre-processing hint on the root logger
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        _run_quantize_dynamic(source, target, per_channel, reduce_range, excluded)
    finally:
        root.setLevel(level)
    return excluded


def _run_quantize_dynamic(
    source: Path, target: Path, per_channel: bool, reduce_range: bool, excluded: list[str]
) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        op_types_to_quantize=["MatMul", "Attention"],
        nodes_to_exclude=excluded,
        # Fused contrib ops (SkipLayerNormalization, ...) defeat shape inference.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _session(path: Path, num_threads: int | None, spin: bool = False) -> Any:
    ort = _require_onnx()
    options = ort.SessionOptions()
    # Idle worker threads spin-wait by default; on a CPU shared with the tokenizer or other
    # processes that burns the cores the work needs (+33% int8 throughput measured with it off).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.intra_op_num_threads = int(num_threads or physical_cores())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------- backend
class OnnxBackend:
    """Scores padded int64 features with an ONNX Runtime CPU session (fp32 or int8).

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
        keep_fp32: Literal["none", "ffn_output", "ffn"] = "none",
        spin: bool = False,
        device: str | None = "auto",
        dtype: str | None = "auto",
        revision: str | None = None,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        _require_onnx()
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
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        from transformers import AutoConfig

        self.device = "cpu"
        self.quantize = quantize
        self.source = source
        self._load_kwargs: dict[str, Any] = {
            "revision": revision,
            "local_files_only": local_files_only,
            "trust_remote_code": trust_remote_code,
        }
        config_kwargs = {k: v for k, v in self._load_kwargs.items() if v is not None}
        try:
            self.config = AutoConfig.from_pretrained(source, **config_kwargs)
        except OSError as error:
            raise offline_hint(source, "cross-encoder", error) from error
        self.num_labels = int(self.config.num_labels)

        local_dir = _resolve_local_dir(source, revision, local_files_only)
        self.fingerprint = directory_fingerprint(local_dir)
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
        self.cache_key = cache_key(
            self.fingerprint,
            opset=opset,
            quantize=quantize,
            optimize=optimize,
            revision=revision,
            quant_options={
                "per_channel": per_channel,
                "reduce_range": reduce_range,
                "keep_fp32": keep_fp32,
            },
        )
        self.cache_path = self.cache_root / self.cache_key
        self._opset = opset
        self._optimize = optimize
        self._per_channel = per_channel
        self._reduce_range = reduce_range
        self._keep_fp32 = keep_fp32

        self.manifest = self._load_cached()
        if self.manifest is None:
            self.manifest = self._build()
        self.model_path = self.cache_path / MODEL_FILE
        self.num_threads = int(num_threads or physical_cores())
        self.session = _session(self.model_path, self.num_threads, spin)
        present = {i.name for i in self.session.get_inputs()}
        self.input_names = tuple(name for name in _STANDARD_INPUTS if name in present)

    # ------------------------------------------------------------------ cache
    def _load_cached(self) -> dict[str, Any] | None:
        """The manifest of a valid cache entry, or ``None`` (warning when one was corrupt)."""
        manifest_file = self.cache_path / MANIFEST_FILE
        model_file = self.cache_path / MODEL_FILE
        if not self.cache_path.exists():
            return None
        problem = None
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            manifest, problem = None, f"unreadable manifest ({error})"
        if manifest is not None:
            if manifest.get("source") != self.fingerprint:
                problem = "source model fingerprint differs"
            elif not model_file.is_file():
                problem = f"{MODEL_FILE} is missing"
            elif model_file.stat().st_size != manifest.get("onnx_size"):
                problem = f"{MODEL_FILE} has the wrong size (truncated?)"
            elif sha256_file(model_file) != manifest.get("onnx_sha256"):
                problem = f"{MODEL_FILE} sha256 does not match the manifest (corrupted?)"
        if problem is None:
            return manifest
        warnings.warn(
            f"cached ONNX export at {self.cache_path} is unusable: {problem}; rebuilding it",
            OnnxCacheWarning,
            stacklevel=4,
        )
        return None

    def _build(self) -> dict[str, Any]:
        self.cache_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.cache_key}-", dir=self.cache_root))
        try:
            manifest = self._export_into(staging)
            self._publish(staging)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def _export_into(self, staging: Path) -> dict[str, Any]:
        started = time.perf_counter()
        fp32 = staging / "model_fp32.onnx"
        info = export_onnx(
            self.source,
            fp32,
            opset=self._opset,
            revision=self._load_kwargs["revision"],
            local_files_only=self._load_kwargs["local_files_only"],
            trust_remote_code=self._load_kwargs["trust_remote_code"],
        )
        check_inputs = info.pop("check_inputs")
        check_logits = info.pop("check_logits")
        fused = self._optimize and _optimize_graph(fp32, info)
        # Guard: the fp32 graph must reproduce torch before it is cached (or quantized).
        got = _session(fp32, 1).run(["logits"], check_inputs)[0]
        fp32_diff = float(np.max(np.abs(got.astype(np.float32) - check_logits)))
        scale = float(np.max(np.abs(check_logits))) if check_logits.size else 0.0
        if not np.isfinite(fp32_diff) or fp32_diff > 1e-3 * max(1.0, scale):
            raise RuntimeError(
                f"ONNX export of {self.source!r} disagrees with torch by {fp32_diff:.3g}; "
                "refusing to cache it"
            )
        final = staging / MODEL_FILE
        quant_diff = None
        kept_fp32: list[str] = []
        if self.quantize == "int8":
            kept_fp32 = _quantize_int8(
                fp32,
                final,
                per_channel=self._per_channel,
                reduce_range=self._reduce_range,
                keep_fp32=self._keep_fp32,
            )
            fp32.unlink()
            got = _session(final, 1).run(["logits"], check_inputs)[0]
            quant_diff = float(np.max(np.abs(got.astype(np.float32) - check_logits)))
        else:
            os.replace(fp32, final)
        for leftover in staging.iterdir():  # optimizer/quantizer side files
            if leftover.name != MODEL_FILE:
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink()
        manifest = {
            "format": EXPORT_FORMAT,
            "key": self.cache_key,
            "source": self.fingerprint,
            "source_name": self.source,
            "opset": self._opset,
            "quantize": self.quantize,
            "per_channel": self._per_channel if self.quantize else None,
            "reduce_range": self._reduce_range if self.quantize else None,
            "keep_fp32": self._keep_fp32 if self.quantize else None,
            "nodes_kept_fp32": kept_fp32,
            "fused": bool(fused),
            "onnx_sha256": sha256_file(final),
            "onnx_size": final.stat().st_size,
            "fp32_max_abs_diff_vs_torch": fp32_diff,
            "int8_max_abs_diff_vs_torch": quant_diff,
            "build_seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": {
                name: _version(name)
                for name in ("torch", "transformers", "onnx", "onnxruntime", "rerank-plugins")
            },
            **info,
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest

    def _publish(self, staging: Path) -> None:
        """Move the staged entry into place atomically, replacing a broken one if present."""
        trash = None
        if self.cache_path.exists():
            trash = self.cache_root / f".trash-{self.cache_key}-{os.getpid()}-{time.time_ns()}"
            try:
                os.replace(self.cache_path, trash)
            except OSError:
                trash = None
        try:
            os.replace(staging, self.cache_path)
        except OSError:
            # Another process published the same key first; use theirs if it is valid.
            if self._load_cached() is None:
                raise
        finally:
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ scoring
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


__all__ = [
    "OnnxBackend",
    "OnnxCacheWarning",
    "cache_key",
    "default_cache_root",
    "export_onnx",
    "physical_cores",
]
