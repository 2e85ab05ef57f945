"""Choose fusion settings from labelled queries: retrieve once, fuse many times, cross-validate.

:func:`tune_fusion` (also :meth:`HybridRetriever.tune_fusion`) searches fusion methods, RRF's
``k`` and the per-retriever weights:

1. each retriever's list for every labelled query is retrieved **once** (``candidates`` deep);
2. every candidate setting fuses those lists (numpy, microseconds per query) and is scored
   per query with the metric (``ndcg@10`` by default, as :mod:`rerank_plugins.evaluation`);
3. the *selection* is cross-validated: per fold, the setting with the best mean on the other
   folds is scored on the held-out fold. The retriever's current settings (the baseline)
   are replaced only when that out-of-fold gain exceeds both ``margin`` and its standard
   error, so a handful of queries cannot talk it into a setting that merely fits them;
4. when it does, the setting with the best mean over all queries is applied in place.

Ties prefer the baseline. One labelled query is not enough to cross-validate: the baseline
stays and the report says why. Weights are written as the *dense share* ``s`` of a total
weight of 2: ``{"bm25": 2 (1 - s), "dense": 2 s}``, so ``s = 0.5`` is the default (1, 1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_positive_int, check_query
from . import fusion as _fusion

if TYPE_CHECKING:
    from .retriever import HybridRetriever

Lists = list[tuple[np.ndarray, np.ndarray]]  # per retriever: (positions, scores), best first
Setting = dict[str, Any]  # {"fusion": str, "rrf_k": float, "weights": dict | None}

METRICS = ("ndcg", "mrr", "recall")
DEFAULT_RRF_KS: tuple[float, ...] = (5, 10, 20, 40, 60, 100)
DEFAULT_SHARES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_FOLDS = 5
DEFAULT_MARGIN = 0.005


# --------------------------------------------------------------------------- checks
def parse_metric(metric: object) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; names: ndcg, mrr, recall."""
    if isinstance(metric, str) and "@" in metric:
        name, _, cut = metric.lower().partition("@")
        if name in METRICS and cut.isdigit() and int(cut) >= 1:
            return name, int(cut)
    raise ValueError(
        f"metric must look like 'ndcg@10', 'mrr@10' or 'recall@100' (one of {sorted(METRICS)} "
        f"@ a positive int), got {metric!r}"
    )


def _check_labels(
    queries: object, qrels: object
) -> tuple[dict[str, str], dict[str, dict[str, int]], list[str]]:
    """Queries with at least one relevant judgment, their qrels, and the ids left out."""
    if not isinstance(queries, Mapping):
        raise TypeError(f"queries must be a dict {{query id: text}}, got {type(queries).__name__}")
    if not isinstance(qrels, Mapping):
        raise TypeError(
            f"qrels must be a dict {{query id: {{doc id: grade}}}}, got {type(qrels).__name__}"
        )
    if not queries:
        raise ValueError("queries is empty: tune_fusion needs labelled queries")
    checked: dict[str, dict[str, int]] = {}
    for qid, judged in qrels.items():
        if not isinstance(judged, Mapping):
            raise TypeError(f"qrels[{qid!r}] must be a dict {{doc id: grade}}")
        for doc, grade in judged.items():
            if isinstance(grade, bool) or not isinstance(grade, (int, np.integer)):
                raise TypeError(f"qrels[{qid!r}][{doc!r}] must be an int grade, got {grade!r}")
        checked[qid] = {str(doc): int(grade) for doc, grade in judged.items()}
    texts: dict[str, str] = {}
    skipped: list[str] = []
    for qid, text in queries.items():
        check_query(text, where=f"queries[{qid!r}]")
        if any(grade > 0 for grade in checked.get(qid, {}).values()):
            texts[qid] = text
        else:
            skipped.append(qid)
    if not texts:
        raise ValueError(
            "no query in queries has a relevant document (grade > 0) in qrels; "
            f"query ids given: {list(queries)[:5]}, judged: {list(qrels)[:5]}"
        )
    return texts, {qid: checked[qid] for qid in texts}, skipped


