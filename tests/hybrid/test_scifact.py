"""SciFact (BEIR test split) quality gates; skipped when ../shared/data/scifact is absent.

The corpus is encoded once per machine with the bundled all-MiniLM-L6-v2 and cached under
~/.cache/rerank-plugins/tests (see conftest.py), so only the first run pays ~5 CPU minutes.
"""

from __future__ import annotations

import pytest

from rerank_plugins.evaluation.metrics import ndcg_at_k, recall_at_k
from rerank_plugins.hybrid import HybridRetriever

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def runs(scifact, scifact_corpus, scifact_embeddings, minilm_path):
    ids, texts = scifact_corpus
    qids = list(scifact.queries)
    queries = [scifact.queries[q] for q in qids]
    out = {}
    for name, retrievers in {
        "bm25": ("bm25",),
        "dense": ("dense",),
        "hybrid": ("bm25", "dense"),
    }.items():
        r = HybridRetriever.from_texts(
            texts,
            ids,
            embedder=minilm_path,
            retrievers=retrievers,
            embeddings=scifact_embeddings if "dense" in retrievers else None,
            show_progress=False,
        )
        hits = r.search_many(queries, k=100)
        out[name] = {qid: {h.id: h.score for h in hs} for qid, hs in zip(qids, hits, strict=True)}
    return out


@pytest.mark.parametrize(("name", "floor"), [("bm25", 0.66), ("dense", 0.64), ("hybrid", 0.70)])
def test_ndcg_at_10(runs, scifact, name, floor):
    assert ndcg_at_k(runs[name], scifact.qrels, 10) >= floor


def test_hybrid_recall_at_100(runs, scifact):
    # 0.9450 with the default (z-score, dense weighted 0.7), 0.9583 with equal-weight RRF: the
    # price of a default that also holds on TREC DL 2020 (docs/benchmarks.md, fusion section).
    assert recall_at_k(runs["hybrid"], scifact.qrels, 100) >= 0.94
