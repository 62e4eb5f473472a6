"""`onnxrt check`: onnx.checker and onnxrt's load check, exit code 1 on any failure."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto as T
from onnx import helper as h

from onnxrt import cli


def _save(tmp_path: Path, nodes, name: str, opsets=(("", 17),)) -> str:
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("X", T.FLOAT, [2])],
                         [h.make_tensor_value_info("Y", T.FLOAT, [2])])
    path = tmp_path / name
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid(d, v) for d, v in opsets]), path)
    return str(path)


def test_good_model_passes(tmp_path: Path, capsys) -> None:
    path = _save(tmp_path, [h.make_node("Relu", ["X"], ["Y"])], "good.onnx")
    assert cli.main(["check", path]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 3 and "all checks passed" in out


def test_unsupported_op_fails_onnxrt_checks(tmp_path: Path, capsys) -> None:
    path = _save(tmp_path, [h.make_node("Mystery", ["X"], ["Y"], name="m", domain="my.domain")], "custom.onnx",
                 opsets=(("", 17), ("my.domain", 1)))
    assert cli.main(["check", path]) == 1
    out = capsys.readouterr().out
    assert "PASS  onnx.checker" in out  # an unknown domain is legal ONNX
    assert "FAIL  onnxrt InferenceSession" in out and "Mystery" in out
    assert "FAIL  every node has a kernel" in out


def test_invalid_model_fails_onnx_checker(tmp_path: Path, capsys) -> None:
    # Y is declared as an output but nothing produces it
    path = _save(tmp_path, [h.make_node("Relu", ["X"], ["Z"])], "broken.onnx")
    assert cli.main(["check", path]) == 1
    out = capsys.readouterr().out
    assert "FAIL  onnx.checker" in out and "FAIL  onnxrt InferenceSession" in out


def test_missing_file(tmp_path: Path, capsys) -> None:
    assert cli.main(["check", str(tmp_path / "none.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
