"""Inference backends: each turns padded numpy features into a (n, num_labels) logit array."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np


class ScoringBackend(Protocol):
    """What :class:`~rerank_plugins.CrossEncoderReranker` needs from an inference engine."""

    num_labels: int
    input_names: tuple[str, ...]

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return float32 logits of shape (batch, num_labels)."""
        ...


__all__ = ["ScoringBackend"]
