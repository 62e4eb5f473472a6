"""Quantization kernels against onnxruntime on random inputs, plus edge cases and errors."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import onnxrt
from onnxrt.types import onnx_elem_type


def _model(op, inputs, outputs, opset=21, initializers=(), **attrs):
    """inputs: (name, array) pairs, fed at run time unless listed in ``initializers``."""
    node = helper.make_node(op, [n for n, _ in inputs], [n for n, _ in outputs], **attrs)
    vis = [helper.make_tensor_value_info(n, onnx_elem_type(v.dtype), None) for n, v in inputs
           if n and n not in initializers]
    inits = [numpy_helper.from_array(v, n) for n, v in inputs if n in initializers]
    outs = [helper.make_tensor_value_info(n, e, None) for n, e in outputs]
    graph = helper.make_graph([node], "g", vis, outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _feeds(inputs, initializers=()):
    return {n: v for n, v in inputs if n and n not in initializers}


def _both(op, inputs, outputs, opset=21, initializers=(), **attrs):
    m = _model(op, inputs, outputs, opset, initializers, **attrs).SerializeToString()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    exp = ort.InferenceSession(m, so, providers=["CPUExecutionProvider"]).run(None, _feeds(inputs, initializers))
    act = onnxrt.InferenceSession(m).run(None, _feeds(inputs, initializers))
    for e, a in zip(exp, act):
        assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
        np.testing.assert_array_equal(a, e)
    return act


def _onnxrt(op, inputs, outputs, opset=21, **attrs):
    m = _model(op, inputs, outputs, opset, **attrs).SerializeToString()
    return onnxrt.InferenceSession(m).run(None, _feeds(inputs))


RNG = np.random.default_rng(1234)


@pytest.mark.parametrize("zp_type", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("layout", ["tensor", "axis", "blocked"])
def test_quantize_linear_matches_ort(zp_type, layout):
    x = (RNG.standard_normal((3, 8, 5)) * 200).astype(np.float32)
    # ties to even, and saturation; 1e9 / scale stays below 2**31: onnxruntime's blocked path converts
    # through int32 and wraps beyond it (test_quantize_linear_saturates_huge_values covers onnxrt there)
    x.reshape(-1)[:6] = [0.5, 1.5, 2.5, -0.5, -1.5, np.float32(1e9)]
    attrs = {}
    if layout == "tensor":
        s = np.array(0.75, np.float32)
    elif layout == "axis":
        s = RNG.uniform(0.5, 3, 8).astype(np.float32)
        attrs["axis"] = 1
    else:
        s = RNG.uniform(0.5, 3, (3, 3, 5)).astype(np.float32)
        attrs.update(axis=1, block_size=3)
    info = np.iinfo(zp_type)
    zp = RNG.integers(max(info.min, -100), min(info.max, 100), s.shape).astype(zp_type)
    _both("QuantizeLinear", [("x", x), ("s", s), ("zp", zp)], [("y", onnx_elem_type(zp.dtype))], **attrs)


@pytest.mark.parametrize("zp_type", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("layout", ["tensor", "axis", "blocked"])
def test_dequantize_linear_matches_ort(zp_type, layout):
    info = np.iinfo(zp_type)
    x = RNG.integers(info.min, info.max, (2, 6, 4), endpoint=True).astype(zp_type)
    attrs = {}
    if layout == "tensor":
        s = np.array(0.37, np.float32)
    elif layout == "axis":
        s = RNG.uniform(0.01, 3, 4).astype(np.float32)
        attrs["axis"] = -1
    else:
        s = RNG.uniform(0.01, 3, (2, 2, 4)).astype(np.float32)
        attrs.update(axis=1, block_size=4)  # 6 rows in blocks of 4: the last block is partial
    zp = RNG.integers(max(info.min, -100), min(info.max, 100), s.shape).astype(zp_type)
    _both("DequantizeLinear", [("x", x), ("s", s), ("zp", zp)], [("y", T.FLOAT)], **attrs)


def test_quantize_float16_divides_in_float32_like_ort():
    x = (RNG.standard_normal(3000) * 100).astype(np.float16)
    for opset in (21, 25):
        _both("QuantizeLinear", [("x", x), ("s", np.array(0.37, np.float16)), ("zp", np.array(3, np.int8))],
              [("y", T.INT8)], opset=opset)


def test_dequantize_float16_scale_and_int32_input():
    x = np.array([-7, 0, 9, 127, -128], np.int8)
    _both("DequantizeLinear", [("x", x), ("s", np.array(0.1, np.float16))], [("y", T.FLOAT16)])
    xi = np.array([2**30, -(2**30) + 7, 5], np.int32)
    _both("DequantizeLinear", [("x", xi), ("s", np.array(0.3, np.float32))], [("y", T.FLOAT)])


@pytest.mark.parametrize("to", [T.FLOAT8E4M3FN, T.FLOAT8E5M2])
def test_quantize_float8_saturation(to):
    x = np.array([0, 1, 600, -1e9, np.inf], np.float32)
    zp = np.zeros((), ml_dtypes.float8_e4m3fn if to == T.FLOAT8E4M3FN else ml_dtypes.float8_e5m2)
    (y,) = _onnxrt("QuantizeLinear", [("x", x), ("s", np.array(1.0, np.float32)), ("zp", zp)], [("y", to)])
    m = float(ml_dtypes.finfo(zp.dtype).max)
    assert y.dtype == zp.dtype and y.astype(np.float32).tolist() == [0, 1, 448 if m < 1e4 else 640, -m, m]
    (y,) = _onnxrt("QuantizeLinear", [("x", x), ("s", np.array(1.0, np.float32)), ("zp", zp)], [("y", to)], saturate=0)
    assert not np.isfinite(y.astype(np.float32)[3:]).any()


def test_quantize_int4_blocked_and_output_dtype():
    x = np.arange(-12, 12, dtype=np.float32).reshape(2, 12)
    s = np.array([[1.0, 2.0, 4.0], [0.5, 1.0, 2.0]], np.float32)
    (y,) = _onnxrt("QuantizeLinear", [("x", x), ("s", s)], [("y", T.INT4)], axis=1, block_size=4, output_dtype=T.INT4)
    assert y.dtype == np.dtype(ml_dtypes.int4)
    ref = np.clip(np.rint(x / np.repeat(s, 4, axis=1)), -8, 7)
    np.testing.assert_array_equal(y.astype(np.float32), ref)


def test_quantize_errors():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(Exception, match=r"QuantizeLinear.*per-axis 'y_scale' has 3 elements, expected 4"):
        _onnxrt("QuantizeLinear", [("x", x), ("s", np.ones(3, np.float32)), ("zp", np.zeros(3, np.uint8))],
                [("y", T.UINT8)], axis=1)
    with pytest.raises(Exception, match=r"QuantizeLinear.*output_dtype"):
        _onnxrt("QuantizeLinear", [("x", x), ("s", np.ones((), np.float32)), ("zp", np.zeros((), np.uint8))],
                [("y", T.UINT8)], output_dtype=T.INT8)
    with pytest.raises(Exception, match=r"DequantizeLinear.*x_zero_point.*int8"):
        _onnxrt("DequantizeLinear", [("x", np.ones(3, np.int8)), ("s", np.ones((), np.float32)),
                                     ("zp", np.zeros((), np.uint8))], [("y", T.FLOAT)])
    with pytest.raises(Exception, match=r"block"):
        _onnxrt("DequantizeLinear", [("x", np.ones((2, 6), np.int8)), ("s", np.ones((2, 4), np.float32))],
                [("y", T.FLOAT)], axis=1, block_size=2)


def test_dynamic_quantize_linear_matches_ort():
    for x in [(RNG.standard_normal(1000) * 3).astype(np.float32), np.zeros(5, np.float32),
              np.array([0.5, 1.0, 1.5, 2.5, -0.5], np.float32), np.zeros(0, np.float32),
              np.array([1, np.nan, 2], np.float32)]:
        _both("DynamicQuantizeLinear", [("x", x)], [("y", T.UINT8), ("s", T.FLOAT), ("z", T.UINT8)], opset=11)


@pytest.mark.parametrize("k", [7, 300])  # float32 path and float64 path
@pytest.mark.parametrize("types", [(np.uint8, np.uint8), (np.int8, np.uint8), (np.uint8, np.int8)])
def test_matmul_integer_matches_ort(k, types):
    ta, tb = types
    a = RNG.integers(np.iinfo(ta).min, np.iinfo(ta).max, (2, 3, k), endpoint=True).astype(ta)
    b = RNG.integers(np.iinfo(tb).min, np.iinfo(tb).max, (k, 5), endpoint=True).astype(tb)
    azp = np.array(np.iinfo(ta).max // 3, ta)
    bzp = RNG.integers(0, 50, 5).astype(tb)  # per column
    inputs = [("A", a), ("B", b), ("azp", azp), ("bzp", bzp)]
    _both("MatMulInteger", inputs, [("Y", T.INT32)], opset=10)
    # constant B and zero point: the factory caches B - zp; run twice to hit the cache
    m = _model("MatMulInteger", inputs, [("Y", T.INT32)], 10, initializers=("B", "bzp")).SerializeToString()
    sess = onnxrt.InferenceSession(m)
    r1 = sess.run(None, {"A": a, "azp": azp})[0]
    r2 = sess.run(None, {"A": a, "azp": azp})[0]
    ref = (a.astype(np.int64) - int(azp)) @ (b.astype(np.int64) - bzp.astype(np.int64))
    np.testing.assert_array_equal(r1, ref.astype(np.int32))
    np.testing.assert_array_equal(r2, r1)


def test_matmul_integer_shape_error():
    with pytest.raises(Exception, match=r"MatMulInteger.*inner dimensions"):
        _onnxrt("MatMulInteger", [("A", np.ones((2, 3), np.uint8)), ("B", np.ones((4, 2), np.uint8))],
                [("Y", T.INT32)], opset=10)


CONV_CASES = {
    "2d_pads_strides": dict(x=(2, 4, 9, 8), w=(6, 4, 3, 3), attrs=dict(pads=[1, 0, 2, 1], strides=[2, 1])),
    "2d_group_dil": dict(x=(1, 6, 10, 10), w=(4, 3, 3, 2), attrs=dict(group=2, dilations=[2, 3])),
    "2d_same_upper": dict(x=(1, 3, 7, 6), w=(2, 3, 4, 3), attrs=dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "2d_same_lower": dict(x=(1, 3, 7, 6), w=(2, 3, 4, 3), attrs=dict(auto_pad="SAME_LOWER")),
    "1d": dict(x=(2, 3, 11), w=(5, 3, 4), attrs=dict(strides=[3], pads=[2, 1])),
    "3d_bigk": dict(x=(1, 8, 5, 6, 5), w=(3, 8, 3, 3, 3), attrs=dict(pads=[1, 1, 1, 1, 1, 1])),  # CK > 258: float64
}


@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv_integer_matches_ort(name):
    c = CONV_CASES[name]
    x = RNG.integers(0, 255, c["x"], endpoint=True).astype(np.uint8)
    w = RNG.integers(0, 255, c["w"], endpoint=True).astype(np.uint8)
    inputs = [("x", x), ("w", w), ("xzp", np.array(131, np.uint8)), ("wzp", np.array(7, np.uint8))]
    _both("ConvInteger", inputs, [("y", T.INT32)], opset=10, **c["attrs"])
    _both("ConvInteger", inputs, [("y", T.INT32)], opset=10, initializers=("w", "wzp"), **c["attrs"])


@pytest.mark.parametrize("name", ["2d_pads_strides", "2d_group_dil", "1d", "3d_bigk"])
@pytest.mark.parametrize("xt", [np.uint8, np.int8])
def test_qlinear_conv_matches_ort(name, xt):
    c = CONV_CASES[name]
    info = np.iinfo(xt)
    x = RNG.integers(info.min, info.max, c["x"], endpoint=True).astype(xt)
    w = RNG.integers(-127, 127, c["w"], endpoint=True).astype(np.int8)
    m = c["w"][0]
    inputs = [
        ("x", x), ("xs", np.array(0.02, np.float32)), ("xzp", np.array(info.min + 120, xt)),
        ("w", w), ("ws", RNG.uniform(0.001, 0.01, m).astype(np.float32)), ("wzp", np.zeros(m, np.int8)),
        ("ys", np.array(0.3, np.float32)), ("yzp", np.array(info.min + 100, xt)),
        ("B", RNG.integers(-5000, 5000, m).astype(np.int32)),
    ]
    _both("QLinearConv", inputs, [("y", onnx_elem_type(xt))], opset=10, **c["attrs"])


@pytest.mark.parametrize("xt", [np.uint8, np.int8])
def test_qlinear_matmul_matches_ort(xt):
    info = np.iinfo(xt)
    a = RNG.integers(info.min, info.max, (3, 4, 40), endpoint=True).astype(xt)
    b = RNG.integers(info.min, info.max, (40, 6), endpoint=True).astype(xt)
    inputs = [
        ("a", a), ("as", np.array(0.05, np.float32)), ("azp", np.array(info.min + 110, xt)),
        ("b", b), ("bs", np.array(0.02, np.float32)), ("bzp", np.array(info.min + 140, xt)),
        ("ys", np.array(1.7, np.float32)), ("yzp", np.array(info.min + 128, xt)),
    ]
    _both("QLinearMatMul", inputs, [("y", onnx_elem_type(xt))], opset=10)


def test_qlinear_conv_error_names_op():
    x = np.ones((1, 3, 5, 5), np.uint8)
    w = np.ones((2, 4, 3, 3), np.uint8)
    inputs = [("x", x), ("xs", np.array(1, np.float32)), ("xzp", np.array(0, np.uint8)),
              ("w", w), ("ws", np.array(1, np.float32)), ("wzp", np.array(0, np.uint8)),
              ("ys", np.array(1, np.float32)), ("yzp", np.array(0, np.uint8))]
    with pytest.raises(Exception, match=r"QLinearConv: channels mismatch"):
        _onnxrt("QLinearConv", inputs, [("y", T.UINT8)], opset=10)


@pytest.mark.parametrize("layout", ["tensor", "blocked"])
def test_quantize_linear_saturates_huge_values(layout):
    """x / scale far beyond int32 saturates, as the spec says (onnxruntime's blocked path wraps instead)."""
    x = np.array([[3e9, -3e9, 5e10, -5e10]], np.float32).reshape(1, 4)
    if layout == "tensor":
        s, attrs = np.array(0.5, np.float32), {}
    else:
        s, attrs = np.full((1, 2), 0.5, np.float32), {"axis": 1, "block_size": 2}
    zp = np.zeros(s.shape, np.int8)
    (y,) = _onnxrt("QuantizeLinear", [("x", x), ("s", s), ("zp", zp)], [("y", onnx_elem_type(np.int8))], **attrs)
    np.testing.assert_array_equal(y, [[127, -128, 127, -128]])
