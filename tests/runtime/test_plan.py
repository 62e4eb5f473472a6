"""The execution plan: order, slot release, outer-scope capture, function expansion, profiling."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import onnxrt


def _model(nodes, inputs, outputs, initializers=(), opset=17, functions=(), extra_opsets=()):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset), *extra_opsets], functions=list(functions))
    return model.SerializeToString()


def f32(name, shape):
    return h.make_tensor_value_info(name, T.FLOAT, shape)


def test_nodes_out_of_order_are_sorted():
    nodes = [h.make_node("Relu", ["t"], ["y"]), h.make_node("Neg", ["x"], ["t"])]
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [3])], [f32("y", [3])]))
    np.testing.assert_array_equal(session.run(None, {"x": np.array([1, -2, 3], np.float32)})[0], [0, 2, 0])


def test_a_cycle_is_an_invalid_graph():
    nodes = [h.make_node("Add", ["x", "b"], ["a"]), h.make_node("Neg", ["a"], ["b"])]
    with pytest.raises(onnxrt.InvalidGraph, match="cycle"):
        onnxrt.InferenceSession(_model(nodes, [f32("x", [3])], [f32("a", [3])]))


def test_an_undefined_value_is_an_invalid_graph():
    nodes = [h.make_node("Add", ["x", "nowhere"], ["y"])]
    with pytest.raises(onnxrt.InvalidGraph, match="nowhere"):
        onnxrt.InferenceSession(_model(nodes, [f32("x", [3])], [f32("y", [3])]))


def test_values_are_released_after_their_last_use():
    nodes = [
        h.make_node("Neg", ["x"], ["a"], name="n0"),
        h.make_node("Neg", ["a"], ["b"], name="n1"),
        h.make_node("Add", ["a", "b"], ["c"], name="n2"),
        h.make_node("Neg", ["c"], ["y"], name="n3"),
    ]
    options = onnxrt.SessionOptions()  # basic level: at extended, the Neg/Add chain runs as one step
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [3])], [f32("y", [3])]), options)
    plan = session._plan
    released = {step.name: {name for name, slot in plan._slot_of.items() if slot in step.release} for step in plan.steps}
    assert released == {"n0": {"x"}, "n1": set(), "n2": {"a", "b"}, "n3": {"c"}}


def test_outer_scope_values_become_node_inputs():
    then_graph = h.make_graph([h.make_node("Add", ["x", "outer"], ["r"])], "then", [], [f32("r", [2])])
    else_graph = h.make_graph([h.make_node("Sub", ["x", "outer"], ["r"])], "else", [], [f32("r", [2])])
    nodes = [
        h.make_node("Neg", ["x"], ["outer"]),
        h.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph, name="if0"),
    ]
    data = _model(nodes, [f32("x", [2]), h.make_tensor_value_info("cond", T.BOOL, [])], [f32("y", [2])])
    session = onnxrt.InferenceSession(data)
    x = np.array([1, 2], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x, "cond": np.array(True)})[0], [0, 0])
    np.testing.assert_array_equal(session.run(None, {"x": x, "cond": np.array(False)})[0], [2, 4])
    if_step = next(s for s in session._plan.steps if s.op_type == "If")
    assert len(if_step.inputs) == 3  # cond + the two captured values (x, outer)


def test_model_local_function():
    fn = h.make_function(
        "custom", "ScaledRelu", ["X"], ["Y"],
        [h.make_node("Constant", [], ["s"], value_float=1.0), h.make_node("Relu", ["X"], ["r"]),
         h.make_node("CastLike", ["s"], ["sc"], ), h.make_node("Mul", ["r", "alpha_t"], ["Y"])],
        opset_imports=[h.make_opsetid("", 17)], attributes=[],
    )
    # alpha comes through an attribute reference
    alpha_node = h.make_node("Constant", [], ["alpha_t"])
    alpha_node.attribute.append(onnx.AttributeProto(name="value_float", type=onnx.AttributeProto.FLOAT, ref_attr_name="alpha"))
    fn.node.insert(0, alpha_node)
    fn.attribute.append("alpha")
    fn.node[3].input[:] = ["s", "X"]
    nodes = [h.make_node("ScaledRelu", ["x"], ["y"], domain="custom", alpha=3.0)]
    data = _model(nodes, [f32("x", [3])], [f32("y", [3])], functions=[fn], extra_opsets=[h.make_opsetid("custom", 1)])
    out = onnxrt.InferenceSession(data).run(None, {"x": np.array([-1, 0, 2], np.float32)})[0]
    np.testing.assert_array_equal(out, [0, 0, 6])


@pytest.mark.parametrize(
    "op_type,attrs,opset",
    [("Relu", {}, 14), ("Elu", {}, 6), ("Selu", {}, 6), ("HardSigmoid", {}, 6), ("Softmax", {}, 13),
     ("Softmax", {"axis": 0}, 18), ("LogSoftmax", {}, 13), ("Celu", {"alpha": 2.0}, 12), ("Mish", {}, 18),
     ("Gelu", {}, 20), ("HardSwish", {}, 14), ("Shrink", {"lambd": 0.5}, 9)],
)
def test_function_bodies_agree_with_kernels(op_type, attrs, opset):
    """Every op with an ONNX function body can be run through that body (config entry) instead of its kernel."""
    nodes = [h.make_node(op_type, ["x"], ["y"], **attrs)]
    data = _model(nodes, [f32("x", [2, 5])], [f32("y", None)], opset=opset)
    options = onnxrt.SessionOptions()
    options.add_session_config_entry("onnxrt.expand_function_ops", op_type)
    x = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    expanded = onnxrt.InferenceSession(data, options).run(None, {"x": x})[0]
    kernel = onnxrt.InferenceSession(data).run(None, {"x": x})[0]
    assert expanded.dtype == kernel.dtype
    np.testing.assert_allclose(expanded, kernel, rtol=1e-5, atol=1e-6)


def test_function_body_with_omitted_optional_outputs():
    nodes = [h.make_node("LayerNormalization", ["x", "s", "b"], ["y"])]
    inits = [h.make_tensor("s", T.FLOAT, [3], [1, 2, 3]), h.make_tensor("b", T.FLOAT, [3], [0, 1, 0])]
    data = _model(nodes, [f32("x", [2, 3])], [f32("y", None)], inits)
    options = onnxrt.SessionOptions()
    options.add_session_config_entry("onnxrt.expand_function_ops", "LayerNormalization")
    x = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(onnxrt.InferenceSession(data, options).run(None, {"x": x})[0],
                               onnxrt.InferenceSession(data).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_profiling_writes_a_chrome_trace(tmp_path):
    nodes = [h.make_node("Neg", ["x"], ["a"], name="neg0"), h.make_node("Relu", ["a"], ["y"], name="relu0")]
    options = onnxrt.SessionOptions()
    options.enable_profiling = True
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC  # keep two steps
    options.profile_file_prefix = str(tmp_path / "trace_")
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [3])], [f32("y", [3])]), options)
    session.run(None, {"x": np.ones(3, np.float32)})
    path = session.end_profiling()
    assert path.startswith(str(tmp_path / "trace_")) and path.endswith(".json")
    events = json.loads(open(path).read())
    assert isinstance(events, list) and all(e["ph"] == "X" for e in events)
    names = {e["name"] for e in events}
    assert {"session_initialization", "model_run", "neg0_kernel_time", "relu0_kernel_time"} <= names
    node = next(e for e in events if e["name"] == "neg0_kernel_time")
    assert node["cat"] == "Node" and node["args"]["op_name"] == "Neg"
    assert node["args"]["provider"] == "CPUExecutionProvider"
    assert node["args"]["input_type_shape"] == [{"float": [3]}]


def test_weights_are_read_only_for_kernels():
    nodes = [h.make_node("Identity", ["w"], ["y"]), h.make_node("Add", ["x", "w"], ["z"])]
    data = _model(nodes, [f32("x", [2])], [f32("y", [2]), f32("z", [2])], [h.make_tensor("w", T.FLOAT, [2], [1, 2])])
    session = onnxrt.InferenceSession(data)
    assert not session._plan._template[session._plan._slot_of["w"]].flags.writeable
    assert not session._plan._template[session._plan._slot_of["y"]].flags.writeable  # folded at planning
    out = session.run(None, {"x": np.zeros(2, np.float32)})[0]
    assert out.flags.writeable  # the caller gets its own copy


def test_constant_only_nodes_are_computed_once_at_planning():
    nodes = [
        h.make_node("Constant", [], ["c"], value=h.make_tensor("cv", T.FLOAT, [3], [1, 2, 3])),
        h.make_node("Transpose", ["w"], ["wt"]),
        h.make_node("Add", ["c", "c"], ["c2"]),
        h.make_node("MatMul", ["x", "wt"], ["m"]),
        h.make_node("Add", ["m", "c2"], ["y"]),
    ]
    w = h.make_tensor("w", T.FLOAT, [3, 2], [1, 0, 0, 1, 1, 1])
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL  # planning folds on its own
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [1, 2])], [f32("y", [1, 3])], [w]), options)
    assert [s.op_type for s in session._plan.steps] == ["MatMul", "Add"]
    assert "w" not in session._plan.constants  # only the folded Transpose read it
    x = np.array([[1, 2]], np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ np.array([[1, 0, 1], [0, 1, 1]]) + [2, 4, 6])


def test_random_ops_are_not_folded():
    nodes = [h.make_node("RandomUniform", [], ["r"], shape=[4], seed=1.0), h.make_node("Add", ["r", "x"], ["y"])]
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [4])], [f32("y", [4])]))
    assert [s.op_type for s in session._plan.steps] == ["RandomUniform", "Add"]


def test_subgraphs_see_enclosing_constants_as_constants():
    body_nodes = [h.make_node("Slice", ["w", "starts", "ends"], ["ws"]), h.make_node("Add", ["ws", "x"], ["r"])]
    then_graph = h.make_graph(body_nodes, "then", [], [f32("r", [2])])
    else_graph = h.make_graph([h.make_node("Identity", ["x"], ["r"])], "else", [], [f32("r", [2])])
    inits = [h.make_tensor("w", T.FLOAT, [4], [1, 2, 3, 4]), h.make_tensor("starts", T.INT64, [1], [1]),
             h.make_tensor("ends", T.INT64, [1], [3])]
    nodes = [h.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    data = _model(nodes, [f32("x", [2]), h.make_tensor_value_info("cond", T.BOOL, [])], [f32("y", [2])], inits)
    session = onnxrt.InferenceSession(data)
    if_step = session._plan.steps[0]
    then_plan = next(p for p in if_step.subplans if any(s.op_type == "Add" for s in p.steps))
    assert then_plan.captured_names == ["x"]  # w, starts, ends are constants of the body now
    assert [s.op_type for s in then_plan.steps] == ["Add"]  # the Slice of constants was folded
    out = session.run(None, {"x": np.array([10, 20], np.float32), "cond": np.array(True)})[0]
    np.testing.assert_array_equal(out, [12, 23])


def test_evaluate_runs_one_node_outside_a_schedule():
    import onnx_ir as ir

    from onnxrt.runtime.plan import GraphPlan, PlanConfig

    plan = GraphPlan(ir.Graph([], [], nodes=[]), PlanConfig(opsets={"": 17}))
    a, b = ir.Value(name="a"), ir.Value(name="b")
    split = ir.Node("", "Split", [a, b], [ir.AttrInt64("axis", 0)], num_outputs=2)
    first, second = plan.evaluate(split, [np.arange(5, dtype=np.float32), np.array([2, 3], np.int64)])
    np.testing.assert_array_equal(first, [0, 1])
    np.testing.assert_array_equal(second, [2, 3, 4])
    # defaults come from the schema (Split's axis 0), errors from the kernel
    with pytest.raises(Exception, match="split"):
        plan.evaluate(ir.Node("", "Split", [a, b], num_outputs=2), [np.arange(5, dtype=np.float32),
                                                                    np.array([2, 2], np.int64)])
    with pytest.raises(onnxrt.InvalidGraph, match="does not import"):
        plan.evaluate(ir.Node("custom.domain", "Op", [a]), [np.zeros(1)])
