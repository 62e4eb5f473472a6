"""The execution plan: order, slot release, outer-scope capture, function expansion, profiling."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir
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


def _basic_session(nodes, inputs, outputs, initializers=()):
    options = onnxrt.SessionOptions()  # basic level: no elementwise chains, one step per node
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return onnxrt.InferenceSession(_model(nodes, inputs, outputs, initializers), options)


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
    session = _basic_session(nodes, [f32("x", [3])], [f32("y", [3])])  # at extended: one chain step
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


def test_a_large_constant_result_is_kept_when_every_reader_takes_it_as_a_weight():
    # 256x512 = 2^17 elements made from a 2-element shape: above the growth limit, so it is folded only
    # because its one reader takes it as a weight; the same fill read by an Add stays a step
    shape = h.make_tensor("shape", T.INT64, [2], [256, 512])
    fill = h.make_tensor("fill", T.FLOAT, [1], [0.5])
    nodes = [h.make_node("ConstantOfShape", ["shape"], ["w"], value=fill), h.make_node("MatMul", ["x", "w"], ["y"])]
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL  # planning folds on its own
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [1, 256])], [f32("y", [1, 512])], [shape]), options)
    assert [s.op_type for s in session._plan.steps] == ["MatMul"]
    x = np.arange(256, dtype=np.float32).reshape(1, 256)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], np.full((1, 512), x.sum() * 0.5), rtol=1e-6)

    nodes = [h.make_node("ConstantOfShape", ["shape"], ["w"], value=fill), h.make_node("Add", ["x", "w"], ["y"])]
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [256, 512])], [f32("y", [256, 512])], [shape]), options)
    assert [s.op_type for s in session._plan.steps] == ["ConstantOfShape", "Add"]


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


def _count_in_place(session):
    """Wrap every donating step's in-place variant; returns {node name: calls}."""
    calls = {}
    for step in session._plan.steps:
        if step.donate is not None:
            position, variant = step.donate
            calls[step.name] = 0

            def counted(*args, _variant=variant, _name=step.name):
                calls[_name] += 1
                return _variant(*args)

            step.donate = (position, counted)
    return calls


def test_a_value_that_dies_at_an_elementwise_node_is_overwritten_in_place():
    nodes = [
        h.make_node("Neg", ["x"], ["a"], name="neg"),
        h.make_node("Relu", ["a"], ["b"], name="relu"),
        h.make_node("Add", ["b", "bias"], ["c"], name="add"),
        h.make_node("Exp", ["c"], ["y"], name="exp"),
    ]
    session = _basic_session(nodes, [f32("x", [2, 3])], [f32("y", [2, 3])],
                             [h.make_tensor("bias", T.FLOAT, [3], [0.5, -1, 2])])
    calls = _count_in_place(session)
    # the feed x is never written over; a, b and c die where they are read
    assert set(calls) == {"relu", "add", "exp"}
    x = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    kept = x.copy()
    y = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(y, np.exp(np.maximum(-kept, 0) + np.array([0.5, -1, 2], np.float32)), rtol=1e-6)
    np.testing.assert_array_equal(x, kept)
    assert calls == {"relu": 1, "add": 1, "exp": 1}


def test_a_value_read_again_later_or_handed_to_the_caller_is_not_donated():
    nodes = [
        h.make_node("Neg", ["x"], ["a"], name="neg"),
        h.make_node("Relu", ["a"], ["b"], name="relu"),  # a is read again by add
        h.make_node("Add", ["a", "b"], ["c"], name="add"),
        h.make_node("Sigmoid", ["c"], ["y"], name="sigmoid"),
        h.make_node("Exp", ["c"], ["z"], name="exp"),  # c is an output too
    ]
    session = _basic_session(nodes, [f32("x", [4])], [f32("y", [4]), f32("c", [4]), f32("z", [4])])
    donating = {step.name for step in session._plan.steps if step.donate is not None}
    assert donating == {"add"}  # a dies at add; c is a graph output
    x = np.array([1, -2, 3, -4], np.float32)
    y, c, z = session.run(None, {"x": x})
    np.testing.assert_allclose(c, -x + np.maximum(-x, 0))
    np.testing.assert_allclose(z, np.exp(c), rtol=1e-6)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-c)), rtol=1e-6)


def test_a_dying_value_that_another_value_views_is_not_overwritten():
    nodes = [
        h.make_node("Neg", ["x"], ["a"], name="neg"),
        h.make_node("Reshape", ["a", "shape"], ["r"], name="reshape"),  # a view of a, read at the end
        h.make_node("Relu", ["a"], ["b"], name="relu"),  # a's last reader
        h.make_node("Reshape", ["b", "shape"], ["b2"], name="reshape_b"),
        h.make_node("Add", ["b2", "r"], ["y"], name="add"),
    ]
    shape = h.make_tensor("shape", T.INT64, [2], [3, 2])
    session = _basic_session(nodes, [f32("x", [2, 3])], [f32("y", [3, 2])], [shape])
    calls = _count_in_place(session)
    assert "relu" in calls
    x = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    y = session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, (np.maximum(-x, 0) - x).reshape(3, 2))
    assert calls["relu"] == 0  # the run-time check refused: r still reads a's memory


