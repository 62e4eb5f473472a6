import numpy as np
from onnx import helper

from onnxrt.optimizer.fuse_conv import fuse_conv_affine
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def _conv_model(tail_nodes, tail_inits, bias: bool = True):
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    nodes = [helper.make_node("Conv", inputs, ["c"], pads=[1, 1, 1, 1]), *tail_nodes]
    inits = [const("w", rand(4, 3, 3, 3, seed=1)), *([const("b", rand(4, seed=2))] if bias else []), *tail_inits]
    return make_model(nodes, [vinfo("x", [1, 3, 5, 5])], [vinfo("y", None)], inits)


def test_conv_batchnorm():
    bn = helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], epsilon=1e-3)
    rng = np.random.default_rng(3)
    inits = [const("s", rand(4, seed=4)), const("bb", rand(4, seed=5)), const("m", rand(4, seed=6)),
             const("v", rng.uniform(0.5, 2, 4).astype(np.float32))]
    for bias in (True, False):
        out = check_pass(_conv_model([bn], inits, bias), {"x": rand(1, 3, 5, 5)}, fuse_conv_affine, rtol=1e-4, atol=1e-5)
        assert op_counts(out) == {"Conv": 1}


def test_conv_mul_add_per_channel():
    nodes = [helper.make_node("Mul", ["c", "scale"], ["m"]), helper.make_node("Add", ["shift", "m"], ["y"])]
    inits = [const("scale", rand(1, 4, 1, 1, seed=7)), const("shift", rand(4, 1, 1, seed=8))]
    out = check_pass(_conv_model(nodes, inits), {"x": rand(1, 3, 5, 5)}, fuse_conv_affine, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"Conv": 1}


def test_conv_scalar_affine_with_symbolic_dims():
    # PP-OCR's learnable affine: Conv -> Mul(scalar) -> Add(scalar) on an input of unknown size
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["scale", "c"], ["m"]), helper.make_node("Add", ["m", "shift"], ["y"])]
    inits = [const("w", rand(4, 3, 3, 3, seed=1)), const("b", rand(4, seed=2)),
             const("scale", np.array([0.7], np.float32)), const("shift", np.array([0.2], np.float32))]
    model = make_model(nodes, [vinfo("x", ["N", 3, "H", "W"])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(2, 3, 6, 5)}, fuse_conv_affine, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"Conv": 1}


def test_conv_scalar_of_higher_rank_kept():
    # a [1,1,1,1,1] scalar makes the 4-D Conv output 5-D: not a per-channel op
    nodes = [helper.make_node("Add", ["c", "shift"], ["y"])]
    out = check_pass(_conv_model(nodes, [const("shift", np.full((1, 1, 1, 1, 1), 0.5, np.float32))]),
                     {"x": rand(1, 3, 5, 5)}, fuse_conv_affine, expect_rewrites=False)
    assert op_counts(out) == {"Conv": 1, "Add": 1}


def test_conv_add_not_per_channel_kept():
    nodes = [helper.make_node("Add", ["c", "shift"], ["y"])]
    out = check_pass(_conv_model(nodes, [const("shift", rand(5, seed=8))]), {"x": rand(1, 3, 5, 5)}, fuse_conv_affine,
                     expect_rewrites=False)
    assert op_counts(out) == {"Conv": 1, "Add": 1}


def _pad_conv_model(pads, value=None, mode="constant", group=1):
    ins = ["x", "pads"] + (["val"] if value is not None else [])
    nodes = [helper.make_node("Pad", ins, ["p"], mode=mode),
             helper.make_node("Conv", ["p", "w", "b"], ["y"], pads=[1, 0, 0, 1], strides=[2, 2], group=group)]
    inits = [const("pads", np.array(pads, dtype=np.int64)), const("w", rand(4, 4 // group, 3, 3, seed=1)),
             const("b", rand(4, seed=2))]
    if value is not None:
        inits.append(const("val", np.array(value, dtype=np.float32)))
    return make_model(nodes, [vinfo("x", [1, 4, 7, 8])], [vinfo("y", None)], inits)


def test_pad_folds_into_conv():
    for group in (1, 4):
        out = check_pass(_pad_conv_model([0, 0, 0, 1, 0, 0, 2, 1], group=group), {"x": rand(1, 4, 7, 8)},
                         fuse_conv_affine, rtol=1e-4, atol=1e-5)
        assert op_counts(out) == {"Conv": 1}
    out = check_pass(_pad_conv_model([0, 0, 1, 1, 0, 0, 1, 1], value=0.0), {"x": rand(1, 4, 7, 8)},
                     fuse_conv_affine, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"Conv": 1}


def test_pad_not_folded():
    for model in (_pad_conv_model([0, 0, 1, 1, 0, 0, 1, 1], value=1.5),
                  _pad_conv_model([0, 0, 1, 1, 0, 0, 1, 1], mode="reflect"),
                  _pad_conv_model([1, 0, 1, 1, 0, 0, 1, 1])):
        out = check_pass(model, {"x": rand(1, 4, 7, 8)}, fuse_conv_affine, rtol=1e-4, atol=1e-5,
                         expect_rewrites=False)
        assert op_counts(out)["Pad"] == 1


def _bn_model(tail_nodes, tail_inits, x_shape=(1, 4, 5, 5)):
    # the four normalization inputs share one constant, as Caffe2's DenseNet has them
    bn = helper.make_node("BatchNormalization", ["x", "p", "p", "m", "v"], ["n"], epsilon=1e-3)
    rng = np.random.default_rng(3)
    inits = [const("p", rand(4, seed=4)), const("m", rand(4, seed=5)),
             const("v", rng.uniform(0.5, 2, 4).astype(np.float32)), *tail_inits]
    return make_model([bn, *tail_nodes], [vinfo("x", list(x_shape))], [vinfo("y", None)], inits)


def test_batchnorm_absorbs_per_channel_mul_and_add():
    nodes = [helper.make_node("Mul", ["n", "scale"], ["s"]), helper.make_node("Add", ["shift", "s"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    inits = [const("scale", rand(4, 1, 1, seed=7)), const("shift", rand(1, 4, 1, 1, seed=8))]
    out = check_pass(_bn_model(nodes, inits), {"x": rand(1, 4, 5, 5)}, fuse_conv_affine, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"BatchNormalization": 1, "Relu": 1}
    bn = next(n for n in out.graph.node if n.op_type == "BatchNormalization")
    assert bn.input[3] == "m" and bn.input[4] == "v"  # the shared originals stay for mean and var


def test_batchnorm_keeps_a_mul_that_is_not_per_channel():
    nodes = [helper.make_node("Mul", ["n", "k"], ["y"])]
    out = check_pass(_bn_model(nodes, [const("k", rand(5, seed=9))], (1, 4, 5, 5)), {"x": rand(1, 4, 5, 5)},
                     fuse_conv_affine, expect_rewrites=False)
    assert op_counts(out) == {"BatchNormalization": 1, "Mul": 1}

