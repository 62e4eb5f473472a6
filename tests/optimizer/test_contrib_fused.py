"""The com.microsoft kernels the optimizer emits, against onnxruntime on random inputs."""

import numpy as np
import pytest
from onnx import helper

from tests.optimizer.helpers import make_model, rand, run_onnxrt, run_onnxruntime, vinfo

MS = {"com.microsoft": 1}


def _same(node, inputs: dict, n_out: int = 1, opset: int = 17, rtol=1e-5, atol=1e-6):
    elem = {k: helper.np_dtype_to_tensor_dtype(v.dtype) for k, v in inputs.items()}
    model = make_model([node], [vinfo(k, list(v.shape), elem[k]) for k, v in inputs.items()],
                       [vinfo(o, None, elem[node.input[0]]) for o in node.output[:n_out]], opset=opset, extra_opsets=MS)
    for a, b in zip(run_onnxrt(model, inputs), run_onnxruntime(model, inputs)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("op", ["Gelu", "FastGelu", "QuickGelu"])
def test_unary_gelus(op):
    _same(helper.make_node(op, ["x"], ["y"], domain="com.microsoft"), {"x": rand(3, 16) * 4})


def test_fast_gelu_and_bias_gelu_with_bias():
    feeds = {"x": rand(2, 3, 16), "b": rand(16, seed=1)}
    _same(helper.make_node("FastGelu", ["x", "b"], ["y"], domain="com.microsoft"), feeds)
    _same(helper.make_node("BiasGelu", ["x", "b"], ["y"], domain="com.microsoft"), feeds)


def test_fused_matmul_transposes_and_alpha():
    feeds = {"a": rand(2, 5, 4), "b": rand(2, 3, 5, seed=1)}
    _same(helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", transA=1, transB=1, alpha=0.5), feeds)


def test_fused_conv_with_residual():
    feeds = {"x": rand(1, 2, 5, 5), "w": rand(3, 2, 3, 3, seed=1), "b": rand(3, seed=2), "z": rand(1, 3, 5, 5, seed=3)}
    _same(helper.make_node("FusedConv", ["x", "w", "b", "z"], ["y"], domain="com.microsoft", pads=[1, 1, 1, 1],
                           activation="Relu"), feeds, rtol=1e-4, atol=1e-5)


def test_skip_layer_norms_all_outputs():
    feeds = {"x": rand(2, 3, 16), "s": rand(2, 3, 16, seed=1), "g": rand(16, seed=2), "b": rand(16, seed=3), "bias": rand(16, seed=4)}
    _same(helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b", "bias"], ["y", "m", "i", "sum"],
                           domain="com.microsoft", epsilon=1e-5), feeds, n_out=4, rtol=1e-4, atol=1e-5)
    _same(helper.make_node("SkipSimplifiedLayerNormalization", ["x", "s", "g", "bias"], ["y", "m", "i", "sum"],
                           domain="com.microsoft", epsilon=1e-5), feeds, n_out=1, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("x_shape, skip_shape, inputs", [
    ((1, 128, 96), (1, 128, 96), ["x", "s", "g", "b", "bias"]),
    ((2, 5, 24), (5, 24), ["x", "s", "g", "b"]),  # skip broadcast over the batch
    ((2, 5, 24), (1, 5, 24), ["x", "s", "g", "", "bias"]),  # no beta
    ((6, 40), (6, 40), ["x", "s", "g"]),
])
def test_skip_layer_norm_shapes_and_optional_inputs(x_shape, skip_shape, inputs):
    h = x_shape[-1]
    feeds = {"x": rand(*x_shape) * 3 + 1, "s": rand(*skip_shape, seed=1), "g": rand(h, seed=2), "b": rand(h, seed=3),
             "bias": rand(h, seed=4)}
    feeds = {k: v for k, v in feeds.items() if k in inputs}
    _same(helper.make_node("SkipLayerNormalization", inputs, ["y", "m", "i", "sum"], domain="com.microsoft",
                           epsilon=1e-5), feeds, n_out=4, rtol=1e-4, atol=1e-5)
    simplified_inputs = ["x", "s", "g"] + (["bias"] if "bias" in inputs else [])
    _same(helper.make_node("SkipSimplifiedLayerNormalization", simplified_inputs, ["y"], domain="com.microsoft",
                           epsilon=1e-5), {k: v for k, v in feeds.items() if k in simplified_inputs}, rtol=1e-4, atol=1e-5)


def test_skip_layer_norm_float16():
    feeds = {k: v.astype(np.float16) for k, v in
             {"x": rand(1, 7, 32), "s": rand(1, 7, 32, seed=1), "g": rand(32, seed=2), "b": rand(32, seed=3)}.items()}
    _same(helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b"], ["y", "", "", "sum"], domain="com.microsoft",
                           epsilon=1e-5), feeds, rtol=2e-3, atol=2e-3)


def test_simplified_layer_norm_in_onnx_domain():
    feeds = {"x": rand(2, 3, 16), "g": rand(16, seed=2)}
    model = make_model([helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], axis=-1, epsilon=1e-5)],
                       [vinfo("x", [2, 3, 16]), vinfo("g", [16])], [vinfo("y", None)])
    np.testing.assert_allclose(run_onnxrt(model, feeds)[0], run_onnxruntime(model, feeds)[0], rtol=1e-4, atol=1e-5)


def test_bad_input_is_named():
    model = make_model([helper.make_node("BiasGelu", ["x", "b"], ["y"], domain="com.microsoft")],
                       [vinfo("x", [2, 4]), vinfo("b", [3])], [vinfo("y", None)], extra_opsets=MS)
    with pytest.raises(Exception, match="bias"):
        run_onnxrt(model, {"x": rand(2, 4), "b": rand(3)})
