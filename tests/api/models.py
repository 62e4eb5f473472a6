"""Small models built with onnx.helper for the API tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h


def add_model(ir_version: int = 8, opset: int = 17) -> onnx.ModelProto:
    """z = x + y with a symbolic batch dim, plus metadata."""
    graph = h.make_graph(
        [h.make_node("Add", ["x", "y"], ["z"], name="add0")],
        "add_graph",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 3]), h.make_tensor_value_info("y", T.FLOAT, [1, 3])],
        [h.make_tensor_value_info("z", T.FLOAT, ["N", 3])],
        doc_string="graph doc",
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], producer_name="onnxrt-tests",
                         producer_version="1.0", domain="ai.test", model_version=3, doc_string="model doc")
    model.ir_version = ir_version
    h.set_model_props(model, {"author": "tests", "license": "MIT"})
    return model


def overridable_model() -> onnx.ModelProto:
    """z = x + w, where w is an initializer that is also a graph input (overridable)."""
    graph = h.make_graph(
        [h.make_node("Add", ["x", "w"], ["z"], name="add_w"),
         h.make_node("SequenceConstruct", ["x", "z"], ["s"], name="seq")],
        "over",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 3]), h.make_tensor_value_info("w", T.FLOAT, [3])],
        [h.make_tensor_value_info("z", T.FLOAT, ["N", 3]), h.make_tensor_sequence_value_info("s", T.FLOAT, None)],
        [h.make_tensor("w", T.FLOAT, [3], [1, 2, 3])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def reshape_model() -> onnx.ModelProto:
    graph = h.make_graph(
        [h.make_node("Reshape", ["x", "s"], ["z"], name="resh")],
        "reshape",
        [h.make_tensor_value_info("x", T.FLOAT, [None]), h.make_tensor_value_info("s", T.INT64, [1])],
        [h.make_tensor_value_info("z", T.FLOAT, None)],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def unknown_op_model(domain: str = "") -> onnx.ModelProto:
    opsets = [h.make_opsetid("", 17)] + ([h.make_opsetid(domain, 1)] if domain else [])
    graph = h.make_graph(
        [h.make_node("FooBar", ["x"], ["z"], name="foo0", domain=domain)],
        "unknown",
        [h.make_tensor_value_info("x", T.FLOAT, [3])],
        [h.make_tensor_value_info("z", T.FLOAT, [3])],
    )
    model = h.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def slow_loop_model(iterations: int = 10_000_000) -> onnx.ModelProto:
    """A Loop that runs for a very long time: for RunOptions.terminate."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("acc_in", T.FLOAT, [])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("acc_out", T.FLOAT, [])],
    )
    graph = h.make_graph(
        [h.make_node("Loop", ["M", "", "acc0"], ["acc"], body=body)],
        "slow",
        [h.make_tensor_value_info("acc0", T.FLOAT, [])],
        [h.make_tensor_value_info("acc", T.FLOAT, [])],
        [h.make_tensor("M", T.INT64, [], [iterations]), h.make_tensor("one", T.FLOAT, [], [1.0])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def external_data_model(folder, location: str) -> str:
    """Save a model whose initializer lives in external data at ``location`` (relative to the model)."""
    import os

    from onnx.external_data_helper import set_external_data

    weights = np.array([1, 2, 3], np.float32)
    tensor = h.make_tensor("w", T.FLOAT, [3], weights.tobytes(), raw=True)
    set_external_data(tensor, location=location, offset=0, length=weights.nbytes)
    tensor.data_location = T.EXTERNAL
    tensor.ClearField("raw_data")
    graph = h.make_graph(
        [h.make_node("Add", ["x", "w"], ["z"])],
        "ext",
        [h.make_tensor_value_info("x", T.FLOAT, [3])],
        [h.make_tensor_value_info("z", T.FLOAT, [3])],
        [tensor],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    data_path = os.path.normpath(os.path.join(folder, location))
    os.makedirs(os.path.dirname(data_path), exist_ok=True)
    with open(data_path, "wb") as f:
        f.write(weights.tobytes())
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path
