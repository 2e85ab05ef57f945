"""``rerank-plugins eval``: NDCG/MRR/recall and latency per rerank depth on BEIR data."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import (
    CLIError,
    add_depth_arg,
    add_embed_dtype_arg,
    add_model_args,
    check_embedder,
    check_retriever_depth,
    default_embedder,
    depths,
    embedding_cache_setting,
    load_dataset,
    load_reranker,
    log,
    positive_int,
    progress,
    warn_rerank_deeper_than_candidates,
    weights,
    write_json,
)


def cmd_eval(args: argparse.Namespace) -> int:
    check_retriever_depth(args)
    from ..evaluation.runner import (
        COLUMNS,
        EvalResult,
        build_retriever,
        evaluate_settings,
        format_table,
        machine_info,
        plot_tradeoff,
        select_queries,
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
    embedder = args.embedder or (default_embedder() if args.retriever != "bm25" else None)
    check_embedder(embedder)
    if args.reranker:
        warn_rerank_deeper_than_candidates(args.candidates, args.rerank_top)
    reranker = load_reranker(args.reranker, args) if args.reranker else None
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
    )
    build_s = time.perf_counter() - start
    log(f"  index built in {build_s:.1f} s")
    if reranker is not None:  # one warm-up call so the first query is not charged for it
        reranker.score("warm up", ["warm up passage"])
    retriever.search(next(iter(queries.values())), k=1)
    start = time.perf_counter()
    rows = evaluate_settings(
        dataset,
        retriever,
        reranker=reranker,
        queries=queries,
        candidates=args.candidates,
        depths=args.rerank_top,
        latency=args.latency,
        retriever_name=args.retriever,
        progress=None if args.quiet else progress("evaluating"),
        blend_weights=args.blend,
        retriever_depth=args.retriever_depth,
    )
    eval_s = time.perf_counter() - start
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
            "latency": args.latency,
        },
        dataset={
            "name": Path(args.data).name,
            "documents": len(dataset.corpus),
            "queries": len(queries),
            "judged_queries_in_split": len(dataset.qrels),
        },
        rows=rows,
        timings={"index_build_s": build_s, "evaluation_s": eval_s},
        machine=machine_info(reranker),
    )
    print()
    print(
        f"{Path(args.data).name} ({args.split}): {len(queries)} queries, "
        f"{len(dataset.corpus)} documents, {args.candidates} candidates; index built in "
        f"{build_s:.1f} s; rerank latency {args.latency}"
    )
    from ..evaluation.runner import table_rows

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
        choices=("measured", "estimated"),
        default="measured",
        help="measured: time every depth's own cross-encoder call (default); "
        "estimated: scale the deepest call's time by token share",
    )
    ev.add_argument(
        "--blend",
        type=weights,
        default=[],
        metavar="W[,W...]",
        help="also report, per depth, the pipeline's blend_weight mix of normalised "
        "first-stage and cross-encoder scores at these weights (0..1)",
    )
    ev.add_argument("--embed-batch-size", type=positive_int, default=64, help="embedder batch size")
    ev.add_argument("--out", default=None, help="write results as JSON here")
    ev.add_argument("--plot", default=None, help="draw NDCG@10 vs latency to this PNG")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)
