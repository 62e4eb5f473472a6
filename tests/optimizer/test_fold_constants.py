import numpy as np
from onnx import TensorProto, helper

from onnxrt.optimizer.fold_constants import fold_constants
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def test_constant_subgraph_and_shape_chain_fold():
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt"], ["h"]),
        helper.make_node("Shape", ["h"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "zero1"], ["b1"]),
        helper.make_node("Concat", ["b1", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["h", "newshape"], ["y"]),
    ]
    inits = [const("w", rand(5, 4)), const("zero", np.array(0, np.int64)), const("zero1", np.array([0], np.int64)),
             const("minus1", np.array([-1], np.int64))]
    model = make_model(nodes, [vinfo("x", [3, 4])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(3, 4)}, fold_constants)
    ops = op_counts(out)
    assert ops == {"MatMul": 1, "Reshape": 1}


def test_random_and_huge_outputs_are_not_folded():
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    model = make_model(nodes, [vinfo("x", [1])], [vinfo("y", None)], [const("shape", np.array([1024, 1024], np.int64))])
    out = check_pass(model, {"x": rand(1)}, fold_constants, expect_rewrites=False)
    assert op_counts(out)["ConstantOfShape"] == 1


def test_overridable_initializer_is_not_folded():
    nodes = [helper.make_node("Neg", ["w"], ["nw"]), helper.make_node("Add", ["x", "nw"], ["y"])]
    model = make_model(nodes, [vinfo("x", [2]), vinfo("w", [2])], [vinfo("y", None)], [const("w", np.ones(2, np.float32))])
    check_pass(model, {"x": rand(2)}, fold_constants, expect_rewrites=False)


def test_scalar_constants_stay_scalars():
    nodes = [
        helper.make_node("Constant", [], ["idx"], value=helper.make_tensor("v", TensorProto.INT64, [], [1])),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "idx"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
        helper.make_node("Slice", ["x", "start", "n1", "one"], ["y"]),
    ]
    inits = [const("zero1", np.array([0], np.int64)), const("start", np.array([0], np.int64)), const("one", np.array([1], np.int64))]
    model = make_model(nodes, [vinfo("x", ["a", "b"])], [vinfo("y", None)], inits)
    check_pass(model, {"x": rand(2, 3)}, fold_constants)
