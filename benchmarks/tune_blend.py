"""A tuned model's blend weights on its own eval split, rebuilt from its ``training_report.json``.

``tune`` measures every blend weight after training (``evaluation.after.blend``); this
re-measures a model tuned before it did, on exactly the candidates ``tune`` scored: the same
data, seed, held-out queries, first stage and depth, read from the report::

    python benchmarks/tune_blend.py /work/tune_runs/x2-pq728-e1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rerank_plugins import CrossEncoderReranker
from rerank_plugins._files import cache_root
from rerank_plugins.evaluation.runner import build_retriever
from rerank_plugins.training import report as reporting
from rerank_plugins.training.data import load_training_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a directory written by rerank-plugins tune")
    args = parser.parse_args()
    report = json.loads((args.model / reporting.REPORT_FILE).read_text(encoding="utf-8"))
    settings, data = report["settings"], report["data"]
    training_data = load_training_data(
        data["path"],
        split=settings["split"],
        eval_split=settings["eval_split"],
        eval_fraction=settings["eval_fraction"],
        seed=settings["seed"],
    )
    retriever = build_retriever(
        training_data.dataset, settings["negatives"], embedding_cache=cache_root("embeddings")
    )
    candidates = reporting.retrieve_candidates(
        retriever,
        training_data.queries_for(training_data.eval_qrels),
        depth=settings["eval_depth"],
        retriever_depth=settings["retriever_depth"],
    )
    reranker = CrossEncoderReranker(args.model, device=settings["device"])
    measured = reporting.measure_result(reranker, candidates, training_data.eval_qrels)
    after = measured["after"]
    recorded = report["evaluation"]["after"]["ndcg@10"]
    print(f"{len(candidates.query_ids)} eval queries x {candidates.depth} candidates")
    print(
        f"first stage    NDCG@10 {reporting.first_stage_metrics(candidates, training_data.eval_qrels)['ndcg@10']:.4f}"
    )
    print(f"model alone    NDCG@10 {after['ndcg@10']:.4f} (the report says {recorded:.4f})")
    for row in after["blend"]:
        print(
            f"blend w={row['weight']:<4g} NDCG@10 {row['ndcg@10']:.4f}  MRR@10 {row['mrr@10']:.4f}"
        )
    print("recommended blend_weight:", measured["recommended_blend_weight"])


if __name__ == "__main__":
    main()
