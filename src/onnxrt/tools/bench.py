"""Measure a model's load time, latency, throughput and peak memory, optionally against onnxruntime.

``onnxrt bench MODEL`` is onnxrt's counterpart of onnxruntime_perf_test. Each runtime runs in a
worker process of its own, so that its peak memory (the resident-set high-water mark, minus the
worker's own baseline before the runtime was imported) is its alone; with ``--compare`` the
runtimes' iterations alternate within the same time window, so that load on the machine affects
both alike, and the ratios onnxrt/other are printed.

This module also holds the logic that ``benchmarks/run.py`` imports: input generation from the
model's inputs and command-line dims, the worker protocol, the interleaved timing loop, and output
comparison. It is run as a *script* for the worker (``python bench.py --worker``) so that the worker
imports only the runtime it measures; keep its top-level imports to the standard library and numpy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

RUNTIMES = ("onnxrt", "onnxruntime", "reference")
OPT_LEVELS = ("disable", "basic", "extended", "all")
# A symbolic dim nobody gave a value for is set to this, as onnxruntime_perf_test does.
DEFAULT_FREE_DIM = 1


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass
class InputInfo:
    """What a model says about one of its inputs (the parts of a NodeArg that input generation needs)."""

    name: str
    type: str  # onnxruntime's spelling: 'tensor(float)'
    shape: list[int | str | None]


def model_inputs(model_path: str) -> list[InputInfo]:
    """The graph inputs of the model at ``model_path`` that are not initializers, without loading weights."""
    import onnx

    from onnxrt.types import type_proto_shape, type_proto_string

    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"model file not found: {model_path}")
    model = onnx.load(model_path, load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    return [
        InputInfo(inp.name, type_proto_string(inp.type), list(type_proto_shape(inp.type) or []))
        for inp in model.graph.input
        if inp.name not in initializers
    ]


def _dtype_of_type_string(type_string: str) -> np.dtype:
    from onnxrt.types import dtype_of_type_string

    try:
        return dtype_of_type_string(type_string)
    except ValueError:
        raise ValueError(f"cannot make random data for an input of type {type_string!r} (only tensors are supported)") from None


def parse_assignments(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """``['a=1', 'b=x.npy']`` -> ``{'a': '1', 'b': 'x.npy'}``, with an error naming a malformed item."""
    result: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} {item!r} is not of the form NAME=VALUE")
        result[name] = value
    return result


def parse_dims(items: Sequence[str] | None) -> dict[str, int]:
    """``['batch=4', 'seq=128']`` -> ``{'batch': 4, 'seq': 128}``: the --dim parser every tool shares,
    imported here on use because the measuring workers must not import onnx or onnxrt up front."""
    from onnxrt.tools.inspect import parse_dims as parse

    return parse(list(items or []))


def resolve_shape(shape: Sequence[int | str | None], dims: Mapping[str, int], input_name: str, unresolved: set[str]) -> tuple[int, ...]:
    """Concrete shape: names looked up in ``dims``; unknown names and unnamed dims become 1 (noted in ``unresolved``)."""
    concrete = []
    for axis, dim in enumerate(shape):
        if isinstance(dim, int) and dim >= 0:
            concrete.append(dim)
        elif isinstance(dim, str) and dim in dims:
            concrete.append(dims[dim])
        else:
            unresolved.add(dim if isinstance(dim, str) and dim else f"{input_name}[{axis}]")
            concrete.append(DEFAULT_FREE_DIM)
    return tuple(concrete)


def _fill(recipe: Mapping[str, Any], shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator, name: str) -> np.ndarray:
    kind = recipe.get("fill")
    if kind is None:  # the default depends on the dtype
        kind = "normal" if np.issubdtype(dtype, np.floating) or dtype.kind == "V" else "randint"
    if kind == "normal":
        data = rng.standard_normal(shape) * float(recipe.get("scale", 1.0)) + float(recipe.get("mean", 0.0))
    elif kind == "uniform":
        data = rng.uniform(float(recipe.get("low", 0.0)), float(recipe.get("high", 1.0)), shape)
    elif kind == "randint":
        if dtype == np.bool_:
            return rng.integers(0, 2, shape).astype(np.bool_)
        data = rng.integers(int(recipe.get("low", 0)), int(recipe.get("high", 10)), shape)
    elif kind == "zeros":
        data = np.zeros(shape)
    elif kind == "ones":
        data = np.ones(shape)
    elif kind == "value":
        if "value" not in recipe:
            raise ValueError(f"input {name!r}: fill 'value' needs a 'value' entry")
        data = np.full(shape, recipe["value"])
    elif kind == "file":
        # a .npy next to the recipe (a real image, say), resolved by load_recipe
        if "path" not in recipe:
            raise ValueError(f"input {name!r}: fill 'file' needs a 'file' entry naming a .npy beside the recipe")
        data = np.load(recipe["path"], allow_pickle=False)
        if tuple(data.shape) != tuple(shape):
            raise ValueError(f"input {name!r}: {recipe['path']} holds shape {tuple(data.shape)}, expected {tuple(shape)}")
    else:
        raise ValueError(f"input {name!r}: unknown fill {kind!r} (normal, uniform, randint, zeros, ones, value, file)")
    if dtype == np.object_:
        return data.astype(str).astype(object)
    return np.asarray(data).astype(dtype)


def make_inputs(
    inputs: Sequence[Any],
    dims: Mapping[str, int] | None = None,
    recipes: Mapping[str, Mapping[str, Any]] | None = None,
    given: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feeds for ``inputs`` (InputInfo or NodeArg: ``name``, ``type``, ``shape``).

    ``given`` arrays are used as they are; otherwise a recipe (``shape``, ``dtype``, ``fill`` and its
    parameters, see ``_fill``) says how to make the input, and without one the model's shape with
    ``dims`` applied and random data of the model's dtype are used. Returns the feeds and the
    symbolic dims that nobody gave a value for (set to 1).
    """
    dims = dict(dims or {})
    recipes = dict(recipes or {})
    given = dict(given or {})
    names = [i.name for i in inputs]
    for name in list(recipes) + list(given):
        if name not in names:
            raise ValueError(f"no model input named {name!r}; the inputs are {names}")
    rng = np.random.default_rng(seed)
    unresolved: set[str] = set()
    feeds: dict[str, np.ndarray] = {}
    for info in inputs:
        if info.name in given:
            feeds[info.name] = np.asarray(given[info.name])
            continue
        recipe = recipes.get(info.name, {})
        dtype = np.dtype(recipe["dtype"]) if "dtype" in recipe else _dtype_of_type_string(info.type)
        shape = resolve_shape(recipe.get("shape", info.shape), dims, info.name, unresolved)
        feeds[info.name] = _fill(recipe, shape, dtype, rng, info.name)
    return feeds, sorted(unresolved)


