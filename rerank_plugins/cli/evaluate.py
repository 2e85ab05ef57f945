"""``rerank-plugins eval``: NDCG/MRR/recall and latency per rerank depth on BEIR data."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

from .._tuned import NoRecommendationError, read_recommended_blend, recommended_blend_weight
from ._common import (
    CLIError,
    add_depth_arg,
    add_embed_dtype_arg,
    check_embedder,
    check_retriever_depth,
    default_embedder,
    depths,
    embedding_cache_setting,
    load_dataset,
    log,
    positive_int,
    progress,
    warn_rerank_deeper_than_candidates,
    weights,
    write_json,
)
from ._fusion_args import add_fusion_args, fusion_kwargs
from ._ray import add_engine_args, ray_session, require_ray
from ._reranker_args import add_model_args, load_reranker, reranker_kwargs


def _check_engine(args: argparse.Namespace) -> str:
    """The latency mode for ``--engine``; Ray's missing extra is reported before any work."""
    if args.engine == "local":
        return args.latency or "measured"
    if not args.reranker:
        raise CLIError("--engine ray runs the cross-encoder on Ray: give --reranker MODEL")
    if args.latency not in (None, "batch"):
        raise CLIError(
            f"--engine ray scores every query's candidates in one Ray Data job, so rerank "
            f"latency is --latency batch (the job's time per pair), not {args.latency!r}"
        )
    require_ray()
    return "batch"


def _ray_reranker(args: argparse.Namespace) -> Any:
    """A RayDataReranker with the command's cross-encoder flags (one model per actor)."""
    from ..distributed import RayDataReranker

    kwargs = reranker_kwargs(args)
    if kwargs.get("device") == "auto":  # let each actor's resources pick: cuda with GPUs
        del kwargs["device"]
    log(
        f"cross-encoder {args.reranker} on Ray: {args.actors} actor(s), "
        f"{args.num_gpus_per_actor:g} GPU / {args.num_cpus_per_actor:g} CPU each"
    )
    return RayDataReranker(
        args.reranker,
        concurrency=args.actors,
        num_gpus=args.num_gpus_per_actor,
        num_cpus=args.num_cpus_per_actor,
        reranker_batch_size=kwargs.pop("batch_size", None),
        **kwargs,
    )


def _fusion_label(retriever: Any) -> str:
    """``rrf k=60`` / ``zscore, bm25=0.6 dense=1.4``: a retriever's fusion settings, short."""
    label = retriever.fusion + (f" k={retriever.rrf_k:g}" if retriever.fusion == "rrf" else "")
    if retriever.weights:
        label += ", " + " ".join(f"{n}={w:g}" for n, w in retriever.weights.items())
    return label


