"""Evaluate retrieve-then-rerank settings on a BEIR split: quality and latency per rerank depth.

Used by ``rerank-plugins eval``. The first stage retrieves ``candidates`` hits per query once
(timed per query). The cross-encoder then scores the deepest rerank depth once per query; a
pair's score does not depend on how many other pairs are scored, so shallower depths reuse
those scores for their rankings. Latency per depth is either *measured* (default: the top-d
pairs of each shallower depth are scored again, with the score cache off, and that call is
timed) or *estimated* (the deepest call's time scaled by the share of tokens the top-d pairs
hold; cheaper, but it ignores per-call overhead and batch-shape effects) or *batch* (every
query's candidates scored in one ``score_pairs`` call after retrieval, the way an offline job
or ``eval --engine ray`` runs; each query is charged that call's time per pair).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .._validation import check_positive_int, check_retriever_depth
from ..pipeline import blend_scores
from .beir import BeirDataset
from .metrics import evaluate

RETRIEVERS = {"bm25": ("bm25",), "dense": ("dense",), "hybrid": ("bm25", "dense")}
LATENCY_MODES = ("measured", "estimated", "batch")


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean of a list of durations in seconds, in milliseconds."""
    if not seconds:
        return {"p50": 0.0, "p95": 0.0, "mean": 0.0}
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "mean": float(values.mean()),
    }


def select_queries(dataset: BeirDataset, limit: int | None) -> dict[str, str]:
    """The first ``limit`` judged queries in qrels order (all when ``limit`` is None)."""
    check_positive_int(limit, "--queries", allow_none=True)
    items = list(dataset.queries.items())
    return dict(items if limit is None else items[:limit])


def split_queries(
    queries: dict[str, str], tune_share: float, *, seed: int = 0
) -> tuple[dict[str, str], dict[str, str]]:
    """``(tune, held back)``: a seeded shuffle of ``queries``, ``tune_share`` of them to tune on.

    Both parts keep at least one query; each keeps the given order of its queries.
    """
    if not 0.0 < tune_share < 1.0:
        raise ValueError(f"tune_share must be within (0, 1), got {tune_share!r}")
    if len(queries) < 2:
        raise ValueError(
            f"tuning needs at least 2 queries (one to tune, one held back), got {len(queries)}"
        )
    count = min(max(1, round(tune_share * len(queries))), len(queries) - 1)
    picked = set(np.random.default_rng(seed).permutation(len(queries))[:count].tolist())
    items = list(queries.items())
    tune = dict(item for i, item in enumerate(items) if i in picked)
    held = dict(item for i, item in enumerate(items) if i not in picked)
    return tune, held


def build_retriever(
    dataset: BeirDataset,
    kind: str,
    *,
    embedder: Any = None,
    batch_size: int = 64,
    show_progress: bool = True,
    embedding_cache: Any = None,
    embed_dtype: str = "auto",
    fusion: Mapping[str, Any] | None = None,
) -> Any:
    """A HybridRetriever over the whole corpus (``title + " " + text``).

    ``embedding_cache`` (a directory, True for the default one, or None) reuses document
    embeddings across runs; ``embed_dtype`` is the embedder's precision; ``fusion`` holds
    fusion settings (``fusion``, ``weights``, ``rrf_k``): see
    :class:`~rerank_plugins.hybrid.HybridRetriever`.
    """
    if kind not in RETRIEVERS:
        raise ValueError(f"retriever must be one of {sorted(RETRIEVERS)}, got {kind!r}")
    from ..hybrid import HybridRetriever

    ids, texts = dataset.doc_texts()
    kwargs: dict[str, Any] = {
        "retrievers": RETRIEVERS[kind],
        "batch_size": batch_size,
        "show_progress": show_progress,
    }
    if kind != "bm25":
        kwargs["embedding_cache"] = embedding_cache
        kwargs["dtype"] = embed_dtype
    if embedder is not None and kind != "bm25":
        kwargs["embedder"] = embedder
    kwargs.update(fusion or {})
    return HybridRetriever.from_texts(texts, ids=ids, **kwargs)