def load_given_inputs(items: Sequence[str] | None) -> dict[str, np.ndarray]:
    """``--input name=file.npy`` items -> arrays."""
    arrays = {}
    for name, path in parse_assignments(items, "--input").items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--input {name}={path}: file not found")
        arrays[name] = np.load(path, allow_pickle=False)
    return arrays


# --------------------------------------------------------------------------------------------
# Output comparison
# --------------------------------------------------------------------------------------------


def max_relative_error(outputs: Sequence[Any], expected: Sequence[Any]) -> float:
    """Largest ``max|a - b| / max|b|`` over the outputs (0 when equal, inf on a shape or count mismatch).

    The error is relative to each output's largest magnitude rather than elementwise, so that
    values near zero (which any float reordering perturbs) do not dominate it.
    """
    if len(outputs) != len(expected):
        return math.inf
    worst = 0.0
    for got, want in zip(outputs, expected):
        if not isinstance(want, np.ndarray) or not isinstance(got, np.ndarray):
            worst = max(worst, 0.0 if _plain_equal(got, want) else math.inf)
            continue
        if got.shape != want.shape:
            return math.inf
        if want.size == 0:
            continue
        if want.dtype == np.object_ or want.dtype.kind in "USb":
            worst = max(worst, 0.0 if np.array_equal(got, want) else math.inf)
            continue
        a = got.astype(np.float64)
        b = want.astype(np.float64)
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        if np.isnan(diff).any():
            return math.inf
        scale = float(np.max(np.abs(np.where(np.isnan(b), 0.0, b))))
        worst = max(worst, float(diff.max()) / scale if scale > 0 else float(diff.max()))
    return worst


