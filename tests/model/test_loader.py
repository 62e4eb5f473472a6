"""The loader's shape inference runs on a skeleton without the weights, Constant-node weights included."""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import onnx
import onnx_ir
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


def test_inferred_shapes_reach_the_subgraphs_with_the_weights_in_place():
    model, weights = _model_with_constant_weights()
    before = model.SerializeToString()
    proto = onnx.load_from_string(before)
    inferred = loader.infer_shapes(proto)
    assert proto.SerializeToString() == before  # the results come back apart from the model
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.value_info}
    assert shapes["h"] == ["n", 80] and shapes["w"] == [64, 80]
    graph = loader.load(before).model.graph
    then_branch = graph.node(2).attributes["then_branch"].value
    matmul = next(n for n in then_branch if n.op_type == "MatMul")
    assert matmul.outputs[0].shape is not None and list(matmul.outputs[0].shape)[1] == 90  # typed in the branch
    # the Constant nodes carry their real values, top level and in the branch
    np.testing.assert_array_equal(graph.node(0).attributes["value"].value.numpy(), weights["w"])
    np.testing.assert_array_equal(then_branch.node(0).attributes["value"].value.numpy(), weights["v"])
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    y, r = onnxrt.InferenceSession(before).run(None, {"x": x, "cond": np.array(True)})
    np.testing.assert_allclose(y, np.maximum((x @ weights["w"]) @ weights["v"], 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r, np.maximum(x @ weights["w"], 0), rtol=1e-6)


def _types(values) -> dict[str, tuple]:
    return {v.name: (v.type, None if v.shape is None else [d if isinstance(d, int) else d.value for d in v.shape])
            for v in values}


def _typed_by_onnx_ir(proto: onnx.ModelProto) -> onnx_ir.Model:
    """The model as onnx_ir reads it with inference's results in the proto (every subgraph annotated)."""
    inferred = loader.infer_shapes(proto)
    full = onnx.ModelProto()
    full.CopyFrom(proto)
    if inferred is not None:
        full.graph.CopyFrom(inferred)  # large weights stubbed: only the types are compared
    return onnx_ir.serde.deserialize_model(loader.set_aside_map_types(full)[0])


def _graph_values(graph: onnx_ir.Graph) -> tuple[list, list]:
    """Every node output and every graph output of ``graph`` and its subgraphs, in one order."""
    produced, outputs = [], list(graph.outputs)
    for node in graph:
        produced.extend(node.outputs)
        for attr in node.attributes.values():
            subs = [attr.value] if attr.type == onnx_ir.AttributeType.GRAPH else (
                list(attr.value) if attr.type == onnx_ir.AttributeType.GRAPHS else [])
            for sub in subs:
                p, o = _graph_values(sub)
                produced.extend(p)
                outputs.extend(o)
                produced.extend(sub.inputs)  # a Loop body's carried values are typed by inference
    return produced, outputs


def _backend_suite_models() -> list[onnx.ModelProto]:
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    return [onnx.load(path) for kind in ("simple", "pytorch-converted", "pytorch-operator", "light")
            for path in sorted(glob.glob(os.path.join(root, kind, "*", "model.onnx")))]


def test_inferred_types_are_the_ones_onnx_ir_would_read():
    # the loader sets plain tensor types itself (onnx_ir's value_info path is slow): every value of
    # onnx's model suites (convolutional nets, string ops, sequences), a model with symbolic dims and
    # an If, the node suite's If / Loop / Scan / SequenceMap models (subgraphs and their inputs), and one
    # whose inference invents a dim comes out typed as
    # onnx_ir reads them from the proto
    models = _backend_suite_models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        with_subgraphs = [case.model for case in collect_testcases()
                          if case.name.startswith(("test_if", "test_loop", "test_scan", "test_sequence_map"))]
    assert len(with_subgraphs) > 15
    models += with_subgraphs
    untyped_body_input = helper.make_graph(  # inference types the body's y_in from the Loop's y0
        [helper.make_node("Add", ["y_in", "y_in"], ["y_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_value_info("y_in", onnx.TypeProto())],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("y_out", TensorProto.FLOAT, None)])
    models.append(helper.make_model(helper.make_graph(
        [helper.make_node("Loop", ["n", "", "y0"], ["y"], body=untyped_body_input)], "loop",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []), helper.make_tensor_value_info("y0", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    symbolic, _ = _model_with_constant_weights()
    models.append(symbolic)
    reshape = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"]), helper.make_node("Shape", ["y"], ["z"], start=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("z", TensorProto.INT64, None)])
    models.append(helper.make_model(reshape, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    assert len(models) > 140
    for proto in models:
        mine, mine_outputs = _graph_values(loader.load(proto.SerializeToString()).model.graph)
        theirs, their_outputs = _graph_values(_typed_by_onnx_ir(proto).graph)
        assert _types(mine) == _types(theirs), proto.graph.name
        assert _types(mine_outputs) == _types(their_outputs), proto.graph.name


def test_a_session_leaves_the_callers_model_proto_as_it_was():
    with_if, _ = _model_with_constant_weights()  # inference annotates the If's branches: on a copy
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)],
        ir_version=9)
    for model in (with_if, plain):
        before = model.SerializeToString()
        onnxrt.InferenceSession(model)  # shape inference wrote its value_info into the caller's proto once
        assert model.SerializeToString() == before
