"""Compatibility alias of :mod:`rerank_plugins.backends.onnx` (its former single-module home).

Earlier releases documented ``rerank_plugins.backends.onnx_backend.OnnxBackend`` and
``OnnxCacheWarning``; they keep working. New code imports from
:mod:`rerank_plugins.backends.onnx`.
"""

from __future__ import annotations

from .onnx import *  # noqa: F403
from .onnx import __all__  # noqa: F401
