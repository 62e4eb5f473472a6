"""convert_float_to_float16: the converted model is valid, runs in onnxrt and onnxruntime, and stays close."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxrt
from onnxrt.tools.float16 import convert_float_to_float16

ort = pytest.importorskip("onnxruntime")

F = TensorProto.FLOAT
rng = np.random.default_rng(0)


def _init(name: str, array) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _run_both(model: onnx.ModelProto, feeds: dict) -> tuple[list, list]:
    data = model.SerializeToString()
    ours = onnxrt.InferenceSession(data).run(None, feeds)
    theirs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    return ours, theirs


def _check(model: onnx.ModelProto, feeds32: dict, rtol: float = 2e-2, atol: float = 2e-2, **kwargs) -> onnx.ModelProto:
    reference = onnxrt.InferenceSession(model.SerializeToString()).run(None, feeds32)
    converted = convert_float_to_float16(model, **kwargs)
    onnx.checker.check_model(converted, full_check=True)
    keep = kwargs.get("keep_io_types", False)
    input_types = {i.name: i.type.tensor_type.elem_type for i in converted.graph.input}
    feeds = {k: (v.astype(np.float16) if input_types[k] == TensorProto.FLOAT16 else v) for k, v in feeds32.items()}
    ours, theirs = _run_both(converted, feeds)
    for r, a, b in zip(reference, ours, theirs):
        if keep and r.dtype == np.float32:
            assert a.dtype == np.float32 and b.dtype == np.float32
        assert a.dtype == b.dtype and a.shape == b.shape == r.shape
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=rtol, atol=atol)
        np.testing.assert_allclose(a.astype(np.float32), r.astype(np.float32), rtol=rtol, atol=atol)
    return converted


def test_small_cnn_halves_size_and_keeps_io_types():
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2
    fc = rng.standard_normal((8, 4)).astype(np.float32) * 0.2
    model = _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fc", "fb"], ["y"]),
         helper.make_node("Softmax", ["y"], ["prob"])],
        [helper.make_tensor_value_info("x", F, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("prob", F, [1, 4])],
        [_init("w", w), _init("b", np.zeros(8, np.float32)), _init("fc", fc), _init("fb", np.ones(4, np.float32))])
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    for keep in (False, True):
        converted = _check(model, {"x": x}, keep_io_types=keep)
        assert all(t.data_type == TensorProto.FLOAT16 for t in converted.graph.initializer)
        weight_bytes = lambda m: sum(len(t.SerializeToString()) for t in m.graph.initializer)  # noqa: E731
        assert weight_bytes(converted) < 0.6 * weight_bytes(model)
        expected = TensorProto.FLOAT if keep else TensorProto.FLOAT16
        assert converted.graph.input[0].type.tensor_type.elem_type == expected
        assert converted.graph.output[0].type.tensor_type.elem_type == expected


def test_spec_float32_inputs_resize_range_constantofshape_cast():
    # Resize scales must stay float32; Range has no float16 kernel (blocked); ConstantOfShape's value and
    # Cast(to=FLOAT) switch to float16.
    model = _model(
        [helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="linear"),
         helper.make_node("Shape", ["up"], ["shape"]),
         helper.make_node("ConstantOfShape", ["shape"], ["ones"], value=helper.make_tensor("v", F, [1], [0.5])),
         helper.make_node("Add", ["up", "ones"], ["s"]),
         helper.make_node("Range", ["start", "limit", "delta"], ["rng"]),
         helper.make_node("Cast", ["ishape"], ["ifloat"], to=F),
         helper.make_node("ReduceSum", ["s"], ["total"], keepdims=0),
         helper.make_node("Mul", ["rng", "total"], ["scaled"]),
         helper.make_node("Add", ["scaled", "ifloat"], ["y"])],
        [helper.make_tensor_value_info("x", F, [1, 1, 2, 2]),
         helper.make_tensor_value_info("ishape", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", F, [4]), helper.make_tensor_value_info("up", F, [1, 1, 4, 4])],
        [_init("scales", np.array([1, 1, 2, 2], np.float32)), _init("start", np.array(0.0, np.float32)),
         _init("limit", np.array(2.0, np.float32)), _init("delta", np.array(0.5, np.float32))])
    converted = _check(model, {"x": rng.random((1, 1, 2, 2)).astype(np.float32),
                               "ishape": np.array([1, 2, 3, 4], np.int64)}, rtol=5e-2, atol=5e-2)
    inits = {t.name: t.data_type for t in converted.graph.initializer}
    assert inits["scales"] == TensorProto.FLOAT
    assert inits["start"] == TensorProto.FLOAT  # Range stays float32
    range_node = next(n for n in converted.graph.node if n.op_type == "Range")
    assert all(inits.get(i, TensorProto.FLOAT) == TensorProto.FLOAT for i in range_node.input)


def test_if_subgraph_layernorm_and_blocked_node():
    then_graph = helper.make_graph(
        [helper.make_node("Mul", ["h", "two"], ["t_out"])], "then", [],
        [helper.make_tensor_value_info("t_out", F, [2, 8])], [_init("two", np.array(2.0, np.float32))])
    else_graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["h"], ["e_out"])], "else", [],
        [helper.make_tensor_value_info("e_out", F, [2, 8])])
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]),
         helper.make_node("Tanh", ["m"], ["blocked_out"], name="keep_me_fp32"),
         helper.make_node("LayerNormalization", ["blocked_out", "gamma", "beta"], ["h"], axis=-1),
         helper.make_node("If", ["cond"], ["branch"], then_branch=then_graph, else_branch=else_graph),
         helper.make_node("Add", ["branch", "h"], ["y"])],
        [helper.make_tensor_value_info("x", F, [2, 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", F, [2, 8])],
        [_init("w", rng.standard_normal((8, 8)).astype(np.float32) * 0.3),
         _init("gamma", np.ones(8, np.float32)), _init("beta", np.zeros(8, np.float32))])
    x = rng.standard_normal((2, 8)).astype(np.float32)
    for cond in (True, False):
        converted = _check(model, {"x": x, "cond": np.array(cond)}, node_block_list=["keep_me_fp32"])
    blocked = next(n for n in converted.graph.node if n.name == "keep_me_fp32")
    producers = {o: n for n in converted.graph.node for o in n.output}
    assert producers[blocked.input[0]].op_type == "Cast"  # float16 MatMul output cast back to float32
    if_node = next(n for n in converted.graph.node if n.op_type == "If")
    then_branch = next(a.g for a in if_node.attribute if a.name == "then_branch")
    assert then_branch.initializer[0].data_type == TensorProto.FLOAT16


def test_clamping_and_constant_nodes():
    model = _model(
        [helper.make_node("Constant", [], ["big"], value=helper.make_tensor("c", F, [3], [1e9, -1e9, 1e-12])),
         helper.make_node("Constant", [], ["half"], value_float=0.5),
         helper.make_node("Mul", ["x", "half"], ["xh"]),
         helper.make_node("Add", ["xh", "big"], ["y"])],
        [helper.make_tensor_value_info("x", F, [3])], [helper.make_tensor_value_info("y", F, [3])])
    converted = convert_float_to_float16(model, keep_io_types=True)
    onnx.checker.check_model(converted, full_check=True)
    ours, theirs = _run_both(converted, {"x": np.ones(3, np.float32)})
    np.testing.assert_allclose(ours[0], [1e4, -1e4, 0.5], rtol=1e-3)
    # onnxruntime's CPU provider runs float16 Add in float32 (cast transformer): agree to float16 precision
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-3)


def test_loop_body_and_sklearn_blocked_ops():
    body = helper.make_graph(
        [helper.make_node("Mul", ["acc_in", "factor"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", F, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", F, [2])])
    model = _model(
        [helper.make_node("Relu", ["x"], ["rx"]),
         helper.make_node("Loop", ["n", "", "rx"], ["y"], body=body)],
        [helper.make_tensor_value_info("x", F, [2]), helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", F, [2])],
        [_init("factor", np.array([1.5, 0.5], np.float32))])
    _check(model, {"x": np.array([1.0, 2.0], np.float32), "n": np.array(3, np.int64)})


def test_sklearn_pipeline_keeps_ml_ops_float32():
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx.common.data_types import FloatTensorType

    X = rng.standard_normal((20, 4)).astype(np.float32)
    pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(X, X @ np.arange(4))
    model = skl2onnx.convert_sklearn(pipe, initial_types=[("X", FloatTensorType([None, 4]))], target_opset=17)
    converted = convert_float_to_float16(model, keep_io_types=True)
    onnx.checker.check_model(converted, full_check=True)
    ours, theirs = _run_both(converted, {"X": X})
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours[0].ravel(), pipe.predict(X), rtol=1e-4, atol=1e-3)


def test_bad_input_is_reported():
    with pytest.raises(TypeError, match="ModelProto"):
        convert_float_to_float16(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="65504"):
        convert_float_to_float16(onnx.ModelProto(), max_finite_val=1e6)