def _check_methods(methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        return list(_fusion.FUSION_METHODS)
    if isinstance(methods, str):
        methods = [methods]
    chosen = [_fusion.check_method(m) for m in methods]
    if not chosen:
        raise ValueError(f"methods is empty; choose from {_fusion.FUSION_METHODS}")
    return list(dict.fromkeys(chosen))


def _check_shares(shares: Sequence[float]) -> list[float]:
    out = []
    for share in shares:
        if (
            isinstance(share, bool)
            or not isinstance(share, (int, float))
            or not 0.0 <= share <= 1.0
        ):
            raise ValueError(f"shares must be numbers within [0, 1], got {share!r}")
        out.append(float(share))
    if not out:
        raise ValueError("shares is empty")
    return out


# --------------------------------------------------------------------------- settings
def share_weights(share: float, retrievers: Sequence[str]) -> dict[str, float] | None:
    """Weights for a dense share of a total of 2 (``None`` at 0.5: the default, equal weights)."""
    if len(retrievers) != 2:
        raise ValueError(f"weight shares need two retrievers, this index has {list(retrievers)}")
    if math.isclose(share, 0.5):
        return None
    first, second = retrievers
    return {first: round(2.0 * (1.0 - share), 6), second: round(2.0 * share, 6)}


def candidate_settings(
    retrievers: Sequence[str],
    baseline: Setting,
    *,
    methods: Sequence[str],
    rrf_ks: Sequence[float] = DEFAULT_RRF_KS,
    shares: Sequence[float] = DEFAULT_SHARES,
) -> list[Setting]:
    """The baseline first, then every method x weight share (x ``rrf_k`` for RRF), no repeats.

    Score methods keep the baseline's ``rrf_k`` (they do not use it).
    """
    out = [dict(baseline)]
    seen = {_key(baseline)}
    for method in methods:
        ks = [_fusion.check_rrf_k(k) for k in rrf_ks] if method == "rrf" else [baseline["rrf_k"]]
        for k in ks:
            for share in shares:
                setting = {
                    "fusion": method,
                    "rrf_k": k,
                    "weights": share_weights(share, retrievers),
                }
                if _key(setting) not in seen:
                    seen.add(_key(setting))
                    out.append(setting)
    return out


def _key(setting: Setting) -> tuple[Any, ...]:
    weights = setting["weights"]
    return (
        setting["fusion"],
        float(setting["rrf_k"]),
        None if weights is None else tuple(sorted(weights.items())),
    )


# --------------------------------------------------------------------------- scoring
def retrieve_lists(
    retriever: HybridRetriever, texts: Sequence[str], depth: int, *, batch: int = 256
) -> list[Lists]:
    """Each retriever's top ``depth`` (positions, scores) per query, fetched once."""
    out: list[Lists] = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        vectors = retriever._embedder.encode(chunk) if retriever._embedder is not None else None
        with retriever._lock.read():  # one consistent state while others add/delete
            per_retriever = retriever._retrieve_lists(chunk, depth, None, vectors)
        out.extend([per[i] for per in per_retriever] for i in range(len(chunk)))
    return out


def score_settings(
    lists: Sequence[Lists],
    doc_ids: Sequence[str],
    qids: Sequence[str],
    qrels: Mapping[str, Mapping[str, int]],
    settings: Sequence[Setting],
    retrievers: Sequence[str],
    *,
    metric: str = "ndcg@10",
    depth: int | None = None,
) -> np.ndarray:
    """Per-query metric, shape ``(len(settings), len(qids))``, of each setting's fused ranking.

    ``lists[i]`` belongs to ``qids[i]``; ``depth`` truncates every list first (a prefix of a
    deeper list is the shallower list), so one retrieval serves several depths. All queries
    are fused in one batch per setting (:func:`~rerank_plugins.hybrid.fusion.align_many`).
    """
    trimmed = [[(p[:depth], s[:depth]) for p, s in query_lists] for query_lists in lists]
    union, scores, ranks, valid = _fusion.align_many(trimmed)
    scorer = _RankingScorer(metric, union, valid, doc_ids, qids, qrels)
    out = np.zeros((len(settings), len(qids)), dtype=np.float64)
    for row, setting in enumerate(settings):
        weights = _fusion.weight_vector(setting["weights"], retrievers)
        fused = _fusion.fuse(setting["fusion"], scores, ranks, weights, rrf_k=setting["rrf_k"])
        fused[~valid] = -np.inf
        out[row] = scorer(_fusion.top_order(fused, union, scorer.cut))
    return out


class _RankingScorer:
    """Per-query metric of ranked union columns, vectorised over queries.

    The definitions are those of :mod:`rerank_plugins.evaluation.metrics` (linear gain, log2
    discount, ideal DCG over every judged document; relevant = grade > 0), which the tests
    check this agrees with; it exists because scoring ~100 settings x hundreds of queries one
    dict at a time took most of a tuning run.
    """

    def __init__(
        self,
        metric: str,
        union: np.ndarray,
        valid: np.ndarray,
        doc_ids: Sequence[str],
        qids: Sequence[str],
        qrels: Mapping[str, Mapping[str, int]],
    ) -> None:
        self.name, self.cut = parse_metric(metric)
        self.grades = np.zeros(union.shape, dtype=np.float64)
        for q, qid in enumerate(qids):
            judged = qrels.get(qid, {})
            row = [judged.get(doc_ids[pos], 0) for pos in union[q][valid[q]].tolist()]
            self.grades[q, : len(row)] = row
        self.discounts = 1.0 / np.log2(np.arange(2, self.cut + 2))
        self.ideal = np.zeros(len(qids))
        self.relevant = np.zeros(len(qids))
        for q, qid in enumerate(qids):
            positive = sorted((g for g in qrels.get(qid, {}).values() if g > 0), reverse=True)
            top = np.asarray(positive[: self.cut], dtype=np.float64)
            self.ideal[q] = float((top * self.discounts[: top.size]).sum())
            self.relevant[q] = len(positive)

    def __call__(self, order: np.ndarray) -> np.ndarray:
        ranked = np.take_along_axis(self.grades, order[:, : self.cut], axis=1)
        if self.name == "ndcg":
            dcg = np.maximum(ranked, 0.0) @ self.discounts[: ranked.shape[1]]
            return np.where(self.ideal > 0, dcg / np.where(self.ideal > 0, self.ideal, 1), 0.0)
        hits = ranked > 0
        if self.name == "mrr":
            first = np.argmax(hits, axis=1)
            return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)
        return hits.sum(axis=1) / np.maximum(self.relevant, 1)