def cmd_eval(args: argparse.Namespace) -> int:
    check_retriever_depth(args)
    fusion = fusion_kwargs(args, hybrid=args.retriever == "hybrid")
    if args.tune_fusion and args.retriever != "hybrid":
        raise CLIError("--tune-fusion needs --retriever hybrid: nothing is fused otherwise")
    latency = _check_engine(args)
    from ..evaluation.runner import (
        COLUMNS,
        EvalResult,
        build_retriever,
        evaluate_settings,
        format_table,
        machine_info,
        plot_tradeoff,
        select_queries,
        split_queries,
    )

    if args.plot:  # fail before the long run when matplotlib is missing
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError(
                '--plot needs matplotlib; install it with: pip install "rerank-plugins[plot]"'
            ) from None
    dataset = load_dataset(args.data, args.split)
    queries = select_queries(dataset, args.queries)
    tune_queries: dict[str, str] = {}
    if args.tune_fusion:
        try:
            tune_queries, queries = split_queries(queries, args.tune_share)
        except ValueError as error:
            raise CLIError(f"--tune-fusion: {error}") from None
    embedder = args.embedder or (default_embedder() if args.retriever != "bm25" else None)
    check_embedder(embedder)
    if args.reranker:
        warn_rerank_deeper_than_candidates(args.candidates, args.rerank_top)
    if not args.reranker:
        reranker = None
    elif args.engine == "ray":
        reranker = _ray_reranker(args)
    else:
        reranker = load_reranker(args.reranker, args)
    args.blend = _blend_weights(args.reranker, args.blend)
    log(f"indexing {len(dataset.corpus)} documents ({args.retriever}) ...")
    start = time.perf_counter()
    retriever = build_retriever(
        dataset,
        args.retriever,
        embedder=embedder,
        batch_size=args.embed_batch_size,
        show_progress=not args.quiet,
        embedding_cache=embedding_cache_setting(args),
        embed_dtype=args.embed_dtype,
        fusion=fusion,
    )
    build_s = time.perf_counter() - start
    log(f"  index built in {build_s:.1f} s")
    tuning: dict[str, Any] | None = None
    default_rows: list[dict[str, Any]] = []
    if args.tune_fusion:
        tuning, default_rows = _tune(args, dataset, retriever, tune_queries, queries)
    if reranker is not None and args.engine == "local":  # the first query is not charged for it
        reranker.score("warm up", ["warm up passage"])
    retriever.search(next(iter(queries.values())), k=1)
    start = time.perf_counter()
    with ray_session(args) if args.engine == "ray" else contextlib.nullcontext():
        rows = evaluate_settings(
            dataset,
            retriever,
            reranker=reranker,
            queries=queries,
            candidates=args.candidates,
            depths=args.rerank_top,
            latency=latency,
            retriever_name=args.retriever
            + (f" (tuned: {_fusion_label(retriever)})" if tuning is not None else ""),
            progress=None if args.quiet else progress("evaluating"),
            blend_weights=args.blend,
            retriever_depth=args.retriever_depth,
        )
    eval_s = time.perf_counter() - start
    rows = default_rows + rows
    timings = {"index_build_s": build_s, "evaluation_s": eval_s}
    if args.engine == "ray" and reranker is not None:
        job = reranker.last_job
        timings["ray_job_s"] = job["seconds"]
        log(
            f"  Ray job: {job['pairs']} pairs in {job['seconds']:.1f} s "
            f"({job['pairs'] / job['seconds']:.0f} pairs/s, actor start-up included)"
        )
    result = EvalResult(
        settings={
            "data": str(Path(args.data).resolve()),
            "split": args.split,
            "retriever": args.retriever,
            "reranker": args.reranker,
            "embedder": embedder if args.retriever != "bm25" else None,
            "candidates": args.candidates,
            "rerank_top": sorted({row["depth"] for row in rows if row["depth"]}),
            "blend": args.blend,
            "retriever_depth": args.retriever_depth,
            "embed_dtype": args.embed_dtype,
            "queries": len(queries),
            "batch_size": getattr(reranker, "batch_size", None),
            "max_length": getattr(reranker, "max_length", None),
            "latency": latency,
            "fusion": None
            if args.retriever != "hybrid"
            else {
                "fusion": retriever.fusion,
                "weights": retriever.weights,
                "rrf_k": retriever.rrf_k,
            },
            "fusion_tuning": tuning,
            "engine": args.engine,
            **(
                {
                    "ray": {
                        "address": args.address,
                        "actors": args.actors,
                        "num_gpus_per_actor": args.num_gpus_per_actor,
                        "num_cpus_per_actor": args.num_cpus_per_actor,
                    }
                }
                if args.engine == "ray"
                else {}
            ),
        },
        dataset={
            "name": Path(args.data).name,
            "documents": len(dataset.corpus),
            "queries": len(queries),
            "judged_queries_in_split": len(dataset.qrels),
        },
        rows=rows,
        timings=timings,
        machine=machine_info(reranker),
    )
    print()
    print(
        f"{Path(args.data).name} ({args.split}): {len(queries)} queries, "
        f"{len(dataset.corpus)} documents, {args.candidates} candidates; index built in "
        f"{build_s:.1f} s; rerank latency {latency}"
    )
    from ..evaluation.runner import table_rows

    if tuning is not None:
        print(
            f"fusion tuned on {tuning['tune_queries']} queries of the split ({tuning['reason']}); "
            f"every row below is on the other {len(queries)} (held back)"
        )
    print(format_table(COLUMNS, table_rows(rows)))
    if args.out:
        write_json(args.out, result.to_dict())
    if args.plot:
        plot_tradeoff(
            rows,
            args.plot,
            title=f"{Path(args.data).name}: NDCG@10 vs latency "
            f"({args.retriever}, {args.candidates} candidates)",
        )
        log(f"wrote {args.plot}")
    return 0


