"""com.microsoft transformer contrib ops and com.microsoft.nchwc layout ops, against onnxruntime.

Unit tests build one-node models and compare onnxrt with onnxruntime's CPU kernels on random
inputs (ops onnxruntime has no CPU kernel for are checked against a numpy composition). Model
tests export tiny BERT / GPT-2 / CNN models with torch, let onnxruntime rewrite them (its
transformers optimizer, and its level-ALL optimizer saved through optimized_model_filepath), and
run what onnxruntime wrote on both runtimes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxrt

ort = pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _transformer_models as tm  # noqa: E402

_TP = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
       np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64,
       np.dtype(np.int8): TensorProto.INT8}


def _model(op_type: str, inputs: dict, n_out: int, attrs: dict | None, domain: str) -> bytes:
    names = [k if v is not None else "" for k, v in inputs.items()]
    while names and names[-1] == "":
        names.pop()
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(k, _TP[v.dtype], None) for k, v in inputs.items() if v is not None],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    model.ir_version = 9
    return model.SerializeToString()


def _ort_session(model: bytes | str):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run_both(op_type: str, inputs: dict, n_out: int = 1, attrs: dict | None = None, domain: str = "com.microsoft"):
    model = _model(op_type, inputs, n_out, attrs, domain)
    feeds = {k: v for k, v in inputs.items() if v is not None}
    return _ort_session(model).run(None, feeds), onnxrt.InferenceSession(model).run(None, feeds)


def _run_onnxrt(op_type: str, inputs: dict, n_out: int = 1, attrs: dict | None = None):
    model = _model(op_type, inputs, n_out, attrs, "com.microsoft")
    return onnxrt.InferenceSession(model).run(None, {k: v for k, v in inputs.items() if v is not None})


def _assert_close(expected, actual, rtol=1e-4, atol=1e-5, valid_cache_len=None):
    assert len(actual) >= len(expected)
    for i, (e, a) in enumerate(zip(expected, actual)):
        assert a.shape == e.shape and a.dtype == e.dtype, (i, a.shape, e.shape, a.dtype, e.dtype)
        if valid_cache_len is not None and i in (1, 2):  # KV caches: only rows each entry wrote
            for b, n in enumerate(valid_cache_len):
                np.testing.assert_allclose(a[b, :, :n], e[b, :, :n], rtol=rtol, atol=atol)
            continue
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"output {i}")


RNG = np.random.default_rng(1234)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _i32(*values):
    return np.array(values, dtype=np.int32)


# -- Attention --------------------------------------------------------------------------------

B, S, HIDDEN, HEADS = 2, 5, 16, 4


def _attention_inputs(**extra):
    inputs = dict(input=_r(B, S, HIDDEN), weights=_r(HIDDEN, 3 * HIDDEN) * 0.3, bias=_r(3 * HIDDEN))
    inputs.update(extra)
    return inputs


@pytest.mark.parametrize("mask, attrs", [
    (None, {}),
    (None, {"unidirectional": 1}),
    (_i32(3, 5), {}),                                            # right padding: lengths
    (_i32(5, 4, 1, 2), {}),                                      # left padding: ends then starts
    ((RNG.random((B, S)) > 0.3).astype(np.int32), {"unidirectional": 1}),  # raw 2-D mask
    ((RNG.random((B, S, S)) > 0.3).astype(np.int32), {"scale": 0.25}),      # raw 3-D mask
])
def test_attention_masks(mask, attrs):
    inputs = _attention_inputs(mask_index=mask)
    _assert_close(*_run_both("Attention", inputs, 1, {"num_heads": HEADS, **attrs}))


def test_attention_past_present_and_bias():
    past = _r(2, B, HEADS, 3, HIDDEN // HEADS)
    mask = (RNG.random((B, S + 3)) > 0.3).astype(np.int32)
    inputs = _attention_inputs(mask_index=mask, past=past)
    _assert_close(*_run_both("Attention", inputs, 2, {"num_heads": HEADS, "unidirectional": 1}))
    inputs = _attention_inputs(mask_index=None, past=None, attention_bias=_r(1, HEADS, S, S))
    _assert_close(*_run_both("Attention", inputs, 1, {"num_heads": HEADS}))


def test_attention_qkv_hidden_sizes():
    inputs = dict(input=_r(B, S, HIDDEN), weights=_r(HIDDEN, 40) * 0.3, bias=_r(40))
    _assert_close(*_run_both("Attention", inputs, 1, {"num_heads": HEADS, "qkv_hidden_sizes": [16, 16, 8]}))


# -- MultiHeadAttention -----------------------------------------------------------------------

L, H = 6, 8


def _mha(**kw):
    base = dict(query=_r(B, 4, 2 * H), key=_r(B, L, 2 * H), value=_r(B, L, 2 * H), bias=_r(6 * H))
    base.update(kw)
    return base


@pytest.mark.parametrize("inputs, attrs, n_out", [
    (_mha(), {}, 3),
    (_mha(key_padding_mask=_i32(3, 6)), {}, 1),
    (_mha(bias=None, key_padding_mask=(RNG.random((B, L)) > 0.4).astype(np.int32)), {}, 1),
    (_mha(bias=None, key_padding_mask=(RNG.random((B, 4, L)) > 0.4).astype(np.int32)), {}, 1),
    (_mha(key_padding_mask=None, attention_bias=_r(B, 1, 4, L)), {"scale": 0.2}, 1),
    (_mha(key_padding_mask=None, attention_bias=np.zeros((B, 1, 4, L), np.float32)), {}, 1),  # adds nothing
    (_mha(key=_r(B, 2, L, H), value=_r(B, 2, L, H)), {}, 1),  # keys/values already in heads
    (_mha(key=_r(B, 4, 2 * H), value=_r(B, 4, 2 * H), key_padding_mask=None, attention_bias=None,
          past_key=_r(B, 2, 3, H), past_value=_r(B, 2, 3, H)), {"unidirectional": 1}, 3),
    (_mha(key=_r(B, 4, 2 * H), value=_r(B, 4, 2 * H), key_padding_mask=(RNG.random((B, 7)) > 0.3).astype(np.int32),
          attention_bias=None, past_key=_r(B, 2, 3, H), past_value=_r(B, 2, 3, H)), {}, 3),
])
def test_multi_head_attention(inputs, attrs, n_out):
    _assert_close(*_run_both("MultiHeadAttention", inputs, n_out, {"num_heads": 2, **attrs}))


@pytest.mark.parametrize("q_scale, v_scale", [
    (1.0, 1.0),     # row maxima near zero: exp without subtracting them
    (40.0, 1.0),    # scores of several hundred: the maxima are subtracted
    (1.0, 1e30),    # huge values: unshifted numerators could overflow the weighted sum
])
@pytest.mark.parametrize("masked", [True, False])  # unmasked, the norms of Q's and K's rows bound the scores
def test_multi_head_attention_softmax_range(q_scale, v_scale, masked):
    inputs = _mha(query=_r(B, 4, 2 * H) * q_scale, value=_r(B, L, 2 * H) * v_scale, bias=None,
                  key_padding_mask=_i32(6, 2) if masked else None)  # the second entry pads 4 of its 6 keys
    expected, actual = _run_both("MultiHeadAttention", inputs, 1, {"num_heads": 2})
    assert np.isfinite(actual[0]).all()
    _assert_close(expected, actual, rtol=1e-4, atol=1e-5 * v_scale)


def test_multi_head_attention_float16():
    inputs = {k: v.astype(np.float16) for k, v in _mha(bias=None).items() if v is not None}
    _assert_close(*_run_both("MultiHeadAttention", inputs, 1, {"num_heads": 2}), rtol=2e-3, atol=2e-3)


def test_multi_head_attention_packed_layouts_match_separate():
    # onnxruntime's CPU kernel refuses packed QKV/KV; check them against the separate layout.
    q, k, v = _r(B, 4, 2, H), _r(B, 4, 2, H), _r(B, 4, 2, H)
    bias = _r(6 * H)
    separate = _run_onnxrt("MultiHeadAttention", dict(query=q.reshape(B, 4, -1), key=k.reshape(B, 4, -1),
                                                      value=v.reshape(B, 4, -1), bias=bias), 1, {"num_heads": 2})
    packed_qkv = np.stack((q, k, v), axis=3)
    got = _run_onnxrt("MultiHeadAttention", dict(query=packed_qkv, key=None, value=None, bias=bias), 1, {"num_heads": 2})
    np.testing.assert_allclose(got[0], separate[0], rtol=1e-5, atol=1e-6)
    packed_kv = np.stack((k, v), axis=3)
    got = _run_onnxrt("MultiHeadAttention", dict(query=q.reshape(B, 4, -1), key=packed_kv, value=None, bias=bias), 1,
                      {"num_heads": 2})
    np.testing.assert_allclose(got[0], separate[0], rtol=1e-5, atol=1e-6)


# -- GroupQueryAttention ----------------------------------------------------------------------


def _gqa(head=8, s=4, **kw):
    base = dict(query=_r(B, s, 4 * head), key=_r(B, s, 2 * head), value=_r(B, s, 2 * head), past_key=None,
                past_value=None, seqlens_k=_i32(s - 1, s - 1), total_sequence_length=np.array(s, np.int32))
    base.update(kw)
    return base


def _cos_sin(head):
    angles = RNG.random((32, head // 2)).astype(np.float32)
    return np.cos(angles), np.sin(angles)


GQA = {"num_heads": 4, "kv_num_heads": 2}


@pytest.mark.parametrize("inputs, attrs, valid", [
    (_gqa(), {}, None),
    (_gqa(seqlens_k=_i32(3, 1)), {}, None),                                   # right-padded prompt
    (_gqa(s=1, past_key=_r(B, 2, 5, 8), past_value=_r(B, 2, 5, 8), seqlens_k=_i32(5, 3),
          total_sequence_length=np.array(6, np.int32)), {}, [6, 4]),          # decoding
    (_gqa(s=1, past_key=_r(B, 2, 8, 8), past_value=_r(B, 2, 8, 8), seqlens_k=_i32(5, 3),
          total_sequence_length=np.array(6, np.int32)), {}, [6, 4]),          # shared (max length) buffer
    (_gqa(s=7, seqlens_k=_i32(6, 6)), {"local_window_size": 3, "softcap": 2.0, "scale": 0.5}, None),
    (_gqa(), {"smooth_softmax": 1}, None),
    (_gqa(seqlens_k=_i32(3, 2)), {"causal": 0}, None),
    (_gqa(cos_cache=None, sin_cache=None, position_ids=None, attention_bias=_r(B, 4, 4, 4), head_sink=_r(4)), {}, None),
])
def test_group_query_attention(inputs, attrs, valid):
    _assert_close(*_run_both("GroupQueryAttention", inputs, 3, {**GQA, **attrs}), valid_cache_len=valid)


def test_group_query_attention_rotary_packed_and_qk_output():
    cos, sin = _cos_sin(16)
    # onnxruntime's CPU kernel needs head sizes that are multiples of 16 for rotary.
    prompt = _gqa(head=16, cos_cache=cos, sin_cache=sin)
    _assert_close(*_run_both("GroupQueryAttention", prompt, 3, {**GQA, "do_rotary": 1}))
    decode = _gqa(head=16, s=1, past_key=_r(B, 2, 5, 16), past_value=_r(B, 2, 5, 16), seqlens_k=_i32(5, 3),
                  total_sequence_length=np.array(6, np.int32), cos_cache=cos, sin_cache=sin)
    _assert_close(*_run_both("GroupQueryAttention", decode, 3, {**GQA, "do_rotary": 1, "rotary_interleaved": 1}),
                  valid_cache_len=[6, 4])
    packed = _gqa(head=16, query=_r(B, 4, 8 * 16), key=None, value=None, cos_cache=cos, sin_cache=sin)
    _assert_close(*_run_both("GroupQueryAttention", packed, 3, {**GQA, "do_rotary": 1}))
    _assert_close(*_run_both("GroupQueryAttention", _gqa(), 4, {**GQA, "qk_output": 2}))


# -- RotaryEmbedding --------------------------------------------------------------------------


@pytest.mark.parametrize("layout, position_ids, attrs, rotary_half", [
    ("3d", "ids", {"num_heads": 2}, 4),
    ("3d", "ids", {"interleaved": 1}, 4),
    ("4d", "ids", {}, 4),
    ("3d", "offset", {"num_heads": 2}, 4),
    ("3d", "ids", {"num_heads": 2, "rotary_embedding_dim": 4}, 2),  # partial rotation
])
def test_rotary_embedding(layout, position_ids, attrs, rotary_half):
    angles = RNG.random((16, rotary_half)).astype(np.float32)
    x = _r(2, 3, 16) if layout == "3d" else _r(2, 2, 3, 8)
    pos = RNG.integers(0, 13, (2, 3)).astype(np.int64) if position_ids == "ids" else np.array([4], np.int64)
    inputs = dict(input=x, position_ids=pos, cos_cache=np.cos(angles), sin_cache=np.sin(angles))
    _assert_close(*_run_both("RotaryEmbedding", inputs, 1, attrs))


# -- EmbedLayerNormalization and the Bias* fusions --------------------------------------------


@pytest.mark.parametrize("variant", ["full", "no_mask_no_segment", "position_ids"])
def test_embed_layer_normalization(variant):
    ids = RNG.integers(0, 20, (B, S)).astype(np.int32)
    seg = RNG.integers(0, 2, (B, S)).astype(np.int32)
    inputs = dict(input_ids=ids, segment_ids=seg, word_embedding=_r(20, 16), position_embedding=_r(10, 16),
                  segment_embedding=_r(2, 16), gamma=_r(16), beta=_r(16),
                  mask=(RNG.random((B, S)) > 0.3).astype(np.int32))
    n_out, attrs = 3, {"epsilon": 1e-5}
    if variant == "no_mask_no_segment":
        inputs.update(segment_ids=None, segment_embedding=None, mask=None)
        n_out, attrs = 2, {}
    elif variant == "position_ids":
        inputs.update(mask=None, position_ids=RNG.integers(0, 10, (B, S)).astype(np.int32))
    _assert_close(*_run_both("EmbedLayerNormalization", inputs, n_out, attrs))


def test_bias_ops_against_numpy():
    # onnxruntime has CUDA kernels only for these: compare with their defining formulas.
    data, bias = _r(2, 3, 4, 5), _r(2, 1, 4, 5)
    (got,) = _run_onnxrt("BiasSoftmax", dict(data=data, bias=bias), 1, {"axis": -1, "is_inner_broadcast": 0})
    z = data + bias
    expected = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(got, expected / expected.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)

    x, b, skip = _r(2, 3, 4), _r(4), _r(2, 3, 4)
    (got,) = _run_onnxrt("BiasAdd", dict(X=x, bias=b, skip=skip))
    np.testing.assert_allclose(got, x + b + skip, rtol=1e-6)

    x, b = _r(2, 3, 8), _r(8)
    (got,) = _run_onnxrt("BiasSplitGelu", dict(X=x, bias=b))
    z = (x + b).astype(np.float64)
    erf = np.vectorize(math.erf)
    expected = z[..., :4] * 0.5 * z[..., 4:] * (1 + erf(z[..., 4:] / math.sqrt(2)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_nhwc_max_pool_int8():
    x = RNG.integers(-100, 100, (1, 7, 7, 5)).astype(np.int8)
    _assert_close(*_run_both("NhwcMaxPool", dict(x=x), 1, {"kernel_shape": [3, 3], "strides": [2, 2],
                                                           "pads": [1, 1, 1, 1]}))


# -- errors -----------------------------------------------------------------------------------


def test_unknown_contrib_op_fails_at_load_naming_it():
    model = _model("NoSuchContribOp", {"x": _r(2)}, 1, None, "com.microsoft")
    with pytest.raises(Exception) as info:
        onnxrt.InferenceSession(model)
    text = str(info.value)
    assert "NoSuchContribOp" in text and "com.microsoft" in text


def test_bad_attention_input_is_named():
    inputs = dict(input=_r(B, S, HIDDEN), weights=_r(HIDDEN + 1, 3 * HIDDEN))
    with pytest.raises(Exception, match="weights"):
        _run_onnxrt("Attention", inputs, 1, {"num_heads": HEADS})


# -- models written by onnxruntime ------------------------------------------------------------


def _compare_model(path: Path, feeds: dict, level=None):
    expected = _ort_session(str(path)).run(None, feeds)
    options = onnxrt.SessionOptions()
    if level is not None:
        options.graph_optimization_level = level
    actual = onnxrt.InferenceSession(str(path), options).run(None, feeds)
    for e, a in zip(expected, actual):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(e))))


def _text_feeds(kind: str) -> dict:
    rng = np.random.default_rng(7)
    feeds = {"input_ids": rng.integers(0, tm.VOCAB, (2, tm.SEQ)).astype(np.int64),
             "attention_mask": np.array([[1] * tm.SEQ, [1] * 5 + [0] * (tm.SEQ - 5)], np.int64)}
    if kind == "bert":
        feeds["token_type_ids"] = rng.integers(0, 2, (2, tm.SEQ)).astype(np.int64)
    return feeds


@pytest.fixture(scope="module")
def torch_available():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")


def test_bert_from_ort_transformers_optimizer(torch_available):
    path = tm.ort_transformers_optimized("bert")
    ops = {(n.domain, n.op_type) for n in onnx.load(str(path), load_external_data=False).graph.node}
    assert ("com.microsoft", "Attention") in ops and ("com.microsoft", "EmbedLayerNormalization") in ops
    _compare_model(path, _text_feeds("bert"))


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_model_from_ort_level_all(torch_available, kind):
    tm.ort_transformers_optimized(kind)  # makes the raw export too
    path = tm.ort_level_all(tm.CACHE_DIR / f"{kind}_tiny.onnx", f"{kind}_tiny_raw")
    _compare_model(path, _text_feeds(kind))


def test_gpt2_from_ort_transformers_optimizer(torch_available):
    path = tm.ort_transformers_optimized("gpt2")
    _compare_model(path, _text_feeds("gpt2"), level=onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL)


def test_small_cnn_nchwc_from_ort_level_all(torch_available):
    path = tm.small_cnn_level_all()
    domains = {n.domain for n in onnx.load(str(path), load_external_data=False).graph.node}
    assert "com.microsoft.nchwc" in domains
    feeds = {"image": np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    _compare_model(path, feeds)
