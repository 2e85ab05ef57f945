"""``tune``'s options: checked in one place before any work starts, defaults resolved, and
recorded in the report as they ran."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._validation import check_int, check_number, check_positive_int
from .negatives import NEGATIVE_SOURCES, check_rank_range
from .train import DISTILL_LOSSES, LOSSES, NEW_HEAD_LOGIT_SCALE, PRECISIONS

#: The teacher's false-negative filter when a teacher is given without distilling.
DEFAULT_RELATIVE_MARGIN = 0.05


@dataclass(frozen=True)
class TuneSettings:
    """Every option of a run, as :func:`~rerank_plugins.training.tune` documents them.

    ``head_lr``, ``logit_scale``, ``pseudo_queries``, ``serve_length``, ``precision`` and
    ``device`` are what was asked for until the base model, the data and the device are known;
    the runner replaces them with what ran (:func:`dataclasses.replace`) before they go into
    ``training_report.json``.
    """

    base: str
    teacher: str | None
    split: str
    eval_split: str | None
    eval_fraction: float
    negatives: str
    negatives_per_query: int
    rank_min: int
    rank_max: int
    sampling: str
    relative_margin: float | None
    student_layers: int | None
    loss: str
    pseudo_queries: int | Literal["auto"]
    device: str
    max_steps: int | None
    epochs: float
    batch_size: int
    lr: float
    head_lr: float | None
    logit_scale: float | None
    precision: str
    max_length: int
    serve_length: int | None
    seed: int
    eval_depth: int
    retriever_depth: int | None
    export_int8: bool

    @property
    def distils(self) -> bool:
        """Whether the labels are the teacher's scores (a distillation loss)."""
        return self.loss in DISTILL_LOSSES

    def as_report(self) -> dict[str, Any]:
        """The ``settings`` section of ``training_report.json``."""
        return dataclasses.asdict(self)


def _path_text(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


def check_settings(
    *,
    base: str | os.PathLike[str] | None,
    teacher: str | os.PathLike[str] | None,
    loss: str | None,
    relative_margin: float | None,
    **options: Any,
) -> TuneSettings:
    """Check every option and fill the defaults that depend on others; raises ``ValueError``
    (``TypeError`` for a value of the wrong type) naming the first bad one.

    - ``loss``: ``"margin_mse"`` with a teacher and ``student_layers`` or a distillation loss,
      else ``"mnrl"``;
    - ``relative_margin``: the teacher's false-negative filter (0.05) when a teacher is given
      without distilling;
    - ``base``: the teacher when distilling without one.
    """
    if options["negatives"] not in NEGATIVE_SOURCES:
        raise ValueError(
            f"negatives must be one of {NEGATIVE_SOURCES}, got {options['negatives']!r}"
        )
    check_rank_range(options["rank_min"], options["rank_max"], options["negatives_per_query"])
    for name in ("batch_size", "max_length", "eval_depth"):
        check_positive_int(options[name], name)
    for name in ("lr", "epochs"):
        check_number(options[name], name, positive=True)
    if options["max_steps"] is not None:
        check_positive_int(options["max_steps"], "max_steps")
    if options["head_lr"] is not None:
        check_number(options["head_lr"], "head_lr", positive=True)
    student_layers = options["student_layers"]
    if student_layers is not None:
        check_positive_int(student_layers, "student_layers")
    distilling = teacher is not None and (
        student_layers is not None or (loss is not None and loss in DISTILL_LOSSES)
    )
    if loss is None:
        loss = "margin_mse" if distilling else "mnrl"
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss in DISTILL_LOSSES and teacher is None:
        raise ValueError(f"loss={loss!r} distils a teacher's scores: pass teacher=")
    if options["logit_scale"] is not None:
        check_number(options["logit_scale"], "logit_scale", positive=True)
        if loss != "mnrl":
            raise ValueError(
                f"logit_scale sharpens the softmax of loss='mnrl'; loss={loss!r} does not use one"
            )
    if options["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {options['precision']!r}")
    if options["pseudo_queries"] != "auto":
        check_int(options["pseudo_queries"], "pseudo_queries", minimum=0)
    if relative_margin is not None and teacher is None:
        raise ValueError("relative_margin filters negatives with a teacher: pass teacher=")
    if relative_margin is None and teacher is not None and not distilling:
        relative_margin = DEFAULT_RELATIVE_MARGIN
    if base is None:
        if teacher is None:
            raise ValueError("pass base= (the model to start from), or teacher= to distil it")
        base = teacher
    return TuneSettings(
        base=os.fspath(base),
        teacher=_path_text(teacher),
        loss=loss,
        relative_margin=relative_margin,
        **options,
    )


def resolve_pseudo_queries(
    requested: int | Literal["auto"], *, new_head: bool, distils: bool, train_queries: int
) -> int:
    """How many title pseudo-queries a run adds: ``"auto"`` adds as many as there are judged
    training queries when a new head is trained on judgements (it learns relevance from
    scratch, and judged queries alone are too few), else none."""
    if requested != "auto":
        return int(requested)
    return int(train_queries) if new_head and not distils else 0


def resolve_logit_scale(requested: float | None, *, loss: str, new_head: bool) -> float | None:
    """``"mnrl"``'s logit scale: what was asked for, else :data:`NEW_HEAD_LOGIT_SCALE` for a
    new head (its logits start near zero) and 1 for a cross-encoder's own; ``None`` for the
    losses that have none."""
    if requested is not None or loss != "mnrl":
        return requested
    return NEW_HEAD_LOGIT_SCALE if new_head else 1.0


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty directory without ``overwrite``, before any work starts."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out directory {str(out)!r} exists and is a file; pass a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"out directory {str(out)!r} exists and is not empty; pass overwrite=True "
            "(--overwrite) to replace it once the new model is complete"
        )
