import numpy as np
from onnx import helper

from onnxrt.optimizer.cse import eliminate_common_subexpressions
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def test_duplicate_nodes_and_constants_merged():
    nodes = [
        helper.make_node("Add", ["x", "one_a"], ["a"]),
        helper.make_node("Add", ["x", "one_b"], ["b"]),
        helper.make_node("Relu", ["a"], ["ra"]),
        helper.make_node("Relu", ["b"], ["rb"]),
        helper.make_node("Mul", ["ra", "rb"], ["y"]),
    ]
    inits = [const("one_a", np.ones(1, np.float32)), const("one_b", np.ones(1, np.float32))]
    model = make_model(nodes, [vinfo("x", [4])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(4)}, eliminate_common_subexpressions)
    assert op_counts(out) == {"Add": 1, "Relu": 1, "Mul": 1}


def test_different_attributes_not_merged():
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
        helper.make_node("LeakyRelu", ["x"], ["b"], alpha=0.2),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    model = make_model(nodes, [vinfo("x", [4])], [vinfo("y", None)])
    check_pass(model, {"x": rand(4)}, eliminate_common_subexpressions, expect_rewrites=False)


def test_two_graph_outputs_both_kept():
    nodes = [helper.make_node("Relu", ["x"], ["y1"]), helper.make_node("Relu", ["x"], ["y2"])]
    model = make_model(nodes, [vinfo("x", [4])], [vinfo("y1", None), vinfo("y2", None)])
    out = check_pass(model, {"x": rand(4)}, eliminate_common_subexpressions, expect_rewrites=False)
    assert [o.name for o in out.graph.output] == ["y1", "y2"]
