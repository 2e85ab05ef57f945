"""Where ONNX Runtime int8 spends its time, and two alternative int8 recipes.

Exports the cross-encoder (fused, as ``backend="onnx"`` does), then on a few SciFact test
queries x BM25 candidates (padded to ``--max-length``) reports:

* ONNX Runtime's per-operator time share for the dynamic int8 model (``quantize="int8"`` with
  ``keep_fp32="none"``), from the session profiler;
* pairs/s and logit error vs fp32 for: dynamic int8 (our recipe), and weight-only blockwise
  ``MatMulNBits`` (8 and 4 bit, int8 compute, ``accuracy_level=4``).

    python benchmarks/profile_onnx_int8.py --queries 4 --candidates 32
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared"

from bench_cpu_backends import bm25_candidates, load_scifact  # noqa: E402

from rerank_plugins.backends import onnx as ort_backend  # noqa: E402


def _features(model: str, pairs: list[tuple[str, str]], max_length: int) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    encoded = tokenizer(
        [q for q, _ in pairs],
        [p for _, p in pairs],
        truncation="only_second",
        max_length=max_length,
        padding="max_length",
        return_tensors="np",
    )
    return {name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()}


def _score(path: Path, features: dict[str, np.ndarray], batch: int, threads: int):
    session = ort_backend.create_session(path, threads)
    names = {i.name for i in session.get_inputs()}
    inputs = {k: v for k, v in features.items() if k in names}
    n = len(next(iter(inputs.values())))
    session.run(["logits"], {k: v[:batch] for k, v in inputs.items()})  # warm-up
    started = time.perf_counter()
    out = [
        session.run(["logits"], {k: v[i : i + batch] for k, v in inputs.items()})[0]
        for i in range(0, n, batch)
    ]
    return np.concatenate(out).reshape(-1), n / (time.perf_counter() - started)


def _op_shares(path: Path, features: dict[str, np.ndarray], batch: int, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(path.parent / "ort_profile")  # in the temp dir, not cwd
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    inputs = {k: v[:batch] for k, v in features.items() if k in names}
    for _ in range(4):
        session.run(["logits"], inputs)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values()) or 1
    return [(op, 100 * t / whole) for op, t in totals.most_common(8)]


def _nbits(source: Path, target: Path, bits: int, block: int) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        str(source), bits=bits, block_size=block, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--stride", type=int, default=37, help="take every Nth test query")
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-scifact-ce"))
    parser.add_argument("--data", default=str(SHARED / "data" / "scifact"))
    args = parser.parse_args(argv)
    threads = args.threads or ort_backend.physical_cores()

    corpus, queries, _ = load_scifact(Path(args.data), args.queries, args.stride)
    candidates = bm25_candidates(corpus, queries, args.candidates)
    pairs = [(queries[q], corpus[d]) for q in queries for d in candidates[q]]
    features = _features(args.model, pairs, args.max_length)
    print(
        f"{len(pairs)} pairs padded to {args.max_length} tokens, batch {args.batch}, "
        f"{threads} threads\n"
    )

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = work / "fp32.onnx"
        info = ort_backend.export_onnx(args.model, fp32)
        ort_backend.optimize_graph(fp32, info)
        variants = {"dynamic int8 (keep_fp32='none')": work / "dyn.onnx"}
        ort_backend.quantize_dynamic_int8(
            fp32, variants["dynamic int8 (keep_fp32='none')"], per_channel=True, reduce_range=False
        )
        for bits, block in ((8, 32), (8, 128), (4, 32)):
            path = work / f"nbits{bits}_{block}.onnx"
            _nbits(fp32, path, bits, block)
            variants[f"MatMulNBits {bits}-bit, block {block}"] = path

        reference, fp32_speed = _score(fp32, features, args.batch, threads)
        rows = [("ONNX fp32 (fused)", fp32_speed, 0.0, 0.0)]
        for name, path in variants.items():
            got, speed = _score(path, features, args.batch, threads)
            diff = np.abs(got - reference)
            rows.append((name, speed, float(diff.max()), float(diff.mean())))
        print("| model | pairs/s | × fp32 | max abs logit diff | mean abs diff |")
        print("|---|---:|---:|---:|---:|")
        for name, speed, worst, mean in rows:
            print(f"| {name} | {speed:.1f} | {speed / fp32_speed:.2f} | {worst:.3f} | {mean:.3f} |")
        print("\nTime share per operator, dynamic int8:\n")
        print("| operator | share |")
        print("|---|---:|")
        for op, share in _op_shares(
            variants["dynamic int8 (keep_fp32='none')"], features, args.batch, threads
        ):
            print(f"| {op} | {share:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
