import numpy as np
from onnx import TensorProto, helper

from onnxrt.optimizer.merge_consecutive import merge_consecutive
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def test_transpose_reshape_cast_chains_merge():
    nodes = [
        helper.make_node("Transpose", ["x"], ["t1"], perm=[1, 2, 0]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[2, 0, 1]),
        helper.make_node("Reshape", ["t2", "s1"], ["r1"]),
        helper.make_node("Reshape", ["r1", "s2"], ["r2"]),
        helper.make_node("Cast", ["r2"], ["c1"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["c1"], ["y"], to=TensorProto.FLOAT16),
    ]
    inits = [const("s1", np.array([6, 4], np.int64)), const("s2", np.array([-1], np.int64))]
    model = make_model(nodes, [vinfo("x", [2, 3, 4])], [vinfo("y", None, TensorProto.FLOAT16)], inits)
    out = check_pass(model, {"x": rand(2, 3, 4)}, merge_consecutive)
    assert op_counts(out) == {"Transpose": 1, "Reshape": 1, "Cast": 1}


def test_lossy_cast_pair_kept():
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT32), helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT)]
    model = make_model(nodes, [vinfo("x", [4])], [vinfo("y", None)])
    check_pass(model, {"x": rand(4) * 10}, merge_consecutive, expect_rewrites=False)


def test_widening_cast_round_trip_removed():
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.DOUBLE), helper.make_node("Cast", ["c"], ["d"], to=TensorProto.FLOAT),
             helper.make_node("Relu", ["d"], ["y"])]
    model = make_model(nodes, [vinfo("x", [4])], [vinfo("y", None)])
    out = check_pass(model, {"x": rand(4)}, merge_consecutive)
    assert op_counts(out) == {"Relu": 1}


def test_reshape_with_zero_kept():
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["r1"]), helper.make_node("Reshape", ["r1", "s2"], ["y"])]
    inits = [const("s1", np.array([6, 4], np.int64)), const("s2", np.array([0, 2, 2], np.int64))]
    model = make_model(nodes, [vinfo("x", [2, 3, 4])], [vinfo("y", None)], inits)
    check_pass(model, {"x": rand(2, 3, 4)}, merge_consecutive, expect_rewrites=False)
