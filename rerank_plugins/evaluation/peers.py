"""``rerank-plugins bench``: our pipeline against LangChain and LlamaIndex on the same data and models.

Systems (all in one process, same corpus, same queries, same embedder and cross-encoder):

* ``ours``: :class:`HybridRetriever` (bm25s + FAISS + RRF, or BM25 only) then
  :class:`CrossEncoderReranker` through :class:`RerankPipeline`;
* ``langchain``: ``BM25Retriever`` (rank-bm25) + a FAISS vector store over
  ``HuggingFaceEmbeddings``, combined by ``EnsembleRetriever`` (weighted RRF), then
  ``CrossEncoderReranker`` with ``HuggingFaceCrossEncoder``; every component at its defaults
  except ``k`` (= ``candidates`` per retriever; the fused list is cut to ``candidates``);
* ``llamaindex``: ``SentenceTransformerRerank`` over *our* first-stage candidates (a rerank-only
  comparison: LlamaIndex has no BM25 in its core). It truncates pairs at its fixed 512 tokens;
  when that differs from our window (the model's limit) the report says so in a note.

Per query the systems run back to back in a rotating order, after one warm-up query each, so
drift on a shared machine hits all of them alike. Missing peer packages are skipped with a note.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .beir import BeirDataset
from .metrics import ndcg_at_k
from .runner import format_table, machine_info, percentiles_ms

PEERS = ("langchain", "llamaindex")


class _System:
    """One contender: ``build()`` once, then ``query(q) -> (ranked ids, retrieve_s, rerank_s, pairs)``."""

    name = ""
    build_s = 0.0
    notes: list[str]

    def __init__(self) -> None:
        self.notes = []

    def build(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def query(self, query: str) -> tuple[list[str], float, float, int]:  # pragma: no cover
        raise NotImplementedError


class Ours(_System):
    def __init__(
        self,
        ids,
        texts,
        *,
        retriever,
        embedder,
        reranker_model,
        candidates,
        top_k,
        reranker_kwargs: Mapping[str, Any],
        embed_dtype: str = "auto",
        retriever_depth=None,
        reranker: Any = None,
        fusion: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.reranker = reranker
        self.fusion = dict(fusion or {})
        self.name = f"rerank-plugins ({retriever})"
        if retriever_depth is not None:
            self.name += f", depth {retriever_depth}"
        self.retriever_depth = retriever_depth
        self._args = (ids, texts, retriever, embedder, reranker_model)
        self.candidates, self.top_k = candidates, top_k
        self.reranker_kwargs, self.embed_dtype = dict(reranker_kwargs), embed_dtype
        self.pipeline: Any = None

    def build(self) -> None:
        from ..cross_encoder import CrossEncoderReranker
        from ..hybrid import HybridRetriever
        from ..pipeline import RerankPipeline

        ids, texts, retriever, embedder, model = self._args
        reranker = self.reranker or CrossEncoderReranker(model, **self.reranker_kwargs)
        start = time.perf_counter()
        first = HybridRetriever.from_texts(
            texts,
            ids=ids,
            embedder=embedder,
            show_progress=False,
            retrievers=("bm25", "dense") if retriever == "hybrid" else ("bm25",),
            device=self.reranker_kwargs.get("device", "auto"),
            dtype=self.embed_dtype,
            embedding_cache=False,  # every system encodes the corpus: build times compare
            **self.fusion,
        )
        self.build_s = time.perf_counter() - start
        self.pipeline = RerankPipeline(
            first,
            reranker,
            candidates=self.candidates,
            top_k=self.top_k,
            retriever_depth=self.retriever_depth,
        )

    def candidates_for(self, query: str) -> tuple[list[Any], float]:
        start = time.perf_counter()
        hits = self.pipeline.retrieve(query)
        return hits, time.perf_counter() - start

    def query(self, query: str) -> tuple[list[str], float, float, int]:
        result = self.pipeline.run(query)
        # The retriever returns ``candidates`` hits whenever the index holds that many.
        pairs = min(self.candidates, len(self.pipeline.retriever))
        return (
            [hit.id for hit in result.hits],
            result.timings["retrieve_s"],
            result.timings["rerank_s"],
            pairs,
        )


class LangChainPeer(_System):
    def __init__(
        self,
        ids,
        texts,
        *,
        retriever,
        embedder,
        reranker_model,
        candidates,
        top_k,
        device,
        rrf_weights: Sequence[float] = (0.5, 0.5),
        rrf_c: float = 60,
    ) -> None:
        super().__init__()
        self.device = device
        self.rrf_weights, self.rrf_c = list(rrf_weights), rrf_c
        self.name = (
            "langchain (BM25Retriever"
            + (" + FAISS, EnsembleRetriever" if retriever == "hybrid" else "")
            + ")"
        )
        self._args = (ids, texts, retriever, embedder, reranker_model)
        self.candidates, self.top_k = candidates, top_k

    def build(self) -> None:
        from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        from langchain_community.cross_encoders import HuggingFaceCrossEncoder
        from langchain_community.retrievers import BM25Retriever

        ids, texts, retriever, embedder, model = self._args
        metadatas = [{"id": doc_id} for doc_id in ids]
        self.compressor = CrossEncoderReranker(
            model=HuggingFaceCrossEncoder(model_name=model, model_kwargs={"device": self.device}),
            top_n=self.top_k,
        )
        start = time.perf_counter()
        bm25 = BM25Retriever.from_texts(texts, metadatas=metadatas, k=self.candidates)
        if retriever == "hybrid":
            from langchain_classic.retrievers import EnsembleRetriever
            from langchain_community.vectorstores import FAISS

            store = FAISS.from_texts(
                texts, _langchain_embeddings(embedder, self.device), metadatas=metadatas
            )
            dense = store.as_retriever(search_kwargs={"k": self.candidates})
            self.retriever: Any = EnsembleRetriever(
                retrievers=[bm25, dense], weights=self.rrf_weights, c=int(self.rrf_c)
            )
        else:
            self.retriever = bm25
        self.build_s = time.perf_counter() - start

    def query(self, query: str) -> tuple[list[str], float, float, int]:
        start = time.perf_counter()
        docs = self.retriever.invoke(query)[: self.candidates]
        retrieved = time.perf_counter()
        ranked = self.compressor.compress_documents(docs, query)
        done = time.perf_counter()
        return [d.metadata["id"] for d in ranked], retrieved - start, done - retrieved, len(docs)


def _peer_rrf(first: Any, notes: list[str]) -> tuple[list[float], float]:
    """EnsembleRetriever's ``weights`` and ``c`` matching our built retriever (its RRF only).

    Read from ``first`` (our ``HybridRetriever``), which resolved the defaults, so the peer
    gets exactly the fusion we ran and the defaults live in one place.
    """
    from ..hybrid.fusion import weight_vector

    if first.fusion != "rrf":
        notes.append(
            f"fusion={first.fusion}: ours only; LangChain's EnsembleRetriever does weighted RRF "
            "(it gets the same weights and rrf_k)"
        )
    weights = weight_vector(first.weights, ("bm25", "dense"))  # an unnamed one weighs 1.0
    if first.weights is None:
        weights = weights / 2  # its default [0.5, 0.5]: the same order as our (1, 1)
    rrf_k = float(first.rrf_k)
    if rrf_k != int(rrf_k):
        notes.append(f"rrf_k={rrf_k:g}: LangChain's EnsembleRetriever takes an int c={int(rrf_k)}")
    return weights.tolist(), rrf_k


def _langchain_embeddings(embedder: Any, device: str) -> Any:
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:
        from langchain_community.embeddings import HuggingFaceEmbeddings
    import warnings

    with (
        warnings.catch_warnings()
    ):  # langchain_community's class is deprecated, still the common one
        warnings.simplefilter("ignore")
        return HuggingFaceEmbeddings(model_name=str(embedder), model_kwargs={"device": device})


class LlamaIndexPeer(_System):
    """SentenceTransformerRerank over our own first-stage candidates (rerank-only)."""

    name = "llamaindex (SentenceTransformerRerank, our candidates)"

    def __init__(self, ours: Ours, *, reranker_model, top_k, device) -> None:
        super().__init__()
        self.ours, self.model, self.top_k, self.device = ours, reranker_model, top_k, device

    def build(self) -> None:
        from llama_index.core.postprocessor import SentenceTransformerRerank

        self.rerank = SentenceTransformerRerank(
            model=str(self.model), top_n=self.top_k, device=self.device
        )
        self.build_s = self.ours.build_s  # same index as ours
        theirs = getattr(getattr(self.rerank, "_model", None), "max_length", None)
        mine = getattr(getattr(self.ours.pipeline, "reranker", None), "max_length", None)
        if theirs and mine and theirs != mine:
            self.notes.append(
                f"llamaindex: SentenceTransformerRerank truncates pairs at {theirs} tokens (its "
                f"fixed default); ours uses {mine} (the model's limit), so scores and cost differ"
            )

    def query(self, query: str) -> tuple[list[str], float, float, int]:
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        hits, retrieve_s = self.ours.candidates_for(query)
        nodes = [NodeWithScore(node=TextNode(text=h.text, id_=h.id), score=h.score) for h in hits]
        start = time.perf_counter()
        ranked = self.rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(query))
        return [n.node.node_id for n in ranked], retrieve_s, time.perf_counter() - start, len(nodes)


def run_bench(
    dataset: BeirDataset,
    *,
    reranker_model: str,
    embedder: Any,
    retriever: str = "hybrid",
    queries: int = 20,
    candidates: int = 30,
    top_k: int = 10,
    reranker_kwargs: Mapping[str, Any] | None = None,
    embed_dtype: str = "auto",
    retriever_depth: int | None = None,
    peers: str | Sequence[str] = PEERS,
    fusion: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    reranker: Any = None,
) -> dict[str, Any]:
    """Build every system, run the same queries through each, return metrics, timings and a table.

    ``reranker_kwargs`` (device, dtype, backend, quantize, batch_size, max_length, ...) go to
    our ``CrossEncoderReranker``; the device also goes to every peer (their cross-encoder and
    embedder), the other settings have no peer equivalent and the report's notes say so.
    ``embed_dtype`` is our dense embedder's precision. A ready ``reranker`` (e.g. a
    :class:`~rerank_plugins.CascadeReranker`) replaces the one built from ``reranker_kwargs``.
    ``fusion`` (``fusion``, ``weights``,
    ``rrf_k``) configures our fusion; LangChain's ``EnsembleRetriever`` gets the same weights
    and ``c = rrf_k`` (it only does weighted RRF: another ``fusion`` is ours only, noted).
    """
    from .._device import resolve_device

    reranker_kwargs = dict(reranker_kwargs or {})
    device = str(resolve_device(reranker_kwargs.get("device", "auto")))
    reranker_kwargs["device"] = device
    if isinstance(peers, str):
        peers = [p.strip() for p in peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ValueError(f"unknown peers {unknown}; choose from {list(PEERS)}")
    ids, texts = dataset.doc_texts()
    chosen = dict(list(dataset.queries.items())[:queries])
    qrels = {qid: dataset.qrels[qid] for qid in chosen}
    notes: list[str] = []

    ours = Ours(
        ids,
        texts,
        retriever=retriever,
        embedder=embedder,
        reranker_model=reranker_model,
        candidates=candidates,
        top_k=top_k,
        reranker_kwargs=reranker_kwargs,
        embed_dtype=embed_dtype,
        retriever_depth=retriever_depth,
        reranker=reranker,
        fusion=fusion,
    )
    log(f"building {ours.name} ...")
    ours.build()  # our errors (bad model, missing extra) propagate: nothing to compare against
    first = ours.pipeline.retriever  # the fusion that ran, defaults resolved
    hybrid = retriever == "hybrid"  # a BM25-only index fuses nothing: no fusion to report
    ran_fusion = (
        {"fusion": first.fusion, "weights": first.weights, "rrf_k": float(first.rrf_k)}
        if hybrid
        else None
    )
    rrf_weights, rrf_c = _peer_rrf(first, notes if "langchain" in peers and hybrid else [])
    systems: list[_System] = [ours]
    factories = {
        "langchain": lambda: LangChainPeer(
            ids,
            texts,
            retriever=retriever,
            embedder=embedder,
            reranker_model=reranker_model,
            candidates=candidates,
            top_k=top_k,
            device=device,
            rrf_weights=rrf_weights,
            rrf_c=rrf_c,
        ),
        "llamaindex": lambda: LlamaIndexPeer(
            ours, reranker_model=reranker_model, top_k=top_k, device=device
        ),
    }
    for peer in peers:
        system = factories[peer]()
        log(f"building {system.name} ...")
        try:
            system.build()
        except ImportError as error:
            notes.append(
                f'{peer} skipped: {error} (pip install "rerank-plugins[peers]" / llama-index-core)'
            )
            continue
        systems.append(system)
        notes.extend(system.notes)
    ours_only = {
        name: value
        for name, value in reranker_kwargs.items()
        if name != "device" and value not in (None, "auto", "torch")
    }
    if embed_dtype != "auto":
        ours_only["embed_dtype"] = embed_dtype
    if reranker is not None:
        ours_only["reranker"] = repr(reranker)
    if len(systems) > 1 and ours_only:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(ours_only.items()))
        notes.append(f"{settings}: ours only (no peer equivalent); peers run at their defaults")

    for system in systems:  # warm-up: first-call costs (lazy loads, allocations) not timed
        system.query(next(iter(chosen.values())))
    records: dict[str, dict[str, Any]] = {
        s.name: {"run": {}, "total": [], "retrieve": [], "rerank": [], "pairs": 0} for s in systems
    }
    log(f"running {len(chosen)} queries through {len(systems)} systems ...")
    for number, (qid, query) in enumerate(chosen.items()):
        shift = number % len(systems)
        for system in systems[shift:] + systems[:shift]:
            ranked, retrieve_s, rerank_s, pairs = system.query(query)
            rec = records[system.name]
            rec["run"][qid] = {doc: float(len(ranked) - i) for i, doc in enumerate(ranked)}
            rec["retrieve"].append(retrieve_s)
            rec["rerank"].append(rerank_s)
            rec["total"].append(retrieve_s + rerank_s)
            rec["pairs"] += pairs

    results = []
    for system in systems:
        rec = records[system.name]
        rerank_total = float(np.sum(rec["rerank"]))
        results.append(
            {
                "system": system.name,
                "ndcg@10": ndcg_at_k(rec["run"], qrels, 10),
                "index_build_s": system.build_s,
                "query_ms": percentiles_ms(rec["total"]),
                "retrieve_ms": percentiles_ms(rec["retrieve"]),
                "rerank_ms": percentiles_ms(rec["rerank"]),
                "rerank_pairs": rec["pairs"],
                "rerank_pairs_per_s": rec["pairs"] / rerank_total if rerank_total > 0 else 0.0,
            }
        )
    base = results[0]

    def ratio(value: float, reference: float) -> str:
        return f"{value / reference:.2f}x" if reference > 0 else "-"

    header = (
        "system",
        "NDCG@10",
        "index build s",
        "query p50/p95 ms",
        "rerank pairs/s",
        "build vs ours (<1: faster)",
        "p50 vs ours (<1: faster)",
        "pairs/s vs ours (>1: faster)",
    )
    body = [
        [
            r["system"],
            f"{r['ndcg@10']:.4f}",
            f"{r['index_build_s']:.2f}",
            f"{r['query_ms']['p50']:.1f} / {r['query_ms']['p95']:.1f}",
            f"{r['rerank_pairs_per_s']:.1f}",
            ratio(r["index_build_s"], base["index_build_s"]),
            ratio(r["query_ms"]["p50"], base["query_ms"]["p50"]),
            ratio(r["rerank_pairs_per_s"], base["rerank_pairs_per_s"]),
        ]
        for r in results
    ]
    return {
        "settings": {
            "retriever": retriever,
            "reranker": str(reranker_model),
            "embedder": str(embedder) if retriever == "hybrid" else None,
            "queries": len(chosen),
            "candidates": candidates,
            "retriever_depth": retriever_depth,
            "top_k": top_k,
            "documents": len(ids),
            "device": device,
            "reranker_kwargs": {k: v for k, v in reranker_kwargs.items() if k != "device"},
            "embed_dtype": embed_dtype,
            "fusion": ran_fusion,
        },
        "results": results,
        "notes": notes,
        "machine": machine_info(),
        "table": format_table(header, body),
    }
