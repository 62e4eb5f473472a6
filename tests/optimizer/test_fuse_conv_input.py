import numpy as np
import pytest
from onnx import helper

from onnxrt.optimizer.fuse_conv_input import fuse_conv_input_affine
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


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
                         fuse_conv_input_affine, rtol=1e-4, atol=1e-5)
        # the Div, the scale and the shift are in the Conv's weight and bias; the activation stays
        assert op_counts(out) == {"Add": 1, "Clip": 1, "Mul": 1, "Conv": 1}
        conv = next(n for n in out.graph.node if n.op_type == "Conv")
        assert len(conv.input) == 3 and conv.input[0] == "m"


def test_input_affine_shift_kept_before_a_padded_conv():
    # a padded border reads zero, not the shift: only the Div and the scale fold (also into depthwise)
    nodes, inits = _pp_ocr_tail()
    for w_shape, group in (((6, 4, 3, 3), 1), ((4, 1, 3, 3), 4)):
        model = _input_affine_model(nodes, inits, w_shape=w_shape, pads=(1, 1, 1, 1), group=group)
        out = check_pass(model, {"x": rand(1, 4, 6, 5) * 4}, fuse_conv_input_affine, rtol=1e-4, atol=1e-5)
        assert op_counts(out) == {"Add": 2, "Clip": 1, "Mul": 1, "Conv": 1}


def test_input_affine_per_channel_into_a_grouped_conv():
    # per input channel: a (C, 1, 1) scale and a (1, C, 1, 1) subtrahend, into a 2-group strided 3x3 conv
    nodes = [helper.make_node("Mul", ["x", "scale"], ["s"]), helper.make_node("Sub", ["s", "mean"], ["t"])]
    inits = [const("scale", rand(4, 1, 1, seed=13)), const("mean", rand(1, 4, 1, 1, seed=14))]
    model = _input_affine_model(nodes, inits, w_shape=(6, 2, 3, 3), group=2)
    out = check_pass(model, {"x": rand(1, 4, 6, 5)}, fuse_conv_input_affine, rtol=1e-4, atol=1e-5)
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
        out = check_pass(model, {"x": rand(1, 4, 6, 5)}, fuse_conv_input_affine, rtol=1e-4, atol=1e-5,
                         expect_rewrites=False)
        assert op_counts(out)["Conv"] == 1 and len(out.graph.node) == 2


def test_gelu_before_a_conv_keeps_its_half():
    # Whisper's stem: Conv -> x * (1 + erf(x / sqrt 2)) * 0.5 -> Conv. Run as the session does (all
    # levels), the GELU fusion takes the "* 0.5" before this pass could fold it into the second Conv.
    from onnxrt.optimizer import optimize
    from onnxrt.options import GraphOptimizationLevel

    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1]),
             helper.make_node("Div", ["c", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["c", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["g"]), helper.make_node("Conv", ["g", "w2"], ["y"], pads=[1, 1])]
    inits = [const("w1", rand(4, 3, 3, seed=1)), const("w2", rand(4, 4, 3, seed=2)),
             const("sqrt2", np.array(np.sqrt(2), np.float32)), const("one", np.array(1, np.float32)),
             const("half", np.array(0.5, np.float32))]
    model = make_model(nodes, [vinfo("x", [1, 3, 20])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(1, 3, 20)},
                     lambda m: sum(optimize(m, GraphOptimizationLevel.ORT_ENABLE_ALL).values()), rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"Conv": 2, "Gelu": 1}


def _conv_then_conv_model(between=(), between_inits=(), pads=(0, 0, 0, 0), second_k=1, bias_init=True):
    """x -> depthwise 3x3 Conv with bias ("d") -> [between, ending in "t"] -> grouped Conv -> y
    (ShuffleNet's depthwise conv before its grouped 1x1 conv)."""
    first_out = "t" if not between else "d"
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], [first_out], group=4, pads=[1, 1, 1, 1]),
             *between,
             helper.make_node("Conv", ["t", "w2", "b2"], ["y"], group=2, pads=list(pads))]
    inits = [const("w1", rand(4, 1, 3, 3, seed=21)), const("w2", rand(6, 2, second_k, second_k, seed=22)),
             const("b2", rand(6, seed=23)), *between_inits]
    inputs = [vinfo("x", [1, 4, 6, 5])]
    if bias_init:
        inits.append(const("b1", rand(4, seed=24) * 3))
    else:
        inputs.append(vinfo("b1", [4]))
    return make_model(nodes, inputs, [vinfo("y", None)], inits)


def test_producer_conv_bias_moves_into_an_unpadded_conv():
    for between, inits, k in (((), (), 1), ((), (), 3),
                              ([helper.make_node("Mul", ["d", "s"], ["t"])], [const("s", rand(1, 4, 1, 1, seed=25))], 1)):
        out = check_pass(_conv_then_conv_model(between, inits, second_k=k), {"x": rand(1, 4, 6, 5)},
                         fuse_conv_input_affine, rtol=1e-4, atol=1e-5)
        first, second = [n for n in out.graph.node if n.op_type == "Conv"]
        assert op_counts(out) == {"Conv": 2} and len(first.input) == 2 and second.input[0] == first.output[0]


def test_producer_conv_bias_stays():
    feeds = {"x": rand(1, 4, 6, 5)}
    # the second conv pads: its border must read zeros, not the bias
    model = _conv_then_conv_model(pads=(1, 1, 1, 1), second_k=3)
    # the biased value is also a graph output, or read by a second node
    shared = _conv_then_conv_model()
    shared.graph.output.append(vinfo("t", None))
    twice = _conv_then_conv_model()
    twice.graph.node.append(helper.make_node("Relu", ["t"], ["r"]))
    twice.graph.output.append(vinfo("r", None))
    for m in (model, shared, twice):
        out = check_pass(m, feeds, fuse_conv_input_affine, rtol=1e-4, atol=1e-5, expect_rewrites=False)
        assert all(len(n.input) == 3 for n in out.graph.node if n.op_type == "Conv")
    # a bias given at run time
    runtime_bias = _conv_then_conv_model(bias_init=False)
    check_pass(runtime_bias, {**feeds, "b1": rand(4)}, fuse_conv_input_affine, rtol=1e-4, atol=1e-5,
               expect_rewrites=False)
