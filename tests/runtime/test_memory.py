"""SessionOptions.enable_cpu_mem_arena keeps freed memory for the next run (glibc's malloc settings)."""

from __future__ import annotations

import platform
import resource

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxrt
from onnxrt.runtime import memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _model() -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _faults_per_run(session, x: np.ndarray, runs: int = 10) -> float:
    session.run(None, {"x": x})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(runs):
        session.run(None, {"x": x})
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / runs


@pytest.mark.skipif(not GLIBC, reason="the arena configures glibc's malloc; other C libraries are left alone")
def test_arena_reuses_freed_blocks_instead_of_faulting_them_in_again():
    session = onnxrt.InferenceSession(_model())  # enable_cpu_mem_arena defaults to True
    assert memory.keep_freed_memory()
    # a 16 MB output per run: without the settings glibc unmaps it when it is freed and the next
    # run faults its pages in again (thousands of faults, or a few per huge page)
    x = np.ones((4 << 20,), dtype=np.float32)
    assert _faults_per_run(session, x) < 1


def test_arena_off_does_not_touch_malloc(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    options = onnxrt.SessionOptions()
    options.enable_cpu_mem_arena = False
    onnxrt.InferenceSession(_model(), options)
    assert calls == []
    onnxrt.InferenceSession(_model())
    assert calls == [1]
