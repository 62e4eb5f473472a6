"""Slice / Squeeze / Unsqueeze with constant index inputs (prepared once per node, cached per input shape)
and LSTM with constant weights (re-laid out once): same results as onnxruntime across changing input
shapes, and the usual errors."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxrt


def _sessions(nodes, inputs, outputs, inits, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9).SerializeToString()
    return (onnxrt.InferenceSession(data, providers=["CPUExecutionProvider"]),
            onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]))


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def test_slice_squeeze_unsqueeze_constant_indices_across_shapes():
    nodes = [
        helper.make_node("Slice", ["X", "s", "e", "a", "st"], ["S"]),
        helper.make_node("Unsqueeze", ["S", "ua"], ["U"]),
        helper.make_node("Squeeze", ["U", "qa"], ["Q"]),
        helper.make_node("Slice", ["X", "s2", "e2"], ["S2"]),
    ]
    inits = [_i64("s", [1, -1]), _i64("e", [100, -100]), _i64("a", [0, -1]), _i64("st", [2, -2]),
             _i64("ua", [0, -1]), _i64("qa", [-1]), _i64("s2", [0]), _i64("e2", [-1])]
    mine, ref = _sessions(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", "m"])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("S", "U", "Q", "S2")],
                          inits)
    for shape in [(5, 7), (6, 4), (5, 7), (1, 1), (0, 3)]:
        X = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
        for got, want in zip(mine.run(None, {"X": X}), ref.run(None, {"X": X})):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_constant_axes_errors_still_raised():
    nodes = [helper.make_node("Squeeze", ["X", "qa"], ["Q"])]
    mine, _ = _sessions(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                        [helper.make_tensor_value_info("Q", TensorProto.FLOAT, None)], [_i64("qa", [1])])
    assert mine.run(None, {"X": np.zeros((2, 1), np.float32)})[0].shape == (2,)
    with pytest.raises(Exception, match="cannot squeeze axis 1: its dimension is 3"):
        mine.run(None, {"X": np.zeros((2, 3), np.float32)})
    with pytest.raises(Exception, match="out of range for an input of rank 1"):
        mine.run(None, {"X": np.zeros((2,), np.float32)})
    nodes = [helper.make_node("Unsqueeze", ["X", "ua"], ["U"])]
    mine, _ = _sessions(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                        [helper.make_tensor_value_info("U", TensorProto.FLOAT, None)], [_i64("ua", [0, 0])])
    with pytest.raises(Exception, match="contain duplicates"):
        mine.run(None, {"X": np.zeros((2,), np.float32)})
    nodes = [helper.make_node("Slice", ["X", "s", "e", "a"], ["S"])]
    mine, _ = _sessions(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                        [helper.make_tensor_value_info("S", TensorProto.FLOAT, None)],
                        [_i64("s", [0]), _i64("e", [1]), _i64("a", [2])])
    assert mine.run(None, {"X": np.zeros((2, 3, 4), np.float32)})[0].shape == (2, 3, 1)
    with pytest.raises(Exception, match="axes entry 2 is out of range for an input of rank 2"):
        mine.run(None, {"X": np.zeros((2, 3), np.float32)})


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_constant_weights_repeated_runs(direction):
    rng = np.random.default_rng(0)
    D, H, I = (2 if direction == "bidirectional" else 1), 8, 5
    W = rng.standard_normal((D, 4 * H, I)).astype(np.float32)
    R = rng.standard_normal((D, 4 * H, H)).astype(np.float32)
    B = rng.standard_normal((D, 8 * H)).astype(np.float32)
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Yh", "Yc"], hidden_size=H, direction=direction)
    mine, ref = _sessions([node], [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["s", "b", I])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Yh", "Yc")],
                          [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                           numpy_helper.from_array(B, "B")])
    for seq, batch in [(3, 2), (1, 1), (4, 3)]:
        X = rng.standard_normal((seq, batch, I)).astype(np.float32)
        for got, want in zip(mine.run(None, {"X": X}), ref.run(None, {"X": X})):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,pack_limit", [((6, 5), None), ((300, 700), None), ((7, 5), 10)])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_constant_weight_laid_out_once(monkeypatch, shape, pack_limit, trans_b):
    # a constant B is copied (K, N) row-major once, through 256 x 256 tiles when it is large (the
    # second shape); above the pack limit (the third) it goes to BLAS as it lies, a (transposed) view
    if pack_limit is not None:
        from onnxrt.ops import matmul
        monkeypatch.setattr(matmul, "_PACK_LIMIT_ELEMENTS", pack_limit)
    rng = np.random.default_rng(0)
    k, n = shape
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["X", "W", "C"], ["Y"], transB=trans_b, alpha=0.5)]
    mine, ref = _sessions(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["m", k])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "C")])
    for m in (1, 4):
        X = rng.standard_normal((m, k)).astype(np.float32)
        np.testing.assert_allclose(mine.run(None, {"X": X})[0], ref.run(None, {"X": X})[0], rtol=1e-4, atol=1e-4)
