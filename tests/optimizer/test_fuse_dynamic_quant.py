"""fuse_dynamic_quant: quantize_dynamic's MatMulInteger chains into MatMulIntegerToFloat / DynamicQuantizeMatMul."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper

import onnxrt
from onnxrt.optimizer.fuse_dynamic_quant import fuse_dynamic_quant
from tests.optimizer.helpers import apply, check_pass, const, make_model, op_counts, rand, vinfo

K, N = 16, 8


def _weights(per_channel: bool, signed: bool = True, seed: int = 1):
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    lo, hi = (-128, 127) if signed else (0, 255)
    w = rng.integers(lo, hi + 1, (K, N)).astype(dt)
    if per_channel:
        scale = (rng.random(N).astype(np.float32) * 0.01 + 0.001)
        zp = rng.integers(-3, 4, N).astype(dt) if signed else rng.integers(120, 136, N).astype(dt)
    else:
        scale = np.array(0.004, np.float32)
        zp = np.array(0 if signed else 128, dt)
    return w, scale, zp


def _chain(tag: str, x_q: str, x_scale: str, x_zp: str, out: str, bias: bool, swap_mul: bool = False,
           bias_first: bool = True):
    """MatMulInteger -> Cast -> Mul(x_scale * w_scale) [-> Add(bias)], written the way quantize_dynamic does."""
    mul_out = f"{tag}_mul" if bias else out
    nodes = [
        helper.make_node("MatMulInteger", [x_q, f"{tag}_w", x_zp, f"{tag}_wzp"], [f"{tag}_acc"]),
        helper.make_node("Cast", [f"{tag}_acc"], [f"{tag}_cast"], to=T.FLOAT),
        helper.make_node("Mul", [x_scale, f"{tag}_ws"], [f"{tag}_scales"]),
        helper.make_node("Mul", [f"{tag}_scales", f"{tag}_cast"] if swap_mul else [f"{tag}_cast", f"{tag}_scales"],
                         [mul_out]),
    ]
    if bias:
        nodes.append(helper.make_node("Add", [f"{tag}_b", mul_out] if bias_first else [mul_out, f"{tag}_b"], [out]))
    return nodes


def _inits(tag: str, per_channel: bool, bias: bool, signed: bool = True, seed: int = 1):
    w, s, z = _weights(per_channel, signed, seed)
    out = [const(f"{tag}_w", w), const(f"{tag}_ws", s), const(f"{tag}_wzp", z)]
    if bias:
        out.append(const(f"{tag}_b", rand(N, seed=seed + 10)))
    return out


def _dql(x: str = "x"):
    return helper.make_node("DynamicQuantizeLinear", [x], [f"{x}_q", f"{x}_s", f"{x}_z"])


def _model(nodes, inits, outputs=("y",)):
    return make_model(nodes, [vinfo("x", [2, 5, K])], [vinfo(o, [2, 5, N]) for o in outputs], inits)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("signed", [True, False])
def test_single_consumer_becomes_dynamic_quantize_matmul(per_channel, bias, signed):
    nodes = [_dql()] + _chain("a", "x_q", "x_s", "x_z", "y", bias)
    model = _model(nodes, _inits("a", per_channel, bias, signed))
    out = check_pass(model, {"x": rand(2, 5, K)}, fuse_dynamic_quant)
    assert op_counts(out) == {"DynamicQuantizeMatMul": 1}
    node = out.graph.node[0]
    assert len(node.input) == (5 if bias else 4)


def test_shared_activation_becomes_matmul_integer_to_float():
    """One DynamicQuantizeLinear read by three matmuls (BERT's Q, K, V): it stays, each chain fuses."""
    nodes = [_dql()]
    inits = []
    for i, tag in enumerate("qkv"):
        nodes += _chain(tag, "x_q", "x_s", "x_z", f"y_{tag}", bias=True, swap_mul=i == 1, bias_first=i != 2)
        inits += _inits(tag, per_channel=i == 0, bias=True, seed=i)
    model = _model(nodes, inits, outputs=("y_q", "y_k", "y_v"))
    out = check_pass(model, {"x": rand(2, 5, K)}, fuse_dynamic_quant)
    assert op_counts(out) == {"DynamicQuantizeLinear": 1, "MatMulIntegerToFloat": 3}


def test_intermediate_with_another_reader_is_left_alone():
    nodes = [_dql()] + _chain("a", "x_q", "x_s", "x_z", "y", bias=False)
    model = _model(nodes, _inits("a", False, False), outputs=("y", "a_cast"))
    check_pass(model, {"x": rand(2, 5, K)}, fuse_dynamic_quant, expect_rewrites=False)


def test_non_constant_weight_is_left_alone():
    nodes = [_dql()] + _chain("a", "x_q", "x_s", "x_z", "y", bias=False)
    inits = _inits("a", False, False)[1:]
    model = make_model(nodes, [vinfo("x", [2, 5, K]), vinfo("a_w", [K, N], T.INT8)], [vinfo("y", [2, 5, N])], inits)
    w, _, _ = _weights(False)
    check_pass(model, {"x": rand(2, 5, K), "a_w": w}, fuse_dynamic_quant, expect_rewrites=False)


def test_bias_of_other_shape_stays_an_add():
    nodes = [_dql()] + _chain("a", "x_q", "x_s", "x_z", "y", bias=True)
    inits = _inits("a", False, False) + [const("a_b", rand(5, N))]
    out = check_pass(_model(nodes, inits), {"x": rand(2, 5, K)}, fuse_dynamic_quant)
    assert op_counts(out) == {"DynamicQuantizeMatMul": 1, "Add": 1}


def test_session_saves_a_model_onnxruntime_runs_alike(tmp_path):
    """At the default level a session fuses; the saved optimized model gives onnxruntime's results."""
    nodes = [_dql()]
    inits = []
    for i, tag in enumerate("qk"):
        nodes += _chain(tag, "x_q", "x_s", "x_z", f"h_{tag}", bias=True)
        inits += _inits(tag, per_channel=bool(i), bias=True, seed=i)
    nodes.append(helper.make_node("Concat", ["h_q", "h_k"], ["h"], axis=-1))  # width 2 * N == K
    nodes.append(helper.make_node("DynamicQuantizeLinear", ["h"], ["hq", "hs", "hz"]))
    nodes += _chain("o", "hq", "hs", "hz", "y", bias=True)
    inits += _inits("o", per_channel=True, bias=True, seed=7)
    model = _model(nodes, inits)
    onnx.checker.check_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    so = onnxrt.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    feed = {"x": rand(2, 5, K, seed=3)}
    got = onnxrt.InferenceSession(str(path), so).run(None, feed)[0]
    opt = onnx.load(so.optimized_model_filepath)
    assert op_counts(opt)["MatMulIntegerToFloat"] == 2 and op_counts(opt)["DynamicQuantizeMatMul"] == 1
    ort_so = onnxruntime.SessionOptions()
    ort_so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    theirs = onnxruntime.InferenceSession(so.optimized_model_filepath, ort_so, providers=["CPUExecutionProvider"])
    original = onnxruntime.InferenceSession(str(path), ort_so, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(theirs.run(None, feed)[0], got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(original.run(None, feed)[0], got, rtol=1e-5, atol=1e-5)


def test_pass_count_reported():
    nodes = [_dql()] + _chain("a", "x_q", "x_s", "x_z", "y", bias=True)
    _, n = apply(_model(nodes, _inits("a", True, True)), fuse_dynamic_quant)
    assert n == 2  # MatMulIntegerToFloat, then DynamicQuantizeMatMul
