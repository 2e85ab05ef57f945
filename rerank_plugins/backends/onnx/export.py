"""Export a Hugging Face sequence-classification cross-encoder to ONNX (dynamic batch/sequence)."""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from ..._models import load_pretrained, pretrained_kwargs

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: The inputs an exported graph may take, in the order they are fed.
STANDARD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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

    The info holds the exporter used, the model's head/width/type (what
    :func:`~rerank_plugins.backends.onnx.optimize_graph` needs), and a dummy batch with torch's
    logits for it (``check_inputs``/``check_logits``) to check the exported graph against.

    Uses the TorchScript exporter (``dynamo=False``): on torch 2.13 it exports a MiniLM in well
    under a second, needs no ``onnxscript`` and yields a graph ONNX Runtime's BERT fusions
    recognise. The dynamo exporter is the fallback for torch builds without it.

    Example:
        >>> info = export_onnx("path/to/cross-encoder", Path("model.onnx"))  # doctest: +SKIP
        >>> info["exporter"], info["num_labels"]  # doctest: +SKIP
        ('torchscript', 1)
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    kwargs = pretrained_kwargs(
        revision=revision, local_files_only=local_files_only, trust_remote_code=trust_remote_code
    )
    load = AutoModelForSequenceClassification.from_pretrained
    try:
        model = load_pretrained(
            load, source, "cross-encoder", attn_implementation="eager", **kwargs
        )
    except (ValueError, TypeError):  # a model without a selectable attention implementation
        model = load_pretrained(load, source, "cross-encoder", **kwargs)
    model.eval()
    model.float()
    accepted = set(inspect.signature(model.forward).parameters)
    input_names = tuple(name for name in STANDARD_INPUTS if name in accepted)

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
