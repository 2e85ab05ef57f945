"""Graph fusion and dynamic int8 quantization of an exported cross-encoder, in ONNX Runtime."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

KeepFp32 = Literal["none", "ffn_output", "ffn"]

#: Which feed-forward MatMuls stay fp32 under ``quantize="int8"``. The default ``"none"``
#: quantizes them all: on all 300 SciFact test queries x 100 BM25 candidates it ranked as well
#: as fp32 (NDCG@10 -0.0012; ``"ffn_output"``: -0.0065), at 2.2x instead of 1.7x the
#: sentence-transformers speed (docs/benchmarks.md).
#: ``"ffn_output"`` (the GELU-fed output projections, whose outliers per-tensor activation
#: quantization handles worst) and ``"ffn"`` keep logits closer to fp32.
KEEP_FP32_PATTERNS: dict[str, str | None] = {
    "none": None,
    "ffn_output": r"/output/dense/MatMul$",
    "ffn": r"/(intermediate|output)/dense/MatMul$",
}
#: Model types ONNX Runtime's BERT optimizer fuses.
FUSABLE_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "electra", "distilbert"})


def optimize_graph(path: Path, info: Mapping[str, Any]) -> bool:
    """Fuse attention / LayerNorm / GELU with ONNX Runtime's transformer optimizer, in place.

    ``info`` is what :func:`~rerank_plugins.backends.onnx.export_onnx` returned (``model_type``,
    ``num_heads``, ``hidden_size``). Best effort: returns False, leaving the plain graph, for
    architectures the optimizer does not know or when it fails.
    """
    if info["model_type"] not in FUSABLE_MODEL_TYPES:
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


def quantize_int8(
    source: Path,
    target: Path,
    *,
    per_channel: bool,
    reduce_range: bool,
    keep_fp32: KeepFp32 = "none",
) -> list[str]:
    """Dynamic int8: MatMul (and fused Attention) weights int8, activations quantized per batch.

    Embedding lookups (Gather) and the pooler/classifier head (Gemm) stay fp32: quantizing
    them saves little time and costs ranking quality; so do the MatMuls ``keep_fp32`` names.
    Returns the names of the nodes kept fp32.
    """
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
        quantize_dynamic_int8(
            source,
            target,
            per_channel=per_channel,
            reduce_range=reduce_range,
            nodes_to_exclude=excluded,
        )
    finally:
        root.setLevel(level)
    return excluded


def quantize_dynamic_int8(
    source: Path,
    target: Path,
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
    nodes_to_exclude: Sequence[str] = (),
) -> None:
    """ONNX Runtime's ``quantize_dynamic`` with our settings: int8 MatMul/Attention weights.

    The raw step under :func:`quantize_int8` (which picks ``nodes_to_exclude`` from a recipe);
    benchmarks call it to compare recipes on one exported graph.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        op_types_to_quantize=["MatMul", "Attention"],
        nodes_to_exclude=list(nodes_to_exclude),
        # Fused contrib ops (SkipLayerNormalization, ...) defeat shape inference.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
