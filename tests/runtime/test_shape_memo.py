"""Shape-derived values computed once per input shape (runtime.shape_memo)."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import onnxrt
from onnxrt.runtime.shape_memo import MAX_KEPT_ELEMENTS, ShapeMemo


def _model(nodes, inputs, outputs, initializers=()):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=9).SerializeToString()


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


# x (a, b, c) -> y = x reshaped to (a * b, c) through Shape / Gather / Mul / Unsqueeze / Concat, and
# n = the shape vector handed out as a graph output
FLATTEN = _model(
    [h.make_node("Shape", ["x"], ["n"]),
     h.make_node("Gather", ["n", "i0"], ["a"]), h.make_node("Gather", ["n", "i1"], ["b"]),
     h.make_node("Gather", ["n", "i2"], ["c"]), h.make_node("Mul", ["a", "b"], ["ab"]),
     h.make_node("Unsqueeze", ["ab", "zero"], ["ab1"]), h.make_node("Unsqueeze", ["c", "zero"], ["c1"]),
     h.make_node("Concat", ["ab1", "c1"], ["target"], axis=0), h.make_node("Reshape", ["x", "target"], ["y"])],
    [h.make_tensor_value_info("x", T.FLOAT, ["A", "B", "C"])],
    [h.make_tensor_value_info("y", T.FLOAT, None), h.make_tensor_value_info("n", T.INT64, None)],
    [_i64("i0", 0), _i64("i1", 1), _i64("i2", 2), _i64("zero", [0])],
)


def _counting(session):
    """Count the calls that reach each wrapped step's own kernel."""
    calls = {}
    for step in session._plan.steps:
        if isinstance(step.kernel, ShapeMemo):
            inner = step.kernel.kernel

            def counted(*args, _inner=inner, _name=step.name):
                calls[_name] = calls.get(_name, 0) + 1
                return _inner(*args)

            step.kernel.kernel = counted
    return calls


def test_shape_steps_run_once_per_shape():
    session = onnxrt.InferenceSession(FLATTEN)
    wrapped = [s.op_type for s in session._plan.steps if isinstance(s.kernel, ShapeMemo)]
    assert sorted(wrapped) == ["Concat", "Gather", "Gather", "Gather", "Mul", "Shape", "Unsqueeze", "Unsqueeze"]
    assert not isinstance(session._plan.steps[-1].kernel, ShapeMemo)  # Reshape reads the data
    calls = _counting(session)
    ref = onnxruntime.InferenceSession(FLATTEN, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape, computed in [((2, 3, 4), 8), ((2, 3, 4), 8), ((5, 1, 2), 16), ((2, 3, 4), 24), ((2, 3, 4), 24)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        y, n = session.run(None, {"x": x})
        y_ref, n_ref = ref.run(None, {"x": x})
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(n, n_ref)
        assert sum(calls.values()) == computed  # a new shape recomputes all 8, a repeated one none


def test_kept_values_stay_intact_when_the_caller_writes_its_copy():
    session = onnxrt.InferenceSession(FLATTEN)
    x = np.ones((2, 3, 4), np.float32)
    n = session.run(None, {"x": x})[1]
    assert n.flags.writeable  # the caller's own copy
    n[:] = 7
    y, n_again = session.run(None, {"x": x})
    np.testing.assert_array_equal(n_again, [2, 3, 4])
    assert y.shape == (6, 4)


def test_if_on_a_shape_takes_the_branch_of_each_run():
    then_graph = h.make_graph([h.make_node("Neg", ["x"], ["t"])], "then", [], [h.make_tensor_value_info("t", T.FLOAT, None)])
    else_graph = h.make_graph([h.make_node("Abs", ["x"], ["e"])], "else", [], [h.make_tensor_value_info("e", T.FLOAT, None)])
    model = _model(
        [h.make_node("Shape", ["x"], ["n"]), h.make_node("Gather", ["n", "i0"], ["a"]),
         h.make_node("Equal", ["a", "two"], ["cond"]),
         h.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        [h.make_tensor_value_info("x", T.FLOAT, ["A"])], [h.make_tensor_value_info("y", T.FLOAT, None)],
        [_i64("i0", 0), _i64("two", 2)])
    session = onnxrt.InferenceSession(model)
    for values in ([1.0, -2.0], [1.0, -2.0], [1.0, -2.0, 3.0], [1.0, -2.0]):
        x = np.array(values, np.float32)
        expected = -x if len(values) == 2 else np.abs(x)
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], expected)


def test_numpy_scalar_results_are_kept_too():
    # a cast to bool of a 0-d shape value gives a numpy scalar (silero_vad's decoder): immutable, so
    # held like a small array, and the steps that read it are held in turn
    model = _model(
        [h.make_node("Shape", ["x"], ["n"], name="shape"), h.make_node("Gather", ["n", "i0"], ["a"], name="gather"),
         h.make_node("Cast", ["a"], ["flag"], to=T.BOOL, name="to_bool"),
         h.make_node("Not", ["flag"], ["y"], name="not")],
        [h.make_tensor_value_info("x", T.FLOAT, ["A"])], [h.make_tensor_value_info("y", T.BOOL, None)],
        [_i64("i0", 0)])
    session = onnxrt.InferenceSession(model)
    calls = _counting(session)
    for size, computed in [(3, 4), (3, 4), (0, 8), (0, 8), (2, 12)]:
        y = session.run(None, {"x": np.ones(size, np.float32)})[0]
        assert type(y) is np.ndarray and y.shape == () and bool(y) == (size == 0)
        assert sum(calls.values()) == computed


def test_large_results_are_recomputed_not_kept():
    model = _model(
        [h.make_node("Shape", ["x"], ["n"], name="shape"), h.make_node("ConstantOfShape", ["n"], ["z"], name="zeros"),
         h.make_node("Add", ["x", "z"], ["y"], name="add")],
        [h.make_tensor_value_info("x", T.FLOAT, ["A", "B"])], [h.make_tensor_value_info("y", T.FLOAT, None)])
    session = onnxrt.InferenceSession(model)
    memo = next(s.kernel for s in session._plan.steps if s.op_type == "ConstantOfShape")
    assert isinstance(memo, ShapeMemo)
    calls = _counting(session)
    small, large = np.ones((2, 3), np.float32), np.ones((MAX_KEPT_ELEMENTS + 1, 1), np.float32)
    for x, computed in [(small, 1), (small, 1), (large, 2), (large, 3), (small, 4), (small, 4)]:
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], x)
        assert calls["zeros"] == computed
        assert memo.last[1].size <= MAX_KEPT_ELEMENTS