def cross_validate(table: np.ndarray, *, folds: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Out-of-fold metric of "pick the best mean on the other folds", per query, and the picks.

    Row 0 of ``table`` is the baseline; ties (``np.argmax``'s first maximum) keep it.
    """
    n = table.shape[1]
    assignment = np.empty(n, dtype=np.int64)
    assignment[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    out = np.empty(n, dtype=np.float64)
    picks = []
    for fold in range(folds):
        held = assignment == fold
        pick = int(np.argmax(table[:, ~held].mean(axis=1)))
        picks.append(pick)
        out[held] = table[pick, held]
    return out, picks


def decide(
    table: np.ndarray, *, folds: int, margin: float, seed: int = 0
) -> tuple[bool, str, dict[str, Any]]:
    """Whether to leave the baseline (row 0) for the best row, with the reason and CV figures.

    Yes only when the cross-validated selection beats the baseline out of fold by more than
    ``margin`` and more than the standard error of that per-query gain.
    """
    means = table.mean(axis=1)
    best = int(np.argmax(means))
    n = table.shape[1]
    cv: dict[str, Any] = {"folds": 0, "baseline": float(means[0])}
    if n < 2:
        return False, "one labelled query cannot be cross-validated: baseline kept", cv
    k_folds = min(folds, n)
    out_of_fold, picks = cross_validate(table, folds=k_folds, seed=seed)
    gains = out_of_fold - table[0]
    gain = float(gains.mean())
    stderr = float(gains.std(ddof=1) / math.sqrt(n))
    cv.update(folds=k_folds, tuned=float(out_of_fold.mean()), gain=gain, stderr=stderr)
    cv["picks"] = picks
    needed = max(margin, stderr)
    if best == 0:
        return False, "the baseline scores best on all queries", cv
    if gain > needed:
        return True, f"out-of-fold gain {gain:+.4f} > max(margin, stderr) = {needed:.4f}", cv
    return (
        False,
        f"out-of-fold gain {gain:+.4f} is not above max(margin, stderr) = {needed:.4f}: "
        "baseline kept",
        cv,
    )


# --------------------------------------------------------------------------- the search
def tune_fusion(
    retriever: HybridRetriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    metric: str = "ndcg@10",
    methods: Sequence[str] | None = None,
    folds: int = DEFAULT_FOLDS,
    candidates: int | None = None,
    margin: float = DEFAULT_MARGIN,
    rrf_ks: Sequence[float] = DEFAULT_RRF_KS,
    shares: Sequence[float] = DEFAULT_SHARES,
    seed: int = 0,
) -> dict[str, Any]:
    """Search fusion settings on labelled queries; apply the winner in place; report.

    Args:
        retriever: A hybrid :class:`HybridRetriever` (two retrievers) holding the documents
            that ``qrels`` names.
        queries: ``{query id: text}``; ids without a relevant judgment are skipped (listed in
            the report's ``skipped_queries``).
        qrels: ``{query id: {doc id: grade}}``, grade > 0 is relevant (graded gain for NDCG).
        metric: ``"ndcg@K"``, ``"mrr@K"`` or ``"recall@K"``.
        methods: Fusion methods to consider (default: all of ``FUSION_METHODS``).
        folds: Cross-validation folds (fewer when there are fewer queries).
        candidates: Depth of each retriever's list (default: what ``search(k=K)`` uses). Tune
            at the depth you search with: score methods normalise over the whole list.
        margin: Least out-of-fold gain over the baseline that changes the settings.
        rrf_ks: RRF ``k`` values to try. shares: dense weight shares to try (see module docs).
        seed: Fold assignment seed.

    Returns:
        ``applied`` (bool), ``reason``, ``settings`` (now in place), ``baseline`` and ``best``
        (settings with their mean ``score`` over all queries), ``cv`` (out-of-fold
        ``baseline``/``tuned`` means, ``gain``, ``stderr``, ``folds``), ``candidates`` (every
        setting tried with its ``score``, best first), ``metric``, ``queries``,
        ``skipped_queries``, ``depth`` and ``seconds``.
    """
    from .._validation import check_int
    from .retriever import default_depth

    start = time.perf_counter()
    if len(retriever.retrievers) < 2:
        raise ValueError(
            f"tune_fusion needs a hybrid index (two retrievers); this one has "
            f"{list(retriever.retrievers)}, which fusion does not change"
        )
    name, cut = parse_metric(metric)
    metric = f"{name}@{cut}"
    chosen_methods = _check_methods(methods)
    checked_shares = _check_shares(shares)
    folds = check_positive_int(folds, "folds", minimum=2)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    texts, judged, skipped = _check_labels(queries, qrels)
    depth = (
        default_depth(cut) if candidates is None else check_int(candidates, "candidates", minimum=0)
    )
    depth = max(1, min(depth, len(retriever)))
    baseline: Setting = {
        "fusion": retriever.fusion,
        "rrf_k": retriever.rrf_k,
        "weights": None if retriever.weights is None else dict(retriever.weights),
    }
    settings = candidate_settings(
        retriever.retrievers,
        baseline,
        methods=chosen_methods,
        rrf_ks=rrf_ks,
        shares=checked_shares,
    )
    qids = list(texts)
    lists = retrieve_lists(retriever, [texts[q] for q in qids], depth)
    retrieved = time.perf_counter()
    table = score_settings(
        lists, retriever.ids, qids, judged, settings, retriever.retrievers, metric=metric
    )
    means = table.mean(axis=1)
    best = int(np.argmax(means))
    applied, reason, cv = decide(table, folds=folds, margin=float(margin), seed=seed)
    if "picks" in cv:
        cv["picks"] = [_public(settings[p]) for p in cv["picks"]]
    if applied:
        winner = settings[best]
        with retriever._lock.write():  # searches see the old settings or the new, never a mix
            retriever._set_fusion(winner["fusion"], winner["weights"], winner["rrf_k"])
    order = np.argsort(-means, kind="stable")
    return {
        "applied": applied,
        "reason": reason,
        "settings": _public(settings[best] if applied else baseline),
        "baseline": {**_public(baseline), "score": float(means[0])},
        "best": {**_public(settings[best]), "score": float(means[best])},
        "cv": cv,
        "candidates": [{**_public(settings[i]), "score": float(means[i])} for i in order],
        "metric": metric,
        "queries": len(qids),
        "skipped_queries": skipped,
        "depth": depth,
        "seconds": {
            "retrieve": retrieved - start,
            "search": time.perf_counter() - retrieved,
        },
    }


def _public(setting: Setting) -> Setting:
    weights = setting["weights"]
    return {
        "fusion": setting["fusion"],
        "rrf_k": float(setting["rrf_k"]),
        "weights": None if weights is None else dict(weights),
    }
