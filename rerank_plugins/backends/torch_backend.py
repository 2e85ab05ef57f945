"""PyTorch inference for Hugging Face sequence-classification cross-encoders."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np
import torch

from .._device import (
    intra_op_threads,
    resolve_device,
    resolve_dtype,
    torch_threads_for_call,
    warn_if_slow_dtype,
)
from .._models import load_pretrained, pretrained_kwargs


class TorchBackend:
    """Runs the model under ``torch.inference_mode`` on the chosen device and precision.

    On CPU each call runs with ``num_threads`` intra-op threads (default: the process's count,
    capped at the physical cores this process may use) and restores the process's count
    afterwards, so the setting never leaks into the rest of the process.
    """

    def __init__(
        self,
        source: str,
        *,
        device: str | torch.device | None = "auto",
        dtype: str | torch.dtype | None = "auto",
        revision: str | None = None,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
        num_threads: int | None = None,
    ) -> None:
        from transformers import AutoModelForSequenceClassification

        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = num_threads

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        warn_if_slow_dtype(self.dtype, self.device)
        kwargs = pretrained_kwargs(
            revision=revision,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )
        model = load_pretrained(
            AutoModelForSequenceClassification.from_pretrained, source, "cross-encoder", **kwargs
        )
        model.eval()
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.config = model.config
        self.num_labels = int(model.config.num_labels)
        accepted = set(inspect.signature(model.forward).parameters)
        self.input_names: tuple[str, ...] = tuple(
            name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted
        )

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        inputs = {
            name: torch.from_numpy(features[name]).to(self.device, non_blocking=True)
            for name in self.input_names
            if name in features
        }
        threads = torch_threads_for_call(self.num_threads) if self.device.type == "cpu" else None
        with intra_op_threads(threads), torch.inference_mode():
            logits = self.model(**inputs).logits
        return logits.float().cpu().numpy()
