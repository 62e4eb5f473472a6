"""`onnxrt inspect`: facts, FLOPs at given dims, parameters, unsupported nodes, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from onnxrt import cli
from onnxrt.tools.inspect import inspect_model, parse_dims


def conv_model() -> onnx.ModelProto:
    # X[N,3,8,8] -Conv(4x3x3x3, pad 1, bias)-> [N,4,8,8] -Relu- -Reshape-> [N,256] -Gemm(256x10)-> -MatMul(10x5)-> -Add->
    nodes = [
        h.make_node("Conv", ["X", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("Constant", [], ["shape"], value=h.make_tensor("s", T.INT64, [2], [0, -1]), name="shape_const"),
        h.make_node("Reshape", ["r", "shape"], ["flat"], name="flatten"),
        h.make_node("Gemm", ["flat", "G", "GB"], ["g"], transB=1, name="gemm"),
        h.make_node("MatMul", ["g", "M"], ["m"], name="matmul"),
        h.make_node("Add", ["m", "M_bias"], ["Y"], name="add"),
    ]
    inits = [
        h.make_tensor("W", T.FLOAT, [4, 3, 3, 3], [0.0] * 108),
        h.make_tensor("B", T.FLOAT, [4], [0.0] * 4),
        h.make_tensor("G", T.FLOAT, [10, 256], [0.0] * 2560),
        h.make_tensor("GB", T.FLOAT, [10], [0.0] * 10),
        h.make_tensor("M", T.FLOAT16, [10, 5], [0.0] * 50),
        h.make_tensor("M_bias", T.FLOAT16, [5], [0.0] * 5),
    ]
    graph = h.make_graph(
        nodes[:5] + [h.make_node("Cast", ["g"], ["g16"], to=T.FLOAT16, name="cast")]
        + [h.make_node("MatMul", ["g16", "M"], ["m"], name="matmul"), nodes[6]],
        "convnet",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 3, 8, 8])],
        [h.make_tensor_value_info("Y", T.FLOAT16, ["N", 5])],
        initializer=inits,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], producer_name="test-maker")
    h.set_model_props(model, {"author": "tests"})
    return model


@pytest.fixture
def model_path(tmp_path: Path) -> str:
    path = tmp_path / "convnet.onnx"
    onnx.save(conv_model(), path)
    return str(path)


def test_facts_and_flops_at_given_dims() -> None:
    facts = inspect_model(conv_model(), {"N": 2})
    assert facts["opsets"] == {"ai.onnx": 17}
    assert facts["producer"]["name"] == "test-maker"
    assert facts["metadata"] == {"author": "tests"}
    assert facts["inputs"] == [{"name": "X", "type": "float[N,3,8,8]", "dtype": "float", "shape": ["N", 3, 8, 8]}]
    assert facts["outputs"][0]["shape"] == [2, 5]
    assert facts["op_histogram"]["ai.onnx:Conv"] == 1 and facts["node_count"] == 8
    by_op = facts["flops"]["by_op"]
    conv_out = 2 * 4 * 8 * 8
    assert by_op["ai.onnx:Conv"] == 2 * conv_out * 27 + conv_out
    assert by_op["ai.onnx:Gemm"] == 2 * 2 * 10 * 256 + 2 * 10
    assert by_op["ai.onnx:MatMul"] == 2 * 2 * 5 * 10
    assert by_op["ai.onnx:Relu"] == conv_out and by_op["ai.onnx:Add"] == 10
    assert "ai.onnx:Reshape" not in by_op  # data movement costs nothing
    assert facts["flops"]["nodes_with_unknown_shapes"] == []
    params = facts["parameters"]
    assert params["by_dtype"]["float"] == {"count": 108 + 4 + 2560 + 10, "bytes": 4 * 2682, "tensors": 4}
    assert params["by_dtype"]["float16"]["bytes"] == 2 * 55
    assert params["by_dtype"]["int64"] == {"count": 2, "bytes": 16, "tensors": 1}  # the Constant node
    assert facts["unsupported_nodes"] == []


def test_symbolic_dims_leave_shapes_unknown() -> None:
    facts = inspect_model(conv_model())
    unknown = {u["node"] for u in facts["flops"]["nodes_with_unknown_shapes"]}
    assert {"conv", "gemm", "matmul"} <= unknown


def test_attention_flops() -> None:
    graph = h.make_graph(
        [h.make_node("Attention", ["Q", "K", "V"], ["Y"], q_num_heads=4, kv_num_heads=4)],
        "attn",
        [h.make_tensor_value_info(n, T.FLOAT, [2, 16, 64]) for n in ("Q", "K", "V")],
        [h.make_tensor_value_info("Y", T.FLOAT, None)],
    )
    facts = inspect_model(h.make_model(graph, opset_imports=[h.make_opsetid("", 23)]))
    # scores 2*B*S*S*D and weighted values 2*B*S*S*D
    assert facts["flops"]["by_op"]["ai.onnx:Attention"] == 4 * 2 * 16 * 16 * 64


def test_unsupported_and_function_expanded_nodes() -> None:
    graph = h.make_graph(
        [h.make_node("FooBar", ["X"], ["a"], name="mystery", domain="my.domain"),
         h.make_node("Relu", ["a"], ["Y"], name="ok")],
        "g",
        [h.make_tensor_value_info("X", T.FLOAT, [2])],
        [h.make_tensor_value_info("Y", T.FLOAT, [2])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("my.domain", 1)])
    facts = inspect_model(model)
    assert [(u["node"], u["op"]) for u in facts["unsupported_nodes"]] == [("mystery", "my.domain:FooBar")]


def test_cli_text_and_json(model_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", model_path, "--dim", "N=2"]) == 0
    text = capsys.readouterr().out
    assert "ai.onnx:Conv" in text and "FLOPs" in text and "at N=2" in text
    assert cli.main(["inspect", model_path, "--dim", "N=2", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["dims"] == {"N": 2} and facts["flops"]["total"] > 0


def test_bad_dim_and_missing_file(model_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", model_path, "--dim", "N"]) == 1
    assert "NAME=VALUE" in capsys.readouterr().err
    assert cli.main(["inspect", str(tmp_path / "missing.onnx")]) == 1
    assert "doesn't exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="integer"):
        parse_dims(["N=two"])
