import importlib

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxrt.optimizer.fold_constants import fold_constants
from tests.optimizer.helpers import apply, check_pass, const, make_model, op_counts, rand, run_onnxrt, vinfo

# the package re-exports the pass function under the module's name
fold_constants_module = importlib.import_module("onnxrt.optimizer.fold_constants")


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


@pytest.mark.parametrize("limit, folded", [(1 << 26, True), (1000, False)])
def test_a_constant_filled_weight_folds_up_to_the_weight_limit(monkeypatch, limit, folded):
    # the light models make their weights with ConstantOfShape: above the growth limit, but a weight
    # (read as Gemm's B), so it folds unless it exceeds WEIGHT_LIMIT_ELEMENTS
    monkeypatch.setattr(fold_constants_module, "WEIGHT_LIMIT_ELEMENTS", limit)
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["w"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.01])),
        helper.make_node("Gemm", ["x", "w"], ["y"], transB=1),
    ]
    model = make_model(nodes, [vinfo("x", [2, 300])], [vinfo("y", None)], [const("shape", np.array([300, 300], np.int64))])
    out = check_pass(model, {"x": rand(2, 300)}, fold_constants, expect_rewrites=folded)
    assert ("ConstantOfShape" in op_counts(out)) != folded


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


def test_a_folded_chain_leaves_one_initializer_under_the_read_name():
    # w -> Transpose -> Neg -> Mul(2) feeds the MatMul and, separately, Neg's result feeds an Add:
    # only the two values a remaining node reads become initializers, keeping their names
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("Neg", ["wt"], ["nwt"]),
        helper.make_node("Mul", ["nwt", "two"], ["w2"]),
        helper.make_node("MatMul", ["x", "w2"], ["h"]),
        helper.make_node("ReduceSum", ["nwt"], ["s"], keepdims=0),
        helper.make_node("Add", ["h", "s"], ["y"]),
    ]
    inits = [const("w", rand(5, 4)), const("two", np.array(2.0, np.float32))]
    model = make_model(nodes, [vinfo("x", [3, 4])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(3, 4)}, fold_constants)
    assert op_counts(out) == {"MatMul": 1, "Add": 1}
    names = {t.name for t in out.graph.initializer}
    assert {"w2", "s"} <= names and not names & {"wt", "nwt"}


def test_a_folded_value_read_inside_a_subgraph_becomes_an_initializer():
    body_out = helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])
    then_branch = helper.make_graph([helper.make_node("Add", ["x", "nw"], ["b"])], "then", [], [body_out])
    else_branch = helper.make_graph([helper.make_node("Sub", ["x", "nw"], ["b"])], "else", [], [body_out])
    nodes = [
        helper.make_node("Neg", ["w"], ["nw"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
    ]
    model = make_model(nodes, [vinfo("x", [2]), vinfo("cond", [], TensorProto.BOOL)], [vinfo("y", None)],
                       [const("w", np.array([1.0, 2.0], np.float32))])
    out = check_pass(model, {"x": rand(2), "cond": np.array(True)}, fold_constants)
    assert "nw" in {t.name for t in out.graph.initializer}


@pytest.mark.parametrize("value, shape", [
    (None, [2, 3]),  # no attribute: float32 zeros
    (helper.make_tensor("v", TensorProto.INT64, [1], [7]), [4]),
    (helper.make_tensor("v", TensorProto.FLOAT16, [1], [0.5]), [2, 0, 3]),  # a zero dim
    (helper.make_tensor("v", TensorProto.BOOL, [1], [True]), [1]),
    (helper.make_tensor("v", TensorProto.DOUBLE, [1], [-1.25]), [3, 1]),
])
def test_constant_fills_fold_without_the_kernel_to_what_the_kernel_makes(monkeypatch, value, shape):
    fill_kwargs = {} if value is None else {"value": value}
    node = helper.make_node("ConstantOfShape", ["shape"], ["c"], **fill_kwargs)
    dtype = TensorProto.FLOAT if value is None else value.data_type
    model = make_model([node, helper.make_node("Identity", ["c"], ["y"])], [], [vinfo("y", shape, dtype)],
                       [const("shape", np.array(shape, np.int64))])
    expected = run_onnxrt(model, {})[0]
    evaluated = []
    monkeypatch.setattr(fold_constants_module, "_evaluate", lambda *a: evaluated.append(a) or None)
    out = check_pass(model, {}, fold_constants)
    assert not evaluated and "ConstantOfShape" not in op_counts(out)
    folded = run_onnxrt(out, {})[0]
    assert folded.dtype == expected.dtype and folded.shape == expected.shape
    np.testing.assert_array_equal(folded, expected)


def test_a_negative_fill_shape_is_left_to_fail_at_run_time():
    node = helper.make_node("ConstantOfShape", ["shape"], ["c"])
    model = make_model([node, helper.make_node("Identity", ["c"], ["y"])], [], [vinfo("y", None)],
                       [const("shape", np.array([2, -1], np.int64))])
    _, n = apply(model, fold_constants)
    assert n == 0
