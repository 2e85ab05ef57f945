"""Hard-negative mining with our own first stage: never a judged positive, seeded, bounded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rp_test_support import HashEmbedder
from training_support import write_beir

from rerank_plugins.evaluation.runner import build_retriever
from rerank_plugins.training import load_training_data, mine_negatives
from rerank_plugins.training.negatives import (
    check_rank_range,
    fill_negatives,
    filter_with_teacher,
    negative_stats,
)

pytest.importorskip("bm25s")
pytest.importorskip("faiss")


@pytest.fixture()
def data_and_retriever(tmp_path: Path):
    root = write_beir(tmp_path / "beir")
    # A corpus duplicate of q1's positive under another id: it must not become q1's negative.
    with (root / "corpus.jsonl").open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "_id": "dup1",
                    "title": "tumor",
                    "text": "tumor cells growth increased with protein expression study",
                }
            )
            + "\n"
        )
    # q2 has two positives; both are excluded from its negatives.
    qrels = root / "qrels" / "train.tsv"
    qrels.write_text(qrels.read_text() + "q2\td7\t2\n")
    data = load_training_data(root, eval_fraction=0.1, seed=0)
    retriever = build_retriever(
        data.dataset, "hybrid", embedder=HashEmbedder(), show_progress=False
    )
    return data, retriever


def test_negatives_never_include_a_judged_positive(data_and_retriever) -> None:
    data, retriever = data_and_retriever
    qrels = {**data.train_qrels, **data.eval_qrels}
    mined = mine_negatives(
        retriever, data.queries, qrels, data.text, num_negatives=6, rank_max=16, show_progress=False
    )
    assert {m.query_id for m in mined} == set(qrels)
    for item in mined:
        judged_positive = {d for d, g in qrels[item.query_id].items() if g > 0}
        assert set(item.positives) == judged_positive
        assert judged_positive.isdisjoint(item.negatives)
        positive_texts = {data.text(d) for d in item.positives}
        assert not positive_texts & {data.text(d) for d in item.negatives}
        assert len(set(item.negatives)) == len(item.negatives)
        assert all(1 <= r <= 16 for r in item.negative_ranks)
    by_id = {m.query_id: m for m in mined}
    assert "dup1" not in by_id["q1"].negatives
    assert by_id["q2"].positives == ["d7", "d2"]  # higher grade first
    assert by_id["q2"].grades == [2, 1]
    assert "x0" in by_id["q0"].negatives or "x0" not in {
        h.id for h in retriever.search(data.queries["q0"], k=16)
    }


def test_rank_window_sampling_and_seed(data_and_retriever) -> None:
    data, retriever = data_and_retriever
    qrels = data.train_qrels
    kwargs = {"num_negatives": 3, "rank_min": 2, "rank_max": 8, "show_progress": False}
    top = mine_negatives(retriever, data.queries, qrels, data.text, sampling="top", **kwargs)
    # The same batched call mining makes (search and search_many may order ties differently).
    ranked_lists = retriever.search_many([m.query for m in top], k=8)
    for item, hits in zip(top, ranked_lists, strict=True):
        positive_texts = {data.text(p) for p in item.positives}
        eligible = [
            (rank, hit.id)
            for rank, hit in enumerate(hits, 1)
            if rank >= 2 and hit.id not in item.positives and hit.text not in positive_texts
        ]
        assert list(zip(item.negative_ranks, item.negatives, strict=True)) == eligible[:3]
    first = mine_negatives(retriever, data.queries, qrels, data.text, seed=5, **kwargs)
    second = mine_negatives(retriever, data.queries, qrels, data.text, seed=5, **kwargs)
    assert [m.negatives for m in first] == [m.negatives for m in second]
    assert all(2 <= r <= 8 for m in first for r in m.negative_ranks)


def test_teacher_margin_drops_likely_false_negatives(data_and_retriever) -> None:
    data, retriever = data_and_retriever
    mined = mine_negatives(
        retriever,
        data.queries,
        data.train_qrels,
        data.text,
        num_negatives=4,
        rank_max=10,
        show_progress=False,
    )
    before = negative_stats(mined, 4)["negatives"]
    suspicious = {m.negatives[0] for m in mined}

    def teacher(pairs: list[tuple[str, str]]) -> np.ndarray:
        # Positives score 10; one negative per query scores 9.8 (within 5% of 10): dropped.
        texts = {data.text(d) for d in suspicious}
        positive_texts = {data.text(p) for m in mined for p in m.positives}
        return np.array(
            [10.0 if p in positive_texts else 9.8 if p in texts else 1.0 for _, p in pairs]
        )

    dropped = filter_with_teacher(mined, teacher, data.text, relative_margin=0.05)
    assert dropped >= len(mined)
    assert negative_stats(mined, 4)["negatives"] == before - dropped
    assert not suspicious & {d for m in mined for d in m.negatives}
    with pytest.raises(ValueError, match="relative_margin must be >= 0"):
        filter_with_teacher(mined, teacher, data.text, relative_margin=-1)


def test_fill_tops_up_with_non_positives(data_and_retriever) -> None:
    data, retriever = data_and_retriever
    mined = mine_negatives(
        retriever,
        data.queries,
        data.train_qrels,
        data.text,
        num_negatives=2,
        rank_min=1,
        rank_max=2,
        show_progress=False,
    )
    corpus_ids = list(data.dataset.corpus)
    added = fill_negatives(mined, corpus_ids, data.train_qrels, data.text, num_negatives=5)
    assert added > 0
    for item in mined:
        assert len(item.negatives) == 5
        assert set(item.positives).isdisjoint(item.negatives)
        assert item.negative_ranks.count(0) == 5 - sum(r > 0 for r in item.negative_ranks)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 3), "rank_min must be a positive int"),
        ((5, 4, 1), "rank_max=4 is below rank_min=5"),
        ((1, 3, 4), r"ranks 1\.\.3 hold 3 documents, fewer than num_negatives=4"),
        ((1, 3, True), "num_negatives must be a positive int"),
    ],
)
def test_bad_rank_range(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_rank_range(*args)
