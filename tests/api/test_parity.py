"""The same calls on onnxrt and onnxruntime, compared: results, NodeArgs, metadata, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime
import pytest

import onnxrt
from tests.api import models
from tests.concurrency import run_concurrently

RUNTIMES = pytest.mark.parametrize("rt", [onnxrt, onnxruntime], ids=["onnxrt", "onnxruntime"])


def both(model, **kwargs):
    data = model.SerializeToString()
    return (
        onnxrt.InferenceSession(data, **kwargs),
        onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"], **kwargs),
    )


def node_args(args):
    return [(a.name, a.type, a.shape) for a in args]


def test_node_args_match():
    ours, theirs = both(models.add_model())
    assert node_args(ours.get_inputs()) == node_args(theirs.get_inputs())
    assert node_args(ours.get_outputs()) == node_args(theirs.get_outputs())
    assert node_args(ours.get_overridable_initializers()) == node_args(theirs.get_overridable_initializers())


def test_overridable_initializers_and_sequences_match():
    ours, theirs = both(models.overridable_model())
    assert node_args(ours.get_inputs()) == node_args(theirs.get_inputs())
    assert node_args(ours.get_outputs()) == node_args(theirs.get_outputs())
    assert node_args(ours.get_overridable_initializers()) == node_args(theirs.get_overridable_initializers())
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for feed in ({"x": x}, {"x": x, "w": np.full(3, 10, np.float32)}):
        a, b = ours.run(None, feed), theirs.run(None, feed)
        np.testing.assert_array_equal(a[0], b[0])
        assert isinstance(a[1], list) and isinstance(b[1], list)
        for u, v in zip(a[1], b[1]):
            np.testing.assert_array_equal(u, v)


def test_model_metadata_matches():
    ours, theirs = both(models.add_model())
    for field in ("producer_name", "graph_name", "domain", "description", "graph_description", "version",
                  "custom_metadata_map"):
        assert getattr(ours.get_modelmeta(), field) == getattr(theirs.get_modelmeta(), field), field
    ours, theirs = both(models.overridable_model())  # no model_version set
    assert ours.get_modelmeta().version == theirs.get_modelmeta().version


def test_run_results_and_output_selection_match():
    ours, theirs = both(models.add_model())
    feed = {"x": np.random.rand(4, 3).astype(np.float32), "y": np.random.rand(1, 3).astype(np.float32)}
    np.testing.assert_array_equal(ours.run(None, feed)[0], theirs.run(None, feed)[0])
    np.testing.assert_array_equal(ours.run(["z"], feed)[0], theirs.run(["z"], feed)[0])
    np.testing.assert_array_equal(ours.run([], feed)[0], theirs.run([], feed)[0])
    # Python lists are accepted and converted to the input's dtype, as onnxruntime does
    listed = {"x": feed["x"].tolist(), "y": feed["y"]}
    np.testing.assert_array_equal(ours.run(None, listed)[0], theirs.run(None, listed)[0])


def test_run_with_ort_values():
    ours, theirs = both(models.add_model())
    x = np.ones((2, 3), np.float32)
    y = np.ones((1, 3), np.float32)
    a = ours.run_with_ort_values(None, {"x": onnxrt.OrtValue.ortvalue_from_numpy(x), "y": onnxrt.OrtValue.ortvalue_from_numpy(y)})
    b = theirs.run_with_ort_values(None, {"x": onnxruntime.OrtValue.ortvalue_from_numpy(x), "y": onnxruntime.OrtValue.ortvalue_from_numpy(y)})
    assert isinstance(a, list) and isinstance(a[0], onnxrt.OrtValue)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert a[0].shape() == b[0].shape()
    assert a[0].data_type() == b[0].data_type()
    assert a[0].element_type() == b[0].element_type()


@RUNTIMES
def test_ortvalue_api(rt):
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    v = rt.OrtValue.ortvalue_from_numpy(x)
    assert v.shape() == [2, 3]
    assert v.data_type() == "tensor(int64)"
    assert v.element_type() == 7
    assert v.device_name().lower() == "cpu"
    assert v.is_tensor() and v.has_value()
    assert v.tensor_size_in_bytes() == 48
    np.testing.assert_array_equal(v.numpy(), x)
    z = rt.OrtValue.ortvalue_from_shape_and_type([2, 2], np.float32)
    assert z.shape() == [2, 2] and z.data_type() == "tensor(float)"


def test_ortvalue_dlpack_both_ways():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    v = onnxrt.OrtValue.ortvalue_from_numpy(x)
    np.testing.assert_array_equal(np.from_dlpack(v), x)
    back = onnxrt.OrtValue.from_dlpack(v.to_dlpack())
    np.testing.assert_array_equal(back.numpy(), x)
    from_numpy = onnxrt.OrtValue.from_dlpack(x)
    np.testing.assert_array_equal(from_numpy.numpy(), x)
    # onnxruntime's own OrtValue can be read through DLPack too
    theirs = onnxruntime.OrtValue.ortvalue_from_numpy(x)
    np.testing.assert_array_equal(onnxrt.OrtValue.from_dlpack(theirs._ortvalue.to_dlpack()).numpy(), x)


def test_session_options_defaults_match():
    ours, theirs = onnxrt.SessionOptions(), onnxruntime.SessionOptions()
    for field in ("intra_op_num_threads", "inter_op_num_threads", "log_severity_level", "log_verbosity_level",
                  "optimized_model_filepath", "enable_profiling", "profile_file_prefix", "enable_mem_pattern",
                  "enable_cpu_mem_arena", "logid", "use_deterministic_compute"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert int(ours.graph_optimization_level) == int(theirs.graph_optimization_level)
    assert int(ours.execution_mode) == int(theirs.execution_mode)
    ours.add_session_config_entry("session.x", "1")
    assert ours.get_session_config_entry("session.x") == "1"
    for opts in (ours, theirs):
        with pytest.raises(RuntimeError):
            opts.get_session_config_entry("missing.key")


def test_enums_match():
    for name, member in onnxruntime.GraphOptimizationLevel.__members__.items():
        assert int(getattr(onnxrt.GraphOptimizationLevel, name)) == int(member)
    for name, member in onnxruntime.ExecutionMode.__members__.items():
        assert int(getattr(onnxrt.ExecutionMode, name)) == int(member)


def test_run_options_defaults_match():
    ours, theirs = onnxrt.RunOptions(), onnxruntime.RunOptions()
    for field in ("terminate", "log_severity_level", "logid", "only_execute_path_to_fetches"):
        assert getattr(ours, field) == getattr(theirs, field), field


def test_module_functions():
    assert "CPUExecutionProvider" in onnxrt.get_available_providers()
    assert onnxrt.get_device() == onnxruntime.get_device() == "CPU"
    assert isinstance(onnxrt.get_version_string(), str)


def test_providers_api_matches():
    ours, theirs = both(models.add_model())
    assert ours.get_providers() == theirs.get_providers()
    assert ours.get_provider_options() == theirs.get_provider_options()
    ours.set_providers(["CPUExecutionProvider"])
    assert ours.get_providers() == ["CPUExecutionProvider"]


@RUNTIMES
def test_unavailable_provider_warns_and_falls_back(rt):
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        s = rt.InferenceSession(models.add_model().SerializeToString(),
                                providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert s.get_providers() == ["CPUExecutionProvider"]


def test_free_dimension_override_matches():
    opts_ours, opts_theirs = onnxrt.SessionOptions(), onnxruntime.SessionOptions()
    for o in (opts_ours, opts_theirs):
        o.add_free_dimension_override_by_name("N", 2)
    data = models.add_model().SerializeToString()
    ours = onnxrt.InferenceSession(data, opts_ours)
    theirs = onnxruntime.InferenceSession(data, opts_theirs, providers=["CPUExecutionProvider"])
    assert node_args(ours.get_inputs()) == node_args(theirs.get_inputs())
    assert node_args(ours.get_outputs()) == node_args(theirs.get_outputs())


def test_exceptions_importable_like_onnxruntime():
    from onnxrt.capi import onnxruntime_pybind11_state as ours
    from onnxruntime.capi import onnxruntime_pybind11_state as theirs

    for name in ("Fail", "InvalidArgument", "NoSuchFile", "InvalidProtobuf", "NotImplemented", "InvalidGraph",
                 "RuntimeException", "EPFail", "NoModel", "EngineError", "ModelLoaded"):
        assert issubclass(getattr(ours, name), Exception)
        assert hasattr(theirs, name)
        assert getattr(onnxrt, name) is getattr(ours, name)


def test_run_options_terminate_from_another_thread():
    session = onnxrt.InferenceSession(models.slow_loop_model().SerializeToString())
    options = onnxrt.RunOptions()
    timer = threading.Timer(0.3, lambda: setattr(options, "terminate", True))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(onnxrt.Fail, match="terminate"):
        session.run(None, {"acc0": np.array(0, np.float32)}, options)
    assert time.perf_counter() - t0 < 10
    timer.cancel()


def test_outputs_never_alias_weights():
    session = onnxrt.InferenceSession(models.overridable_model().SerializeToString())
    z = session.run(None, {"x": np.zeros((1, 3), np.float32)})[0]
    z += 100  # the caller owns the output: writing it must not change the model
    again = session.run(None, {"x": np.zeros((1, 3), np.float32)})[0]
    np.testing.assert_array_equal(again, [[1, 2, 3]])


@pytest.mark.parametrize("op_type", ["Identity", "Flatten"])  # the feed itself; a view of it
def test_outputs_never_alias_the_callers_feeds(op_type):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node(op_type, ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the node
    session = onnxrt.InferenceSession(model.SerializeToString(), options)
    x = np.arange(6, dtype=np.float32).reshape(2, 3).copy()  # owning its memory, as most feeds do
    y = session.run(None, {"x": x})[0]
    assert not np.shares_memory(x, y)
    y += 100
    np.testing.assert_array_equal(x, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_concurrent_runs_from_threads():
    session = onnxrt.InferenceSession(models.add_model().SerializeToString())
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(50):
            x = rng.random((5, 3), dtype=np.float32)
            y = rng.random((1, 3), dtype=np.float32)
            if not np.array_equal(session.run(None, {"x": x, "y": y})[0], x + y):
                errors.append(seed)

    run_concurrently(work, 4)
    assert not errors


def test_optimized_model_filepath_writes_a_model_both_runtimes_load(tmp_path):
    path = str(tmp_path / "optimized.onnx")
    options = onnxrt.SessionOptions()
    options.optimized_model_filepath = path
    onnxrt.InferenceSession(models.add_model().SerializeToString(), options)
    feed = {"x": np.ones((2, 3), np.float32), "y": np.full((1, 3), 2, np.float32)}
    np.testing.assert_array_equal(onnxrt.InferenceSession(path).run(None, feed)[0],
                                  onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)[0])


def test_session_options_fields_from_later_features_are_accepted():
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxrt.ExecutionMode.ORT_PARALLEL
    options.log_severity_level = 3
    session = onnxrt.InferenceSession(models.add_model().SerializeToString(), options)
    out = session.run(None, {"x": np.ones((2, 3), np.float32), "y": np.ones((1, 3), np.float32)})[0]
    np.testing.assert_array_equal(out, np.full((2, 3), 2, np.float32))


def test_intermediate_values_can_be_fetched_by_name():
    """onnxruntime refuses this ('Invalid output name'); onnxrt returns any value inside the graph."""
    from onnx import TensorProto as T
    from onnx import helper as h

    graph = h.make_graph(
        [h.make_node("Neg", ["x"], ["a"]), h.make_node("Relu", ["a"], ["b"]), h.make_node("Add", ["b", "x"], ["y"])],
        "g", [h.make_tensor_value_info("x", T.FLOAT, [3])], [h.make_tensor_value_info("y", T.FLOAT, [3])],
    )
    data = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8).SerializeToString()
    x = np.array([-1, 0, 2], np.float32)
    session = onnxrt.InferenceSession(data)
    a, y, b = session.run(["a", "y", "b"], {"x": x})
    np.testing.assert_array_equal(a, -x)
    np.testing.assert_array_equal(b, np.maximum(-x, 0))
    np.testing.assert_array_equal(y, np.maximum(-x, 0) + x)
    assert session.run(["a"], {"x": x})[0].tolist() == [1, 0, -2]
    with pytest.raises(onnxrt.InvalidArgument, match="Invalid output name:nope"):
        session.run(["nope"], {"x": x})
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument):
        onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["a"], {"x": x})


def test_ir3_initializers_are_constants_like_onnxruntime():
    import os

    import onnx

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_squeezenet.onnx")
    ours = onnxrt.InferenceSession(path)
    theirs = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert node_args(ours.get_inputs()) == node_args(theirs.get_inputs())
    assert node_args(ours.get_overridable_initializers()) == node_args(theirs.get_overridable_initializers()) == []
