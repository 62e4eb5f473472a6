"""The optimizer runs on If branches and Loop bodies too, and never rewrites across a graph border."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import onnxrt
from tests.optimizer.helpers import const, rand, run_onnxrt, run_onnxruntime

LEVELS = [onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC, onnxrt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          onnxrt.GraphOptimizationLevel.ORT_ENABLE_ALL]


def _optimized(model: onnx.ModelProto, level, tmp_path, feeds: dict) -> tuple[list, onnx.ModelProto]:
    """onnxrt's outputs at ``level`` and the optimized model it saved (checked, and run in onnxruntime
    with the same outputs as the original model there)."""
    path = str(tmp_path / f"optimized_{int(level)}.onnx")
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = path
    outputs = onnxrt.InferenceSession(model.SerializeToString(), options).run(None, feeds)
    saved = onnx.load(path)
    onnx.checker.check_model(saved, full_check=True)
    in_ort = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(in_ort, run_onnxruntime(model, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return outputs, saved


def _ops(graph: onnx.GraphProto) -> Counter:
    return Counter(n.op_type for n in graph.node)


def _branch_of(node: onnx.NodeProto, name: str) -> onnx.GraphProto:
    return next(a.g for a in node.attribute if a.name == name)


def _branch(nodes, inits, out: str, name: str) -> onnx.GraphProto:
    return h.make_graph(nodes, name, [], [h.make_tensor_value_info(out, T.FLOAT, None)], inits)


def _model(nodes, inputs, inits=(), outputs=("y",)) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info(o, T.FLOAT, None) for o in outputs], list(inits))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _check_same(model: onnx.ModelProto, feeds: dict, outputs: list) -> None:
    for got, ref, ort in zip(outputs, run_onnxrt(model, feeds), run_onnxruntime(model, feeds)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, ort, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("level", LEVELS)
def test_if_branches_are_folded_and_fused(level, tmp_path):
    # then: Conv (weights from Constant nodes, the bias through a foldable Mul) -> Relu; else: Sigmoid
    then_nodes = [
        h.make_node("Constant", [], ["w"], value=onnx.numpy_helper.from_array(rand(4, 3, 3, 3, seed=1))),
        h.make_node("Constant", [], ["b0"], value=onnx.numpy_helper.from_array(rand(4, seed=2))),
        h.make_node("Constant", [], ["two"], value=onnx.numpy_helper.from_array(np.array(2.0, np.float32))),
        h.make_node("Mul", ["b0", "two"], ["b"]),
        h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c"], ["t_y"]),
    ]
    else_nodes = [h.make_node("Conv", ["x", "w_out"], ["e_c"], pads=[1, 1, 1, 1]), h.make_node("Sigmoid", ["e_c"], ["e_s"]),
                  h.make_node("Neg", ["e_s"], ["e_n"]), h.make_node("Abs", ["e_n"], ["e_y"])]
    model = _model(
        [h.make_node("If", ["cond"], ["y"], then_branch=_branch(then_nodes, [], "t_y", "then"),
                     else_branch=_branch(else_nodes, [], "e_y", "else"))],
        [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 6, 6]), h.make_tensor_value_info("cond", T.BOOL, [])],
        [const("w_out", rand(4, 3, 3, 3, seed=3))])
    for cond in (True, False):
        feeds = {"x": rand(1, 3, 6, 6, seed=4), "cond": np.array(cond)}
        outputs, saved = _optimized(model, level, tmp_path, feeds)
        _check_same(model, feeds, outputs)
    then_ops = _ops(_branch_of(saved.graph.node[0], "then_branch"))
    assert "Mul" not in then_ops  # folded inside the branch
    if level >= onnxrt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED:
        assert then_ops["FusedConv"] == 1 and "Relu" not in then_ops
        assert _ops(_branch_of(saved.graph.node[0], "else_branch"))["FusedConv"] == 1  # Conv -> Sigmoid: the outer weight
    else:
        assert then_ops["Conv"] == 1 and then_ops["Relu"] == 1


def test_loop_body_is_optimized():
    # y = relu(y @ w + b) three times: MatMul + Add becomes a Gemm inside the body
    body = h.make_graph(
        [h.make_node("MatMul", ["y_in", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["a"]),
         h.make_node("Relu", ["a"], ["y_out"]), h.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("y_in", T.FLOAT, [2, 5])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("y_out", T.FLOAT, [2, 5])])
    model = _model([h.make_node("Loop", ["n", "", "y0"], ["y"], body=body)],
                   [h.make_tensor_value_info("n", T.INT64, []), h.make_tensor_value_info("y0", T.FLOAT, [2, 5])],
                   [const("w", rand(5, 5, seed=5) * 0.5), const("b", rand(5, seed=6))])
    feeds = {"n": np.array(3, np.int64), "y0": rand(2, 5, seed=7)}
    session = onnxrt.InferenceSession(model.SerializeToString())
    _check_same(model, feeds, session.run(None, feeds))
    loop_step = next(s for s in session._plan.steps if s.op_type == "Loop")
    body_ops = [s.op_type for plan in loop_step.subplans for s in plan.steps]
    assert "Gemm" in body_ops or "FusedGemm" in body_ops, body_ops
    assert "MatMul" not in body_ops


def test_conv_read_only_inside_a_branch_is_not_fused_across_the_border(tmp_path):
    # the Conv's one reader is a Relu inside the then branch: fusing them would rewrite two graphs
    # at once (this used to fail building the session)
    then_branch = _branch([h.make_node("Relu", ["c"], ["t_y"])], [], "t_y", "then")
    else_branch = _branch([h.make_node("Neg", ["x"], ["e_y"])], [], "e_y", "else")
    model = _model(
        [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         h.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 5, 5]), h.make_tensor_value_info("cond", T.BOOL, [])],
        [const("w", rand(4, 4, 3, 3, seed=8)), const("b", rand(4, seed=9))])
    for cond in (True, False):
        feeds = {"x": rand(1, 4, 5, 5, seed=10), "cond": np.array(cond)}
        outputs, saved = _optimized(model, onnxrt.GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path, feeds)
        _check_same(model, feeds, outputs)
    assert _ops(saved.graph)["Conv"] == 1
    assert _ops(_branch_of(saved.graph.node[-1], "then_branch")) == {"Relu": 1}


def test_branch_reading_an_outer_value_leaves_the_outer_graph_alone(tmp_path):
    # the branch's Relu reads an outer Conv that the main graph reads as well; the outer Add + Relu
    # may fuse into the Conv's graph, the branch's Relu stays a Relu of the outer value
    then_branch = _branch([h.make_node("Relu", ["c"], ["r"]), h.make_node("Neg", ["r"], ["n"]),
                           h.make_node("Abs", ["n"], ["t_y"])], [], "t_y", "then")
    else_branch = _branch([h.make_node("Sigmoid", ["c"], ["s"]), h.make_node("Neg", ["s"], ["n2"]),
                           h.make_node("Abs", ["n2"], ["e_y"])], [], "e_y", "else")
    model = _model(
        [h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         h.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
         h.make_node("Relu", ["c"], ["z"])],
        [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 5, 5]), h.make_tensor_value_info("cond", T.BOOL, [])],
        [const("w", rand(4, 3, 3, 3, seed=11))], outputs=("y", "z"))
    for cond in (True, False):
        feeds = {"x": rand(1, 3, 5, 5, seed=12), "cond": np.array(cond)}
        outputs, saved = _optimized(model, onnxrt.GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path, feeds)
        _check_same(model, feeds, outputs)
    if_node = next(n for n in saved.graph.node if n.op_type == "If")
    then_graph = _branch_of(if_node, "then_branch")
    conv_out = next(o for n in saved.graph.node if n.op_type in ("Conv", "FusedConv") for o in n.output)
    assert [n.input[0] for n in then_graph.node if n.op_type == "Relu"] == [conv_out]
    assert not then_graph.input  # the stand-in inputs are gone


def _slicing_branch(weight: str, prefix: str) -> onnx.GraphProto:
    # Slice two halves of an outer weight, swap them, add: constant but for the x it adds to
    nodes = [
        h.make_node("Constant", [], [f"{prefix}_s0"], value=onnx.numpy_helper.from_array(np.array([0], np.int64))),
        h.make_node("Constant", [], [f"{prefix}_s1"], value=onnx.numpy_helper.from_array(np.array([2], np.int64))),
        h.make_node("Constant", [], [f"{prefix}_s2"], value=onnx.numpy_helper.from_array(np.array([4], np.int64))),
        h.make_node("Slice", [weight, f"{prefix}_s0", f"{prefix}_s1"], [f"{prefix}_lo"]),
        h.make_node("Slice", [weight, f"{prefix}_s1", f"{prefix}_s2"], [f"{prefix}_hi"]),
        h.make_node("Concat", [f"{prefix}_hi", f"{prefix}_lo"], [f"{prefix}_w"], axis=0),
        h.make_node("Add", ["x", f"{prefix}_w"], [f"{prefix}_y"]),
    ]
    return _branch(nodes, [], f"{prefix}_y", prefix)


def test_a_branch_folds_its_reads_of_outer_constants(tmp_path):
    # silero_vad slices and concatenates its LSTM weights inside If branches: the weights are constants
    # of the graph around the branch (an initializer of the main graph, or a Constant node of an
    # enclosing branch), and the chain folds all the same; the outer constant is then dead and goes
    inner = h.make_node("If", ["cond"], ["o_y"], then_branch=_slicing_branch("w_node", "it"),
                        else_branch=_slicing_branch("w_node", "ie"))
    outer_then = _branch([h.make_node("Constant", [], ["w_node"], value=onnx.numpy_helper.from_array(rand(4, 3, seed=13))),
                          inner, h.make_node("Neg", ["o_y"], ["o_n"]), h.make_node("Abs", ["o_n"], ["o_a"]),
                          h.make_node("Relu", ["o_a"], ["t_y"])], [], "t_y", "outer_then")
    model = _model(
        [h.make_node("If", ["cond"], ["y"], then_branch=outer_then, else_branch=_slicing_branch("w_init", "e"))],
        [h.make_tensor_value_info("x", T.FLOAT, [4, 3]), h.make_tensor_value_info("cond", T.BOOL, [])],
        [const("w_init", rand(4, 3, seed=14))])
    for cond in (True, False):
        feeds = {"x": rand(4, 3, seed=15), "cond": np.array(cond)}
        outputs, saved = _optimized(model, onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC, tmp_path, feeds)
        _check_same(model, feeds, outputs)
    top = saved.graph.node[0]
    assert _ops(_branch_of(top, "else_branch")) == {"Add": 1}
    assert "w_init" not in {t.name for t in saved.graph.initializer}  # read by nothing any more
    then_graph = _branch_of(top, "then_branch")
    assert "Constant" not in _ops(then_graph)  # w_node: every read of it folded
    inner_if = next(n for n in then_graph.node if n.op_type == "If")
    for name in ("then_branch", "else_branch"):
        assert _ops(_branch_of(inner_if, name)) == {"Add": 1}


def test_a_branch_does_not_fold_an_overridable_initializer(tmp_path):
    # an initializer that is also a graph input can be fed at run time: not a constant in the branch
    model = _model(
        [h.make_node("If", ["cond"], ["y"], then_branch=_slicing_branch("w", "t"), else_branch=_slicing_branch("w", "e"))],
        [h.make_tensor_value_info("x", T.FLOAT, [4, 3]), h.make_tensor_value_info("cond", T.BOOL, []),
         h.make_tensor_value_info("w", T.FLOAT, [4, 3])],
        [const("w", rand(4, 3, seed=16))])
    feeds = {"x": rand(4, 3, seed=17), "cond": np.array(True), "w": rand(4, 3, seed=18)}
    outputs, saved = _optimized(model, onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC, tmp_path, feeds)
    _check_same(model, feeds, outputs)
    assert _ops(_branch_of(saved.graph.node[0], "then_branch"))["Slice"] == 2
