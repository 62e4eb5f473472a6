"""Concats that grow one value (DenseNet's dense blocks) write into one buffer and give the plain result."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import onnxrt
from onnxrt.runtime.concat_chains import AppendingConcat, _Buffers
from tests.concurrency import run_concurrently


def _plain(*inputs):
    return np.concatenate(inputs, axis=1)


def _dense_block_model(layers: int = 3, growth: int = 2, channels: int = 3) -> bytes:
    """x -> Concat(x, conv(x)) -> Concat(., conv(.)) -> ...; a ReduceSum of the first Concat runs last."""
    rng = np.random.default_rng(0)
    nodes, inits, prev, c = [], [], "x", channels
    for k in range(layers):
        inits.append(numpy_helper.from_array(rng.standard_normal((growth, c, 1, 1)).astype(np.float32), f"w{k}"))
        nodes.append(h.make_node("Conv", [prev, f"w{k}"], [f"f{k}"]))
        nodes.append(h.make_node("Concat", [prev, f"f{k}"], [f"c{k}"], axis=1))
        prev, c = f"c{k}", c + growth
    nodes.append(h.make_node("ReduceSum", ["c0"], ["early"], keepdims=0))
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", channels, "H", "W"])],
                         [h.make_tensor_value_info(prev, T.FLOAT, None), h.make_tensor_value_info("early", T.FLOAT, None)],
                         inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _expected(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def test_dense_block_concats_append_into_one_buffer():
    data = _dense_block_model()
    session = onnxrt.InferenceSession(data)
    concats = [s for s in session._plan.steps if s.op_type == "Concat"]
    assert len(concats) == 3 and all(isinstance(s.kernel, AppendingConcat) for s in concats)
    assert [s.kernel.room for s in concats] == [4, 2, 0]
    for shape in [(1, 3, 5, 6), (2, 3, 4, 4)]:  # batch 2: the axes before the channels are not all 1
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        for got, want in zip(session.run(None, {"x": x}), _expected(data, x)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_block_in_parallel_execution_mode():
    data = _dense_block_model(layers=5)
    options = onnxrt.SessionOptions()
    options.execution_mode = onnxrt.ExecutionMode.ORT_PARALLEL
    session = onnxrt.InferenceSession(data, options)
    x = np.random.default_rng(3).standard_normal((1, 3, 9, 8)).astype(np.float32)
    for _ in range(5):
        for got, want in zip(session.run(None, {"x": x}), _expected(data, x)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_appends_share_a_buffer_and_leave_earlier_prefixes_alone():
    buffers = _Buffers()
    first, second, third = (AppendingConcat(_plain, 1, room, buffers) for room in (4, 2, 0))
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    f = [np.full((1, 2, 2, 2), k + 100, np.float32) for k in range(3)]
    a = first(x, f[0])
    b = second(a, f[1])
    c = third(b, f[2])
    assert np.shares_memory(a, c) and np.shares_memory(b, c) and c.flags.c_contiguous
    np.testing.assert_array_equal(c, np.concatenate([x, *f], axis=1))
    np.testing.assert_array_equal(a, np.concatenate([x, f[0]], axis=1))
    # a second append to the same prefix (a fork) must not write over the first one's values
    g = np.full((1, 2, 2, 2), -1, np.float32)
    b2 = second(a, g)
    assert not np.shares_memory(b2, b)
    np.testing.assert_array_equal(b, np.concatenate([x, f[0], f[1]], axis=1))
    np.testing.assert_array_equal(b2, np.concatenate([x, f[0], g], axis=1))
    # an array that is no prefix this chain handed out starts a buffer of its own
    fresh = second(np.concatenate([x, f[0]], axis=1), f[1])
    assert not np.shares_memory(fresh, c)
    np.testing.assert_array_equal(fresh, b)


def test_a_fork_is_not_chained():
    # c0 is the first input of two Concats: neither may append to its buffer
    nodes = [h.make_node("Concat", ["x", "y"], ["c0"], axis=1),
             h.make_node("Concat", ["c0", "y"], ["c1"], axis=1),
             h.make_node("Concat", ["c0", "x"], ["c2"], axis=1)]
    vi = [h.make_tensor_value_info(n, T.FLOAT, [1, 2, 3]) for n in ("x", "y")]
    graph = h.make_graph(nodes, "g", vi, [h.make_tensor_value_info(n, T.FLOAT, None) for n in ("c1", "c2")])
    session = onnxrt.InferenceSession(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString())
    assert not any(isinstance(s.kernel, AppendingConcat) for s in session._plan.steps)
    x, y = np.ones((1, 2, 3), np.float32), np.zeros((1, 2, 3), np.float32)
    c1, c2 = session.run(None, {"x": x, "y": y})
    np.testing.assert_array_equal(c1, np.concatenate([x, y, y], axis=1))
    np.testing.assert_array_equal(c2, np.concatenate([x, y, x], axis=1))


def test_a_mismatched_input_gets_the_plain_concat_error():
    nodes = [h.make_node("Concat", ["x", "y"], ["c0"], axis=1), h.make_node("Concat", ["c0", "z"], ["c1"], axis=1)]
    vi = [h.make_tensor_value_info(n, T.FLOAT, [1, "C", "H"]) for n in ("x", "y", "z")]
    graph = h.make_graph(nodes, "g", vi, [h.make_tensor_value_info("c1", T.FLOAT, None)])
    session = onnxrt.InferenceSession(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString())
    assert isinstance(session._plan.steps[1].kernel, AppendingConcat)
    x = np.ones((1, 2, 3), np.float32)
    with pytest.raises(onnxrt.OrtError, match=r"Concat: input 1 has shape \(1, 2, 4\)"):
        session.run(None, {"x": x, "y": x, "z": np.ones((1, 2, 4), np.float32)})


def test_concurrent_runs_keep_their_own_buffers():
    data = _dense_block_model(layers=4)
    session = onnxrt.InferenceSession(data)
    inputs = [np.random.default_rng(seed).standard_normal((1, 3, 6, 7)).astype(np.float32) for seed in range(4)]
    expected = [_expected(data, x) for x in inputs]
    failures = []

    def work(i: int) -> None:
        for _ in range(20):
            for got, want in zip(session.run(None, {"x": inputs[i]}), expected[i]):
                if not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                    failures.append(i)

    run_concurrently(work, 4)
    assert not failures
