"""Chrome-trace profiling in onnxruntime's format.

With ``SessionOptions.enable_profiling`` the session records Session events
(model loading, initialisation, each run) and one Node event per kernel call
(``<node>_kernel_time``) with onnxruntime's ``args``: op_name, provider,
input/output type and shape, activation and parameter sizes. ``end_profiling``
writes a JSON array of complete ("X") events that chrome://tracing and Perfetto
load.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
from typing import Any, Iterator

import numpy as np

from onnxrt import types as _types


def _us(ns: int) -> int:
    return ns // 1000


def _type_shape(values) -> list[dict[str, list[int]]]:
    out = []
    for v in values:
        if isinstance(v, np.ndarray):
            try:
                key = _types.elem_type_name(_types.onnx_elem_type(v.dtype))
            except ValueError:
                key = str(v.dtype)
            out.append({key: list(v.shape)})
    return out


def _nbytes(values) -> int:
    return int(sum(v.nbytes for v in values if isinstance(v, np.ndarray)))


class Profiler:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.start_ns = time.perf_counter_ns()
        self._wall_start = time.time_ns()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _add(self, name: str, cat: str, start_ns: int, end_ns: int, args: dict[str, Any]) -> None:
        event = {
            "cat": cat,
            "pid": self._pid,
            "tid": threading.get_ident() % 1_000_000,
            "dur": _us(end_ns - start_ns),
            "ts": _us(start_ns - self.start_ns),
            "ph": "X",
            "name": name,
            "args": args,
        }
        with self._lock:
            self.events.append(event)

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            self._add(name, "Session", t0, time.perf_counter_ns(), {})

    def instrument(self, plan: Any) -> None:
        """Wrap every step's kernel (and those of subgraph plans) so each call is recorded."""
        for step in plan.steps:
            step.kernel = self._timed(step.kernel, step, plan)
            if step.donate is not None:
                position, variant = step.donate
                step.donate = (position, self._timed(variant, step, plan))
            for sub in getattr(step, "subplans", ()):
                self.instrument(sub)

    def _timed(self, kernel, step, plan):
        parameters = set(plan.constants)
        names = [v.name if v is not None else "" for v in step.node.inputs]
        param_flags = [n in parameters for n in names]
        node_name = step.name or step.op_type
        op_name = step.op_type

        def timed(*args):
            t0 = time.perf_counter_ns()
            result = kernel(*args)
            t1 = time.perf_counter_ns()
            outs = result if type(result) is tuple else (result,)
            regular = args[: len(param_flags)]
            params = [a for a, p in zip(regular, param_flags) if p]
            acts = [a for a, p in zip(regular, param_flags) if not p]
            self._add(
                f"{node_name}_kernel_time",
                "Node",
                t0,
                t1,
                {
                    "op_name": op_name,
                    "provider": "CPUExecutionProvider",
                    "node_index": str(id(step) % 100000),
                    "activation_size": str(_nbytes(acts)),
                    "parameter_size": str(_nbytes(params)),
                    "output_size": str(_nbytes(outs)),
                    "input_type_shape": _type_shape(regular),
                    "output_type_shape": _type_shape(outs),
                    "thread_scheduling_stats": {},
                },
            )
            return result

        return timed

    def run(self, plan: Any, feeds: list, run_options: Any) -> list:
        with self.span("model_run"):
            return plan.run(feeds, (), run_options)

    def write(self) -> str:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        path = f"{self.prefix}{stamp}.json"
        with self._lock:
            events = list(self.events)
        with open(path, "w") as f:
            json.dump(events, f)
        return path


@contextlib.contextmanager
def session_event(profiler: Profiler | None, name: str) -> Iterator[None]:
    if profiler is None:
        yield
        return
    with profiler.span(name):
        yield