def _plain_equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


# --------------------------------------------------------------------------------------------
# Worker process: one runtime, driven over a pipe
# --------------------------------------------------------------------------------------------

_HEADER = struct.Struct("<Q")


def _send(stream: Any, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_exactly(stream: Any, size: int) -> bytes:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError("worker pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(stream: Any) -> Any:
    (size,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return pickle.loads(_read_exactly(stream, size))


def _maxrss_bytes() -> int:
    """This process's resident-set high-water mark.

    On Linux, VmHWM belongs to the process's own address space; ru_maxrss is not used there because
    it carries over the parent's high-water mark through fork and exec, which would hide a worker's.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _import_runtime(runtime: str) -> Any:
    if runtime == "reference":
        from onnx import reference as module
    elif runtime == "onnxrt":
        import onnxrt as module
    elif runtime == "onnxruntime":
        import onnxruntime as module
    else:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")
    return module


def _make_session(module: Any, runtime: str, model_path: str, threads: int, opt_level: str) -> Any:
    """A run function over a session of ``module`` (as ``_import_runtime(runtime)`` gave it)."""
    if runtime == "reference":
        evaluator = module.ReferenceEvaluator(model_path)
        return lambda feeds: evaluator.run(None, feeds)
    options = module.SessionOptions()
    levels = module.GraphOptimizationLevel
    options.graph_optimization_level = {
        "disable": levels.ORT_DISABLE_ALL,
        "basic": levels.ORT_ENABLE_BASIC,
        "extended": levels.ORT_ENABLE_EXTENDED,
        "all": levels.ORT_ENABLE_ALL,
    }[opt_level]
    options.intra_op_num_threads = threads
    session = module.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def _worker_main() -> int:
    """Serve requests from the parent on stdin; answer on the original stdout, which nothing else may use."""
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    run = None
    feeds: dict[str, np.ndarray] = {}
    baseline = _maxrss_bytes()
    while True:
        try:
            request = _receive(requests)
        except EOFError:
            return 0
        command = request["cmd"]
        try:
            if command == "exit":
                _send(answers, {"ok": True})
                return 0
            if command == "feeds":
                feeds = request["feeds"]
                answer: dict[str, Any] = {"ok": True}
            elif command == "load":
                baseline = _maxrss_bytes()  # the interpreter, numpy and the feeds; not the runtime
                # the import once per process, the session per model (what onnxruntime_perf_test calls
                # session creation time): timed apart
                start = time.perf_counter()
                module = _import_runtime(request["runtime"])
                imported = time.perf_counter()
                run = _make_session(module, request["runtime"], request["model"], request["threads"], request["opt_level"])
                answer = {"import_s": imported - start, "load_s": time.perf_counter() - imported}
            elif command == "run":
                if run is None:
                    raise RuntimeError("run requested before load")
                times = []
                outputs = None
                for _ in range(request["count"]):
                    start = time.perf_counter()
                    outputs = run(feeds)
                    times.append(time.perf_counter() - start)
                answer = {"times": times, "outputs": outputs if request.get("keep") else None}
            elif command == "memory":
                answer = {"peak_bytes": _maxrss_bytes(), "baseline_bytes": baseline}
            else:
                raise ValueError(f"unknown worker command {command!r}")
        except Exception as e:
            answer = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        _send(answers, answer)


class WorkerTimeout(Exception):
    """A worker did not answer within its time limit (it has been killed)."""


class WorkerError(RuntimeError):
    """The runtime in a worker raised; the message is its error."""


# Runs this file as __main__ without putting its folder (or the current one) on sys.path, where
# sibling tool modules such as inspect.py would shadow the standard library's.
_WORKER_BOOTSTRAP = "import sys, runpy; del sys.path[0]; runpy.run_path(sys.argv[1], run_name='__main__')"


class RuntimeWorker:
    """One runtime in a process of its own, driven request by request."""

    def __init__(self, runtime: str, threads: int) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        self.runtime = runtime
        env = dict(os.environ)
        # imports timed as an installed package behaves: with its compiled bytecode cached
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # onnxrt's matrix work is numpy's BLAS: its thread count is the intra-op thread count.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOTSTRAP, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        _send(self._process.stdin, message)
        if timeout is not None:
            ready, _, _ = select.select([self._process.stdout], [], [], max(timeout, 0.0))
            if not ready:
                self.kill()
                raise WorkerTimeout(f"{self.runtime}: no answer to {message['cmd']!r} within {timeout:.0f} s")
        try:
            answer = _receive(self._process.stdout)
        except EOFError:
            code = self._process.wait()
            raise WorkerError(f"{self.runtime} worker died (exit code {code}) during {message['cmd']!r}") from None
        if "error" in answer:
            raise WorkerError(f"{self.runtime}: {answer['error']}")
        return answer

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self.request({"cmd": "exit"}, timeout=10)
            except (WorkerTimeout, WorkerError, BrokenPipeError, OSError):
                pass
        self.kill()


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class RuntimeResult:
    """What was measured for one runtime on one model."""

    runtime: str
    status: str = "ok"  # ok | timeout | error
    error: str | None = None
    import_s: float | None = None  # importing the runtime's module in a fresh process
    load_s: float | None = None  # creating the session, after the import
    first_run_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    peak_bytes: int | None = None  # resident-set high-water mark minus the worker's baseline
    baseline_bytes: int | None = None
    max_rel_error: float | None = None  # against the comparison baseline runtime's outputs
    outputs: Any = field(default=None, repr=False)  # of the first run; not written to JSON

    @property
    def median_s(self) -> float | None:
        return float(np.median(self.times_s)) if self.times_s else None

    @property
    def p90_s(self) -> float | None:
        return float(np.percentile(self.times_s, 90)) if self.times_s else None

    @property
    def throughput(self) -> float | None:
        """Inferences per second over the timed runs."""
        return len(self.times_s) / sum(self.times_s) if self.times_s and sum(self.times_s) > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "status": self.status,
            "error": self.error,
            "import_s": self.import_s,
            "load_s": self.load_s,
            "first_run_s": self.first_run_s,
            "median_s": self.median_s,
            "p90_s": self.p90_s,
            "throughput_per_s": self.throughput,
            "runs": len(self.times_s),
            "times_s": self.times_s,
            "peak_bytes": self.peak_bytes,
            "baseline_bytes": self.baseline_bytes,
            "max_rel_error": None if self.max_rel_error is None or math.isinf(self.max_rel_error) else self.max_rel_error,
            "outputs_mismatch": self.max_rel_error is not None and math.isinf(self.max_rel_error),
        }


def default_threads() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure(
    model_path: str,
    feeds: Mapping[str, np.ndarray],
    runtimes: Sequence[str] = ("onnxrt",),
    *,
    warmup: int = 2,
    runs: int = 10,
    max_seconds: float | None = None,
    min_runs: int = 3,
    threads: int = 0,
    opt_level: str = "all",
    timeout: float | None = None,
    gap_s: float = 0.1,
    block: int = 5,
) -> list[RuntimeResult]:
    """Load ``model_path`` in one worker per runtime and time the runtimes' runs, interleaved.

    Every round runs each runtime once, in an order that alternates between rounds, so machine
    load falls on all of them alike. A runtime's turn is a block of ``block`` back-to-back runs (as a
    user's inference loop runs), started ``gap_s`` after the other runtime's turn ended, and the first
    run of each block is not timed: thread pools spin-wait after their work (onnxruntime's intra-op
    pool; OpenBLAS's threads for about 0.1 s), so without the gap one runtime's spinning steals cores
    from the other's runs, and without the blocks a runtime loses the warm pool a real loop keeps. Timed rounds stop after ``runs`` or, once ``min_runs`` are
    done, when ``max_seconds`` of wall time have passed since the first run. ``timeout`` bounds each single request
    (load or one run); a runtime that exceeds it is killed and reported as 'timeout', and the
    others go on. Errors are reported per runtime. Outputs are compared with the last runtime's
    when it is onnxruntime, else with the first's: see ``max_relative_error``.
    """
    if opt_level not in OPT_LEVELS:
        raise ValueError(f"unknown optimization level {opt_level!r}; choose from {', '.join(OPT_LEVELS)}")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"model file not found: {model_path}")
    threads = threads or default_threads()
    results = {name: RuntimeResult(name) for name in runtimes}
    workers: dict[str, RuntimeWorker] = {}
    outputs: dict[str, Any] = {}

    def fail(name: str, error: Exception) -> None:
        results[name].status = "timeout" if isinstance(error, WorkerTimeout) else "error"
        results[name].error = str(error)
        workers.pop(name).kill()

    try:
        for name in runtimes:
            workers[name] = RuntimeWorker(name, threads)
            try:
                workers[name].request({"cmd": "feeds", "feeds": dict(feeds)}, timeout)
                answer = workers[name].request(
                    {"cmd": "load", "runtime": name, "model": os.path.abspath(model_path), "threads": threads, "opt_level": opt_level},
                    timeout,
                )
                results[name].import_s = answer["import_s"]
                results[name].load_s = answer["load_s"]
            except (WorkerTimeout, WorkerError) as e:
                fail(name, e)
        start = time.perf_counter()
        for name in list(workers):
            try:
                answer = workers[name].request({"cmd": "run", "count": 1, "keep": True}, timeout)
                results[name].first_run_s = answer["times"][0]
                outputs[name] = results[name].outputs = answer["outputs"]
            except (WorkerTimeout, WorkerError) as e:
                fail(name, e)
        for round_index in range(warmup + max(1, -(-runs // max(block, 1)))):
            order = list(workers) if round_index % 2 == 0 else list(reversed(workers))
            for name in order:
                if gap_s > 0:
                    time.sleep(gap_s)
                timed_so_far = (round_index - warmup) * max(block, 1)
                count = 1 if round_index < warmup else min(max(block, 1), runs - timed_so_far) + 1
                try:
                    answer = workers[name].request({"cmd": "run", "count": count}, timeout)
                except (WorkerTimeout, WorkerError) as e:
                    fail(name, e)
                    continue
                if round_index >= warmup:
                    results[name].times_s.extend(answer["times"][1:])
            timed_rounds = (round_index + 1 - warmup) * max(block, 1)
            if max_seconds is not None and timed_rounds >= min_runs and time.perf_counter() - start > max_seconds:
                break
            if not workers:
                break
        for name, worker in workers.items():
            try:
                answer = worker.request({"cmd": "memory"}, timeout)
            except (WorkerTimeout, WorkerError) as e:
                results[name].error = str(e)
                continue
            results[name].baseline_bytes = answer["baseline_bytes"]
            results[name].peak_bytes = answer["peak_bytes"] - answer["baseline_bytes"]
    finally:
        for worker in workers.values():
            worker.close()
    reference_name = runtimes[-1] if runtimes[-1] == "onnxruntime" else runtimes[0]
    if reference_name in outputs:
        for name, got in outputs.items():
            if name != reference_name:
                results[name].max_rel_error = max_relative_error(got, outputs[reference_name])
    return [results[name] for name in runtimes]


def geometric_mean(values: Sequence[float]) -> float | None:
    """Geometric mean of the positive finite values, or None when there are none."""
    good = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in good) / len(good)) if good else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.1f} MB"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to the .onnx model")
    parser.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="use this array for input NAME (repeatable); other inputs are random")
    parser.add_argument("--dim", action="append", metavar="NAME=VALUE", help=f"value of a symbolic dim (repeatable); unnamed and unknown dims are {DEFAULT_FREE_DIM}")
    parser.add_argument("--recipe", metavar="FILE.json", help="JSON sidecar saying how to make inputs: {\"inputs\": {NAME: {shape, dtype, fill, ...}}}")
    parser.add_argument("--compare", choices=[r for r in RUNTIMES if r != "onnxrt"], help="also run this runtime, interleaved, and print ratios")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per runtime (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs after the first run (default 2)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop timing after this wall time (at least 3 runs)")
    parser.add_argument("--timeout", type=float, default=None, help="kill a runtime whose load or single run exceeds this many seconds")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for each runtime (default 0: the machine's cores)")
    parser.add_argument("--opt-level", choices=OPT_LEVELS, default="all", help="graph optimization level (default all)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout)")


def load_recipe(path: str | None) -> tuple[dict[str, Any], dict[str, int]]:
    if not path:
        return {}, {}
    with open(path, encoding="utf-8") as f:
        recipe = json.load(f)
    if not isinstance(recipe, dict) or not isinstance(recipe.get("inputs", {}), dict):
        raise ValueError(f"{path}: a recipe is a JSON object with an 'inputs' object")
    inputs = recipe.get("inputs", {})
    folder = os.path.dirname(os.path.abspath(path))
    for name, entry in inputs.items():
        if isinstance(entry, dict) and entry.get("fill") == "file":
            target = os.path.realpath(os.path.join(folder, str(entry.get("file", ""))))
            if os.path.commonpath([target, os.path.realpath(folder)]) != os.path.realpath(folder):
                raise ValueError(f"{path}: input {name!r} names {entry.get('file')!r}, outside the recipe's folder")
            entry["path"] = target
    return inputs, {k: int(v) for k, v in recipe.get("dims", {}).items()}


def main(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.warmup < 0:
        raise ValueError("--runs must be at least 1 and --warmup at least 0")
    recipes, recipe_dims = load_recipe(args.recipe)
    dims = {**recipe_dims, **parse_dims(args.dim)}
    inputs = model_inputs(args.model)
    feeds, unresolved = make_inputs(inputs, dims, recipes, load_given_inputs(args.input), seed=args.seed)
    if unresolved:
        print(f"note: dims {', '.join(unresolved)} not given (--dim NAME=VALUE); using {DEFAULT_FREE_DIM}", file=sys.stderr)
    runtimes = ["onnxrt"] + ([args.compare] if args.compare else [])
    threads = args.threads or default_threads()
    results = measure(
        args.model, feeds, runtimes, warmup=args.warmup, runs=args.runs, max_seconds=args.max_seconds,
        threads=threads, opt_level=args.opt_level, timeout=args.timeout,
    )
    report = {
        "model": os.path.abspath(args.model),
        "inputs": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in feeds.items()},
        "threads": threads,
        "opt_level": args.opt_level,
        "results": [r.to_json() for r in results],
    }
    if args.json != "-":
        _print_report(report, results)
    if args.json:
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(text + "\n")
    return 0 if all(r.status == "ok" for r in results) else 1


def _print_report(report: dict[str, Any], results: list[RuntimeResult]) -> None:
    shapes = ", ".join(f"{n}: {v['dtype']}{v['shape']}" for n, v in report["inputs"].items())
    print(f"model   {report['model']}\ninputs  {shapes}\nthreads {report['threads']}, optimization level {report['opt_level']}\n")
    rows = [("", *[r.runtime for r in results])]
    rows.append(("import", *[_ms(r.import_s) for r in results]))
    rows.append(("load", *[_ms(r.load_s) for r in results]))
    rows.append(("first run", *[_ms(r.first_run_s) for r in results]))
    rows.append(("median", *[_ms(r.median_s) for r in results]))
    rows.append(("p90", *[_ms(r.p90_s) for r in results]))
    rows.append(("throughput", *["-" if r.throughput is None else f"{r.throughput:.2f}/s" for r in results]))
    rows.append(("timed runs", *[str(len(r.times_s)) for r in results]))
    rows.append(("peak memory", *[_mb(r.peak_bytes) for r in results]))
    rows.append(("max rel error", *["-" if r.max_rel_error is None else f"{r.max_rel_error:.2e}" for r in results]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    for r in results:
        if r.status != "ok":
            print(f"\n{r.runtime}: {r.status}: {r.error}")
    if len(results) == 2 and all(r.status == "ok" for r in results):
        mine, other = results
        print(
            f"\nonnxrt/{other.runtime}: median {_x(ratio(mine.median_s, other.median_s))}, "
            f"p90 {_x(ratio(mine.p90_s, other.p90_s))}, load {_x(ratio(mine.load_s, other.load_s))}, "
            f"first run {_x(ratio(mine.first_run_s, other.first_run_s))}, peak memory {_x(ratio(mine.peak_bytes, other.peak_bytes))}"
        )


if __name__ == "__main__":
    if sys.argv[-1:] == ["--worker"]:
        sys.exit(_worker_main())
    print("run this through the onnxrt command: onnxrt bench MODEL", file=sys.stderr)
    sys.exit(2)
