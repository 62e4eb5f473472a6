"""Float against dynamic-int8 BERT-base, on onnxrt and onnxruntime, interleaved.

    python benchmarks/quantized_bert.py                  # prints the Markdown table
    python benchmarks/quantized_bert.py --rounds 20 --threads 1

Builds, once, into benchmarks/.models/ (git-ignored): a BERT-base-sized model (transformers
``BertConfig()`` defaults: hidden 768, 12 layers, 12 heads, intermediate 3072; random init, eager
attention) exported with torch at sequence 128, batch 1 (inputs input_ids and attention_mask), and
its ``onnxruntime.quantization.quantize_dynamic`` version (int8 weights, per-tensor). Then runs the
four sessions round-robin, one run each per round, so that load on a shared machine falls on all
four alike, and reports the median per session of the calling thread's CPU time
(``time.thread_time``; BLAS and onnxruntime's intra-op pool limited to ``--threads``, default 1, so
every thread that works is the calling one) and of wall-clock time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE / ".models"
FLOAT = MODELS / "quantized_bert_float.onnx"
INT8 = MODELS / "quantized_bert_int8.onnx"
SEQ, BATCH, VOCAB = 128, 1, 30522


def build() -> None:
    MODELS.mkdir(parents=True, exist_ok=True)
    if not FLOAT.exists():
        from onnxrt.testing.models import export_bert

        # transformers' BertConfig() defaults: bert-base's shape
        export_bert(FLOAT, hidden=768, layers=12, heads=12, vocab=VOCAB, seq=SEQ, batch=BATCH, max_positions=512)
    if not INT8.exists():
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)
        tmp = INT8.with_suffix(".tmp.onnx")
        quantize_dynamic(str(FLOAT), str(tmp), weight_type=QuantType.QInt8)
        tmp.replace(INT8)


def sessions(threads: int) -> dict:
    import onnxruntime as ort

    import onnxrt

    def mine(path):
        so = onnxrt.SessionOptions()
        so.intra_op_num_threads = threads
        return onnxrt.InferenceSession(str(path), so)

    def theirs(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    return {"onnxrt float": mine(FLOAT), "onnxrt int8": mine(INT8),
            "onnxruntime float": theirs(FLOAT), "onnxruntime int8": theirs(INT8)}


def measure(runs: dict, feed: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (CPU seconds, wall seconds) per session, the sessions interleaved round by round."""
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    wall: dict[str, list[float]] = {k: [] for k in runs}
    for s in runs.values():
        s.run(None, feed)  # warm-up
    for r in range(rounds):
        order = list(runs.items())
        if r % 2:
            order.reverse()  # nobody always runs right after the same neighbour
        for k, s in order:
            w, c = time.perf_counter(), time.thread_time()
            s.run(None, feed)
            cpu[k].append(time.thread_time() - c)
            wall[k].append(time.perf_counter() - w)
    return {k: (float(np.median(cpu[k])), float(np.median(wall[k]))) for k in runs}


def table(t: dict[str, tuple[float, float]], rounds: int, threads: int, agree: float, spread: float) -> str:
    size = {"float": FLOAT.stat().st_size, "int8": INT8.stat().st_size}
    lines = [
        f"BERT-base (transformers `BertConfig()` defaults, random init, torch export, opset 17), sequence {SEQ}, "
        f"batch {BATCH}; int8 = `quantize_dynamic(weight_type=QInt8)`. {threads} thread(s) (BLAS / intra-op), "
        f"{rounds} interleaved rounds, median; CPU = the calling thread's CPU time (`time.thread_time`), "
        f"wall = `time.perf_counter`. Largest |onnxrt int8 - onnxruntime int8| relative to the output's "
        f"largest magnitude: {agree:.1e} (onnxruntime's own int8 output moves by {spread:.1e} between "
        f"ORT_DISABLE_ALL and its default optimizations: with random weights, a value that lands on a "
        f"rounding tie when an activation is quantized flips one code, and 12 layers amplify it).",
        "",
        "| runtime | model | size (MB) | CPU (ms) | wall (ms) | int8 / float (CPU) | int8 / float (wall) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rt in ("onnxrt", "onnxruntime"):
        f, q = t[f"{rt} float"], t[f"{rt} int8"]
        lines.append(f"| {rt} | float | {size['float'] / 1e6:.0f} | {f[0] * 1e3:.1f} | {f[1] * 1e3:.1f} | | |")
        lines.append(f"| {rt} | int8 | {size['int8'] / 1e6:.0f} | {q[0] * 1e3:.1f} | {q[1] * 1e3:.1f} | "
                     f"{q[0] / f[0]:.2f} | {q[1] / f[1]:.2f} |")
    lines.append("")
    lines.append(f"onnxrt / onnxruntime (CPU): float {t['onnxrt float'][0] / t['onnxruntime float'][0]:.2f}, "
                 f"int8 {t['onnxrt int8'][0] / t['onnxruntime int8'][0]:.2f}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import threadpoolctl

    threadpoolctl.threadpool_limits(args.threads)
    build()
    runs = sessions(args.threads)
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, VOCAB, (BATCH, SEQ)).astype(np.int64),
            "attention_mask": np.ones((BATCH, SEQ), np.int64)}
    a = runs["onnxrt int8"].run(None, feed)[0]
    e = runs["onnxruntime int8"].run(None, feed)[0]
    agree = float(np.abs(a - e).max() / np.abs(e).max())
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    e0 = ort.InferenceSession(str(INT8), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    spread = float(np.abs(e0 - e).max() / np.abs(e).max())
    t = measure(runs, feed, args.rounds)
    print(table(t, args.rounds, args.threads, agree, spread))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
