"""A grouped 1x1 conv followed by a channel shuffle (ShuffleNet) writes the shuffled channels itself
and gives the plain result."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import onnxrt
from onnxrt.runtime.channel_shuffle import ShuffledConv


def _shuffle_model(channels: int = 12, conv_groups: int = 4, shuffle_groups: int = 4, residual: bool = False,
                   split: list[int] | None = None, merge: list[int] | None = None, perm=(0, 2, 1, 3, 4),
                   fetch_split: bool = False, hw: tuple[int, int] = (5, 6)) -> bytes:
    """x -> grouped 1x1 Conv (+ x) -> Relu -> Reshape(split) -> Transpose(perm) -> Reshape(merge) ->
    depthwise 3x3 Conv -> y, every weight random."""
    rng = np.random.default_rng(0)
    c, g = channels, shuffle_groups
    inits = [numpy_helper.from_array(rng.standard_normal((c, c // conv_groups, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "wd"),
             numpy_helper.from_array(np.array(split or [-1, g, c // g, *hw], np.int64), "split"),
             numpy_helper.from_array(np.array(merge or [0, c, *hw], np.int64), "merge")]
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], group=conv_groups)]
    if residual:
        nodes.append(h.make_node("Add", ["c", "x"], ["a"]))
    nodes += [h.make_node("Relu", ["a" if residual else "c"], ["r"]),
              h.make_node("Reshape", ["r", "split"], ["s"]),
              h.make_node("Transpose", ["s"], ["t"], perm=list(perm)),
              h.make_node("Reshape", ["t", "merge"], ["m"]),
              h.make_node("Conv", ["m", "wd"], ["y"], group=c, pads=[1, 1, 1, 1])]
    outputs = [h.make_tensor_value_info("y", T.FLOAT, None)]
    if fetch_split:
        outputs.append(h.make_tensor_value_info("s", T.FLOAT, None))
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", c, *hw])], outputs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _fused_steps(session: onnxrt.InferenceSession) -> list:
    return [s for s in session._plan.steps if isinstance(s.kernel, ShuffledConv)]


def _check(data: bytes, shapes=((1, 12, 5, 6), (2, 12, 5, 6)), **options) -> onnxrt.InferenceSession:
    so = onnxrt.SessionOptions()
    for name, value in options.items():
        setattr(so, name, value)
    session = onnxrt.InferenceSession(data, so)
    reference = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    for shape in shapes:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        for got, want in zip(session.run(None, {"x": x}), reference.run(None, {"x": x})):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return session


@pytest.mark.parametrize("conv_groups,shuffle_groups,residual", [
    (4, 4, False),  # ShuffleNet: the GEMM writes its rows where the shuffle puts them
    (4, 4, True),   # with the residual (FusedConv's Z), added where its channels went
    (2, 4, False),  # other groups than the conv's: the fused step runs the four kernels
    (3, 2, False),
])
def test_grouped_conv_writes_its_channel_shuffle(conv_groups, shuffle_groups, residual):
    session = _check(_shuffle_model(conv_groups=conv_groups, shuffle_groups=shuffle_groups, residual=residual))
    fused = _fused_steps(session)
    assert len(fused) == 1 and not any(s.op_type in ("Reshape", "Transpose") for s in session._plan.steps)
    assert fused[0].op_type == "FusedConv"  # the Relu (and the Add) fused into the conv first


def test_reshapes_that_are_no_channel_shuffle_run_as_they_are():
    # split along the height, not the channels: the fused step runs the four kernels
    session = _check(_shuffle_model(split=[0, 12, 5, 3, 2]), shapes=((1, 12, 5, 6),))
    assert len(_fused_steps(session)) == 1
    # the shapes do not fit the input: the Reshape's own error
    data = _shuffle_model(split=[1, 5, -1, 5, 6])
    x = np.zeros((1, 12, 5, 6), np.float32)
    with pytest.raises(Exception) as fused_error:
        onnxrt.InferenceSession(data).run(None, {"x": x})
    so = onnxrt.SessionOptions()
    so.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with pytest.raises(Exception) as plain_error:
        onnxrt.InferenceSession(data, so).run(None, {"x": x})
    assert type(fused_error.value) is type(plain_error.value) and str(fused_error.value) == str(plain_error.value)


def test_not_fused():
    # another permutation, an intermediate the caller fetches, the basic level
    for data, options in ((_shuffle_model(perm=(0, 1, 2, 4, 3), merge=[0, 12, 6, 5]), {}),
                          (_shuffle_model(fetch_split=True), {}),
                          (_shuffle_model(), {"graph_optimization_level": onnxrt.GraphOptimizationLevel.ORT_ENABLE_BASIC})):
        session = _check(data, shapes=((1, 12, 5, 6),), **options)
        assert not _fused_steps(session)
