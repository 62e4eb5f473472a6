"""Chains of elementwise nodes fused into one blocked step give the unfused result exactly."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import onnxrt

LEVELS = onnxrt.GraphOptimizationLevel


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)]).SerializeToString()


def _session(data, level):
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = level
    return onnxrt.InferenceSession(data, options)


def _scalar(name, value, dtype=T.FLOAT, dims=()):
    return h.make_tensor(name, dtype, list(dims), [value])


def _chain_ops(session):
    return [["-".join(link.step.op_type for link in step.kernel.links)]
            for step in session._plan.steps if step.op_type == "ElementwiseChain"]


def _hard_swish_model(dtype=T.FLOAT, const_dims=()):
    nodes = [
        h.make_node("Add", ["x", "three"], ["a"], name="add"),
        h.make_node("Clip", ["a", "zero", "six"], ["c"], name="clip"),
        h.make_node("Mul", ["x", "c"], ["m"], name="mul"),
        h.make_node("Div", ["m", "six"], ["d"], name="div"),
        h.make_node("Mul", ["d", "scale"], ["s"], name="scale"),
        h.make_node("Add", ["s", "bias"], ["y"], name="bias"),
    ]
    inits = [_scalar("three", 3.0, dtype, const_dims), _scalar("zero", 0.0, dtype), _scalar("six", 6.0, dtype),
             _scalar("scale", 1.5, dtype, const_dims), _scalar("bias", -0.25, dtype, const_dims)]
    return _model(nodes, [h.make_tensor_value_info("x", dtype, None)], [h.make_tensor_value_info("y", dtype, None)],
                  inits)


@pytest.mark.parametrize("dtype,np_dtype", [(T.FLOAT, np.float32), (T.DOUBLE, np.float64)])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 5), (1, 16, 150, 151)])  # the last spans several blocks
def test_hard_swish_chain_fused_equals_unfused(dtype, np_dtype, shape):
    data = _hard_swish_model(dtype)
    x = (np.random.default_rng(0).standard_normal(shape) * 4).astype(np_dtype)
    fused = _session(data, LEVELS.ORT_ENABLE_ALL)
    assert _chain_ops(fused) == [["Add-Clip-Mul-Div-Mul-Add"]]
    expected = _session(data, LEVELS.ORT_ENABLE_BASIC).run(None, {"x": x})[0]
    got = fused.run(None, {"x": x})[0]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_constant_that_broadcasts_to_a_larger_shape_runs_unfused():
    data = _hard_swish_model(const_dims=(1, 1, 1))  # rank-3 scalars make a rank-1 input rank 3
    x = np.linspace(-5, 5, 11, dtype=np.float32)
    got = _session(data, LEVELS.ORT_ENABLE_ALL).run(None, {"x": x})[0]
    expected = _session(data, LEVELS.ORT_ENABLE_BASIC).run(None, {"x": x})[0]
    assert got.shape == (1, 1, 11)
    np.testing.assert_array_equal(got, expected)


def _squeeze_excite_model(scale_shape):
    # x * s + x, then Sigmoid and + z: s is one value per (batch, channel) row, x and z full size
    nodes = [h.make_node("Mul", ["x", "s"], ["a"]), h.make_node("Add", ["a", "x"], ["b"]),
             h.make_node("Sigmoid", ["b"], ["c"]), h.make_node("Add", ["z", "c"], ["y"])]
    f = [h.make_tensor_value_info("x", T.FLOAT, None), h.make_tensor_value_info("s", T.FLOAT, scale_shape),
         h.make_tensor_value_info("z", T.FLOAT, None)]
    return _model(nodes, f, [h.make_tensor_value_info("y", T.FLOAT, None)])


@pytest.mark.parametrize("shape,scale_shape,fused_run", [
    ((2, 6, 37, 41), (2, 6, 1, 1), True),       # rows of 1517 values, many rows per block
    ((1, 2, 400, 401), (1, 2, 1, 1), True),     # a row longer than a block: cut into column blocks
    ((3, 5, 7), (3, 1, 1), True),               # one value per batch
    ((2, 6, 9, 9), (1, 6, 1, 1), False),        # broadcast over the batch too: the nodes run unfused
    ((2, 6, 9, 9), (6, 1, 1), False),           # lower rank: unfused
])
def test_chain_with_per_row_input_equals_unfused(shape, scale_shape, fused_run):
    data = _squeeze_excite_model(scale_shape)
    rng = np.random.default_rng(2)
    feeds = {"x": rng.standard_normal(shape).astype(np.float32), "s": rng.standard_normal(scale_shape).astype(np.float32),
             "z": rng.standard_normal(shape).astype(np.float32)}
    fused = _session(data, LEVELS.ORT_ENABLE_ALL)
    assert _chain_ops(fused) == [["Mul-Add-Sigmoid-Add"]]
    chain = next(step.kernel for step in fused._plan.steps if step.op_type == "ElementwiseChain")
    assert (chain._layout(list(feeds.values())) is not None) == fused_run
    expected = _session(data, LEVELS.ORT_ENABLE_BASIC).run(None, feeds)[0]
    got = fused.run(None, feeds)[0]
    assert got.shape == expected.shape == shape
    np.testing.assert_array_equal(got, expected)


def test_unary_chain_with_two_runtime_inputs_and_absent_clip_bound():
    nodes = [
        h.make_node("Sub", ["x", "z"], ["a"]),
        h.make_node("Sigmoid", ["a"], ["b"]),
        h.make_node("Clip", ["b", "", "hi"], ["c"]),  # no lower bound
        h.make_node("Mul", ["c", "c"], ["d"]),
        h.make_node("Tanh", ["d"], ["y"]),
    ]
    f = [h.make_tensor_value_info(n, T.FLOAT, [4, 50]) for n in ("x", "z")]
    data = _model(nodes, f, [h.make_tensor_value_info("y", T.FLOAT, None)], [_scalar("hi", 0.7)])
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((4, 50)).astype(np.float32), "z": rng.standard_normal((4, 50)).astype(np.float32)}
    fused = _session(data, LEVELS.ORT_ENABLE_EXTENDED)
    assert _chain_ops(fused) == [["Sub-Sigmoid-Clip-Mul-Tanh"]]
    np.testing.assert_array_equal(fused.run(None, feeds)[0], _session(data, LEVELS.ORT_ENABLE_BASIC).run(None, feeds)[0])


def test_values_read_elsewhere_or_fetched_end_a_chain():
    nodes = [
        h.make_node("Neg", ["x"], ["a"]),
        h.make_node("Relu", ["a"], ["b"]),  # b is a graph output: the chain ends here
        h.make_node("Exp", ["b"], ["c"]),
        h.make_node("Abs", ["c"], ["y"]),
    ]
    outs = [h.make_tensor_value_info(n, T.FLOAT, None) for n in ("b", "y")]
    data = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [6])], outs)
    session = _session(data, LEVELS.ORT_ENABLE_ALL)
    assert _chain_ops(session) == [["Neg-Relu"], ["Exp-Abs"]]
    x = np.linspace(-2, 2, 6, dtype=np.float32)
    b, y = session.run(None, {"x": x})
    np.testing.assert_array_equal(b, np.maximum(-x, 0))
    np.testing.assert_array_equal(y, np.abs(np.exp(np.maximum(-x, 0))))
    # an intermediate value can still be fetched by name (its plan keeps it alive, unfused)
    np.testing.assert_array_equal(session.run(["a"], {"x": x})[0], -x)


def test_integer_chain_is_not_fused_away_from_its_kernels():
    nodes = [h.make_node("Add", ["x", "one"], ["a"]), h.make_node("Mul", ["a", "two"], ["y"])]
    inits = [_scalar("one", 1, T.INT64), _scalar("two", 2, T.INT64)]
    data = _model(nodes, [h.make_tensor_value_info("x", T.INT64, [3])], [h.make_tensor_value_info("y", T.INT64, None)],
                  inits)
    got = _session(data, LEVELS.ORT_ENABLE_ALL).run(None, {"x": np.array([1, 2, 3], np.int64)})[0]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [4, 6, 8])


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 16, 150, 151)])
def test_chain_writes_in_place_only_into_an_input_its_first_link_alone_reads(shape):
    # t dies at the chain; it is read by the head (Mul) and, in the second model, by a later link
    head_only = [
        h.make_node("Softmax", ["x"], ["t"], name="softmax"),  # not a chain link: the chain starts at mul
        h.make_node("Mul", ["t", "scale"], ["m"], name="mul"),
        h.make_node("Sigmoid", ["m"], ["s"], name="sigmoid"),
        h.make_node("Add", ["s", "x"], ["y"], name="add"),
    ]
    read_later = head_only[:3] + [h.make_node("Add", ["s", "t"], ["y"], name="add")]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    for nodes, donated in ((head_only, True), (read_later, False)):
        data = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, None)],
                      [h.make_tensor_value_info("y", T.FLOAT, None)], [_scalar("scale", 0.75)])
        fused = _session(data, LEVELS.ORT_ENABLE_ALL)
        chain = next(step for step in fused._plan.steps if step.op_type == "ElementwiseChain")
        assert (chain.donate is not None) == donated
        kept = x.copy()
        expected = _session(data, LEVELS.ORT_ENABLE_BASIC).run(None, {"x": x})[0]
        np.testing.assert_array_equal(fused.run(None, {"x": x})[0], expected)
        np.testing.assert_array_equal(x, kept)
