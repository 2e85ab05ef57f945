"""Hard negatives from our own first stage: what the reranker will actually be asked to reorder.

For every training query the :class:`~rerank_plugins.hybrid.HybridRetriever` (hybrid, BM25 or
dense) retrieves its top ``rank_max`` documents; negatives are drawn from ranks
``rank_min..rank_max`` (1-based, inclusive). A judged-relevant document (grade > 0) is never a
negative, nor is a document whose text equals a positive's (corpus duplicates). Judged
non-relevant documents (grade <= 0) stay: they are the best negatives there are.

Optionally a teacher cross-encoder drops likely false negatives, as
``sentence_transformers.util.mine_hard_negatives`` does with ``relative_margin``: a candidate
is kept only when ``teacher(query, candidate) <= p - |p| * relative_margin``, with ``p`` the
teacher's lowest score among the query's positives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .data import positives

logger = logging.getLogger(__name__)

Sampling = Literal["random", "top"]
NEGATIVE_SOURCES = ("hybrid", "bm25", "dense")


@dataclass
class MinedQuery:
    """One training query: its judged positives and the hard negatives mined for it."""

    query_id: str
    query: str
    positives: list[str]
    grades: list[int]
    negatives: list[str] = field(default_factory=list)
    negative_ranks: list[int] = field(default_factory=list)  # first-stage rank; 0 = random fill


def check_rank_range(rank_min: int, rank_max: int, num_negatives: int) -> None:
    """Ranks are 1-based and inclusive; the window must be able to hold the negatives."""
    for name, value in (
        ("rank_min", rank_min),
        ("rank_max", rank_max),
        ("num_negatives", num_negatives),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if rank_max < rank_min:
        raise ValueError(f"rank_max={rank_max} is below rank_min={rank_min}")
    if rank_max - rank_min + 1 < num_negatives:
        raise ValueError(
            f"ranks {rank_min}..{rank_max} hold {rank_max - rank_min + 1} documents, fewer than "
            f"num_negatives={num_negatives}"
        )


def mine_negatives(
    retriever: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    text_of: Callable[[str], str],
    *,
    num_negatives: int = 7,
    rank_min: int = 1,
    rank_max: int = 30,
    sampling: Sampling = "random",
    seed: int = 0,
    batch_size: int = 64,
    retriever_depth: int | None = None,
    show_progress: bool = True,
) -> list[MinedQuery]:
    """Hard negatives for every query of ``qrels`` that has a positive.

    ``sampling="random"`` draws ``num_negatives`` of the eligible documents in the rank window
    (seeded, so reruns mine the same ones); ``"top"`` takes the highest-ranked ones. A query
    whose window holds fewer eligible documents gets fewer negatives (see :func:`fill_negatives`).

    Example:
        >>> mined = mine_negatives(retriever, data.queries, data.train_qrels, data.text)  # doctest: +SKIP
        >>> mined[0].negatives[:3]  # doctest: +SKIP
        ['4983', '1188', '3400']
    """
    check_rank_range(rank_min, rank_max, num_negatives)
    if sampling not in ("random", "top"):
        raise ValueError(f"sampling must be 'random' or 'top', got {sampling!r}")
    ids = [qid for qid in qrels if positives(qrels[qid])]
    rng = np.random.default_rng(seed)
    search_kwargs = (
        {} if retriever_depth is None else {"candidates": max(retriever_depth, rank_max)}
    )
    batches = [ids[start : start + batch_size] for start in range(0, len(ids), batch_size)]
    if show_progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="mining negatives", unit="batch")
    mined: list[MinedQuery] = []
    for batch in batches:
        results = retriever.search_many(
            [queries[qid] for qid in batch], k=rank_max, **search_kwargs
        )
        for qid, hits in zip(batch, results, strict=True):
            judged = qrels[qid]
            relevant = positives(judged)
            excluded = {doc for doc, grade in judged.items() if grade > 0}
            positive_texts = {text_of(doc) for doc in relevant}
            window = [
                (rank, hit.id)
                for rank, hit in enumerate(hits, 1)
                if rank_min <= rank <= rank_max
                and hit.id not in excluded
                and hit.text not in positive_texts
            ]
            if sampling == "random" and len(window) > num_negatives:
                keep = np.sort(rng.choice(len(window), size=num_negatives, replace=False))
                window = [window[i] for i in keep.tolist()]
            window = window[:num_negatives]
            mined.append(
                MinedQuery(
                    query_id=qid,
                    query=queries[qid],
                    positives=relevant,
                    grades=[int(judged[doc]) for doc in relevant],
                    negatives=[doc for _, doc in window],
                    negative_ranks=[rank for rank, _ in window],
                )
            )
    return mined


def filter_with_teacher(
    mined: Sequence[MinedQuery],
    score_pairs: Callable[[list[tuple[str, str]]], np.ndarray],
    text_of: Callable[[str], str],
    *,
    relative_margin: float,
) -> int:
    """Drop negatives a teacher scores too close to (or above) the query's weakest positive.

    ``score_pairs(pairs)`` is a batched (query, passage) scorer such as
    ``CrossEncoderReranker.score_pairs``. Changes ``mined`` in place; returns how many
    negatives were dropped.
    """
    if relative_margin < 0:
        raise ValueError(f"relative_margin must be >= 0, got {relative_margin!r}")
    pairs = [
        (item.query, text_of(doc)) for item in mined for doc in [*item.positives, *item.negatives]
    ]
    scores = np.asarray(score_pairs(pairs), dtype=np.float64)
    dropped = 0
    offset = 0
    for item in mined:
        n_pos, n_neg = len(item.positives), len(item.negatives)
        weakest = float(scores[offset : offset + n_pos].min())
        negative_scores = scores[offset + n_pos : offset + n_pos + n_neg]
        offset += n_pos + n_neg
        keep = negative_scores <= weakest - abs(weakest) * relative_margin
        dropped += int(n_neg - keep.sum())
        item.negatives = [doc for doc, ok in zip(item.negatives, keep, strict=True) if ok]
        item.negative_ranks = [r for r, ok in zip(item.negative_ranks, keep, strict=True) if ok]
    return dropped


def fill_negatives(
    mined: Sequence[MinedQuery],
    corpus_ids: Sequence[str],
    qrels: Mapping[str, Mapping[str, int]],
    text_of: Callable[[str], str],
    *,
    num_negatives: int,
    seed: int = 0,
) -> int:
    """Top up short negative lists with random corpus documents (never a positive).

    Losses that take a fixed number of columns (``mnrl``, ``margin_mse``) need every query to
    have ``num_negatives``; random documents are easy negatives, so their count is reported.
    Returns how many were added.
    """
    rng = np.random.default_rng(seed + 1)
    added = 0
    for item in mined:
        excluded = {doc for doc, grade in qrels[item.query_id].items() if grade > 0}
        excluded.update(item.negatives)
        positive_texts = {text_of(doc) for doc in item.positives}
        eligible_left = len(corpus_ids) - len(excluded)
        attempts = 0
        while len(item.negatives) < num_negatives and attempts < 20 * num_negatives:
            attempts += 1
            doc = corpus_ids[int(rng.integers(len(corpus_ids)))]
            if doc in excluded or text_of(doc) in positive_texts:
                continue
            excluded.add(doc)
            item.negatives.append(doc)
            item.negative_ranks.append(0)
            added += 1
        if len(item.negatives) < num_negatives:
            raise ValueError(
                f"query {item.query_id!r}: the corpus has too few non-relevant documents "
                f"({max(eligible_left, 0)}) for num_negatives={num_negatives}"
            )
    return added


def negative_stats(mined: Sequence[MinedQuery], num_negatives: int) -> dict[str, Any]:
    """Counts for the report: queries, negatives, short lists, the ranks they came from."""
    ranks = [r for item in mined for r in item.negative_ranks if r > 0]
    return {
        "queries": len(mined),
        "negatives": sum(len(item.negatives) for item in mined),
        "queries_short_of_negatives": sum(len(item.negatives) < num_negatives for item in mined),
        "mean_rank": float(np.mean(ranks)) if ranks else None,
    }
