"""Interleaved latency of onnxrt vs onnxruntime on the transformer benchmark models, batch 1.

    python benchmarks/transformers/bench.py                       # all four models, 1 thread each
    python benchmarks/transformers/bench.py --models bert_base --runs 10 --threads 1 --profile

Both sessions live in this one process at the default optimization level (ORT_ENABLE_ALL); their runs
alternate, so load from other processes falls on both alike. Reports the median wall-clock and
CPU-time (process time) per run of each, and their ratios. Models come from benchmarks/make_models.py
(``benchmarks/.models/NAME.onnx`` with its ``NAME.json`` input recipe). ``--profile`` also prints
onnxrt's per-op-type profile and the fusions the optimizer made.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(os.path.dirname(HERE), ".models")
DEFAULT = "bert_base,gpt2,vit_base,whisper_tiny_encoder"


def feeds_for(name: str) -> dict[str, np.ndarray]:
    from onnxrt.tools import bench

    with open(os.path.join(MODELS, name + ".json"), encoding="utf-8") as f:
        side = json.load(f)
    feeds, _ = bench.make_inputs(bench.model_inputs(os.path.join(MODELS, name + ".onnx")), side.get("dims", {}), side.get("inputs", {}), seed=0)
    return feeds


def sessions(path: str, threads: int):
    import onnxruntime
    import onnxrt

    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    ref = onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    mo = onnxrt.SessionOptions()
    mo.intra_op_num_threads = threads
    t0 = time.perf_counter()
    ours = onnxrt.InferenceSession(path, mo, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    return ours, ref, load_s


def timed(sess, feeds) -> tuple[float, float, list]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = sess.run(None, feeds)
    return time.perf_counter() - w0, time.process_time() - c0, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        path = os.path.join(MODELS, name + ".onnx")
        if not os.path.isfile(path):
            print(f"{name}: missing, run benchmarks/make_models.py --models {name}", file=sys.stderr)
            continue
        feeds = feeds_for(name)
        ours, ref, load_s = sessions(path, args.threads)
        _, _, a = timed(ours, feeds)
        _, _, b = timed(ref, feeds)
        err = max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-12)) for x, y in zip(a, b))
        ow, oc, rw, rc = [], [], [], []
        for _ in range(args.runs):
            w, c, _ = timed(ours, feeds)
            ow.append(w); oc.append(c)
            w, c, _ = timed(ref, feeds)
            rw.append(w); rc.append(c)
        m = statistics.median
        row = dict(model=name, onnxrt_ms=1e3 * m(ow), ort_ms=1e3 * m(rw), wall_ratio=m(ow) / m(rw),
                   onnxrt_cpu_ms=1e3 * m(oc), ort_cpu_ms=1e3 * m(rc), cpu_ratio=m(oc) / m(rc), rel_err=err, load_s=load_s)
        rows.append(row)
        print(f"{name:22s} onnxrt {row['onnxrt_ms']:8.1f} ms  ort {row['ort_ms']:8.1f} ms  wall x{row['wall_ratio']:.2f}"
              f"  | cpu {row['onnxrt_cpu_ms']:8.1f} / {row['ort_cpu_ms']:8.1f} ms x{row['cpu_ratio']:.2f}  rel.err {err:.1e}  load {load_s:.1f}s",
              flush=True)
        if args.profile:
            profile(path, feeds, args.threads)
        del ours, ref
    return 0


def profile(path: str, feeds, threads: int) -> None:
    import tempfile

    import onnxrt
    from onnxrt.tools.profile import format_table, summarize_trace

    with tempfile.TemporaryDirectory() as tmp:
        so = onnxrt.SessionOptions()
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "p")
        s = onnxrt.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for _ in range(4):
            s.run(None, feeds)
        trace = s.end_profiling()
        with open(trace, encoding="utf-8") as f:
            events = json.load(f)
    summary = summarize_trace(events)
    print(f"  profile: {summary['run_mean_ms']:.1f} ms/run (incl. warm-up), kernels {summary['kernel_total_ms'] / max(summary['runs'], 1):.1f} ms")
    print("  " + format_table(summary, 15).replace("\n", "\n  "))


if __name__ == "__main__":
    raise SystemExit(main())
