"""com.microsoft fused ops: the in-place activation table against the ONNX ops' definitions, and
FusedConv with each activation against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxrt
from onnxrt.ops.contrib_fused import inplace_activation

_SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40], np.float32)


@pytest.mark.parametrize("alpha", [0.01, 0.2, 1.0, 0.0, 1.5, -0.3])
def test_leaky_relu_activation(alpha):
    x = np.concatenate([np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 5, _SPECIALS])
    with np.errstate(invalid="ignore"):
        want = np.where(x < 0, x * np.float32(alpha), x)  # the ONNX LeakyRelu definition
    got = inplace_activation("LeakyRelu", [alpha])(x.copy())
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[1]) == np.signbit(want[1])  # -0 stays -0


def test_hard_sigmoid_activation():
    x = np.concatenate([np.linspace(-8, 8, 1001, dtype=np.float32), _SPECIALS])
    want = np.clip(x * np.float32(0.2) + np.float32(0.5), 0, 1)
    np.testing.assert_array_equal(inplace_activation("HardSigmoid", [0.2, 0.5])(x.copy()), want)


@pytest.mark.parametrize("activation,params", [("Relu", []), ("LeakyRelu", [0.1]), ("LeakyRelu", [2.0]),
                                               ("Clip", [-1.0, 2.0]), ("HardSigmoid", [0.2, 0.5]),
                                               ("Sigmoid", []), ("Tanh", [])])
def test_fused_conv_matches_onnxruntime(activation, params):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 4, 3, 3), dtype=np.float32)
    b = rng.standard_normal(8, dtype=np.float32)
    attrs = {"activation": activation, "pads": [1, 1, 1, 1]}
    if params:
        attrs["activation_params"] = params
    node = helper.make_node("FusedConv", ["X", "W", "B"], ["Y"], domain="com.microsoft", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4, 20, 20])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    data = helper.make_model(graph, opset_imports=opsets, ir_version=9).SerializeToString()
    x = rng.standard_normal((1, 4, 20, 20), dtype=np.float32)
    want = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    got = onnxrt.InferenceSession(data).run(None, {"X": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.01, 0.0, 1.5, -0.3])
def test_leaky_relu_op_matches_its_definition(alpha):
    x = np.concatenate([np.random.default_rng(2).standard_normal(1000).astype(np.float32) * 5, _SPECIALS])
    node = helper.make_node("LeakyRelu", ["X"], ["Y"], alpha=alpha)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [x.size])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    with np.errstate(invalid="ignore"):
        want = np.where(x < 0, x * np.float32(alpha), x)
    np.testing.assert_array_equal(onnxrt.InferenceSession(data).run(None, {"X": x})[0], want)
