"""Pseudo-queries: a corpus document's title, asked as a query.

Judged training queries are few (SciFact has 728 after the held-out slice), the corpus has
thousands of titles written in the domain's own words. Each pseudo-query keeps the shape of a
training query: its own document stands as the "positive", hard negatives are mined from the
first stage as for a real query. A distilled student learns only the teacher's scores of these
rows, so no judgement is invented; without a teacher the title's own document is a weak
positive (a title describes its abstract; another document may answer it too). Documents
judged for an eval query are never used, so the held-out measurement stays clean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import Any

import numpy as np

from .._validation import check_int

#: Prefix of a pseudo-query's id (``pseudo:<doc id>``); a real query id with it is refused.
PSEUDO_PREFIX = "pseudo:"
#: Longest pseudo-query, in words (a title, or the first sentence when there is no title).
MAX_WORDS = 32
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def pseudo_query_text(doc: Mapping[str, Any], max_words: int = MAX_WORDS) -> str:
    """The document's title, else its first sentence; at most ``max_words`` words.

    >>> pseudo_query_text({"title": "Vitamin D and fractures", "text": "We studied ..."})
    'Vitamin D and fractures'
    >>> pseudo_query_text({"title": "", "text": "Statins lower LDL. They also ..."})
    'Statins lower LDL.'
    """
    text = str(doc.get("title") or "").strip()
    if not text:
        text = _SENTENCE_END.split(str(doc.get("text") or "").strip(), maxsplit=1)[0]
    return " ".join(text.split()[:max_words])


def title_queries(
    corpus: Mapping[str, Mapping[str, Any]],
    count: int,
    *,
    exclude: Set[str] = frozenset(),
    query_ids: Set[str] = frozenset(),
    seed: int = 0,
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """``count`` seeded pseudo-queries from ``corpus``: ``(queries, qrels)`` in corpus order.

    ``exclude``: document ids never used (the eval queries' judged documents). ``query_ids``:
    the real query ids, checked against the ``pseudo:`` ids. Fewer come back when fewer
    documents have text to ask with.
    """
    if check_int(count, "pseudo_queries", minimum=0) == 0:
        return {}, {}
    clash = sorted(q for q in query_ids if q.startswith(PSEUDO_PREFIX))
    if clash:
        raise ValueError(
            f"query ids {clash[:5]} start with {PSEUDO_PREFIX!r}, kept for pseudo-queries"
        )
    texts = {
        doc_id: pseudo_query_text(doc) for doc_id, doc in corpus.items() if doc_id not in exclude
    }
    eligible = [doc_id for doc_id, text in texts.items() if text]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(eligible))[: min(count, len(eligible))])
    queries = {f"{PSEUDO_PREFIX}{eligible[i]}": texts[eligible[i]] for i in chosen}
    qrels = {f"{PSEUDO_PREFIX}{eligible[i]}": {eligible[i]: 1} for i in chosen}
    return queries, qrels
