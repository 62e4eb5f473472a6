import numpy as np
from onnx import TensorProto, helper

from onnxrt.optimizer.eliminate import eliminate_noops, remove_dead_nodes
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def test_noops_removed():
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Dropout", ["b"], ["c"]),
        helper.make_node("Cast", ["c"], ["d"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["d", "shape"], ["e"]),
        helper.make_node("Transpose", ["e"], ["f"], perm=[0, 1]),
        helper.make_node("Pad", ["f", "pads"], ["g"]),
        helper.make_node("Slice", ["g", "starts", "ends"], ["h"]),
        helper.make_node("Identity", ["h"], ["y"]),  # graph output keeps its name
    ]
    inits = [const("shape", np.array([2, 3], np.int64)), const("pads", np.zeros(4, np.int64)),
             const("starts", np.array([0], np.int64)), const("ends", np.array([2**62], np.int64))]
    model = make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", [2, 3])], inits)
    out = check_pass(model, {"x": rand(2, 3)}, eliminate_noops)
    assert op_counts(out) == {"Relu": 1}
    assert out.graph.output[0].name == "y"


def test_identity_between_input_and_output_is_kept():
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], [vinfo("x", [2])], [vinfo("y", [2])])
    out = check_pass(model, {"x": rand(2)}, eliminate_noops, expect_rewrites=False)
    assert op_counts(out) == {"Identity": 1}


def test_real_reshape_and_cast_kept():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["a"]), helper.make_node("Cast", ["a"], ["y"], to=TensorProto.DOUBLE)]
    model = make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", None, TensorProto.DOUBLE)], [const("shape", np.array([3, 2], np.int64))])
    check_pass(model, {"x": rand(2, 3)}, eliminate_noops, expect_rewrites=False)


def test_dead_nodes_removed():
    nodes = [helper.make_node("Neg", ["x"], ["unused"]), helper.make_node("Exp", ["unused"], ["unused2"]),
             helper.make_node("Relu", ["x"], ["y"])]
    model = make_model(nodes, [vinfo("x", [2])], [vinfo("y", None)], [const("dead", np.ones(3, np.float32))])
    out = check_pass(model, {"x": rand(2)}, remove_dead_nodes)
    assert op_counts(out) == {"Relu": 1}
    assert not out.graph.initializer
