"""Large initializers read from a model file straight into their own arrays (model/weights_aside)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import onnxrt
from onnxrt.model import loader, weights_aside

LIMIT = loader._INFERENCE_DATA_LIMIT


def _weights_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Large initializers of several element types, small ones (a Reshape's shape, read by shape
    inference), one stored as float_data rather than raw_data, and one inside an If branch."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((96, 64)).astype(np.float32)
    w16 = rng.standard_normal((64, 80)).astype(np.float16)
    table = rng.integers(-5, 5, (5000,)).astype(np.int64)
    keep = rng.random(96 * 64) > 0.5
    bias = rng.standard_normal(64).astype(np.float32)
    listed = rng.standard_normal((80, 80)).astype(np.float32)
    inner = rng.standard_normal((80, 80)).astype(np.float32)
    branch = h.make_graph([h.make_node("MatMul", ["z", "inner"], ["t"])], "then", [],
                          [h.make_tensor_value_info("t", T.FLOAT, None)], [numpy_helper.from_array(inner, "inner")])
    other = h.make_graph([h.make_node("Identity", ["z"], ["e"])], "else", [], [h.make_tensor_value_info("e", T.FLOAT, None)])
    nodes = [
        h.make_node("Reshape", ["keep", "shape"], ["keep2"]),
        h.make_node("Cast", ["keep2"], ["keepf"], to=T.FLOAT),
        h.make_node("Mul", ["w", "keepf"], ["masked"]),
        h.make_node("MatMul", ["x", "masked"], ["b"]),
        h.make_node("Add", ["b", "bias"], ["c"]),
        h.make_node("Cast", ["w16"], ["w32"], to=T.FLOAT),
        h.make_node("MatMul", ["c", "w32"], ["d"]),
        h.make_node("MatMul", ["d", "listed"], ["z"]),
        h.make_node("ReduceSum", ["table"], ["total"], keepdims=0),
        h.make_node("Greater", ["total", "zero"], ["cond"]),
        h.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=other),
    ]
    listed_tensor = h.make_tensor("listed", T.FLOAT, listed.shape, listed.reshape(-1).tolist())  # float_data
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w16, "w16"),
             numpy_helper.from_array(table, "table"), numpy_helper.from_array(keep, "keep"),
             numpy_helper.from_array(bias, "bias"), numpy_helper.from_array(np.array([96, 64], np.int64), "shape"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"), listed_tensor]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", 96])],
                         [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=9)
    return model, {"w": w, "w16": w16, "table": table, "keep": keep}


def test_large_raw_initializers_are_read_aside(tmp_path):
    model, large = _weights_model()
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    proto, aside = weights_aside.read(path, LIMIT)
    assert sorted(aside) == sorted(large)  # not the small ones, float_data, nor the If branch's
    for name, values in large.items():
        np.testing.assert_array_equal(aside[name], values)
        assert aside[name].dtype == values.dtype and aside[name].flags.c_contiguous
    stripped = {t.name: t for t in proto.graph.initializer}
    assert list(stripped) == [t.name for t in model.graph.initializer]  # same order, none lost
    for name in large:
        assert not stripped[name].raw_data and list(stripped[name].dims) == list(large[name].shape)
    assert stripped["shape"].raw_data and len(stripped["listed"].float_data) == 6400
    # everything but those payloads is the file's own model
    for name in large:
        stripped[name].raw_data = numpy_helper.from_array(large[name]).raw_data
    assert proto == model


def test_session_on_a_file_with_weights_aside_matches_onnxruntime(tmp_path):
    model, _ = _weights_model()
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal((3, 96)).astype(np.float32)
    expected = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    session = onnxrt.InferenceSession(path)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)
    from_bytes = onnxrt.InferenceSession(model.SerializeToString())  # the plain parse
    np.testing.assert_array_equal(from_bytes.run(None, {"x": x})[0], session.run(None, {"x": x})[0])
    saved = str(tmp_path / "optimized.onnx")
    options = onnxrt.SessionOptions()
    options.optimized_model_filepath = saved
    onnxrt.InferenceSession(path, options)
    np.testing.assert_allclose(
        onnxruntime.InferenceSession(saved, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0], expected,
        rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("damage,error,message", [
    ("truncated", onnxrt.InvalidProtobuf, "Protobuf parsing failed"),
    ("raw_data_too_short", onnxrt.InvalidGraph, r"Tensor 'w' of shape \[96, 64\] and type FLOAT: its data does not match"),
])
def test_files_it_cannot_read_go_through_the_plain_parse(tmp_path, damage, error, message):
    """A file the reader cannot take apart is parsed whole, which reports what is wrong; a weight
    whose raw_data does not fill its dims is refused naming it, from a file as from bytes."""
    model, _ = _weights_model()
    if damage == "raw_data_too_short":
        w = next(t for t in model.graph.initializer if t.name == "w")
        w.raw_data = w.raw_data[:-4]
    data = model.SerializeToString()
    if damage == "truncated":
        data = data[: len(data) // 2]
    path = str(tmp_path / "m.onnx")
    with open(path, "wb") as f:
        f.write(data)
    found = weights_aside.read(path, LIMIT)
    assert found is None if damage == "truncated" else "w" not in found[1]
    for source in (data, path):
        with pytest.raises(error, match=message):
            onnxrt.InferenceSession(source)


def test_a_file_without_large_initializers_is_parsed_whole(tmp_path):
    graph = h.make_graph([h.make_node("Add", ["x", "b"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [3])],
                         [h.make_tensor_value_info("y", T.FLOAT, None)],
                         [numpy_helper.from_array(np.ones(3, np.float32), "b")])
    path = str(tmp_path / "small.onnx")
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=9), path)
    assert weights_aside.read(path, LIMIT) is None
    np.testing.assert_array_equal(onnxrt.InferenceSession(path).run(None, {"x": np.zeros(3, np.float32)})[0], [1, 1, 1])