def test_profiling_times_steps_that_run_in_place(tmp_path):
    nodes = [h.make_node("Neg", ["x"], ["a"], name="neg0"), h.make_node("Relu", ["a"], ["y"], name="relu0")]
    options = onnxrt.SessionOptions()
    options.enable_profiling = True
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.profile_file_prefix = str(tmp_path / "trace_")
    nodes.append(h.make_node("Exp", ["y"], ["z"], name="exp0"))
    session = onnxrt.InferenceSession(_model(nodes, [f32("x", [3])], [f32("z", [3])]), options)
    assert {step.name for step in session._plan.steps if step.donate is not None} == {"relu0", "exp0"}
    session.run(None, {"x": np.ones(3, np.float32)})
    names = {e["name"] for e in json.loads(open(session.end_profiling()).read())}
    assert {"relu0_kernel_time", "exp0_kernel_time"} <= names


@pytest.mark.parametrize("case", ["sub_into_b", "add_broadcast_grows", "batchnorm"])
def test_in_place_variants_agree_with_their_kernels(case):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    head = h.make_node("Neg", ["x"], ["t"], name="neg")
    inits = []
    if case == "sub_into_b":  # t is B: c - t goes into t
        node = h.make_node("Sub", ["c", "t"], ["y"], name="op")
        inits.append(h.make_tensor("c", T.FLOAT, [5], [1, 2, 3, 4, 5]))
        expected = np.array([1, 2, 3, 4, 5], np.float32) + x
        out_shape, feeds = [2, 3, 4, 5], {"x": x}
    elif case == "add_broadcast_grows":  # t (5,) dies, but the result is (2, 3, 4, 5): no room in t
        node = h.make_node("Add", ["t", "z"], ["y"], name="op")
        head = h.make_node("Neg", ["x5"], ["t"], name="neg")
        expected = -x[0, 0, 0] + x
        out_shape, feeds = [2, 3, 4, 5], {"x5": x[0, 0, 0].copy(), "z": x}
    else:
        node = h.make_node("BatchNormalization", ["t", "s", "b", "m", "v"], ["y"], name="op")
        for name, values in (("s", [1.5, 0.5, 2]), ("b", [0, 1, -1]), ("m", [0.1, 0.2, 0.3]), ("v", [1, 4, 0.5])):
            inits.append(h.make_tensor(name, T.FLOAT, [3], values))
        s, b, m, v = (np.array(t.float_data, np.float32).reshape(1, 3, 1, 1) for t in inits)
        expected = (-x - m) / np.sqrt(v + 1e-5) * s + b
        out_shape, feeds = [2, 3, 4, 5], {"x": x}
    inputs = [f32(name, list(value.shape)) for name, value in feeds.items()]
    session = _basic_session([head, node], inputs, [f32("y", out_shape)], inits)
    calls = _count_in_place(session)
    assert calls == {"op": 0}
    y = session.run(None, feeds)[0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    # the variant ran; where the result does not fit the donated array it made a new one
    assert calls == {"op": 1}


def test_a_view_of_a_feed_is_never_written_over():
    # r is a view of the feed x, and dies at relu; the caller's dict is the array's only other holder
    nodes = [h.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"), h.make_node("Relu", ["r"], ["y"], name="relu")]
    shape = h.make_tensor("shape", T.INT64, [2], [3, 2])
    session = _basic_session(nodes, [f32("x", [2, 3])], [f32("y", [3, 2])], [shape])
    calls = _count_in_place(session)
    assert calls == {"relu": 0}
    feeds = {"x": np.array([[1, -2, 3], [-4, 5, -6]], np.float32)}
    y = session.run(None, feeds)[0]
    np.testing.assert_array_equal(feeds["x"], [[1, -2, 3], [-4, 5, -6]])
    np.testing.assert_array_equal(y, [[1, 0], [3, 0], [5, 0]])
    assert calls == {"relu": 0}


def test_a_node_with_a_subgraph_cannot_be_evaluated_alone():
    # constant folding's way to run single nodes refuses control flow before planning its bodies
    from onnxrt.model import loader
    from onnxrt.runtime.plan import GraphPlan, PlanConfig

    branch = h.make_graph([h.make_node("Identity", ["x"], ["t"])], "b", [], [f32("t", None)])
    nodes = [h.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)]
    model = loader.load(_model(nodes, [h.make_tensor_value_info("cond", T.BOOL, []), f32("x", [1])], [f32("y", None)]))
    evaluator = GraphPlan(onnx_ir.Graph([], [], nodes=[], opset_imports={"": 17}), PlanConfig(opsets={"": 17}))
    with pytest.raises(onnxrt.InvalidGraph, match="cannot run alone"):
        evaluator.evaluate(model.model.graph.node(0), [np.array(True)])
