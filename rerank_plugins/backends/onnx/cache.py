"""The on-disk export cache: one directory per (model fingerprint, recipe, toolchain) key.

Layout (``<root>`` is ``cache_dir``, else ``$RERANK_PLUGINS_CACHE/onnx``, else
``~/.cache/rerank-plugins/onnx``)::

    <root>/<key>/model.onnx
    <root>/<key>/manifest.json

``<key>`` hashes the source model's fingerprint (file names, sizes, content digests), the opset, the
quantization mode and options, the graph-optimization flag and the versions of torch,
transformers, onnx and onnxruntime, so a changed model or toolchain gets a fresh export. An
entry is built in a staging directory (export, fusion, a parity check against torch, int8)
and published with :func:`rerank_plugins._files.publish_directory` (fsync + atomic rename),
so a crashed or concurrent export never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..._files import cache_root, publish_directory, sha256_file, staging_directory
from ..._models import offline_hint
from .export import DEFAULT_OPSET, export_onnx
from .quantize import KeepFp32, optimize_graph, quantize_int8
from .session import create_session

#: Bump when the export recipe changes in a way that makes old cache entries wrong.
EXPORT_FORMAT = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
_TOOLCHAIN = ("torch", "transformers", "onnx", "onnxruntime", "rerank-plugins")


class OnnxCacheWarning(UserWarning):
    """A cached ONNX export was unusable (corrupted, truncated, stale) and is being rebuilt."""


@dataclass(frozen=True)
class ExportRecipe:
    """Everything an export depends on besides the model files: part of the cache key."""

    opset: int = DEFAULT_OPSET
    quantize: str | None = None
    optimize: bool = True
    per_channel: bool = True
    reduce_range: bool = False
    keep_fp32: KeepFp32 = "none"
    revision: str | None = None
    local_files_only: bool | None = None
    trust_remote_code: bool = False

    def quant_options(self) -> dict[str, Any]:
        return {
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "keep_fp32": self.keep_fp32,
        }


def default_cache_root() -> Path:
    """``$RERANK_PLUGINS_CACHE/onnx`` when set, else ``~/.cache/rerank-plugins/onnx``."""
    return cache_root("onnx")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def resolve_local_dir(source: str, revision: str | None, local_files_only: bool | None) -> Path:
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
        "versions": {name: _version(name) for name in _TOOLCHAIN},
    }
    blob = json.dumps(payload, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def recipe_key(fingerprint: Mapping[str, Any], recipe: ExportRecipe) -> str:
    """:func:`cache_key` of ``recipe``."""
    return cache_key(
        fingerprint,
        opset=recipe.opset,
        quantize=recipe.quantize,
        optimize=recipe.optimize,
        revision=recipe.revision,
        quant_options=recipe.quant_options(),
    )


def load_entry(entry: Path, fingerprint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest of a valid entry, or ``None`` (with an OnnxCacheWarning when one is broken).

    Valid: the manifest parses, names this source fingerprint, and ``model.onnx`` has the
    recorded size and sha256. A missing entry is simply ``None``.
    """
    if not entry.exists():
        return None
    manifest_file = entry / MANIFEST_FILE
    model_file = entry / MODEL_FILE
    problem = None
    manifest: dict[str, Any] | None
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        manifest, problem = None, f"unreadable manifest ({error})"
    if manifest is not None:
        if not isinstance(manifest, dict):
            problem = "manifest is not a JSON object"
        elif manifest.get("source") != fingerprint:
            problem = "source model fingerprint differs"
        elif not model_file.is_file():
            problem = f"{MODEL_FILE} is missing"
        elif model_file.stat().st_size != manifest.get("onnx_size"):
            problem = f"{MODEL_FILE} has the wrong size (truncated?)"
        elif sha256_file(model_file) != manifest.get("onnx_sha256"):
            problem = f"{MODEL_FILE} sha256 does not match the manifest (corrupted?)"
    if problem is None and manifest is not None:
        return manifest
    warnings.warn(
        f"cached ONNX export at {entry} is unusable: {problem}; rebuilding it",
        OnnxCacheWarning,
        stacklevel=5,
    )
    return None


def build_entry(
    source: str, entry: Path, recipe: ExportRecipe, fingerprint: Mapping[str, Any]
) -> dict[str, Any]:
    """Export, check, optionally quantize and publish ``source`` at ``entry``; its manifest."""
    staging = staging_directory(entry)
    try:
        manifest = _export_into(staging, source, recipe, fingerprint, key=entry.name)
        try:
            publish_directory(staging, entry)
        except OSError:
            # Another process published the same key first; use theirs if it is valid.
            theirs = load_entry(entry, fingerprint)
            if theirs is None:
                raise
            return theirs
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _max_abs_diff(
    session_path: Path, inputs: Mapping[str, np.ndarray], expected: np.ndarray
) -> float:
    got = create_session(session_path, 1).run(["logits"], dict(inputs))[0]
    return float(np.max(np.abs(np.asarray(got, dtype=np.float32) - expected)))


def _export_into(
    staging: Path,
    source: str,
    recipe: ExportRecipe,
    fingerprint: Mapping[str, Any],
    *,
    key: str,
) -> dict[str, Any]:
    started = time.perf_counter()
    fp32 = staging / "model_fp32.onnx"
    info = export_onnx(
        source,
        fp32,
        opset=recipe.opset,
        revision=recipe.revision,
        local_files_only=recipe.local_files_only,
        trust_remote_code=recipe.trust_remote_code,
    )
    check_inputs = info.pop("check_inputs")
    check_logits = info.pop("check_logits")
    fused = recipe.optimize and optimize_graph(fp32, info)
    # Guard: the fp32 graph must reproduce torch before it is cached (or quantized).
    fp32_diff = _max_abs_diff(fp32, check_inputs, check_logits)
    scale = float(np.max(np.abs(check_logits))) if check_logits.size else 0.0
    if not np.isfinite(fp32_diff) or fp32_diff > 1e-3 * max(1.0, scale):
        raise RuntimeError(
            f"ONNX export of {source!r} disagrees with torch by {fp32_diff:.3g}; "
            "refusing to cache it"
        )
    final = staging / MODEL_FILE
    quant_diff = None
    kept_fp32: list[str] = []
    if recipe.quantize == "int8":
        kept_fp32 = quantize_int8(
            fp32,
            final,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            keep_fp32=recipe.keep_fp32,
        )
        fp32.unlink()
        quant_diff = _max_abs_diff(final, check_inputs, check_logits)
    else:
        os.replace(fp32, final)
    for leftover in staging.iterdir():  # optimizer/quantizer side files
        if leftover.name != MODEL_FILE:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink()
    quantized = recipe.quantize is not None
    manifest = {
        "format": EXPORT_FORMAT,
        "key": key,
        "source": dict(fingerprint),
        "source_name": source,
        "opset": recipe.opset,
        "quantize": recipe.quantize,
        "per_channel": recipe.per_channel if quantized else None,
        "reduce_range": recipe.reduce_range if quantized else None,
        "keep_fp32": recipe.keep_fp32 if quantized else None,
        "nodes_kept_fp32": kept_fp32,
        "fused": bool(fused),
        "onnx_sha256": sha256_file(final),
        "onnx_size": final.stat().st_size,
        "fp32_max_abs_diff_vs_torch": fp32_diff,
        "int8_max_abs_diff_vs_torch": quant_diff,
        "build_seconds": round(time.perf_counter() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {name: _version(name) for name in _TOOLCHAIN},
        **info,
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
