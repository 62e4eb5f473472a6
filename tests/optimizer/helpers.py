"""Shared checks for optimizer pass tests: build a model, run with and without a pass, compare."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime
from onnx import TensorProto, helper

import onnxrt
from onnxrt.model import loader

onnxruntime.set_default_logger_severity(3)


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 17, extra_opsets=None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def vinfo(name: str, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def const(name: str, array) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(array), name)


def run_onnxrt(model: onnx.ModelProto, feeds: dict) -> list:
    so = onnxrt.SessionOptions()
    so.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxrt.InferenceSession(model.SerializeToString(), so).run(None, feeds)


def run_onnxruntime(model: onnx.ModelProto, feeds: dict) -> list:
    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def apply(model: onnx.ModelProto, pass_: Callable[[ir.Model], int]) -> tuple[onnx.ModelProto, int]:
    """The model after one pass (loaded as a session loads it: shape inference included)."""
    loaded = loader.load(model.SerializeToString())
    n = pass_(loaded.model)
    return ir.serde.serialize_model(loaded.model), n


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def check_pass(model: onnx.ModelProto, feeds: dict, pass_: Callable[[ir.Model], int], *, rtol: float = 1e-5,
               atol: float = 1e-6, expect_rewrites: bool = True) -> onnx.ModelProto:
    """Outputs are unchanged by the pass (in onnxrt and in onnxruntime); returns the rewritten model."""
    before = run_onnxrt(model, feeds)
    rewritten, n = apply(model, pass_)
    if expect_rewrites:
        assert n > 0, "the pass did not fire"
    else:
        assert n == 0, f"the pass fired {n} times on a graph it must leave alone"
    onnx.checker.check_model(rewritten)
    after = run_onnxrt(rewritten, feeds)
    in_ort = run_onnxruntime(rewritten, feeds)
    for b, a, o in zip(before, after, in_ort):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
        np.testing.assert_allclose(o, b, rtol=rtol, atol=atol)
    return rewritten


def rand(*shape, dtype=np.float32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
