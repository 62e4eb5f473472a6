"""Bad input raises onnxruntime's exception class, with its message shape, on both runtimes."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime
import pytest

import onnxrt
from tests.api import models

X = np.ones((2, 3), np.float32)
Y = np.ones((1, 3), np.float32)


def session_pair(model):
    data = model.SerializeToString()
    return onnxrt.InferenceSession(data), onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


def raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - we compare whatever is raised
        return e
    raise AssertionError("no exception was raised")


def assert_same_error(ours_fn, theirs_fn, *, prefix_words: int = 6):
    ours, theirs = raised(ours_fn), raised(theirs_fn)
    assert type(ours).__name__ == type(theirs).__name__, (ours, theirs)
    # onnxruntime's message starts '[ONNXRuntimeError] : <code> : <STATUS> : <text>'
    ours_head = " ".join(str(ours).split()[:prefix_words])
    theirs_head = " ".join(str(theirs).split()[:prefix_words])
    assert ours_head == theirs_head, (str(ours), str(theirs))
    return ours


@pytest.fixture(scope="module")
def add_sessions():
    return session_pair(models.add_model())


def test_unknown_input_name_lists_valid_ones(add_sessions):
    ours, theirs = add_sessions
    err = assert_same_error(lambda: ours.run(None, {"x": X, "y": Y, "q": X}),
                            lambda: theirs.run(None, {"x": X, "y": Y, "q": X}), prefix_words=10)
    assert "x" in str(err) and "y" in str(err)


def test_missing_input(add_sessions):
    ours, theirs = add_sessions
    err = assert_same_error(lambda: ours.run(None, {"x": X}), lambda: theirs.run(None, {"x": X}))
    assert "'y'" in str(err)


def test_wrong_dtype(add_sessions):
    ours, theirs = add_sessions
    err = assert_same_error(lambda: ours.run(None, {"x": X.astype(np.float64), "y": Y}),
                            lambda: theirs.run(None, {"x": X.astype(np.float64), "y": Y}))
    assert str(err).endswith("Actual: (tensor(double)) , expected: (tensor(float))")


def test_wrong_rank(add_sessions):
    ours, theirs = add_sessions
    err = assert_same_error(lambda: ours.run(None, {"x": X[0], "y": Y}), lambda: theirs.run(None, {"x": X[0], "y": Y}))
    assert "Got: 1 Expected: 2" in str(err)


def test_wrong_dimension(add_sessions):
    ours, theirs = add_sessions
    bad = np.ones((1, 4), np.float32)
    ours_err = assert_same_error(lambda: ours.run(None, {"x": X, "y": bad}), lambda: theirs.run(None, {"x": X, "y": bad}))
    theirs_err = raised(lambda: theirs.run(None, {"x": X, "y": bad}))
    assert str(ours_err) == str(theirs_err)


def test_unknown_output_name(add_sessions):
    ours, theirs = add_sessions
    ours_err = assert_same_error(lambda: ours.run(["nope"], {"x": X, "y": Y}), lambda: theirs.run(["nope"], {"x": X, "y": Y}))
    assert str(ours_err) == str(raised(lambda: theirs.run(["nope"], {"x": X, "y": Y})))


def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.onnx")
    err = assert_same_error(lambda: onnxrt.InferenceSession(path), lambda: onnxruntime.InferenceSession(path))
    assert str(err) == str(raised(lambda: onnxruntime.InferenceSession(path)))


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x12\x34garbage" * 10)
    assert_same_error(lambda: onnxrt.InferenceSession(str(path)), lambda: onnxruntime.InferenceSession(str(path)))


def test_truncated_file(tmp_path):
    path = tmp_path / "trunc.onnx"
    path.write_bytes(models.add_model().SerializeToString()[:40])
    assert_same_error(lambda: onnxrt.InferenceSession(str(path)), lambda: onnxruntime.InferenceSession(str(path)))


def test_empty_bytes():
    assert_same_error(lambda: onnxrt.InferenceSession(b""), lambda: onnxruntime.InferenceSession(b""))


def test_unsupported_op_is_reported_at_load_with_op_and_node():
    data = models.unknown_op_model().SerializeToString()
    err = raised(lambda: onnxrt.InferenceSession(data))
    theirs = raised(lambda: onnxruntime.InferenceSession(data))
    # onnxruntime says INVALID_GRAPH (its schema check runs first); onnxrt's NOT_IMPLEMENTED names the same facts
    assert isinstance(err, (onnxrt.NotImplemented, onnxrt.InvalidGraph)), err
    assert isinstance(theirs, onnxruntime.capi.onnxruntime_pybind11_state.InvalidGraph)
    for fact in ("FooBar", "foo0", "17"):
        assert fact in str(err)


def test_unknown_custom_domain_op():
    data = models.unknown_op_model("com.acme").SerializeToString()
    err = raised(lambda: onnxrt.InferenceSession(data))
    assert isinstance(err, onnxrt.NotImplemented)
    for fact in ("FooBar", "foo0", "com.acme"):
        assert fact in str(err)


def test_kernel_failure_names_node_and_op():
    ours, theirs = session_pair(models.reshape_model())
    feed = {"x": np.ones(6, np.float32), "s": np.array([4], np.int64)}
    ours_err = raised(lambda: ours.run(None, feed))
    theirs_err = raised(lambda: theirs.run(None, feed))
    assert isinstance(ours_err, onnxrt.OrtError)
    assert "Non-zero status code returned while running Reshape node. Name:'resh'" in str(ours_err)
    assert "Non-zero status code returned while running Reshape node. Name:'resh'" in str(theirs_err)


def test_external_data_inside_folder_loads(tmp_path):
    path = models.external_data_model(str(tmp_path), "weights/w.bin")
    out = onnxrt.InferenceSession(path).run(None, {"x": np.zeros(3, np.float32)})[0]
    np.testing.assert_array_equal(out, [1, 2, 3])


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin"])
def test_external_data_leaving_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    path = models.external_data_model(str(folder), location)
    with pytest.raises(onnxrt.InvalidGraph, match="outside the model's folder"):
        onnxrt.InferenceSession(path)


def test_external_data_absolute_path_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = models.external_data_model(str(folder), "w.bin")
    import onnx

    model = onnx.load(path, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = str(tmp_path / "model" / "w.bin")
    onnx.save(model, path)
    with pytest.raises(onnxrt.InvalidGraph, match="outside the model's folder"):
        onnxrt.InferenceSession(path)


def test_external_data_symlink_escape_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.array([7, 8, 9], np.float32).tobytes())
    path = models.external_data_model(str(folder), "w.bin")
    os.remove(folder / "w.bin")
    os.symlink(secret, folder / "w.bin")
    with pytest.raises(onnxrt.InvalidGraph, match="outside the model's folder"):
        onnxrt.InferenceSession(path)


def test_unsupported_ir_version_is_refused():
    model = models.add_model()
    model.ir_version = 99
    with pytest.raises(onnxrt.Fail, match="IR version"):
        onnxrt.InferenceSession(model.SerializeToString())


def test_newest_ir_version_loads():
    import onnx

    model = models.add_model(ir_version=onnx.IR_VERSION, opset=onnx.defs.onnx_opset_version())
    out = onnxrt.InferenceSession(model.SerializeToString()).run(None, {"x": X, "y": Y})[0]
    np.testing.assert_array_equal(out, X + Y)


def test_non_model_source_is_a_type_error():
    with pytest.raises(TypeError):
        onnxrt.InferenceSession(12345)


@pytest.mark.parametrize("op,opset,inputs,outputs,what", [
    ("Relu", 17, ["x", "x"], ["y"], "input size 2 not in range [min=1, max=1]"),
    ("Add", 17, ["x"], ["y"], "input size 1 not in range [min=2, max=2]"),
    ("Relu", 17, ["x"], ["y", "z"], "output size 2 not in range [min=1, max=1]"),
    ("Split", 9, ["x", "x"], ["y", "z"], "input size 2 not in range [min=1, max=1]"),  # split became an input at 13
])
def test_node_with_more_or_fewer_inputs_or_outputs_than_its_schema_is_refused_at_load(op, opset, inputs, outputs, what):
    from onnx import TensorProto, helper

    node = helper.make_node(op, inputs, outputs, name="bad")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8).SerializeToString()
    ours = assert_same_error(lambda: onnxrt.InferenceSession(data),
                             lambda: onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]))
    assert isinstance(ours, onnxrt.InvalidGraph)
    for fact in ("'bad'", op, what):
        assert fact in str(ours), str(ours)
