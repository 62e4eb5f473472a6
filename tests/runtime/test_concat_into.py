"""Convs whose outputs are concatenated (SqueezeNet, Inception) write into the concatenation and give
the plain result."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import onnxrt
from onnxrt.runtime.concat_into import ConcatInto


def _fire_model(axis: int = 1, pool: bool = True, fetch: str | None = None, chained: bool = False,
                extra_reader: bool = False, dtype: int = T.FLOAT) -> bytes:
    """x -> squeeze 1x1 Conv+Relu -> [expand 1x1 Conv, expand 3x3 Conv+Relu, (MaxPool 3x3 of x)] ->
    Concat(axis) -> y; ``chained``: y is concatenated again with x; ``extra_reader``: the 1x1
    expansion is read by an Add too, a second output."""
    rng = np.random.default_rng(0)
    np_type = np.float16 if dtype == T.FLOAT16 else np.float32
    c = 6

    def weight(name: str, *shape: int) -> T:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np_type), name)

    inits = [weight("ws", 4, c, 1, 1), weight("bs", 4), weight("w1", 5, 4, 1, 1), weight("b1", 5),
             weight("w3", 7, 4, 3, 3), weight("b3", 7)]
    nodes = [h.make_node("Conv", ["x", "ws", "bs"], ["sq"], name="squeeze"),
             h.make_node("Relu", ["sq"], ["s"]),
             h.make_node("Conv", ["s", "w1", "b1"], ["e1"], name="expand1x1"),
             h.make_node("Conv", ["s", "w3", "b3"], ["e3c"], pads=[1, 1, 1, 1], name="expand3x3"),
             h.make_node("Relu", ["e3c"], ["e3"])]
    parts = ["e1", "e3"]
    if pool:
        nodes.append(h.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        parts.insert(1, "p")
    nodes.append(h.make_node("Concat", parts, ["cat"], axis=axis, name="concat"))
    outputs = ["y"]
    if chained:
        nodes.append(h.make_node("Concat", ["cat", "x"], ["y"], axis=axis))
    else:
        nodes.append(h.make_node("Identity", ["cat"], ["y"]))
    if extra_reader:
        nodes.append(h.make_node("Add", ["e1", "e1"], ["twice"]))
        outputs.append("twice")
    if fetch:
        outputs.append(fetch)
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", dtype, ["N", c, 5, 7])],
                         [h.make_tensor_value_info(o, dtype, None) for o in outputs], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _fused(session: onnxrt.InferenceSession) -> list:
    return [s for s in session._plan.steps if isinstance(s.kernel, ConcatInto)]


def _check(data: bytes, shapes=((1, 6, 5, 7), (2, 6, 5, 7)), dtype=np.float32,
           level: onnxrt.GraphOptimizationLevel = onnxrt.GraphOptimizationLevel.ORT_ENABLE_ALL) -> onnxrt.InferenceSession:
    """A session of ``data`` at ``level`` whose outputs match onnxruntime's for inputs of ``shapes``."""
    so = onnxrt.SessionOptions()
    so.graph_optimization_level = level
    session = onnxrt.InferenceSession(data, so)
    reference = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    for shape in shapes:
        x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
        for _ in range(2):  # the second run reuses what the first one decided
            got, want = session.run(None, {"x": x}), reference.run(None, {"x": x})
            for g, w in zip(got, want):
                assert g.shape == w.shape and g.dtype == w.dtype
                np.testing.assert_allclose(g, w, rtol=1e-5 if dtype == np.float32 else 2e-3,
                                           atol=1e-5 if dtype == np.float32 else 2e-3)
    return session


@pytest.mark.parametrize("axis", [1, -3])
@pytest.mark.parametrize("pool", [True, False])
def test_convs_write_into_their_concat(axis, pool):
    # batch 1 writes into the concatenation; batch 2 (blocks of channels are no contiguous arrays)
    # runs the convs and the Concat as they are
    session = _check(_fire_model(axis=axis, pool=pool))
    fused = _fused(session)
    assert len(fused) == 1 and not any(s.op_type == "Concat" for s in session._plan.steps)
    # both expansions moved into the fused step (the Relu fused into its conv first); MaxPool stays
    assert [p is not None for p in fused[0].kernel.parts] == ([True, False, True] if pool else [True, True])
    assert sum(s.op_type in ("Conv", "FusedConv") for s in session._plan.steps) == 1  # the squeeze


def test_batch_one_writes_in_place():
    session = _check(_fire_model(), shapes=((1, 6, 5, 7),))
    kernel = _fused(session)[0].kernel
    seen = []
    original = kernel.parts[0].kernel

    def spy(*args, **kwargs):
        seen.append(kwargs.get("into"))
        return original(*args, **kwargs)

    spy.output_shape = original.output_shape
    kernel.parts[0] = dataclasses.replace(kernel.parts[0], kernel=spy)
    y = session.run(None, {"x": np.ones((1, 6, 5, 7), np.float32)})[0]
    assert y.shape == (1, 5 + 6 + 7, 5, 7)
    assert len(seen) == 1 and seen[0].shape == (1, 5, 5, 7) and np.shares_memory(seen[0], y)
    session.run(None, {"x": np.ones((2, 6, 5, 7), np.float32)})
    assert len(seen) == 2 and seen[1] is None  # batch 2: the plain path


def test_float16_convs_write_through_their_float32_result():
    _check(_fire_model(dtype=T.FLOAT16), shapes=((1, 6, 5, 7),), dtype=np.float16)


def test_not_fused():
    # a Concat chain (concat_chains' work), an expansion the caller fetches or another node reads
    # (that part is copied), the basic level
    session = _check(_fire_model(chained=True))
    assert not _fused(session)
    for data in (_fire_model(fetch="e1"), _fire_model(extra_reader=True)):
        fused = _fused(_check(data))
        assert [p is not None for p in fused[0].kernel.parts] == [False, False, True]
    session = _check(_fire_model(), level=onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    assert not _fused(session)


def _two_convs_model() -> bytes:
    """x (N, C, 5, 7) -> [1x1 Conv, 3x3 Conv] -> Concat -> y, the weights made for 6 channels."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("w1", (5, 6, 1, 1)), ("w3", (7, 6, 3, 3)))]
    nodes = [h.make_node("Conv", ["x", "w1"], ["a"], name="one"),
             h.make_node("Conv", ["x", "w3"], ["b"], pads=[1, 1, 1, 1], name="three"),
             h.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", "C", 5, 7])],
                         [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_errors_are_those_of_the_plain_steps():
    # 5 input channels against the weights' 6: the first conv inside the fused step fails, named
    data = _two_convs_model()
    assert _fused(_check(data, shapes=((1, 6, 5, 7),)))
    x = np.zeros((1, 5, 5, 7), np.float32)
    errors = []
    for level in (onnxrt.GraphOptimizationLevel.ORT_ENABLE_ALL, onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC):
        so = onnxrt.SessionOptions()
        so.graph_optimization_level = level
        with pytest.raises(Exception) as error:
            onnxrt.InferenceSession(data, so).run(None, {"x": x})
        errors.append(error.value)
    assert type(errors[0]) is type(errors[1]) and str(errors[0]) == str(errors[1])
    assert "Name:'one'" in str(errors[0])
