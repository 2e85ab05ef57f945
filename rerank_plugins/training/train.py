"""Fine-tuning with sentence-transformers' trainer stack: datasets per loss, the loss, the run.

Losses (all from ``sentence_transformers.cross_encoder.losses``):

- ``"mnrl"`` (default): :class:`MultipleNegativesRankingLoss` over ``(query, positive,
  negative_1..negative_n)`` with raw logits (identity activation) times ``logit_scale`` (10
  for a new head, folded into its weights after training; 1 for a cross-encoder's own): a
  softmax cross-entropy that asks the positive to beat the query's hard negatives (plus one
  in-batch negative). This is the "localized contrastive estimation" recipe for rerankers: the
  negatives come from the very first stage the reranker will serve behind.
- ``"lambda"`` / ``"listnet"``: listwise :class:`LambdaLoss` / :class:`ListNetLoss` over
  ``(query, [positives + negatives], [grades + zeros])``, one row per query.
- ``"bce"``: pointwise :class:`BinaryCrossEntropyLoss` on ``(query, passage, 0/1)`` pairs,
  positives up-weighted by the negatives per positive.
- ``"margin_mse"`` / ``"mse"`` (distillation): :class:`MarginMSELoss` on ``(query, positive,
  negatives)`` with the teacher's logits, or :class:`MSELoss` on ``(query, passage)`` pairs.
- ``"listnet_kd"`` (listwise distillation): :class:`ListNetLoss` over ``(query, [positives +
  negatives], teacher logits)``: the cross-entropy between the softmax of the teacher's logits
  and the student's over the query's whole list (a KL divergence up to the teacher's entropy),
  so the student learns the teacher's ordering of every candidate, not only positive vs each
  negative.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from ._deps import require_train
from .negatives import MinedQuery

Loss = Literal["mnrl", "lambda", "listnet", "bce", "margin_mse", "mse", "listnet_kd"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
LOSSES: tuple[str, ...] = ("mnrl", "lambda", "listnet", "bce", "margin_mse", "mse", "listnet_kd")
#: Losses that need a teacher's scores.
DISTILL_LOSSES = ("margin_mse", "mse", "listnet_kd")
#: Distillation losses whose teacher rows are a query's whole list (``listwise=True`` scores).
LISTWISE_DISTILL_LOSSES = ("listnet_kd",)
#: Losses whose rows have a fixed number of negative columns.
FIXED_WIDTH_LOSSES = ("mnrl", "margin_mse")
#: Random in-batch negatives added to each row by ``"mnrl"`` (hard negatives do the work).
IN_BATCH_NEGATIVES = 1
#: Share of the optimizer steps spent warming the learning rate up.
WARMUP_SHARE = 0.1
#: ``"mnrl"``'s logit scale when the head is new (``1.0`` keeps a cross-encoder's own scale).
NEW_HEAD_LOGIT_SCALE = 10.0


def build_rows(
    mined: Sequence[MinedQuery],
    text_of: Callable[[str], str],
    loss: str,
    teacher: Sequence[Sequence[float]] | None = None,
) -> dict[str, list[Any]]:
    """Columns of the training ``datasets.Dataset`` for ``loss`` (see the module docs).

    ``teacher`` holds, per (query, positive), the teacher's logits for ``[positive,
    *negatives]``, or for ``"listnet_kd"`` per query for ``[*positives, *negatives]``
    (:func:`~rerank_plugins.training.distill.teacher_scores`).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss in DISTILL_LOSSES and teacher is None:
        raise ValueError(f"loss={loss!r} distils a teacher: pass teacher scores")
    columns: dict[str, list[Any]] = {}
    if loss in ("lambda", "listnet"):
        columns = {"query": [], "docs": [], "labels": []}
        for item in mined:
            columns["query"].append(item.query)
            columns["docs"].append([text_of(d) for d in [*item.positives, *item.negatives]])
            columns["labels"].append([float(g) for g in item.grades] + [0.0] * len(item.negatives))
        return columns
    if loss in LISTWISE_DISTILL_LOSSES:
        assert teacher is not None
        if len(teacher) != len(mined):
            raise ValueError(
                f"loss={loss!r} needs one teacher row per query: {len(teacher)} rows for "
                f"{len(mined)} queries"
            )
        columns = {"query": [], "docs": [], "labels": []}
        for item, scores in zip(mined, teacher, strict=True):
            docs = [*item.positives, *item.negatives]
            if len(scores) != len(docs):
                raise ValueError(
                    f"query {item.query_id!r} has {len(docs)} documents but {len(scores)} "
                    "teacher scores"
                )
            columns["query"].append(item.query)
            columns["docs"].append([text_of(d) for d in docs])
            columns["labels"].append([float(s) for s in scores])
        return columns
    if loss in ("bce", "mse"):
        columns = {"query": [], "passage": [], "label": []}
        row = 0
        for item in mined:
            negatives_seen = False
            for positive in item.positives:
                docs = [positive] if negatives_seen else [positive, *item.negatives]
                for position, doc in enumerate(docs):
                    columns["query"].append(item.query)
                    columns["passage"].append(text_of(doc))
                    if loss == "bce":
                        columns["label"].append(1.0 if position == 0 else 0.0)
                    else:
                        assert teacher is not None
                        columns["label"].append(float(teacher[row][position]))
                negatives_seen = True
                row += 1
        return columns
    width = max((len(item.negatives) for item in mined), default=0)
    columns = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(width)}}
    if loss == "margin_mse":
        columns["label"] = []
    row = 0
    for item in mined:
        if len(item.negatives) != width:
            raise ValueError(
                f"loss={loss!r} needs the same number of negatives for every query; query "
                f"{item.query_id!r} has {len(item.negatives)}, others {width}"
            )
        for positive in item.positives:
            columns["query"].append(item.query)
            columns["positive"].append(text_of(positive))
            for i, doc in enumerate(item.negatives):
                columns[f"negative_{i + 1}"].append(text_of(doc))
            if loss == "margin_mse":
                assert teacher is not None
                columns["label"].append([float(s) for s in teacher[row]])
            row += 1
    return columns


