"""Whole models saved at every level via optimized_model_filepath: onnx.checker passes, onnxruntime loads
the file, and its outputs match onnxrt's unoptimized ones."""

import math
import os

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper

import onnxrt
from tests.optimizer.helpers import const, make_model, rand, vinfo

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LEVELS = [onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC, onnxrt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          onnxrt.GraphOptimizationLevel.ORT_ENABLE_ALL]


def _check_levels(model_source, feeds: dict, tmp_path, levels=LEVELS) -> dict:
    so = onnxrt.SessionOptions()
    so.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = onnxrt.InferenceSession(model_source, so).run(None, feeds)
    saved = {}
    for level in levels:
        so = onnxrt.SessionOptions()
        so.graph_optimization_level = level
        so.optimized_model_filepath = str(tmp_path / f"opt_{int(level)}.onnx")
        ours = onnxrt.InferenceSession(model_source, so).run(None, feeds)
        model = onnx.load(so.optimized_model_filepath)
        onnx.checker.check_model(model)
        ort_so = onnxruntime.SessionOptions()
        ort_so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        theirs = onnxruntime.InferenceSession(so.optimized_model_filepath, ort_so,
                                              providers=["CPUExecutionProvider"]).run(None, feeds)
        for r, a, b in zip(reference, ours, theirs):
            scale = float(np.abs(r).max()) or 1.0
            assert float(np.abs(a - r).max()) <= 1e-4 * scale
            assert float(np.abs(b - r).max()) <= 1e-4 * scale
        saved[int(level)] = model
    return saved


@pytest.mark.parametrize("name,levels", [("squeezenet", LEVELS), ("shufflenet", LEVELS[-1:])])
def test_light_models(name, levels, tmp_path):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    proto = onnx.load(path, load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    saved = _check_levels(path, {inp.name: np.random.default_rng(0).random(shape, dtype=np.float32)}, tmp_path, levels)
    ops = {n.op_type for n in saved[99].graph.node}
    assert "FusedConv" in ops
    if name == "shufflenet":
        assert "BatchNormalization" not in ops


def _tiny_transformer() -> onnx.ModelProto:
    """One encoder block written out op by op: LayerNorm pattern, attention, erf-GELU MLP, residuals."""
    H, F = 16, 32
    s = lambda n, v: const(n, np.array(v, np.float32))  # noqa: E731
    nodes = [
        # layer norm (pattern)
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]), helper.make_node("Sub", ["x", "mu"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"]), helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["d", "sd"], ["xn"]), helper.make_node("Mul", ["xn", "g1"], ["xg"]),
        helper.make_node("Add", ["xg", "b1"], ["h"]),
        # single-head attention
        helper.make_node("MatMul", ["h", "wq"], ["q"]), helper.make_node("MatMul", ["h", "wk"], ["k"]),
        helper.make_node("MatMul", ["h", "wv"], ["v"]), helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["sc"]), helper.make_node("Div", ["sc", "sqrt_h"], ["scs"]),
        helper.make_node("Softmax", ["scs"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["att"]),
        helper.make_node("Add", ["att", "x"], ["r1"]),
        helper.make_node("LayerNormalization", ["r1", "g2", "b2"], ["h2"], axis=-1, epsilon=1e-5),
        # MLP with erf GELU
        helper.make_node("MatMul", ["h2", "w1"], ["f1"]), helper.make_node("Add", ["f1", "bf1"], ["f1b"]),
        helper.make_node("Div", ["f1b", "sqrt2"], ["gd"]), helper.make_node("Erf", ["gd"], ["ge"]),
        helper.make_node("Add", ["ge", "one"], ["gp"]), helper.make_node("Mul", ["f1b", "gp"], ["gm"]),
        helper.make_node("Mul", ["gm", "half"], ["gelu"]), helper.make_node("MatMul", ["gelu", "w2"], ["f2"]),
        helper.make_node("Add", ["f2", "r1"], ["y"]),
    ]
    inits = [s("two", 2.0), s("eps", 1e-5), const("g1", rand(H, seed=1)), const("b1", rand(H, seed=2)),
             const("wq", rand(H, H, seed=3) / 4), const("wk", rand(H, H, seed=4) / 4), const("wv", rand(H, H, seed=5) / 4),
             s("sqrt_h", math.sqrt(H)), const("g2", rand(H, seed=6)), const("b2", rand(H, seed=7)),
             const("w1", rand(H, F, seed=8) / 4), const("bf1", rand(F, seed=9)), s("sqrt2", math.sqrt(2)), s("one", 1.0),
             s("half", 0.5), const("w2", rand(F, H, seed=10) / 4)]
    return make_model(nodes, [vinfo("x", [2, 5, H])], [vinfo("y", None)], inits, opset=17)


def test_tiny_transformer(tmp_path):
    saved = _check_levels(_tiny_transformer().SerializeToString(), {"x": rand(2, 5, 16)}, tmp_path)
    ops = {n.op_type for n in saved[99].graph.node}
    assert {"LayerNormalization", "SkipLayerNormalization", "BiasGelu"} <= ops, ops
