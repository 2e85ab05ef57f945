"""tune_fusion on synthetic corpora where one retriever is clearly better than the other."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from rerank_plugins.hybrid import HybridRetriever, tuning

pytest.importorskip("bm25s")
pytest.importorskip("faiss")


class TopicEmbedder:
    """Embeds a text as its topic's one-hot vector plus a little deterministic noise."""

    def __init__(self, topics: dict[str, int], dim: int) -> None:
        self.topics, self.dim = topics, dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")
            out[row] = 0.05 * np.random.default_rng(seed).standard_normal(self.dim)
            out[row, self.topics[text]] += 1.0
        return out


def synthetic(better: str, n_queries: int = 40):
    """(texts, ids, queries, qrels, embedder) where ``better`` finds each relevant document.

    Every query ``i`` has one relevant document ``r{i}`` and three decoys. When dense is the
    better retriever, the decoys share the query's words (BM25 ranks them first) and only the
    relevant document shares its topic (dense ranks it first); when BM25 is, the other way
    round. Decoys come first in the corpus, so they win ties; 100 fillers match nothing.
    """
    dim = n_queries + 1
    spare = n_queries  # the topic of every document that matches no query's topic
    topics: dict[str, int] = {}
    decoys, relevant, queries, qrels = [], [], {}, {}
    for i in range(n_queries):
        query = f"qa{i} qb{i}"
        queries[f"q{i}"], qrels[f"q{i}"] = query, {f"r{i}": 1}
        topics[query] = i
        for j in range(3):
            if better == "dense":
                text, topic = f"qa{i} qb{i} decoy{i}x{j}", spare
            else:
                text, topic = f"decoy{i}x{j} dd{i}x{j}", i
            decoys.append((f"d{i}x{j}", text))
            topics[text] = topic
        text = f"ra{i} rb{i}" if better == "dense" else f"qa{i} qb{i} ra{i}"
        relevant.append((f"r{i}", text))
        topics[text] = i if better == "dense" else spare
    fillers = [(f"f{n}", f"filler{n} words{n % 7}") for n in range(100)]
    for _, text in fillers:
        topics[text] = spare
    docs = decoys + relevant + fillers
    return (
        [t for _, t in docs],
        [d for d, _ in docs],
        queries,
        qrels,
        TopicEmbedder(topics, dim),
    )


def build(better: str, n_queries: int = 40):
    texts, ids, queries, qrels, embedder = synthetic(better, n_queries)
    # Tuning starts from equal-weight RRF, which favours neither retriever (the shipped
    # default already leans on dense, so it would start near the dense-better answer).
    retriever = HybridRetriever.from_texts(
        texts, ids, embedder=embedder, show_progress=False, stemmer=None, fusion="rrf", weights=None
    )
    return retriever, queries, qrels


@pytest.mark.parametrize("better", ["dense", "bm25"])
def test_rrf_weights_move_towards_the_better_retriever(better):
    retriever, queries, qrels = build(better)
    before = [h.id for h in retriever.search(queries["q0"], k=3)]
    report = retriever.tune_fusion(queries, qrels, methods=["rrf"])
    assert report["applied"], report["reason"]
    weights = report["settings"]["weights"]
    worse = "bm25" if better == "dense" else "dense"
    assert weights[better] > weights[worse]
    assert report["best"]["score"] > report["baseline"]["score"] + 0.2
    assert report["cv"]["gain"] > 0.2 and report["cv"]["folds"] == 5
    # applied in place: the retriever now searches with the tuned settings
    assert retriever.fusion == "rrf" and retriever.weights == weights
    assert retriever.settings["weights"] == weights
    after = [h.id for h in retriever.search(queries["q0"], k=3)]
    assert after[0] == "r0" and before[0] != "r0"


