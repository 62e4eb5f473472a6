"""ExecutionMode.ORT_PARALLEL: same results as sequential, errors and terminate still reported."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import onnxrt


def _branchy_model(branches: int = 6, depth: int = 30) -> bytes:
    nodes, outs = [], []
    for b in range(branches):
        prev = "x"
        for d in range(depth):
            name = f"b{b}_{d}"
            op = ("Sin", "Cos", "Tanh")[d % 3]
            nodes.append(h.make_node(op, [prev], [name], name=name))
            prev = name
        outs.append(prev)
    nodes.append(h.make_node("Sum", outs, ["y"], name="sum"))
    graph = h.make_graph(nodes, "branches", [h.make_tensor_value_info("x", T.FLOAT, [64, 64])],
                         [h.make_tensor_value_info("y", T.FLOAT, [64, 64])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def _options(mode):
    options = onnxrt.SessionOptions()
    options.execution_mode = mode
    options.inter_op_num_threads = 3
    return options


def test_parallel_matches_sequential():
    data = _branchy_model()
    x = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    sequential = onnxrt.InferenceSession(data, _options(onnxrt.ExecutionMode.ORT_SEQUENTIAL)).run(None, {"x": x})[0]
    parallel_session = onnxrt.InferenceSession(data, _options(onnxrt.ExecutionMode.ORT_PARALLEL))
    assert parallel_session._plan.parallel_pool is not None
    for _ in range(5):
        np.testing.assert_array_equal(parallel_session.run(None, {"x": x})[0], sequential)


def test_parallel_chain_longer_than_the_recursion_limit():
    graph = h.make_graph([h.make_node("Neg", [f"t{i}"], [f"t{i + 1}"]) for i in range(1500)], "chain",
                         [h.make_tensor_value_info("t0", T.FLOAT, [2])], [h.make_tensor_value_info("t1500", T.FLOAT, [2])])
    data = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    session = onnxrt.InferenceSession(data, _options(onnxrt.ExecutionMode.ORT_PARALLEL))
    np.testing.assert_array_equal(session.run(None, {"t0": np.array([1, -2], np.float32)})[0], [1, -2])


def test_parallel_kernel_error_names_the_node():
    graph = h.make_graph(
        [h.make_node("Neg", ["x"], ["a"], name="neg"), h.make_node("Reshape", ["x", "s"], ["b"], name="bad_reshape"),
         h.make_node("Add", ["a", "a"], ["c"], name="add")],
        "g", [h.make_tensor_value_info("x", T.FLOAT, [6]), h.make_tensor_value_info("s", T.INT64, [1])],
        [h.make_tensor_value_info("b", T.FLOAT, None), h.make_tensor_value_info("c", T.FLOAT, None)])
    data = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    session = onnxrt.InferenceSession(data, _options(onnxrt.ExecutionMode.ORT_PARALLEL))
    with pytest.raises(onnxrt.OrtError, match="Reshape node. Name:'bad_reshape'"):
        session.run(None, {"x": np.ones(6, np.float32), "s": np.array([4], np.int64)})
    out = session.run(None, {"x": np.ones(6, np.float32), "s": np.array([3, 2][:1], np.int64) * 2})
    assert out[0].shape == (6,)
