"""Distillation to a smaller student: keep N of the teacher's (or base's) transformer layers.

The student is the starting model with its encoder cut to ``N`` layers picked evenly from
bottom to top (:func:`student_layer_ids`: always the first and the last), so it starts from
weights that already work together, then learns the teacher's scores on (query, positive,
hard negatives), pair by pair (``margin_mse``, ``mse``) or over the query's whole candidate list
(``listnet_kd``). Fewer layers cost proportionally less per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .negatives import MinedQuery


def student_layer_ids(total: int, keep: int) -> list[int]:
    """``keep`` layer indices spread evenly over ``total``, first and last included.

    >>> student_layer_ids(6, 3)
    [0, 2, 5]
    >>> student_layer_ids(6, 2)
    [0, 5]
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"student_layers must be a positive int, got {keep!r}")
    if keep >= total:
        raise ValueError(f"student_layers={keep} must be below the starting model's {total} layers")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def _layer_list(model: Any) -> tuple[Any, str, Any]:
    """``(parent, attribute, layers)`` of the ``nn.ModuleList`` of transformer blocks (BERT's
    ``encoder.layer``, DistilBERT's ``transformer.layer``, ...): the list of
    ``num_hidden_layers`` modules."""
    import torch

    total = int(model.config.num_hidden_layers)
    base = getattr(model, "base_model", model)
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == total and name:
            parent_name, _, attribute = name.rpartition(".")
            parent = base.get_submodule(parent_name) if parent_name else base
            return parent, attribute, module
    raise ValueError(
        f"cannot find the {total} transformer layers of {type(model).__name__}; "
        "distillation supports encoder models with one list of layers (BERT, RoBERTa, ...)"
    )


def truncate_layers(model: Any, keep: int) -> list[int]:
    """Cut ``model`` (a ``*ForSequenceClassification``) to ``keep`` layers in place; returns
    the indices of the layers kept."""
    import torch

    parent, attribute, layers = _layer_list(model)
    ids = student_layer_ids(len(layers), keep)
    kept = [layers[i] for i in ids]
    for position, layer in enumerate(kept):  # attention modules that record their index
        attention = getattr(layer, "attention", None)
        for module in (layer, attention, getattr(attention, "self", None)):
            if module is not None and hasattr(module, "layer_idx"):
                module.layer_idx = position
    setattr(parent, attribute, torch.nn.ModuleList(kept))
    model.config.num_hidden_layers = keep
    return ids


def teacher_scores(
    mined: Sequence[MinedQuery],
    score_pairs: Any,
    text_of: Any,
    *,
    listwise: bool = False,
) -> list[list[float]]:
    """Teacher logits, one row per (query, positive) for ``[positive, *negatives]``, or with
    ``listwise`` one row per query for ``[*positives, *negatives]`` (its whole list, scored once).

    ``score_pairs(pairs)`` is a batched scorer such as ``CrossEncoderReranker.score_pairs``.
    """

    def lists(item: MinedQuery) -> list[list[str]]:
        if listwise:
            return [[*item.positives, *item.negatives]]
        return [[positive, *item.negatives] for positive in item.positives]

    groups = [docs for item in mined for docs in lists(item)]
    pairs = [(item.query, text_of(doc)) for item in mined for docs in lists(item) for doc in docs]
    scores = np.asarray(score_pairs(pairs), dtype=np.float64).tolist()
    rows: list[list[float]] = []
    offset = 0
    for docs in groups:
        rows.append(scores[offset : offset + len(docs)])
        offset += len(docs)
    return rows
