"""The float32 erf-Gelu (no erf call) against float64 truth and onnxruntime; blocked FastGelu."""

import math

import numpy as np
import onnxruntime
from onnx import TensorProto, helper

import onnxrt
from onnxrt.ops.activation import _gelu_erf_f32


def _truth(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64 * 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in x64.ravel()]).reshape(x.shape)


def test_gelu_f32_accuracy_and_specials():
    x = np.concatenate([np.linspace(-9, 9, 20001), [0.0, 1e-30, -1e-30, 30.0, -30.0]]).astype(np.float32)
    y = _gelu_erf_f32(x)
    ref = _truth(x)
    np.testing.assert_allclose(y, ref, rtol=3e-6, atol=3e-7)
    # no 1 - erf cancellation: the negative tail keeps its relative accuracy (the fit's 3.2e-6 plus
    # rounding; onnxruntime's own Gelu is 1.8e-5 off on [-3, 0) and 100% from x < -6, where it gives 0)
    tail = (x < -1e-3) & (x > -11)
    assert np.max(np.abs(y[tail] - ref[tail]) / np.abs(ref[tail])) < 1.2e-5
    assert np.max(np.abs(y[tail & (x > -3)] - ref[tail & (x > -3)]) / np.abs(ref[tail & (x > -3)])) < 4e-6
    special = _gelu_erf_f32(np.array([np.inf, -np.inf, np.nan, 1e30, -1e30], np.float32))
    # |x| is clamped at 12 to keep the tail out of subnormal numbers: -inf and -1e30 give
    # -12 * Phi(-12) = -2e-32 (true value -0; onnxruntime's erf reaches -1 and gives 0 from x < -6,
    # where the true value is -6e-9)
    assert special[0] == np.inf and np.isnan(special[2]) and special[3] == 1e30
    assert -1e-31 < special[1] <= 0 and -1e-31 < special[4] <= 0
    # the tail in the clamped range stays within float32 accuracy of the truth
    tail = np.array([-11.9, -12.0, -13.0, -40.0], np.float32)
    np.testing.assert_allclose(_gelu_erf_f32(tail), _truth(tail), rtol=0, atol=1e-30)


def _model(op: str, domain: str, n_in: int = 1) -> bytes:
    names = ["x", "b"][:n_in]
    node = helper.make_node(op, names, ["y"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=10).SerializeToString()


def test_gelu_ops_match_onnxruntime():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 70000)) * 3).astype(np.float32)  # several blocks and a short one
    b = rng.standard_normal(70000).astype(np.float32)
    for op, domain, feeds in [("Gelu", "", {"x": x}), ("Gelu", "com.microsoft", {"x": x}),
                              ("FastGelu", "com.microsoft", {"x": x}), ("FastGelu", "com.microsoft", {"x": x, "b": b}),
                              # rows longer than a block; blocks of whole rows and a short last one
                              ("BiasGelu", "com.microsoft", {"x": x, "b": b}),
                              ("BiasGelu", "com.microsoft", {"x": x.reshape(70, 3000), "b": b[:3000]})]:
        m = _model(op, domain, len(feeds))
        want = onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        got = onnxrt.InferenceSession(m).run(None, feeds)[0]
        assert got.dtype == np.float32 and got.shape == feeds["x"].shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{domain} {op}")
