"""Inference backends: each turns padded numpy features into a (n, num_labels) logit array.

* :mod:`.torch_backend` (:class:`~.torch_backend.TorchBackend`, the default) runs the model in
  PyTorch on any device and precision;
* :mod:`.onnx` (:class:`~.onnx.OnnxBackend`, the ``[onnx]`` extra) runs a cached ONNX export
  with ONNX Runtime on CPU, in fp32 or int8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np


class ScoringBackend(Protocol):
    """What :class:`~rerank_plugins.CrossEncoderReranker` needs from an inference engine."""

    num_labels: int
    """Output logits per pair (1, or 2 for not-relevant/relevant)."""
    input_names: tuple[str, ...]
    """The tokenizer outputs the model takes (``input_ids``, ``attention_mask``, ...)."""
    config: Any
    """The model's ``transformers`` config (the reranker reads ``max_position_embeddings``
    and ``model_type`` for the token window)."""
    device: Any
    """Where it runs: a ``torch.device`` or a device string such as ``"cpu"``."""
    dtype: Any
    """The precision it runs in: a ``torch.dtype`` or a name such as ``"float32"``/``"int8"``
    (half precisions get a larger CPU token budget)."""

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return float32 logits of shape (batch, num_labels)."""
        ...


__all__ = ["ScoringBackend"]
