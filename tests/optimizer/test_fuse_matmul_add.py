from onnx import helper

from onnxrt.optimizer.fuse_matmul_add import fuse_matmul_add
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def test_2d_matmul_add_becomes_gemm():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["bias", "h"], ["y"])]
    model = make_model(nodes, [vinfo("x", [3, 4])], [vinfo("y", None)], [const("w", rand(4, 5)), const("bias", rand(5))])
    out = check_pass(model, {"x": rand(3, 4)}, fuse_matmul_add)
    assert op_counts(out) == {"Gemm": 1}


def test_3d_matmul_add_kept():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "bias"], ["y"])]
    model = make_model(nodes, [vinfo("x", [2, 3, 4])], [vinfo("y", None)], [const("w", rand(4, 5)), const("bias", rand(5))])
    check_pass(model, {"x": rand(2, 3, 4)}, fuse_matmul_add, expect_rewrites=False)
