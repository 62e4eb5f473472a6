"""Time one model on onnxrt and onnxruntime, interleaved, and print per-op-type time for onnxrt.

    python benchmarks/kernels/bench_model.py [model.onnx] [--runs N] [--threads T] [--profile]

Without a model path the light ResNet-50 from onnx's test data is used (input 1x3x224x224).
Reports medians and the onnxrt/onnxruntime ratio. Wall-clock timing goes through the suite's
``onnxrt.tools.bench.measure`` (a worker process per runtime, blocks of runs with a gap between turns,
so that one runtime's spinning threads do not slow the other's runs); ``--cpu`` times both in this
process, one thread each, by the calling thread's CPU time.
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np
import onnx


def _default_model() -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/light_resnet50.onnx")


def _feeds(session, model_path: str) -> dict:
    """Inputs as `onnxrt bench` makes them: from the model's sidecar recipe (NAME.json) when there is one."""
    from onnxrt.tools import bench

    sidecar = os.path.splitext(model_path)[0] + ".json"
    recipes, dims = bench.load_recipe(sidecar if os.path.isfile(sidecar) else None)
    feeds, _ = bench.make_inputs(session.get_inputs(), dims, recipes)
    return feeds


def main() -> None:
    import onnxrt

    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=_default_model())
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="print onnxrt time per op type")
    ap.add_argument("--cpu", action="store_true",
                    help="one thread each, timed by the calling thread's CPU time (robust on a busy machine)")
    args = ap.parse_args()
    clock = time.perf_counter
    if args.cpu:
        args.threads, clock = 1, time.thread_time

    so = onnxrt.SessionOptions()
    so.intra_op_num_threads = args.threads
    feeds = _feeds(onnxrt.InferenceSession(args.model, so, providers=["CPUExecutionProvider"]), args.model)
    if args.cpu:
        t_mine, t_ref = _cpu_times(args.model, feeds, args.runs)
    else:
        from onnxrt.tools import bench

        results = bench.measure(args.model, feeds, ["onnxrt", "onnxruntime"], runs=args.runs, threads=args.threads)
        for r in results:
            if r.status != "ok":
                raise SystemExit(f"{r.runtime}: {r.status}: {r.error}")
        t_mine, t_ref = results[0].times_s, results[1].times_s
    a, b = np.median(t_mine) * 1e3, np.median(t_ref) * 1e3
    print(f"{os.path.basename(args.model)}: onnxrt {a:.1f} ms  onnxruntime {b:.1f} ms  ratio {a / b:.2f}")
    if args.profile:
        _profile(args.model, feeds, clock, args.threads)


def _cpu_times(model: str, feeds: dict, runs: int) -> tuple[list[float], list[float]]:
    """Both runtimes in this process, one thread each, alternating, by the calling thread's CPU time."""
    import onnxruntime

    import onnxrt
    from onnxrt.runtime import threads

    so = onnxrt.SessionOptions()
    so.intra_op_num_threads = 1
    mine = onnxrt.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    so2 = onnxruntime.SessionOptions()
    so2.intra_op_num_threads = 1
    ref = onnxruntime.InferenceSession(model, so2, providers=["CPUExecutionProvider"])
    mine.run(None, feeds)
    ref.run(None, feeds)
    t_mine, t_ref = [], []
    for _ in range(runs):
        with threads.run_scope(1):  # what the session does around run
            t = time.thread_time()
            mine.run(None, feeds)
            t_mine.append(time.thread_time() - t)
        t = time.thread_time()
        ref.run(None, feeds)
        t_ref.append(time.thread_time() - t)
    return t_mine, t_ref


def _profile(model: str, feeds: dict, clock=time.perf_counter, nthreads: int = 1) -> None:
    """Per-op-type time, by wrapping every prepared kernel of a fresh session."""
    import onnxrt
    from onnxrt.runtime import threads

    so = onnxrt.SessionOptions()
    so.intra_op_num_threads = nthreads
    sess = onnxrt.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    totals: dict[str, float] = collections.defaultdict(float)
    plan = sess._plan  # noqa: SLF001 - benchmark reaches into the plan on purpose
    for step in plan.steps:
        fn, op_type = step.kernel, step.op_type

        def timed(*a, _fn=fn, _op=op_type, **k):
            t = clock()
            r = _fn(*a, **k)
            totals[_op] += clock() - t
            return r

        step.kernel = timed
    runs = 5
    for _ in range(runs):
        with threads.run_scope(nthreads):
            sess.run(None, feeds)
    for op_type, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {op_type:24s} {t / runs * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
