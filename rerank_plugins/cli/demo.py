"""``rerank-plugins demo``: index a corpus, answer a few queries, print ranked passages."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .._models import DEFAULT_CROSS_ENCODER
from ._common import (
    CLIError,
    add_embed_dtype_arg,
    check_embedder,
    default_demo_data,
    default_embedder,
    default_reranker,
    embedding_cache_setting,
    load_dataset,
    log,
    positive_int,
    warn_rerank_deeper_than_candidates,
)
from ._fusion_args import add_fusion_args, fusion_kwargs
from ._reranker_args import add_model_args, load_reranker

#: Queries for examples/data/sample_corpus.jsonl (or a sample_queries.txt next to the corpus).
SAMPLE_QUERIES = (
    "Does vitamin D deficiency raise the risk of fractures?",
    "Why don't antibiotics work against the flu?",
    "Is smoking the main cause of lung cancer?",
)


def _read_corpus_file(path: Path) -> tuple[list[str], list[str], list[str]]:
    from ..evaluation.beir import read_jsonl

    try:
        rows = read_jsonl(path, require_id=False)
    except (OSError, ValueError) as error:
        raise CLIError(str(error)) from None
    ids = [str(row.get("_id", row.get("id", number))) for number, row in rows]
    texts = [f"{row.get('title') or ''} {row.get('text') or ''}".strip() for _, row in rows]
    queries: list[str] = []
    sibling = path.with_name("sample_queries.txt")
    if sibling.is_file():
        queries = [q.strip() for q in sibling.read_text(encoding="utf-8").splitlines() if q.strip()]
    return ids, texts, queries


def _demo_corpus(
    args: argparse.Namespace,
) -> tuple[str, list[str], list[str], list[tuple[str, set[str]]]]:
    """(label, ids, texts, [(query, relevant ids)]) for the demo."""
    data = Path(args.data) if args.data else default_demo_data()
    if data is None:
        raise CLIError(
            "no demo corpus found (../shared/data/scifact or examples/data/sample_corpus.jsonl); "
            "pass --data DIR (BEIR format) or --data FILE.jsonl"
        )
    if data.is_file():
        ids, texts, file_queries = _read_corpus_file(data)
        if not ids:
            raise CLIError(f"{data} holds no documents")
        queries = args.query or file_queries or list(SAMPLE_QUERIES)
        return (
            str(data),
            ids[: args.limit],
            texts[: args.limit],
            [(q, set()) for q in queries[: args.queries]],
        )
    dataset = load_dataset(data, args.split)
    chosen: list[tuple[str, set[str]]]
    if args.query:
        chosen = [(q, set()) for q in args.query]
    else:
        chosen = [
            (dataset.queries[qid], {d for d, r in dataset.qrels[qid].items() if r > 0})
            for qid in list(dataset.queries)[: args.queries]
        ]
    all_ids, all_texts = dataset.doc_texts()
    # A subset keeps the demo fast on CPU: the demo queries' relevant documents, then the
    # first documents of the corpus.
    wanted = set().union(*(rel for _, rel in chosen)) if chosen else set()
    keep = [i for i, doc in enumerate(all_ids) if doc in wanted]
    for i in range(len(all_ids)):
        if len(keep) >= max(args.limit, len(wanted)):
            break
        if all_ids[i] not in wanted:
            keep.append(i)
    keep.sort()
    return str(data), [all_ids[i] for i in keep], [all_texts[i] for i in keep], chosen


def cmd_demo(args: argparse.Namespace) -> int:
    from ..pipeline import RerankPipeline

    label, ids, texts, queries = _demo_corpus(args)
    model = args.reranker or default_reranker(shared=True)
    embedder = args.embedder or default_embedder()
    check_embedder(embedder)
    fusion = fusion_kwargs(args, hybrid=bool(embedder))
    warn_rerank_deeper_than_candidates(args.candidates, args.rerank_top)
    if model == DEFAULT_CROSS_ENCODER and not args.reranker:
        log(
            f"../shared not found: using the hub model {model} (read from the Hugging Face "
            "cache, else downloaded once; set RERANK_PLUGINS_CE_MODEL or --reranker to a local "
            "directory to stay offline)"
        )
    log(f"demo: corpus {label}; cross-encoder {model}; embedder {embedder or 'none (BM25 only)'}")
    reranker = load_reranker(model, args)
    retrievers: tuple[str, ...] = ("bm25", "dense") if embedder else ("bm25",)
    from ..hybrid import HybridRetriever

    log(f"indexing {len(ids)} documents from {label} ({' + '.join(retrievers)}) ...")
    start = time.perf_counter()
    kwargs: dict[str, Any] = {"retrievers": retrievers, "show_progress": True}
    if embedder:
        kwargs["embedder"] = embedder
        kwargs["embedding_cache"] = embedding_cache_setting(args)
        kwargs["dtype"] = args.embed_dtype
    retriever = HybridRetriever.from_texts(texts, ids=ids, **kwargs, **fusion)
    build_s = time.perf_counter() - start
    log(f"  index built in {build_s:.1f} s")
    pipeline = RerankPipeline(
        retriever,
        reranker,
        candidates=args.candidates,
        rerank_top=args.rerank_top,
        top_k=args.top_k,
    )
    # Warm-up (first-call allocations, lazy model loads) so the printed timings are steady-state.
    retriever.search(queries[0][0] if queries else "warm up", k=1)
    reranker.score("warm up", ["warm up passage"])
    print(
        f"\nCorpus: {label} ({len(ids)} documents indexed, {' + '.join(retrievers)}"
        f"{', ' + retriever.fusion if len(retrievers) > 1 else ''}); cross-encoder: {reranker.model_name} "
        f"on {reranker.device}; {args.candidates} candidates, top {args.rerank_top} reranked"
    )
    for number, (query, relevant) in enumerate(queries, 1):
        result = pipeline.run(query)
        print(f"\n[{number}] {query}")
        for rank, hit in enumerate(result.hits, 1):
            mark = " *" if hit.id in relevant else ""
            first = f"{hit.retrieval_score:.4f}" if hit.retrieval_score is not None else "-"
            snippet = " ".join(hit.text.split())[:110]
            print(f"  {rank}. {hit.id:<10} score {hit.score:7.3f}  first-stage {first}{mark}")
            print(f"     {snippet}{'...' if len(hit.text) > 110 else ''}")
        t = result.timings
        print(
            f"  timings: retrieve {t['retrieve_s'] * 1000:.1f} ms, rerank "
            f"{t['rerank_s'] * 1000:.1f} ms, total {t['total_s'] * 1000:.1f} ms"
            + ("" if result.reranked else f"  (not reranked: {result.error})")
        )
    if any(rel for _, rel in queries):
        print("\n(* = judged relevant in the data set's qrels)")
    pipeline.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    demo = sub.add_parser(
        "demo", help="index a corpus, answer a few queries, print ranked passages"
    )
    demo.add_argument(
        "--data",
        default=None,
        help="BEIR directory or corpus .jsonl (default: ../shared/data/scifact, "
        "else examples/data/sample_corpus.jsonl)",
    )
    demo.add_argument("--split", default="test", help="BEIR split whose queries are asked")
    add_model_args(
        demo,
        reranker_help="cross-encoder hub id or local path (default: "
        "$RERANK_PLUGINS_CE_MODEL, ../shared/models/minilm-l6-scifact-ce, "
        f"else {DEFAULT_CROSS_ENCODER})",
    )
    add_embed_dtype_arg(demo)
    add_fusion_args(demo)
    demo.add_argument("--queries", type=positive_int, default=3, help="how many queries to run")
    demo.add_argument("--query", action="append", default=None, help="your own query (repeatable)")
    demo.add_argument("--top-k", type=positive_int, default=3, help="hits to print per query")
    demo.add_argument("--candidates", type=positive_int, default=20, help="first-stage hits")
    demo.add_argument(
        "--rerank-top", type=positive_int, default=20, help="hits the cross-encoder scores"
    )
    demo.add_argument(
        "--limit",
        type=positive_int,
        default=400,
        help="documents to index from a BEIR directory: a subset that keeps the "
        "demo queries' relevant documents, so the demo stays quick on CPU "
        "(default 400)",
    )
    demo.set_defaults(func=cmd_demo)