def test_all_methods_beat_the_default_and_report_every_candidate():
    retriever, queries, qrels = build("dense")
    report = retriever.tune_fusion(queries, qrels)
    assert report["applied"]
    assert report["best"]["score"] >= 0.95 > report["baseline"]["score"]
    methods = {c["fusion"] for c in report["candidates"]}
    assert methods == {"rrf", "minmax", "zscore", "dbsf"}
    scores = [c["score"] for c in report["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert report["candidates"][0]["score"] == report["best"]["score"]
    assert report["metric"] == "ndcg@10" and report["queries"] == 40 and report["depth"] == 100
    # the fused ranking tune_fusion scored is the one search returns
    hits = retriever.search_many(list(queries.values()), k=10)
    from rerank_plugins.evaluation.metrics import ndcg_at_k

    run = {q: {h.id: h.score for h in hs} for q, hs in zip(queries, hits, strict=True)}
    assert ndcg_at_k(run, qrels, 10) == pytest.approx(report["best"]["score"])


def test_one_query_keeps_the_baseline():
    retriever, queries, qrels = build("dense")
    report = retriever.tune_fusion({"q0": queries["q0"]}, qrels)
    assert not report["applied"] and "one labelled query" in report["reason"]
    assert report["queries"] == 1 and report["cv"]["folds"] == 0
    assert retriever.fusion == "rrf" and retriever.weights is None and retriever.rrf_k == 60


def test_a_handful_of_queries_does_not_crash_and_uses_fewer_folds():
    retriever, queries, qrels = build("dense")
    few = {q: queries[q] for q in ("q0", "q1", "q2")}
    report = retriever.tune_fusion(few, qrels, folds=5)
    assert report["cv"]["folds"] == 3 and len(report["cv"]["picks"]) == 3


def test_one_lucky_query_does_not_change_the_settings():
    # Candidate 1 wins on a single query only: every fold that holds that query out sees a
    # tie on the others (baseline kept); every other fold picks candidate 1 but it ties there.
    table = np.array([[0.5] * 6, [0.5] * 5 + [1.0]])
    applied, reason, cv = tuning.decide(table, folds=3, margin=0.005, seed=0)
    assert not applied and cv["gain"] == 0.0, reason
    # a consistent win is taken
    table = np.array([[0.5] * 6, [0.6] * 6])
    applied, _, cv = tuning.decide(table, folds=3, margin=0.005, seed=0)
    assert applied and cv["gain"] == pytest.approx(0.1)


def test_unlabelled_and_skipped_queries_are_reported():
    retriever, queries, qrels = build("dense", n_queries=6)
    mixed = {**queries, "extra": "qa1 something"}
    report = retriever.tune_fusion(mixed, {**qrels, "q5": {"r5": 0}})
    assert sorted(report["skipped_queries"]) == ["extra", "q5"] and report["queries"] == 5


def test_bad_arguments_are_refused():
    retriever, queries, qrels = build("dense", n_queries=4)
    with pytest.raises(ValueError, match="metric"):
        retriever.tune_fusion(queries, qrels, metric="map")
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        retriever.tune_fusion(queries, qrels, methods=["rrf", "max"])
    with pytest.raises(ValueError, match="relevant"):
        retriever.tune_fusion(queries, {})
    with pytest.raises(ValueError, match="empty"):
        retriever.tune_fusion({}, qrels)
    with pytest.raises(ValueError, match=r"queries\['q0'\]"):
        retriever.tune_fusion({"q0": "  "}, qrels)
    with pytest.raises(TypeError, match="grade"):
        retriever.tune_fusion(queries, {"q0": {"r0": "1"}})
    with pytest.raises(ValueError, match="rrf_k"):
        retriever.tune_fusion(queries, qrels, rrf_ks=[60, -1])
    with pytest.raises(ValueError, match="shares"):
        retriever.tune_fusion(queries, qrels, shares=[0.5, 1.5])
    with pytest.raises(ValueError, match="folds"):
        retriever.tune_fusion(queries, qrels, folds=1)
    bm25_only = HybridRetriever.from_texts(["a b", "c d"], retrievers=("bm25",))
    with pytest.raises(ValueError, match="two retrievers"):
        bm25_only.tune_fusion({"q": "a"}, {"q": {"0": 1}})
    assert retriever.fusion == "rrf" and retriever.weights is None  # nothing applied


def test_tuned_settings_survive_save_and_load(tmp_path: Path):
    retriever, queries, qrels = build("bm25")
    report = retriever.tune_fusion(queries, qrels)
    assert report["applied"]
    retriever.save(tmp_path / "index")
    embedder = retriever._embedder._fn
    loaded = HybridRetriever.load(tmp_path / "index", embedder=embedder, show_progress=False)
    settings = report["settings"]
    assert (loaded.fusion, loaded.rrf_k, loaded.weights) == (
        settings["fusion"],
        settings["rrf_k"],
        settings["weights"],
    )
    texts = list(queries.values())
    assert loaded.search_many(texts, k=5) == retriever.search_many(texts, k=5)


def test_a_few_hundred_queries_take_seconds():
    retriever, queries, qrels = build("dense", n_queries=300)
    report = retriever.tune_fusion(queries, qrels)
    # ~90 settings x 300 queries fused and scored; generous bound for a busy 2-core machine
    assert report["seconds"]["search"] < 30, report["seconds"]
    assert report["applied"] and report["queries"] == 300


@pytest.mark.parametrize("metric", ["ndcg@10", "mrr@5", "recall@20"])
def test_batched_scoring_agrees_with_the_evaluation_metrics(metric):
    from rerank_plugins.evaluation import metrics
    from rerank_plugins.hybrid import fusion

    rng = np.random.default_rng(3)
    doc_ids = [f"doc{i}" for i in range(60)]
    lists, qids, qrels = [], [], {}
    for q in range(25):
        per = []
        for _ in range(2):
            size = int(rng.integers(0, 30))  # includes empty lists
            positions = rng.choice(60, size=size, replace=False)
            per.append((positions, np.sort(rng.normal(size=size))[::-1].copy()))
        lists.append(per)
        qids.append(f"q{q}")
        judged = rng.choice(60, size=8, replace=False)
        qrels[f"q{q}"] = {doc_ids[d]: int(rng.integers(0, 4)) for d in judged}
        qrels[f"q{q}"][doc_ids[judged[0]]] = 2  # at least one relevant document
    settings = [
        {"fusion": m, "rrf_k": 10.0, "weights": {"bm25": 0.6, "dense": 1.4}}
        for m in fusion.FUSION_METHODS
    ]
    table = tuning.score_settings(
        lists, doc_ids, qids, qrels, settings, ("bm25", "dense"), metric=metric, depth=20
    )
    name, cut = tuning.parse_metric(metric)
    per_query = {
        "ndcg": metrics.ndcg_per_query,
        "mrr": metrics.mrr_per_query,
        "recall": metrics.recall_per_query,
    }[name]
    for row, setting in enumerate(settings):
        weights = fusion.weight_vector(setting["weights"], ("bm25", "dense"))
        run = {}
        for qid, per in zip(qids, lists, strict=True):  # one query at a time, as search does
            union, scores, ranks = fusion.align([p[:20] for p, _ in per], [s[:20] for _, s in per])
            fused = fusion.fuse(setting["fusion"], scores, ranks, weights, rrf_k=10.0)
            top = union[fusion.top_order(fused, union, cut)].tolist()
            run[qid] = {doc_ids[p]: float(cut - i) for i, p in enumerate(top)}
        expected = per_query(run, qrels, cut)
        np.testing.assert_allclose(table[row], [expected[q] for q in qids], err_msg=str(setting))