def _ranked_run(doc_ids: Sequence[str]) -> dict[str, float]:
    # Scores from positions, so the metrics see exactly this order (no tie-breaking by id).
    n = len(doc_ids)
    return {doc: float(n - position) for position, doc in enumerate(doc_ids)}


@dataclass
class EvalResult:
    """Everything ``rerank-plugins eval`` reports; :meth:`to_dict` is the JSON it writes."""

    settings: dict[str, Any]
    dataset: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "dataset": self.dataset,
            "results": self.rows,
            "timings": self.timings,
            "machine": self.machine,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def machine_info(reranker: Any = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - torch is a hard dependency
        pass
    try:
        from .. import __version__

        info["rerank_plugins"] = __version__
    except Exception:  # pragma: no cover
        pass
    if reranker is not None:
        info["reranker_device"] = getattr(reranker, "device", None)
    return info


def evaluate_settings(
    dataset: BeirDataset,
    retriever: Any,
    *,
    reranker: Any = None,
    queries: dict[str, str] | None = None,
    candidates: int = 100,
    depths: Sequence[int] = (10, 20, 50, 100),
    latency: str = "measured",
    retriever_name: str = "first-stage",
    progress: Callable[[Any], Any] | None = None,
    blend_weights: Sequence[float] = (),
    retriever_depth: int | None = None,
) -> list[dict[str, Any]]:
    """One row for the first stage, then one per rerank depth (when a reranker is given).

    With ``blend_weights``, each depth also gets a row per weight ``w`` where candidates are
    ordered by :func:`~rerank_plugins.pipeline.blend_scores` (the pipeline's
    ``blend_weight``) of the cross-encoder and first-stage scores; same latency as the depth.

    Each row: ``setting``, ``depth`` (0 for the first stage), ``metrics`` (NDCG@10, MRR@10,
    R@10, R@100) and ``latency_ms`` (``retrieve``/``rerank``/``total``, each p50/p95/mean).
    """
    if latency not in LATENCY_MODES:
        raise ValueError(f"latency must be one of {LATENCY_MODES}, got {latency!r}")
    check_positive_int(candidates, "candidates")
    check_retriever_depth(retriever_depth, candidates)
    # Per-list depth before fusion (HybridRetriever's ``candidates``); None: its default.
    search_kwargs = {} if retriever_depth is None else {"candidates": retriever_depth}
    if latency == "measured" and getattr(getattr(reranker, "cache", None), "maxsize", None):
        raise ValueError(
            "latency='measured' needs a reranker with cache_size=0 (re-timed "
            "calls would be served from the score cache)"
        )
    queries = dict(dataset.queries if queries is None else queries)
    qrels = {qid: dataset.qrels.get(qid, {}) for qid in queries}
    checked = [check_positive_int(d, f"depths[{i}]") for i, d in enumerate(depths)]
    depths = sorted({min(d, candidates) for d in checked}) if reranker is not None else []

    first_run: dict[str, dict[str, float]] = {}
    retrieve_s: list[float] = []
    runs: dict[int, dict[str, dict[str, float]]] = {d: {} for d in depths}
    blends = [float(w) for w in blend_weights] if depths else []
    if any(not 0.0 <= w <= 1.0 for w in blends):
        raise ValueError(f"blend weights must be within [0, 1], got {blends}")
    blend_runs: dict[tuple[int, float], dict[str, dict[str, float]]] = {
        (d, w): {} for d in depths for w in blends
    }
    rerank_s: dict[int, list[float]] = {d: [] for d in depths}

    # A cascade's scores depend on which candidates share the call: each shallower depth then
    # needs its own call (timed, whatever ``latency`` says).
    own_call = bool(getattr(reranker, "scores_depend_on_candidates", False))

    def record(
        qid: str,
        query: str,
        hits: list[Any],
        scores: np.ndarray,
        seconds: Callable[[int], float],
    ) -> None:
        """Rankings per depth (and blend) from the deepest scores; ``seconds(d)``: time at d."""
        ids = [hit.id for hit in hits]
        for depth in depths:
            d = min(depth, len(hits))
            depth_scores = scores[:d]
            if own_call and d < len(scores):
                start = time.perf_counter()
                texts = [hit.text for hit in hits[:d]]
                depth_scores = np.asarray(reranker.score(query, texts), dtype=np.float64)
                np.argsort(-depth_scores, kind="stable")
                elapsed = time.perf_counter() - start
            else:
                elapsed = seconds(d)
            head = np.argsort(-depth_scores, kind="stable")
            runs[depth][qid] = _ranked_run([ids[i] for i in head] + ids[d:])
            first_scores = np.array([hit.score for hit in hits[:d]], dtype=np.float64)
            for w in blends:
                mixed = np.argsort(-blend_scores(depth_scores, first_scores, w), kind="stable")
                blend_runs[(depth, w)][qid] = _ranked_run([ids[i] for i in mixed] + ids[d:])
            rerank_s[depth].append(elapsed)

    pending: list[tuple[str, str, list[Any]]] = []  # latency="batch": scored after the loop
    iterator: Any = queries.items()
    if progress is not None:
        iterator = progress(iterator)
    for qid, query in iterator:
        start = time.perf_counter()
        hits = retriever.search(query, k=candidates, **search_kwargs)
        retrieve_s.append(time.perf_counter() - start)
        first_run[qid] = _ranked_run([hit.id for hit in hits])
        if not depths:
            continue
        if latency == "batch":
            pending.append((qid, query, hits))
            continue
        texts = [hit.text for hit in hits]
        deepest = min(depths[-1], len(hits))
        start = time.perf_counter()
        scores = np.asarray(reranker.score(query, texts[:deepest]), dtype=np.float64)
        np.argsort(-scores, kind="stable")  # the sort is part of reranking's cost
        deepest_s = time.perf_counter() - start
        weights = (
            _token_weights(reranker, query, texts[:deepest]) if latency == "estimated" else None
        )
        timer = functools.partial(
            _depth_seconds, reranker, latency, query, texts[:deepest], deepest_s, weights
        )
        record(qid, query, hits, scores, timer)
    if pending:
        _score_in_one_call(reranker, pending, depths[-1], record)

    rows = [
        {
            "setting": retriever_name,
            "depth": 0,
            "metrics": evaluate(first_run, qrels),
            "latency_ms": {
                "retrieve": percentiles_ms(retrieve_s),
                "rerank": percentiles_ms([]),
                "total": percentiles_ms(retrieve_s),
            },
        }
    ]
    for depth in depths:
        totals = [r + s for r, s in zip(retrieve_s, rerank_s[depth], strict=True)]
        rows.append(
            {
                "setting": f"{retriever_name} + rerank@{depth}",
                "depth": depth,
                "metrics": evaluate(runs[depth], qrels),
                "latency_ms": {
                    "retrieve": percentiles_ms(retrieve_s),
                    "rerank": percentiles_ms(rerank_s[depth]),
                    "total": percentiles_ms(totals),
                },
            }
        )
        for w in blends:
            rows.append(
                {
                    "setting": f"{retriever_name} + rerank@{depth} blend={w:g}",
                    "depth": depth,
                    "blend_weight": w,
                    "metrics": evaluate(blend_runs[(depth, w)], qrels),
                    "latency_ms": rows[-1]["latency_ms"],
                }
            )
    return rows


def _depth_seconds(
    reranker: Any,
    latency: str,
    query: str,
    texts: Sequence[str],
    deepest_s: float,
    weights: np.ndarray | None,
    d: int,
) -> float:
    """Rerank time at depth ``d`` given the deepest call (over ``texts``) took ``deepest_s``."""
    if d == len(texts):
        return deepest_s
    if latency == "measured":
        start = time.perf_counter()
        part = np.asarray(reranker.score(query, texts[:d]), dtype=np.float64)
        np.argsort(-part, kind="stable")
        return time.perf_counter() - start
    assert weights is not None
    return deepest_s * float(weights[:d].sum() / max(weights.sum(), 1.0))


def _score_in_one_call(
    reranker: Any,
    pending: Sequence[tuple[str, str, list[Any]]],
    deepest: int,
    record: Callable[[str, str, list[Any], np.ndarray, Callable[[int], float]], None],
) -> None:
    """``latency="batch"``: every query's candidates in one ``score_pairs`` call (as an offline
    job runs); each query is charged the call's time in proportion to its pairs at depth d."""
    counts = [min(deepest, len(hits)) for _, _, hits in pending]
    pairs = [
        (query, hit.text)
        for (_, query, hits), n in zip(pending, counts, strict=True)
        for hit in hits[:n]
    ]
    start = time.perf_counter()
    scores = np.asarray(reranker.score_pairs(pairs), dtype=np.float64)
    per_pair = (time.perf_counter() - start) / max(len(pairs), 1)
    bounds = np.cumsum([0, *counts])
    for i, (qid, query, hits) in enumerate(pending):
        record(qid, query, hits, scores[bounds[i] : bounds[i + 1]], lambda d: d * per_pair)


def _token_weights(reranker: Any, query: str, passages: Sequence[str]) -> np.ndarray:
    """Approximate per-pair cost (tokens, capped at the model window) for latency estimates."""
    tokenizer = getattr(reranker, "tokenizer", None)
    max_length = getattr(reranker, "max_length", 512)
    if tokenizer is None:
        return np.ones(len(passages), dtype=np.float64)
    encoded = tokenizer(
        [query] * len(passages), list(passages), truncation="only_second", max_length=max_length
    )
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.float64)


