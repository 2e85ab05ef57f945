"""Students cut from a 6-layer cross-encoder by ``tune --student-layers``: pairs/s side by side.

Builds 3- and 2-layer students from ``../shared/models/minilm-l6-scifact-ce`` exactly as
``tune`` initialises them (before distillation), scores the same SciFact pairs with the teacher
and both students in rotating order (median of rounds), then builds the 3-layer student's ONNX
int8 export (with the backend's parity check) and compares it with torch::

    python benchmarks/tune_student_speed.py --pairs 48 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from rerank_plugins import CrossEncoderReranker
from rerank_plugins.training.model import inspect_base, write_initial_model
from rerank_plugins.training.report import Candidates, compare_throughput

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="student-speed-"))
    try:
        base = inspect_base(args.teacher)
        kept = {}
        for layers in (3, 2):
            info = write_initial_model(
                base, work / f"l{layers}", serve_length=256, student_layers=layers
            )
            kept[f"l{layers}"] = info["layer_ids_from_base"]
        with open(Path(args.data) / "corpus.jsonl", encoding="utf-8") as handle:
            docs = [json.loads(line) for _, line in zip(range(args.pairs), handle, strict=False)]
        with open(Path(args.data) / "queries.jsonl", encoding="utf-8") as handle:
            query = json.loads(handle.readline())["text"]
        candidates = Candidates(
            query_ids=["q"],
            queries=[query],
            doc_ids=[[doc["_id"] for doc in docs]],
            texts=[[f"{doc['title']} {doc['text']}" for doc in docs]],
            depth=len(docs),
        )
        rerankers = {"teacher_l6": CrossEncoderReranker(args.teacher, device="cpu", max_length=256)}
        for name in kept:
            rerankers[name] = CrossEncoderReranker(work / name, device="cpu", max_length=256)
        speeds = compare_throughput(rerankers, candidates, pairs=args.pairs, rounds=args.rounds)
        print("layers kept from the teacher:", kept)
        print(f"pairs/s (median of {args.rounds} rotating rounds, {args.pairs} pairs):", speeds)
        print("x teacher:", {k: round(v / speeds["teacher_l6"], 2) for k, v in speeds.items()})
        started = time.perf_counter()
        int8 = CrossEncoderReranker(
            work / "l3", backend="onnx", quantize="int8", cache_dir=work / "onnx"
        )
        manifest = int8.backend.manifest
        keys = ("fp32_max_abs_diff_vs_torch", "int8_max_abs_diff_vs_torch", "fused")
        print(
            "l3 int8 export:",
            {k: manifest.get(k) for k in keys},
            f"{time.perf_counter() - started:.0f} s",
        )
        pair = {"l3_torch": rerankers["l3"], "l3_int8": int8}
        speeds = compare_throughput(pair, candidates, pairs=args.pairs, rounds=args.rounds)
        print("l3 torch vs int8 pairs/s:", speeds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
