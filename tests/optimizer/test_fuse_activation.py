import numpy as np
import pytest
from onnx import helper

from onnxrt.optimizer.fuse_activation import fuse_activations
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo

ACTIVATIONS = [
    ("Relu", {}, []),
    ("Sigmoid", {}, []),
    ("Tanh", {}, []),
    ("LeakyRelu", {"alpha": 0.2}, []),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, []),
    ("Clip", {}, ["lo", "hi"]),
]


@pytest.mark.parametrize("act,attrs,extra", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_conv_activation_becomes_fused_conv(act, attrs, extra):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node(act, ["c", *extra], ["y"], **attrs)]
    inits = [const("w", rand(4, 3, 3, 3, seed=1)), const("b", rand(4, seed=2)),
             const("lo", np.array(-0.5, np.float32)), const("hi", np.array(0.7, np.float32))]
    model = make_model(nodes, [vinfo("x", [1, 3, 5, 5])], [vinfo("y", None)], inits if extra else inits[:2])
    out = check_pass(model, {"x": rand(1, 3, 5, 5)}, fuse_activations, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"FusedConv": 1}


@pytest.mark.parametrize("act,attrs,extra", ACTIVATIONS[:5], ids=[a[0] for a in ACTIVATIONS[:5]])
def test_gemm_activation_becomes_fused_gemm(act, attrs, extra):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), helper.make_node(act, ["g"], ["y"], **attrs)]
    model = make_model(nodes, [vinfo("x", [3, 4])], [vinfo("y", None)], [const("w", rand(5, 4)), const("b", rand(5))])
    out = check_pass(model, {"x": rand(3, 4)}, fuse_activations, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"FusedGemm": 1}


def test_swish_and_hardswish():
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "x"], ["a"]),
        helper.make_node("HardSigmoid", ["a"], ["h"], alpha=1 / 6, beta=0.5), helper.make_node("Mul", ["a", "h"], ["y"]),
    ]
    model = make_model(nodes, [vinfo("x", [2, 8])], [vinfo("y", None)])
    out = check_pass(model, {"x": rand(2, 8) * 4}, fuse_activations)
    assert op_counts(out) == {"QuickGelu": 1, "HardSwish": 1}


def test_activation_with_second_reader_kept():
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"]), helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("Add", ["g", "r"], ["y"])]
    model = make_model(nodes, [vinfo("x", [3, 4])], [vinfo("y", None)], [const("w", rand(4, 5))])
    check_pass(model, {"x": rand(3, 4)}, fuse_activations, expect_rewrites=False)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("act", [None, "Relu"])
@pytest.mark.parametrize("add", ["Add", "Sum"])  # Caffe2's ResNets sum the skip with a two-input Sum
def test_conv_residual_add_becomes_fused_conv_with_z(bias, act, add):
    nodes = [helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["x"], ["skip"]),
             helper.make_node(add, ["skip", "c"], ["s" if act else "y"])]
    if act:
        nodes.append(helper.make_node(act, ["s"], ["y"]))
    inits = [const("w", rand(3, 3, 3, 3, seed=1)), const("b", rand(3, seed=2))]
    model = make_model(nodes, [vinfo("x", [1, 3, 5, 5])], [vinfo("y", None)], inits if bias else inits[:1])
    out = check_pass(model, {"x": rand(1, 3, 5, 5)}, fuse_activations, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"FusedConv": 1, "Relu": 1}
    fused = next(n for n in out.graph.node if n.op_type == "FusedConv")
    assert list(fused.input) == ["x", "w", "b" if bias else "", "skip"]


def test_conv_add_with_broadcast_or_second_reader_kept():
    # the bias-like (1, 4, 1, 1) operand broadcasts: not a residual
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "k"], ["y"])]
    model = make_model(nodes, [vinfo("x", [1, 3, 5, 5])], [vinfo("y", None)],
                       [const("w", rand(4, 3, 1, 1, seed=1)), const("k", rand(1, 4, 1, 1, seed=2))])
    check_pass(model, {"x": rand(1, 3, 5, 5)}, fuse_activations, expect_rewrites=False)
    # the Conv output is read again after the Add
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "z"], ["s"]),
             helper.make_node("Mul", ["s", "c"], ["y"])]
    model = make_model(nodes, [vinfo("x", [1, 3, 5, 5]), vinfo("z", [1, 4, 5, 5])], [vinfo("y", None)],
                       [const("w", rand(4, 3, 1, 1, seed=1))])
    check_pass(model, {"x": rand(1, 3, 5, 5), "z": rand(1, 4, 5, 5)}, fuse_activations, expect_rewrites=False)
    # a three-input Sum is no residual Add
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Sum", ["c", "z", "z"], ["y"])]
    model = make_model(nodes, [vinfo("x", [1, 3, 5, 5]), vinfo("z", [1, 4, 5, 5])], [vinfo("y", None)],
                       [const("w", rand(4, 3, 1, 1, seed=1))])
    check_pass(model, {"x": rand(1, 3, 5, 5), "z": rand(1, 4, 5, 5)}, fuse_activations, expect_rewrites=False)