def pairs_per_row(loss: str, num_negatives: int) -> int:
    """Forward passes one training row costs (for the time estimate in the report)."""
    if loss in ("bce", "mse"):
        return 1
    extra = IN_BATCH_NEGATIVES if loss == "mnrl" else 0
    return 1 + num_negatives + extra


def make_loss(
    model: Any, loss: str, *, negatives_per_positive: int, logit_scale: float = 1.0
) -> Any:
    """The sentence-transformers loss object for ``loss`` (``logit_scale``: ``"mnrl"`` only)."""
    import torch

    losses = require_train().losses
    if loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(
            model, num_negatives=IN_BATCH_NEGATIVES, scale=float(logit_scale), activation_fn=None
        )
    if loss == "lambda":
        return losses.LambdaLoss(model)
    if loss in ("listnet", "listnet_kd"):
        return losses.ListNetLoss(model)
    if loss == "bce":
        weight = torch.tensor(float(max(negatives_per_positive, 1)))
        return losses.BinaryCrossEntropyLoss(model, pos_weight=weight)
    if loss == "margin_mse":
        return losses.MarginMSELoss(model)
    if loss == "mse":
        return losses.MSELoss(model)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def fold_logit_scale(model: Any, scale: float) -> None:
    """Multiply the one-logit output layer of ``model`` by ``scale``, in place.

    A loss that trained on ``scale * logit`` leaves a model whose served scores are the
    trained ones only once the scale is part of the weights. The output layer is the last
    ``Linear`` with one output (``classifier`` in BERT, ``classifier.out_proj`` in RoBERTa).
    """
    import torch

    outputs = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if not outputs:
        raise ValueError(f"{type(model).__name__} has no one-logit output layer to scale")
    with torch.no_grad():
        outputs[-1].weight.mul_(float(scale))
        if outputs[-1].bias is not None:
            outputs[-1].bias.mul_(float(scale))