@pytest.mark.parametrize("level", ["ORT_DISABLE_ALL", "ORT_ENABLE_ALL"])
def test_feeds_and_data_are_never_memoized(level):
    """Steps reading a feed or a data value (not a shape) run every time, whatever the values."""
    model = _model(
        [h.make_node("Shape", ["x"], ["n"]), h.make_node("Gather", ["n", "i0"], ["a"]),
         h.make_node("Add", ["a", "k"], ["y"])],
        [h.make_tensor_value_info("x", T.FLOAT, ["A"]), h.make_tensor_value_info("k", T.INT64, [])],
        [h.make_tensor_value_info("y", T.INT64, None)], [_i64("i0", 0)])
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = getattr(onnxrt.GraphOptimizationLevel, level)
    session = onnxrt.InferenceSession(model, options)
    add = next(s for s in session._plan.steps if s.op_type == "Add")
    assert not isinstance(add.kernel, ShapeMemo)
    x = np.ones(3, np.float32)
    for k in (1, 1, 5):
        assert session.run(None, {"x": x, "k": np.array(k, np.int64)})[0] == 3 + k


def test_a_large_input_is_not_held_between_runs():
    """A small result computed from a large derived value (here a ReduceSum of a ConstantOfShape) is
    not kept: its key would hold the large input alive, and never match the next run's."""
    model = _model(
        [h.make_node("Shape", ["x"], ["n"], name="shape"), h.make_node("ConstantOfShape", ["n"], ["z"], name="zeros"),
         h.make_node("ReduceSum", ["z"], ["total"], keepdims=0, name="total"),
         h.make_node("Add", ["x", "total"], ["y"], name="add")],
        [h.make_tensor_value_info("x", T.FLOAT, ["A", "B"])], [h.make_tensor_value_info("y", T.FLOAT, None)])
    session = onnxrt.InferenceSession(model)
    total = next(s.kernel for s in session._plan.steps if s.name == "total")
    assert isinstance(total, ShapeMemo)
    small, large = np.ones((2, 3), np.float32), np.ones((MAX_KEPT_ELEMENTS + 1, 1), np.float32)
    for x in (small, large, small):
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], x)
        assert all(a is None or a.size <= MAX_KEPT_ELEMENTS for a in total.last[0])
