"""The loader's shape inference runs on a skeleton without the weights, Constant-node weights included."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxrt
from onnxrt.model import loader


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_value"))


def _model_with_constant_weights() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    # a top-level MatMul weight and, inside an If branch, a second one: both Constant nodes
    rng = np.random.default_rng(0)
    w, v = rng.standard_normal((64, 80)).astype(np.float32), rng.standard_normal((80, 90)).astype(np.float32)
    then_branch = helper.make_graph(
        [_constant("v", v), helper.make_node("MatMul", ["h", "v"], ["t"]), helper.make_node("Relu", ["t"], ["b"])],
        "then", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.zeros((1, 90), np.float32), "z"))],
        "else", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    nodes = [_constant("w", w), helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Relu", ["h"], ["r"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64]),
                                           helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("r", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model, {"w": w, "v": v}


def test_skeleton_leaves_out_constant_node_weights_everywhere():
    model, _ = _model_with_constant_weights()
    skeleton = loader._skeleton(model)
    assert skeleton.ByteSize() < 2000 < model.ByteSize()  # 64*80 + 80*90 floats stay behind
    assert len(skeleton.graph.node) == len(model.graph.node)


def test_inferred_shapes_with_weights_restored():
    model, weights = _model_with_constant_weights()
    before = model.SerializeToString()
    proto = loader.infer_shapes(onnx.load_from_string(before))
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.value_info}
    assert shapes["h"] == ["n", 80] and shapes["w"] == [64, 80]
    then_branch = next(a.g for a in proto.graph.node[2].attribute if a.name == "then_branch")
    assert {v.name for v in then_branch.value_info} >= {"t"}  # the subgraph was annotated too
    # the Constant nodes carry their real values again, top level and in the branch
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.node[0].attribute[0].t), weights["w"])
    np.testing.assert_array_equal(numpy_helper.to_array(then_branch.node[0].attribute[0].t), weights["v"])
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    y, r = onnxrt.InferenceSession(before).run(None, {"x": x, "cond": np.array(True)})
    np.testing.assert_allclose(y, np.maximum((x @ weights["w"]) @ weights["v"], 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r, np.maximum(x @ weights["w"], 0), rtol=1e-6)