def _tune(
    args: argparse.Namespace,
    dataset: Any,
    retriever: Any,
    tune_queries: dict[str, str],
    held: dict[str, str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score the settings in place on the held-back queries, then tune on the others."""
    from ..evaluation.runner import evaluate_settings
    from ..hybrid.retriever import default_depth

    default_rows = evaluate_settings(
        dataset,
        retriever,
        queries=held,
        candidates=args.candidates,
        depths=[],
        retriever_name=f"{args.retriever} (before tuning: {_fusion_label(retriever)})",
        retriever_depth=args.retriever_depth,
    )
    log(f"tuning fusion on {len(tune_queries)} queries ({len(held)} held back) ...")
    report = retriever.tune_fusion(
        tune_queries,
        {qid: dataset.qrels[qid] for qid in tune_queries},
        metric=args.tune_metric,
        candidates=args.retriever_depth or default_depth(args.candidates),
    )
    log(
        f"  {'applied' if report['applied'] else 'kept'} {_fusion_label(retriever)}: "
        f"{report['reason']} ({report['seconds']['search']:.1f} s)"
    )
    report["tune_queries"] = len(tune_queries)
    report["candidates"] = report["candidates"][:20]  # the best 20 of every setting tried
    return report, default_rows


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    ev = sub.add_parser("eval", help="NDCG/MRR/recall and latency per rerank depth on BEIR data")
    ev.add_argument(
        "--data", required=True, help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/)"
    )
    ev.add_argument("--split", default="test", help="BEIR split: its queries and qrels")
    ev.add_argument(
        "--retriever",
        choices=("bm25", "dense", "hybrid"),
        default="hybrid",
        help="first stage: BM25, dense, or both fused",
    )
    add_model_args(
        ev,
        reranker_help="cross-encoder hub id or local path; without it only the "
        "first stage is evaluated",
    )
    ev.add_argument(
        "--candidates", type=positive_int, default=100, help="first-stage hits per query"
    )
    add_depth_arg(ev)
    add_embed_dtype_arg(ev)
    add_fusion_args(ev)
    ev.add_argument(
        "--tune-fusion",
        action="store_true",
        help="hybrid only: tune fusion (HybridRetriever.tune_fusion) on --tune-share of the "
        "split's queries and report the settings before and after tuning on the rest",
    )
    ev.add_argument(
        "--tune-share",
        type=float,
        default=0.5,
        metavar="F",
        help="with --tune-fusion: share of the queries to tune on (default 0.5)",
    )
    ev.add_argument(
        "--tune-metric",
        default="ndcg@10",
        help="with --tune-fusion: what to maximise (ndcg@K, mrr@K, recall@K; default ndcg@10)",
    )
    ev.add_argument(
        "--rerank-top",
        type=depths,
        default=[10, 20, 50, 100],
        help="comma-separated rerank depths (default 10,20,50,100)",
    )
    ev.add_argument(
        "--queries", type=positive_int, default=None, help="evaluate only the first N queries"
    )
    ev.add_argument(
        "--latency",
        choices=("measured", "estimated", "batch"),
        default=None,
        help="measured: time every depth's own cross-encoder call (default); "
        "estimated: scale the deepest call's time by token share; batch: score all queries' "
        "candidates in one call and charge its time per pair (the only mode of --engine ray)",
    )
    ev.add_argument(
        "--blend",
        type=weights,
        default=[],
        metavar="W[,W...]",
        help="also report, per depth, the pipeline's blend_weight mix of normalised "
        "first-stage and cross-encoder scores at these weights (0..1); 'recommended' is "
        "the weight a model tuned by rerank-plugins tune records",
    )
    ev.add_argument("--embed-batch-size", type=positive_int, default=64, help="embedder batch size")
    ev.add_argument("--out", default=None, help="write results as JSON here")
    ev.add_argument("--plot", default=None, help="draw NDCG@10 vs latency to this PNG")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ray = add_engine_args(
        ev,
        title="Ray",
        local_help="the cross-encoder in this process",
        ray_help="score every query's candidates in one Ray Data job over a pool of actors, "
        "one model each",
        unit="actor",
    )
    ray.add_argument(
        "--actors", type=positive_int, default=2, help="cross-encoder actors (default 2)"
    )
    ev.set_defaults(func=cmd_eval)


def _blend_weights(model: str | None, blends: list[float | str]) -> list[float]:
    """``--blend`` as numbers, in the order given: ``recommended`` becomes the tuned model's.

    Without ``recommended``, a tuned model's recommendation is pointed at when it is missing.
    """
    numbers = [w for w in blends if not isinstance(w, str)]
    if len(numbers) == len(blends):
        weight = recommended_blend_weight(model) if model else None
        if weight is not None and weight not in numbers:
            log(
                f"  its training report recommends --blend {weight:g} (best on its held-out "
                "queries); add it, or --blend recommended, to see that row"
            )
        return numbers
    if not model:
        raise CLIError(
            "--blend recommended needs --reranker DIR, a model tuned by rerank-plugins tune"
        )
    try:
        weight = read_recommended_blend(model)
    except NoRecommendationError as error:
        raise CLIError(f"--blend recommended: {error}") from None
    if weight is None:
        log("  --blend recommended: its training report recommends no blend (the model alone)")
    else:
        log(f"  --blend recommended: {weight:g}, from its training report")
    resolved: list[float] = []
    for w in blends:
        value = weight if isinstance(w, str) else w
        if value is not None and value not in resolved:
            resolved.append(value)
    return resolved
