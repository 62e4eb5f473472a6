"""Attention, RotaryEmbedding, LinearAttention, FlexAttention: behaviour the node suite does not cover."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxrt

F = TensorProto.FLOAT


def _model(op, inputs, outputs, opset=24, domain="", **attrs):
    node = helper.make_node(op, [n for n, _ in inputs], outputs, domain=domain, **attrs)
    vis = []
    for n, v in inputs:
        if n:
            elem = {np.dtype(bool): TensorProto.BOOL, np.dtype(np.int64): TensorProto.INT64}.get(v.dtype, F)
            vis.append(helper.make_tensor_value_info(n, elem, None))
    graph = helper.make_graph([node], "g", vis, [helper.make_tensor_value_info(n, F, None) for n in outputs if n])
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _run(model, inputs):
    feeds = {n: v for n, v in inputs if n}
    return onnxrt.InferenceSession(model.SerializeToString()).run(None, feeds)


def _ort(model, inputs):
    feeds = {n: v for n, v in inputs if n}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# -- Attention against onnxruntime -------------------------------------------------------

ATTN_CASES = {
    "gqa_boolmask": dict(q=(2, 4, 3, 8), kv=(2, 2, 5, 8), mask=("bool", (3, 5)), attrs={}),
    "gqa_causal_square": dict(q=(2, 6, 5, 8), kv=(2, 3, 5, 8), attrs=dict(is_causal=1)),
    "float_mask4d_mode2": dict(q=(2, 2, 3, 4), kv=(2, 2, 6, 4), mask=("float", (2, 2, 3, 6)),
                               attrs=dict(qk_matmul_output_mode=2), qk=True),
    "mode3_scaled": dict(q=(1, 2, 4, 8), kv=(1, 2, 4, 8), mask=("float", (4, 4)),
                         attrs=dict(qk_matmul_output_mode=3, scale=0.3), qk=True),
    "softcap": dict(q=(1, 2, 4, 8), kv=(1, 2, 7, 8), attrs=dict(softcap=1.5)),
    "3d_past_gqa": dict(q=(2, 3, 4 * 8), kv=(2, 3, 2 * 8), past=(2, 2, 4, 8),
                        attrs=dict(q_num_heads=4, kv_num_heads=2)),
    "4d_diff_v_head": dict(q=(2, 2, 3, 8), kv=(2, 2, 5, 8), v_head=6, attrs=dict(qk_matmul_output_mode=0), qk=True),
}


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
def test_attention_matches_onnxruntime(name):
    c = ATTN_CASES[name]
    rng = np.random.default_rng(len(name))
    Q = _rand(rng, *c["q"])
    K = _rand(rng, *c["kv"])
    vshape = c["kv"] if "v_head" not in c else c["kv"][:-1] + (c["v_head"],)
    V = _rand(rng, *vshape)
    inputs = [("Q", Q), ("K", K), ("V", V)]
    if "mask" in c:
        kind, shape = c["mask"]
        m = rng.random(shape) > 0.3 if kind == "bool" else _rand(rng, *shape)
        inputs.append(("attn_mask", m))
    outputs = ["Y"]
    if "past" in c:
        while len(inputs) < 4:
            inputs.append(("", None))
        inputs += [("past_key", _rand(rng, *c["past"])), ("past_value", _rand(rng, *c["past"]))]
        outputs += ["present_key", "present_value"]
    if c.get("qk"):
        outputs += [""] * (3 - len(outputs)) + ["qk"]
    model = _model("Attention", inputs, outputs, opset=24, **c["attrs"])
    expected = _ort(model, inputs)
    actual = _run(model, inputs)
    assert len(actual) == len(expected)
    for e, a in zip(expected, actual):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


def test_attention_fully_masked_row_is_zero_not_nan():
    rng = np.random.default_rng(0)
    Q, K, V = _rand(rng, 1, 1, 3, 4), _rand(rng, 1, 1, 3, 4), _rand(rng, 1, 1, 3, 4)
    mask = np.ones((3, 3), dtype=bool)
    mask[1] = False
    inputs = [("Q", Q), ("K", K), ("V", V), ("attn_mask", mask)]
    y, qk = _run(_model("Attention", inputs, ["Y", "", "", "qk"], qk_matmul_output_mode=3), inputs)
    assert np.all(y[0, 0, 1] == 0) and np.all(qk[0, 0, 1] == 0)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(qk[0, 0, [0, 2]].sum(-1), 1, rtol=1e-6)


def test_attention_nonpad_causal_offset():
    """External cache: query i of batch b sees keys j <= i + nonpad[b] - q_len, and none past nonpad[b]."""
    rng = np.random.default_rng(1)
    Q, K, V = _rand(rng, 2, 1, 2, 4), _rand(rng, 2, 1, 6, 4), _rand(rng, 2, 1, 6, 4)
    nonpad = np.array([6, 3], dtype=np.int64)
    inputs = [("Q", Q), ("K", K), ("V", V), ("", None), ("", None), ("", None), ("nonpad_kv_seqlen", nonpad)]
    (y,) = _run(_model("Attention", inputs, ["Y"], is_causal=1), inputs)
    for b in range(2):
        for i in range(2):
            n = nonpad[b] - 2 + i + 1
            s = (Q[b, 0, i] @ K[b, 0, :n].T) / 2.0
            p = np.exp(s - s.max())
            p /= p.sum()
            np.testing.assert_allclose(y[b, 0, i], p @ V[b, 0, :n], rtol=1e-5, atol=1e-6)


def test_attention_rejects_mismatched_heads():
    rng = np.random.default_rng(2)
    inputs = [("Q", _rand(rng, 1, 3, 2, 4)), ("K", _rand(rng, 1, 2, 2, 4)), ("V", _rand(rng, 1, 2, 2, 4))]
    with pytest.raises(Exception, match="multiple of kv heads"):
        _run(_model("Attention", inputs, ["Y"]), inputs)


def test_attention_rejects_bad_mask_shape():
    rng = np.random.default_rng(3)
    inputs = [("Q", _rand(rng, 1, 2, 3, 4)), ("K", _rand(rng, 1, 2, 5, 4)), ("V", _rand(rng, 1, 2, 5, 4)),
              ("attn_mask", _rand(rng, 4, 5))]
    with pytest.raises(Exception, match="attn_mask"):
        _run(_model("Attention", inputs, ["Y"]), inputs)


def test_attention_3d_requires_num_heads():
    rng = np.random.default_rng(4)
    inputs = [("Q", _rand(rng, 1, 2, 8)), ("K", _rand(rng, 1, 2, 8)), ("V", _rand(rng, 1, 2, 8))]
    with pytest.raises(Exception, match="q_num_heads and kv_num_heads"):
        _run(_model("Attention", inputs, ["Y"]), inputs)


# -- RotaryEmbedding ---------------------------------------------------------------------


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rot_dim", [0, 4])
def test_rotary_matches_onnxruntime(interleaved, rot_dim):
    rng = np.random.default_rng(5 + interleaved + rot_dim)
    X = _rand(rng, 2, 3, 5, 8)  # (batch, heads, seq, head)
    half = (rot_dim or 8) // 2
    cos, sin = _rand(rng, 20, half), _rand(rng, 20, half)
    pos = rng.integers(0, 20, (2, 5)).astype(np.int64)
    inputs = [("X", X), ("cos_cache", cos), ("sin_cache", sin), ("position_ids", pos)]
    model = _model("RotaryEmbedding", inputs, ["Y"], opset=23, interleaved=interleaved, rotary_embedding_dim=rot_dim)
    np.testing.assert_allclose(_run(model, inputs)[0], _ort(model, inputs)[0], rtol=1e-5, atol=1e-6)


def test_rotary_position_out_of_range():
    rng = np.random.default_rng(6)
    inputs = [("X", _rand(rng, 1, 2, 8)), ("cos_cache", _rand(rng, 4, 2)), ("sin_cache", _rand(rng, 4, 2)),
              ("position_ids", np.array([[0, 4]], dtype=np.int64))]
    with pytest.raises(Exception, match="position_ids must lie in"):
        _run(_model("RotaryEmbedding", inputs, ["Y"], opset=23, num_heads=2), inputs)


# -- LinearAttention ---------------------------------------------------------------------


def test_linear_attention_linear_rule_is_causal_linear_attention():
    """update_rule='linear' without past: o_t = scale * sum_{s<=t} (q_t . k_s) v_s, per head (with GQA)."""
    rng = np.random.default_rng(7)
    b, t, hq, hkv, dk, dv = 2, 5, 4, 2, 3, 2
    q, k, v = _rand(rng, b, t, hq * dk), _rand(rng, b, t, hkv * dk), _rand(rng, b, t, hkv * dv)
    inputs = [("query", q), ("key", k), ("value", v)]
    model = _model("LinearAttention", inputs, ["out", "state"], opset=27, update_rule="linear", q_num_heads=hq,
                   kv_num_heads=hkv)
    out, state = _run(model, inputs)
    q4 = q.reshape(b, t, hq, dk).transpose(0, 2, 1, 3)
    k4 = np.repeat(k.reshape(b, t, hkv, dk).transpose(0, 2, 1, 3), 2, axis=1)
    v4 = np.repeat(v.reshape(b, t, hkv, dv).transpose(0, 2, 1, 3), 2, axis=1)
    scores = np.tril(q4 @ k4.transpose(0, 1, 3, 2))
    want = (scores @ v4 / np.sqrt(dk)).transpose(0, 2, 1, 3).reshape(b, t, hq * dv)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    k_kv = k.reshape(b, t, hkv, dk).transpose(0, 2, 1, 3)
    v_kv = v.reshape(b, t, hkv, dv).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(state, k_kv.transpose(0, 1, 3, 2) @ v_kv, rtol=1e-5, atol=1e-5)


def test_linear_attention_missing_decay():
    rng = np.random.default_rng(8)
    inputs = [("query", _rand(rng, 1, 2, 4)), ("key", _rand(rng, 1, 2, 4)), ("value", _rand(rng, 1, 2, 4))]
    model = _model("LinearAttention", inputs, ["out", "state"], opset=27, update_rule="gated", q_num_heads=1,
                   kv_num_heads=1)
    with pytest.raises(Exception, match="requires the decay"):
        _run(model, inputs)


# -- FlexAttention -----------------------------------------------------------------------


def test_flex_attention_equals_plain_attention_with_gqa():
    rng = np.random.default_rng(9)
    Q, K, V = _rand(rng, 2, 4, 3, 8), _rand(rng, 2, 2, 5, 8), _rand(rng, 2, 2, 5, 6)
    inputs = [("Q", Q), ("K", K), ("V", V)]
    (flex,) = _run(_model("FlexAttention", inputs, ["Y"], domain="ai.onnx.preview", scale=0.25), inputs)
    (plain,) = _run(_model("Attention", inputs, ["Y"], scale=0.25), inputs)
    np.testing.assert_allclose(flex, plain, rtol=1e-5, atol=1e-6)
