import numpy as np
import pytest
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


def _input_affine_model(tail, inits, w_shape=(6, 4, 1, 1), pads=(0, 0, 0, 0), group=1, bias=True,
                        x_shape=(1, 4, 6, 5)):
    """x -> [tail nodes ending in "t"] -> Conv(t) -> y: the ops of ``tail`` on the Conv's input."""
    conv_inputs = ["t", "w", "b"] if bias else ["t", "w"]
    nodes = [*tail, helper.make_node("Conv", conv_inputs, ["y"], pads=list(pads), group=group)]
    inits = [const("w", rand(*w_shape, seed=11)), *([const("b", rand(w_shape[0], seed=12))] if bias else []),
             *inits]
    return make_model(nodes, [vinfo("x", list(x_shape))], [vinfo("y", None)], inits)


def _pp_ocr_tail():
    """PP-OCR's activation between convs: x * clip(x + 3, 0, 6) / 6, then a learnable scalar affine."""
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("Div", ["m", "six"], ["h"]),
             helper.make_node("Mul", ["scale", "h"], ["s"]), helper.make_node("Add", ["s", "shift"], ["t"])]
    inits = [const("three", np.array(3, np.float32)), const("zero", np.array(0, np.float32)),
             const("six", np.array(6, np.float32)), const("scale", np.array([0.8], np.float32)),
             const("shift", np.array([-0.3], np.float32))]
    return nodes, inits


def test_input_affine_folds_into_an_unpadded_conv():
    nodes, inits = _pp_ocr_tail()
    for bias in (True, False):
        out = check_pass(_input_affine_model(nodes, inits, bias=bias), {"x": rand(1, 4, 6, 5) * 4},
                         fuse_conv_affine, rtol=1e-4, atol=1e-5)
        # the Div, the scale and the shift are in the Conv's weight and bias; the activation stays
        assert op_counts(out) == {"Add": 1, "Clip": 1, "Mul": 1, "Conv": 1}
        conv = next(n for n in out.graph.node if n.op_type == "Conv")
        assert len(conv.input) == 3 and conv.input[0] == "m"


def test_input_affine_shift_kept_before_a_padded_conv():
    # a padded border reads zero, not the shift: only the Div and the scale fold (also into depthwise)
    nodes, inits = _pp_ocr_tail()
    for w_shape, group in (((6, 4, 3, 3), 1), ((4, 1, 3, 3), 4)):
        model = _input_affine_model(nodes, inits, w_shape=w_shape, pads=(1, 1, 1, 1), group=group)
        out = check_pass(model, {"x": rand(1, 4, 6, 5) * 4}, fuse_conv_affine, rtol=1e-4, atol=1e-5)
        assert op_counts(out) == {"Add": 2, "Clip": 1, "Mul": 1, "Conv": 1}


def test_input_affine_per_channel_into_a_grouped_conv():
    # per input channel: a (C, 1, 1) scale and a (1, C, 1, 1) subtrahend, into a 2-group strided 3x3 conv
    nodes = [helper.make_node("Mul", ["x", "scale"], ["s"]), helper.make_node("Sub", ["s", "mean"], ["t"])]
    inits = [const("scale", rand(4, 1, 1, seed=13)), const("mean", rand(1, 4, 1, 1, seed=14))]
    model = _input_affine_model(nodes, inits, w_shape=(6, 2, 3, 3), group=2)
    out = check_pass(model, {"x": rand(1, 4, 6, 5)}, fuse_conv_affine, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"Conv": 1}


@pytest.mark.filterwarnings("ignore:divide by zero")  # the model divides by its zero before the pass too
def test_input_affine_not_folded():
    def model_with(node, init, **kw):
        return _input_affine_model([node], [init], **kw)

    cases = [
        # the constant minus the value: a negation, not an affine of the value alone
        model_with(helper.make_node("Sub", ["k", "x"], ["t"]), const("k", np.array([1.5], np.float32))),
        # constant first in a Div: a reciprocal
        model_with(helper.make_node("Div", ["k", "x"], ["t"]), const("k", np.array([1.5], np.float32))),
        # a zero divisor
        model_with(helper.make_node("Div", ["x", "k"], ["t"]), const("k", np.array([1, 0, 2, 3], np.float32)
                                                                          .reshape(4, 1, 1))),
        # not per channel: varies along the width
        model_with(helper.make_node("Mul", ["x", "k"], ["t"]), const("k", rand(5, seed=15))),
        # an Add before a padded conv
        model_with(helper.make_node("Add", ["x", "k"], ["t"]), const("k", np.array([0.5], np.float32)),
                   w_shape=(6, 4, 3, 3), pads=(1, 1, 1, 1)),
    ]
    # the scaled value is also a graph output
    shared = _input_affine_model([helper.make_node("Mul", ["x", "k"], ["t"])], [const("k", np.array([2.0], np.float32))])
    shared.graph.output.append(vinfo("t", None))
    cases.append(shared)
    for model in cases:
        out = check_pass(model, {"x": rand(1, 4, 6, 5)}, fuse_conv_affine, rtol=1e-4, atol=1e-5,
                         expect_rewrites=False)
        assert op_counts(out)["Conv"] == 1 and len(out.graph.node) == 2
