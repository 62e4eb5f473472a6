from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxrt
from onnxrt.optimizer.merge_sibling_convs import merge_sibling_convs
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo

MS = {"com.microsoft": 1}


def _branches(x_shape, convs, opset=17):
    """x -> each conv (weight shape, bias?, attrs, op) -> Relu: the convs' outputs read downstream.
    The outputs' shapes are declared: shape inference knows no com.microsoft op, and the checker wants
    a graph output's shape."""
    nodes, inits, outputs = [], [], []
    for i, (w_shape, bias, attrs, op) in enumerate(convs):
        inputs = ["x", f"w{i}"] + ([f"b{i}"] if bias else [])
        inits.append(const(f"w{i}", rand(*w_shape, seed=i)))
        if bias:
            inits.append(const(f"b{i}", rand(w_shape[0], seed=10 + i)))
        domain = "com.microsoft" if op == "FusedConv" else ""
        nodes.append(helper.make_node(op, inputs, [f"c{i}"], domain=domain, **attrs))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"y{i}"]))
        outputs.append(vinfo(f"y{i}", _output_shape(x_shape, w_shape, attrs)))
    return make_model(nodes, [vinfo("x", list(x_shape))], outputs, inits, opset=opset, extra_opsets=MS)


def _output_shape(x_shape, w_shape, attrs):
    pads = attrs.get("pads", [0] * 4)
    strides = attrs.get("strides", [1, 1])
    spatial = [(x + pads[i] + pads[i + 2] - k) // s + 1
               for i, (x, k, s) in enumerate(zip(x_shape[2:], w_shape[2:], strides))]
    return [x_shape[0], w_shape[0]] + spatial


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("opset", [11, 17])
def test_sibling_pointwise_convs_become_one_conv_and_a_split(batch, opset):
    convs = [((8, 6, 1, 1), True, {}, "Conv"), ((5, 6, 1, 1), False, {}, "Conv"), ((3, 6, 1, 1), True, {}, "Conv"),
             ((4, 6, 3, 3), True, {"pads": [1, 1, 1, 1]}, "Conv"),  # a 3x3: not merged
             ((4, 6, 1, 1), True, {"strides": [2, 2]}, "Conv")]  # other attributes: not merged
    model = _branches((batch, 6, 7, 9), convs, opset)
    out = check_pass(model, {"x": rand(batch, 6, 7, 9, seed=99)}, merge_sibling_convs)
    assert op_counts(out) == {"Conv": 3, "Split": 1, "Relu": 5}
    split = next(n for n in out.graph.node if n.op_type == "Split")
    sizes = [a for a in split.attribute if a.name == "split"]
    assert (len(split.input) == 2) == (opset >= 13) and bool(sizes) == (opset < 13)


def test_fused_convs_merge_only_with_the_same_activation():
    relu = {"activation": "Relu"}
    clip = {"activation": "Clip", "activation_params": [0.0, 6.0]}
    convs = [((8, 6, 1, 1), True, relu, "FusedConv"), ((5, 6, 1, 1), True, relu, "FusedConv"),
             ((3, 6, 1, 1), True, clip, "FusedConv"), ((2, 6, 1, 1), True, clip, "FusedConv"),
             ((4, 6, 1, 1), True, {}, "Conv")]
    model = _branches((1, 6, 5, 5), convs)
    out = check_pass(model, {"x": rand(1, 6, 5, 5, seed=3)}, merge_sibling_convs)
    assert op_counts(out) == {"FusedConv": 2, "Conv": 1, "Split": 2, "Relu": 5}


def test_grouped_residual_and_output_convs_are_left_alone():
    nodes = [helper.make_node("Conv", ["x", "w0"], ["y0"], group=2),
             helper.make_node("Conv", ["x", "w1"], ["y1"], group=2),
             helper.make_node("FusedConv", ["x", "w2", "b2", "z"], ["y2"], domain="com.microsoft", activation="Relu"),
             helper.make_node("FusedConv", ["x", "w3", "b3", "z"], ["y3"], domain="com.microsoft", activation="Relu"),
             helper.make_node("Conv", ["x", "w4"], ["y4"]), helper.make_node("Conv", ["x", "w5"], ["y5"])]
    inits = [const("w0", rand(4, 3, 1, 1)), const("w1", rand(2, 3, 1, 1, seed=1)),
             const("w2", rand(3, 6, 1, 1, seed=2)), const("b2", rand(3)), const("w3", rand(3, 6, 1, 1, seed=3)),
             const("b3", rand(3, seed=4)), const("w4", rand(2, 6, 1, 1, seed=5)), const("w5", rand(2, 6, 1, 1, seed=6))]
    shapes = [[1, 4, 4, 4], [1, 2, 4, 4], [1, 3, 4, 4], [1, 3, 4, 4], [1, 2, 4, 4], [1, 2, 4, 4]]
    model = make_model(nodes, [vinfo("x", [1, 6, 4, 4]), vinfo("z", [1, 3, 4, 4])],
                       [vinfo(f"y{i}", shape) for i, shape in enumerate(shapes)], inits, extra_opsets=MS)
    check_pass(model, {"x": rand(1, 6, 4, 4, seed=7), "z": rand(1, 3, 4, 4, seed=8)}, merge_sibling_convs,
               expect_rewrites=False)


def test_session_at_every_level_and_its_saved_model_agree_with_onnxruntime(tmp_path):
    import onnxruntime

    convs = [((16, 8, 1, 1), True, {}, "Conv"), ((8, 8, 1, 1), True, {}, "Conv"), ((4, 8, 1, 1), True, {}, "Conv")]
    data = _branches((1, 8, 6, 6), convs).SerializeToString()
    x = {"x": rand(1, 8, 6, 6, seed=5)}
    want = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, x)
    for level in (onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL, onnxrt.GraphOptimizationLevel.ORT_ENABLE_ALL):
        so = onnxrt.SessionOptions()
        so.graph_optimization_level = level
        so.optimized_model_filepath = str(tmp_path / f"opt{int(level)}.onnx")
        got = onnxrt.InferenceSession(data, so).run(None, x)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        saved = onnxruntime.InferenceSession(so.optimized_model_filepath, providers=["CPUExecutionProvider"]).run(None, x)
        for s, w in zip(saved, want):
            np.testing.assert_allclose(s, w, rtol=1e-5, atol=1e-5)