def resolve_precision(precision: str, device: str) -> str:
    """The arithmetic training runs in: ``"fp32"``, or mixed ``"bf16"``/``"fp16"`` autocast
    (weights and optimizer state stay float32).

    ``"auto"`` follows the reranker's ``dtype="auto"``
    (:func:`~rerank_plugins._device.resolve_dtype`): on CUDA bf16 where supported, else fp16;
    on a CPU bf16 where it multiplies bf16 natively (AMX or AVX512-BF16; not when
    ``RERANK_PLUGINS_CPU_AUTO_DTYPE=float32`` pins CPUs to float32), else fp32. fp16 needs
    CUDA; bf16 asked for on a CPU without native bf16 runs, with a warning that it is slow.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    import torch

    from .._device import resolve_dtype, warn_if_slow_dtype

    target = torch.device(device)
    if precision == "auto":
        dtype = resolve_dtype("auto", target)
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
    if precision == "fp16" and target.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA device; device is {device!r}")
    if precision == "bf16":
        warn_if_slow_dtype(torch.bfloat16, target)
    return precision


def planned_steps(rows: int, batch_size: int, epochs: float, max_steps: int | None) -> int:
    """Optimizer steps the run will take (``max_steps`` wins over ``epochs``)."""
    if max_steps:
        return int(max_steps)
    return max(1, math.ceil(math.ceil(rows / batch_size) * epochs))


def train(
    model_dir: Path,
    columns: dict[str, list[Any]],
    *,
    loss: str,
    work_dir: Path,
    negatives_per_positive: int,
    max_length: int,
    device: str,
    epochs: float,
    max_steps: int | None,
    batch_size: int,
    lr: float,
    head_lr: float | None,
    seed: int,
    logit_scale: float = 1.0,
    precision: str = "auto",
    show_progress: bool = True,
    trainer_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train the model in ``model_dir`` on ``columns``; returns the model and a summary.

    The summary has ``steps``, ``train_seconds``, ``rows``, ``precision`` (as resolved by
    :func:`resolve_precision`) and ``loss_history`` (the trainer's logged training losses by
    step). ``trainer_kwargs`` pass through to ``CrossEncoderTrainingArguments`` (e.g.
    ``{"gradient_accumulation_steps": 2}``).
    """
    st = require_train()
    dataset = st.Dataset.from_dict(columns)
    model = st.CrossEncoder(
        str(model_dir), num_labels=1, max_length=max_length, device=device, local_files_only=True
    )
    steps = planned_steps(len(dataset), batch_size, epochs, max_steps)
    on_cuda = device.startswith("cuda")
    arithmetic = resolve_precision(precision, device)
    options: dict[str, Any] = {
        "output_dir": str(work_dir),
        "num_train_epochs": float(epochs),
        "max_steps": int(max_steps) if max_steps else -1,
        "per_device_train_batch_size": int(batch_size),
        "learning_rate": float(lr),
        "warmup_steps": int(WARMUP_SHARE * steps),
        "weight_decay": 0.01,
        "seed": int(seed),
        "data_seed": int(seed),
        "logging_steps": max(1, steps // 25),
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "use_cpu": not on_cuda and not device.startswith("mps"),
        "bf16": arithmetic == "bf16",
        "fp16": arithmetic == "fp16",
        "dataloader_num_workers": 0,
        "disable_tqdm": not show_progress,
    }
    if head_lr:
        options["learning_rate_mapping"] = {r"classifier\.": float(head_lr)}
    if loss == "mnrl":
        options["batch_sampler"] = "no_duplicates"
    options.update(trainer_kwargs or {})
    args = st.CrossEncoderTrainingArguments(**options)
    trainer = st.CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=make_loss(
            model, loss, negatives_per_positive=negatives_per_positive, logit_scale=logit_scale
        ),
    )
    if not show_progress:  # without bars the trainer prints its logs to stdout instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    if logit_scale != 1.0:
        fold_logit_scale(model.model, logit_scale)
    history = [
        {"step": int(entry["step"]), "loss": float(entry["loss"])}
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry
    ]
    return model, {
        "rows": len(dataset),
        "steps": int(trainer.state.global_step),
        "train_seconds": round(seconds, 1),
        "logit_scale": float(logit_scale),
        "precision": arithmetic,
        "loss_history": history,
    }
