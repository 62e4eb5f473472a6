"""Normalization, softmax, reductions, matrix products, losses: behaviour the node suite does not cover."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxrt

_ELEM = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(bool): TensorProto.BOOL,
    np.dtype(ml_dtypes.bfloat16): TensorProto.BFLOAT16,
}


def _model(op, inputs, outputs, opset=23, inits=(), out_types=None, **attrs):
    """One-node model; ``inputs`` are (name, array) feeds, ``inits`` (name, array) initializers."""
    names = [n for n, _ in inputs] + [n for n, _ in inits]
    order = attrs.pop("input_order", names)
    node = helper.make_node(op, order, outputs, **attrs)
    vis = [helper.make_tensor_value_info(n, _ELEM[v.dtype], None) for n, v in inputs if n]
    first = inputs[0][1].dtype if inputs else inits[0][1].dtype
    out_types = out_types or [first] * len(outputs)
    outs = [helper.make_tensor_value_info(n, _ELEM[np.dtype(t)], None) for n, t in zip(outputs, out_types)]
    graph = helper.make_graph([node], "g", vis, outs, [numpy_helper.from_array(v, n) for n, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _run(model, inputs):
    return onnxrt.InferenceSession(model.SerializeToString()).run(None, {n: v for n, v in inputs if n})


def _ort(model, inputs):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {n: v for n, v in inputs if n})


def _same_as_ort(model, inputs, rtol=1e-5, atol=1e-6):
    ours, theirs = _run(model, inputs), _ort(model, inputs)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol)
    return ours


rng = np.random.default_rng(0)


# -- softmax family ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,axis", [(11, 1), (11, -2), (11, 0), (13, 1), (13, -1)])
def test_softmax_family_matches_ort(op, opset, axis):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    if op == "Hardmax":
        x[0, 0, 0, :2] = 7.0  # ties: the first maximum wins
    _same_as_ort(_model(op, [("x", x)], ["y"], opset=opset, axis=axis), [("x", x)])


def test_softmax_bfloat16_long_axis_sums_to_one():
    x = rng.standard_normal((2, 8192)).astype(ml_dtypes.bfloat16)
    (y,) = _run(_model("Softmax", [("x", x)], ["y"]), [("x", x)])
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y.astype(np.float32).sum(-1), 1.0, rtol=2e-2)


def test_softmax_rejects_bad_axis():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(onnxrt.OrtError, match="axis 2 is out of range"):
        _run(_model("Softmax", [("x", x)], ["y"], axis=2), [("x", x)])


# -- reductions --------------------------------------------------------------------------------------

_REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


@pytest.mark.parametrize("op", _REDUCE_OPS)
@pytest.mark.parametrize("opset", [11, 18])
def test_reduce_matches_ort(op, opset):
    x = rng.uniform(0.5, 2.0, (3, 4, 5)).astype(np.float32)
    axes = [0, -1]
    if opset >= 18 or (op == "ReduceSum" and opset >= 13):
        m = _model(op, [("x", x)], ["y"], opset=opset, inits=[("axes", np.array(axes, np.int64))], keepdims=0)
    else:
        m = _model(op, [("x", x)], ["y"], opset=opset, axes=axes, keepdims=0)
    _same_as_ort(m, [("x", x)], rtol=1e-5)


def test_reduce_axes_as_runtime_input_and_noop():
    x = rng.standard_normal((2, 3)).astype(np.float32)
    m = _model("ReduceSum", [("x", x), ("axes", np.array([1], np.int64))], ["y"], opset=13, noop_with_empty_axes=1)
    (y,) = _run(m, [("x", x), ("axes", np.array([1], np.int64))])
    np.testing.assert_allclose(y, x.sum(1, keepdims=True), rtol=1e-6)
    (y,) = _run(m, [("x", x), ("axes", np.array([], np.int64))])
    np.testing.assert_array_equal(y, x)


def test_reduce_integers_stay_exact():
    x = np.array([[2**40 + 1, 3], [-7, 2]], np.int64)
    (s,) = _run(_model("ReduceSum", [("x", x)], ["y"], opset=13, keepdims=0), [("x", x)])
    assert s.dtype == np.int64 and int(s) == 2**40 - 1
    (mx,) = _run(_model("ReduceMax", [("x", x)], ["y"], opset=13, axes=[1]), [("x", x)])
    np.testing.assert_array_equal(mx, [[2**40 + 1], [2]])
    x32 = np.array([[-7, 2]], np.int32)
    (mean,) = _run(_model("ReduceMean", [("x", x32)], ["y"], opset=13, keepdims=0), [("x", x32)])
    assert mean.dtype == np.int32 and int(mean) == -2  # truncation toward zero, as in C


def test_reduce_empty_set_identities():
    x = np.zeros((2, 0, 3), np.int32)
    (mx,) = _run(_model("ReduceMax", [("x", x)], ["y"], opset=13, axes=[1]), [("x", x)])
    np.testing.assert_array_equal(mx, np.full((2, 1, 3), np.iinfo(np.int32).min))
    xf = np.zeros((2, 0), np.float32)
    (mn,) = _run(_model("ReduceMin", [("x", xf)], ["y"], opset=13, axes=[1], keepdims=0), [("x", xf)])
    np.testing.assert_array_equal(mn, [np.inf, np.inf])
    (p,) = _run(_model("ReduceProd", [("x", xf)], ["y"], opset=13, axes=[1], keepdims=0), [("x", xf)])
    np.testing.assert_array_equal(p, [1.0, 1.0])


def test_reduce_rejects_duplicate_axes():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(onnxrt.OrtError, match="ReduceSum.*duplicates"):
        _run(_model("ReduceSum", [("x", x)], ["y"], opset=11, axes=[1, -1]), [("x", x)])


# -- matrix products ---------------------------------------------------------------------------------


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_constant_b_matches_ort(trans_a, trans_b):
    a = rng.standard_normal((5, 4) if trans_a else (4, 5)).astype(np.float32)
    b = rng.standard_normal((3, 5) if trans_b else (5, 3)).astype(np.float32)
    c = rng.standard_normal((3,)).astype(np.float32)
    m = _model("Gemm", [("a", a)], ["y"], opset=13, inits=[("b", b), ("c", c)],
               transA=trans_a, transB=trans_b, alpha=0.5, beta=2.0)
    _same_as_ort(m, [("a", a)])
    _same_as_ort(m, [("a", a)])  # second run reuses the prepared B and C


def test_gemm_old_opset_and_float16():
    a = rng.standard_normal((4, 6)).astype(np.float16)
    b = rng.standard_normal((6, 3)).astype(np.float16)
    c = rng.standard_normal((4, 3)).astype(np.float16)
    m = _model("Gemm", [("a", a), ("b", b), ("c", c)], ["y"], opset=7, alpha=1.5)
    _same_as_ort(m, [("a", a), ("b", b), ("c", c)], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((2, 1, 4, 3), (5, 3, 2)), ((3,), (2, 3, 4)), ((2, 4, 3), (3,))])
def test_matmul_shapes_match_ort(sa, sb):
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    _same_as_ort(_model("MatMul", [("a", a), ("b", b)], ["y"], opset=13), [("a", a), ("b", b)])


def test_matmul_inner_dimension_error_names_op():
    a, b = np.ones((2, 3), np.float32), np.ones((4, 2), np.float32)
    with pytest.raises(onnxrt.OrtError, match="MatMul: inner dimensions differ"):
        _run(_model("MatMul", [("a", a), ("b", b)], ["y"], opset=13), [("a", a), ("b", b)])


def test_einsum_and_det_match_ort():
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 4, 5)).astype(np.float32)
    _same_as_ort(_model("Einsum", [("a", a), ("b", b)], ["y"], opset=12, equation="bij, bjk -> bik"),
                 [("a", a), ("b", b)])
    x = rng.standard_normal((3, 4, 4)).astype(np.float32)
    _same_as_ort(_model("Det", [("x", x)], ["y"], opset=11), [("x", x)], rtol=1e-4)


# -- normalization -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_layer_norm_float16_stats_match_ort(dtype):
    x = rng.standard_normal((3, 4, 8)).astype(dtype)
    s = rng.standard_normal((4, 8)).astype(dtype)
    bias = rng.standard_normal((8,)).astype(dtype)
    m = _model("LayerNormalization", [("x", x), ("s", s), ("b", bias)], ["y", "mean", "inv"], opset=17,
               axis=-2, out_types=[dtype, np.float32, np.float32])
    tol = 1e-5 if dtype == np.float32 else 3e-3
    _same_as_ort(m, [("x", x), ("s", s), ("b", bias)], rtol=tol, atol=tol)


def test_layer_norm_does_not_write_its_input():
    x = rng.standard_normal((2, 6)).astype(np.float32)
    keep = x.copy()
    s = np.ones(6, np.float32)
    _run(_model("LayerNormalization", [("x", x)], ["y"], opset=17, inits=[("s", s)]), [("x", x)])
    np.testing.assert_array_equal(x, keep)


def test_batchnorm_opset7_and_training_outputs_match_ort():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    params = [(n, rng.uniform(0.5, 1.5, 3).astype(np.float32)) for n in ("s", "b", "m", "v")]
    _same_as_ort(_model("BatchNormalization", [("x", x)], ["y"], opset=7, inits=params, epsilon=1e-3), [("x", x)])
    m = _model("BatchNormalization", [("x", x)] + params, ["y", "rm", "rv"], opset=15, training_mode=1,
               momentum=0.8)
    ys = _run(m, [("x", x)] + params)
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    np.testing.assert_allclose(ys[1], params[2][1] * 0.8 + mean * 0.2, rtol=1e-5)
    np.testing.assert_allclose(ys[2], params[3][1] * 0.8 + var * 0.2, rtol=1e-5)


def test_group_norm_opset18_scale_per_group():
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    scale, bias = np.array([2.0, -1.0], np.float32), np.array([0.5, 1.0], np.float32)
    m = _model("GroupNormalization", [("x", x), ("s", scale), ("b", bias)], ["y"], opset=18, num_groups=2,
               epsilon=1e-5)
    (y,) = _run(m, [("x", x), ("s", scale), ("b", bias)])
    g = x.reshape(2, 2, 6)
    norm = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5))
    want = (norm * scale[None, :, None] + bias[None, :, None]).reshape(x.shape)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,attrs", [("LRN", {"size": 3, "alpha": 1e-3, "beta": 0.6, "bias": 2.0}),
                                      ("LRN", {"size": 5}),
                                      ("InstanceNormalization", {"epsilon": 1e-3}),
                                      ("MeanVarianceNormalization", {}),
                                      ("LpNormalization", {"axis": 1, "p": 1})])
def test_other_norms_match_ort(op, attrs):
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    inits = []
    if op == "InstanceNormalization":
        inits = [("s", rng.standard_normal(5).astype(np.float32)), ("b", rng.standard_normal(5).astype(np.float32))]
    _same_as_ort(_model(op, [("x", x)], ["y"], opset=13, inits=inits, **attrs), [("x", x)], rtol=1e-4, atol=1e-5)


# -- losses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_sce_with_weights_and_ignore_index_matches_ort(reduction):
    scores = rng.standard_normal((4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 5, (4, 3)).astype(np.int64)
    labels[0, 0] = -1
    w = rng.uniform(0.1, 1.0, 5).astype(np.float32)
    feeds = [("scores", scores), ("labels", labels), ("w", w)]
    m = _model("SoftmaxCrossEntropyLoss", feeds, ["loss", "logp"], opset=13, reduction=reduction, ignore_index=-1)
    _same_as_ort(m, feeds, rtol=1e-5)


def test_nll_rejects_out_of_range_target():
    x = rng.standard_normal((2, 3)).astype(np.float32)
    t = np.array([0, 3], np.int64)
    m = _model("NegativeLogLikelihoodLoss", [("x", x), ("t", t)], ["loss"], opset=13)
    with pytest.raises(onnxrt.OrtError, match="target' holds class 3, expected a value in \\[0, 3\\)"):
        _run(m, [("x", x), ("t", t)])


@pytest.mark.parametrize("shape", [(2, 3, 5, 8), (1, 7, 8)])
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_nd_by_2d_is_one_gemm_with_the_same_result(shape, transposed):
    from onnxrt.ops.matmul import matmul

    rng = np.random.default_rng(3)
    A = rng.normal(size=shape).astype(np.float32)
    if transposed:  # a non-contiguous view, as a Transpose before MatMul leaves it
        A = np.ascontiguousarray(np.swapaxes(A, -1, -2)).swapaxes(-1, -2)
    B = rng.normal(size=(shape[-1], 4)).astype(np.float32)
    out = matmul(A, B)
    assert out.shape == shape[:-1] + (4,) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.matmul(A, B), rtol=1e-5, atol=1e-5)
