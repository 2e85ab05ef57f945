"""BM25 with bm25s's Tokenizer: same terms and scores as before, token ids kept across saves."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("bm25s")

from rerank_plugins.hybrid import HybridRetriever, IndexFormatError
from rerank_plugins.hybrid.bm25 import TOKEN_IDS_FILE, TOKENS_FILE, VOCAB_FILE, BM25Index
from rerank_plugins.hybrid.manifest import content_digest, encode

TEXTS = [
    "Vitamin D deficiency and heart disease in older patients",
    "Stem cells in the brain; running mice ran",
    "The the the",  # stopwords only: no terms
    "",
    "Cancer drugs in clinical trials: a trial of cancer drugs",
    "Immune responses to virus infections, and immunity",
]
QUERIES = ["heart vitamins", "running brains", "cancer trial drug", "the", "unseen zebrafish"]


def _legacy_terms(texts, stemmer):
    import bm25s

    return bm25s.tokenize(
        list(texts),
        lower=True,
        stopwords="en",
        stemmer=stemmer,
        return_ids=False,
        show_progress=False,
    )


def test_terms_and_scores_match_bm25s_legacy_tokenize():
    import bm25s

    index = BM25Index()
    index.build(TEXTS)
    assert index.tokenize(TEXTS + QUERIES) == _legacy_terms(TEXTS + QUERIES, index._stemmer)
    legacy = bm25s.BM25()
    legacy.index(_legacy_terms(TEXTS, index._stemmer), show_progress=False)
    for terms in index.tokenize(QUERIES):
        if terms:
            np.testing.assert_array_equal(index._model.get_scores(terms), legacy.get_scores(terms))
    batched = index.search_many(QUERIES * 2, k=6)  # > 4 queries: bm25s.retrieve path
    one_by_one = [index.search_many([q], k=6)[0] for q in QUERIES * 2]
    for (p1, s1), (p2, s2) in zip(batched, one_by_one, strict=True):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_allclose(s1, s2, rtol=1e-6)


def test_queries_do_not_grow_the_vocabulary():
    index = BM25Index()
    index.build(TEXTS)
    before = json.dumps(index._vocab.get_vocab_dict(), sort_keys=True)
    words = dict(index._vocab.word_to_id)
    index.search_many(["zebrafish axolotl unseen words", "vitamins"], k=3)
    assert json.dumps(index._vocab.get_vocab_dict(), sort_keys=True) == before
    assert index._vocab.word_to_id == words


def _counting_tokenizer():
    calls = []

    def tokenize(text: str) -> list[str]:
        calls.append(text)
        return text.lower().split()

    return tokenize, calls


def test_add_and_delete_after_load_tokenize_only_new_texts(tmp_path):
    tokenizer, calls = _counting_tokenizer()
    r = HybridRetriever.from_texts(TEXTS, retrievers=("bm25",), tokenizer=tokenizer)
    r.save(tmp_path / "i")
    assert (tmp_path / "i" / "bm25" / TOKEN_IDS_FILE).is_file()
    loaded = HybridRetriever.load(tmp_path / "i", tokenizer=tokenizer)
    calls.clear()
    loaded.add(["zebrafish fins regrow"], ids=["z"])
    assert calls == ["zebrafish fins regrow"]  # the stored texts were not re-tokenized
    calls.clear()
    loaded.delete(["0"])
    assert calls == []
    assert loaded.search("zebrafish", k=1)[0].id == "z"
    fresh = HybridRetriever.from_texts(
        [*TEXTS[1:], "zebrafish fins regrow"],
        ids=loaded.ids,
        retrievers=("bm25",),
        tokenizer=tokenizer,
    )
    for query in ("cells brain", "cancer drugs", "zebrafish"):
        assert [(h.id, h.score) for h in loaded.search(query, k=4)] == [
            (h.id, h.score) for h in fresh.search(query, k=4)
        ]


def test_index_saved_without_token_ids_still_loads_and_updates(tmp_path):
    r = HybridRetriever.from_texts(TEXTS, retrievers=("bm25",))
    r.save(tmp_path / "old")
    manifest_path = tmp_path / "old" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name in (TOKENS_FILE, TOKEN_IDS_FILE, "corpus_token_lengths.npy", VOCAB_FILE):
        (tmp_path / "old" / "bm25" / name).unlink()  # the layout written before this change
        del manifest["files"][f"bm25/{name}"]  # ... whose manifest never listed them
    manifest["content_sha256"] = content_digest(manifest)
    manifest_path.write_bytes(encode(manifest))
    loaded = HybridRetriever.load(tmp_path / "old")
    assert loaded.search_many(QUERIES, k=3) == r.search_many(QUERIES, k=3)
    loaded.add(["zebrafish fins"], ids=["z"])
    r.add(["zebrafish fins"], ids=["z"])
    assert loaded.search_many([*QUERIES, "zebrafish"], k=3) == r.search_many(
        [*QUERIES, "zebrafish"], k=3
    )
    loaded.save(tmp_path / "new")  # changed since the load: written in the new layout
    assert (tmp_path / "new" / "bm25" / TOKENS_FILE).is_file()


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        (TOKENS_FILE, lambda p: p.write_text('{"version": 99}')),
        (TOKEN_IDS_FILE, lambda p: np.save(p, np.array([10**6], dtype=np.int32))),
        ("corpus_token_lengths.npy", lambda p: np.save(p, np.array([1, 2], dtype=np.int64))),
        (VOCAB_FILE, lambda p: p.write_text("{not json")),
    ],
)
def test_damaged_token_files_raise_index_format_error(tmp_path, name, damage):
    HybridRetriever.from_texts(TEXTS, retrievers=("bm25",)).save(tmp_path / "i")
    damage(tmp_path / "i" / "bm25" / name)
    with pytest.raises(IndexFormatError, match="bm25"):
        HybridRetriever.load(tmp_path / "i")


def test_custom_tokenizer_output_is_checked():
    with pytest.raises(TypeError, match="tokenizer must return a list of str"):
        HybridRetriever.from_texts(["a b"], retrievers=("bm25",), tokenizer=lambda t: [1, 2])