# --------------------------------------------------------------------------- output
COLUMNS = (
    "setting",
    "NDCG@10",
    "MRR@10",
    "R@10",
    "R@100",
    "retrieve p50/p95 ms",
    "rerank p50/p95 ms",
)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    out = []
    for row in rows:
        m, lat = row["metrics"], row["latency_ms"]
        rerank = f"{lat['rerank']['p50']:.1f} / {lat['rerank']['p95']:.1f}" if row["depth"] else "-"
        out.append(
            [
                row["setting"],
                f"{m['ndcg@10']:.4f}",
                f"{m['mrr@10']:.4f}",
                f"{m['recall@10']:.4f}",
                f"{m['recall@100']:.4f}",
                f"{lat['retrieve']['p50']:.1f} / {lat['retrieve']['p95']:.1f}",
                rerank,
            ]
        )
    return out


def format_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A plain Markdown-compatible table, columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *body, strict=False)]
    lines = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=False)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + " |"
        for r in body
    ]
    return "\n".join(lines)


def plot_tradeoff(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, title: str = ""
) -> None:
    """NDCG@10 against median end-to-end latency, one labelled point per setting."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            f'--plot needs matplotlib ({error}); install it with: pip install "rerank-plugins[plot]"'
        ) from error
    xs = [row["latency_ms"]["total"]["p50"] for row in rows]
    ys = [row["metrics"]["ndcg@10"] for row in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ax.plot(xs, ys, marker="o", linestyle="-", color="tab:blue")
    for x, y, row in zip(xs, ys, rows, strict=True):
        ax.annotate(
            (
                f"rerank@{row['depth']}"
                + (f" w={row['blend_weight']:g}" if "blend_weight" in row else "")
            )
            if row["depth"]
            else row["setting"],
            (x, y),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    ax.set_xlabel("median latency per query, retrieve + rerank (ms)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(title or "Quality vs latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
