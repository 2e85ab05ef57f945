"""What a model directory written by ``rerank-plugins tune`` says about how to serve it.

``tune`` measures the pipeline's blend of the model with the first stage on its held-out
queries and records the best weight in ``training_report.json``. The core reads it here (and
only here), so ``RerankPipeline(blend_weight="recommended")`` needs no training extra.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger("rerank_plugins")

#: The report ``rerank-plugins tune`` writes into every model directory.
REPORT_FILE = "training_report.json"
#: The ``blend_weight`` value that means "the weight the model's training report recommends".
RECOMMENDED: Literal["recommended"] = "recommended"


class NoRecommendationError(ValueError):
    """A model has no blend recommendation: no training report, or one that predates it."""


def read_recommended_blend(model_dir: str | Path) -> float | None:
    """The blend weight ``model_dir``'s training report recommends; None means "no blend".

    Raises :class:`NoRecommendationError` naming the problem when the directory has no
    readable report or the report holds no blend measurement (written before ``tune``
    measured blending: ``benchmarks/tune_blend.py DIR`` measures it).
    """
    path = Path(model_dir) / REPORT_FILE
    if not path.is_file():
        raise NoRecommendationError(
            f"{str(model_dir)!r} has no {REPORT_FILE}: only a model directory written by "
            "rerank-plugins tune carries a recommended blend weight; pass a number instead"
        )
    try:
        evaluation = json.loads(path.read_text(encoding="utf-8"))["evaluation"]
        weight = evaluation["recommended_blend_weight"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise NoRecommendationError(
            f"{str(path)!r} records no recommended_blend_weight ({type(error).__name__}: "
            f"{error}); it predates blend measurement or is damaged, pass a number instead"
        ) from None
    if weight is None:
        return None
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise NoRecommendationError(
            f"{str(path)!r} has recommended_blend_weight {weight!r}, not a number in [0, 1]"
        )
    return float(weight)


def recommended_blend_weight(model_dir: str | Path) -> float | None:
    """Lenient :func:`read_recommended_blend`: None for any directory without a recommendation."""
    try:
        return read_recommended_blend(model_dir)
    except NoRecommendationError:
        return None


def resolve_blend_weight(value: Any, reranker: Any) -> Any:
    """``"recommended"`` becomes the weight the reranker's model directory recommends.

    Any other value is returned unchanged (the caller validates numbers). The reranker must
    have been loaded from a local directory (its ``model_name``, as ``CrossEncoderReranker``
    keeps it) that ``rerank-plugins tune`` wrote.
    """
    if not isinstance(value, str):
        return value
    if value != RECOMMENDED:
        raise ValueError(
            f"blend_weight must be a number in [0, 1], None or 'recommended', got {value!r}"
        )
    model = getattr(reranker, "model_name", None)
    if not isinstance(model, str) or not Path(model).is_dir():
        found = "keeps no model_name" if model is None else f"was loaded from {model!r}"
        raise NoRecommendationError(
            "blend_weight='recommended' needs a reranker loaded from a local model directory "
            f"written by rerank-plugins tune; this {type(reranker).__name__} {found}"
        )
    weight = read_recommended_blend(model)
    logger.info(
        "blend_weight=%s: recommended by %s",
        "None (the model alone ranked best)" if weight is None else f"{weight:g}",
        Path(model) / REPORT_FILE,
    )
    return weight
