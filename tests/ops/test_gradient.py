"""Gradient (ai.onnx.preview.training) against finite differences."""

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import onnxrt

TRAINING = "ai.onnx.preview.training"


def _session(nodes, inputs, outputs, initializers=()):
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info(n, T.DOUBLE, s) for n, s in inputs],
                         [h.make_tensor_value_info(n, T.DOUBLE, None) for n in outputs], list(initializers))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid(TRAINING, 1)])
    return onnxrt.InferenceSession(model.SerializeToString())


def _numeric(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        grad[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return grad


def test_gradient_of_a_small_network_matches_finite_differences():
    nodes = [
        h.make_node("MatMul", ["x", "w"], ["h"]),
        h.make_node("Add", ["h", "b"], ["hb"]),
        h.make_node("Tanh", ["hb"], ["t"]),
        h.make_node("Mul", ["t", "t"], ["sq"]),
        h.make_node("ReduceSum", ["sq"], ["loss"], keepdims=0),
        h.make_node("Gradient", ["w", "b", "x"], ["dw", "db"], domain=TRAINING, xs=["w", "b"], zs=["x"], y="loss"),
    ]
    session = _session(nodes, [("x", [4, 3]), ("w", [3, 2]), ("b", [2])], ["loss", "dw", "db"])
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    _, dw, db = session.run(None, {"x": x, "w": w, "b": b})

    def loss(w_, b_):
        return float((np.tanh(x @ w_ + b_) ** 2).sum())

    np.testing.assert_allclose(dw, _numeric(lambda v: loss(v, b), w), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(db, _numeric(lambda v: loss(w, v), b), rtol=1e-5, atol=1e-8)


def test_gradient_through_an_op_without_a_rule_is_refused_at_load():
    nodes = [
        h.make_node("Sin", ["x"], ["y"]),
        h.make_node("Gradient", ["x"], ["dx"], domain=TRAINING, xs=["x"], y="y"),
    ]
    with pytest.raises(onnxrt.NotImplemented, match="Sin"):
        _session(nodes, [("x", [3])], ["dx"])
