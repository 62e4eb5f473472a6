"""`onnxrt run`: inputs from every file kind or random data, outputs printed/saved, --dump of intermediates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from onnxrt import cli


def small_model() -> onnx.ModelProto:
    # Y = relu(X @ W + 1) ; idx-driven Gather picks rows of E: an int input that must stay in range
    graph = h.make_graph(
        [
            h.make_node("MatMul", ["X", "W"], ["xw"], name="matmul"),
            h.make_node("Add", ["xw", "one"], ["shifted"], name="add/1"),
            h.make_node("Relu", ["shifted"], ["Y"], name="relu"),
            h.make_node("Gather", ["E", "idx"], ["rows"], name="gather"),
        ],
        "small",
        [h.make_tensor_value_info("X", T.FLOAT, ["batch", 3]), h.make_tensor_value_info("idx", T.INT64, [4])],
        [h.make_tensor_value_info("Y", T.FLOAT, ["batch", 2]), h.make_tensor_value_info("rows", T.FLOAT, [4, 2])],
        initializer=[
            h.make_tensor("W", T.FLOAT, [3, 2], [1, 0, 0, 1, 1, 1]),
            h.make_tensor("one", T.FLOAT, [], [1.0]),
            h.make_tensor("E", T.FLOAT, [10, 2], list(range(20))),
        ],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def model_path(tmp_path: Path) -> str:
    path = tmp_path / "small.onnx"
    onnx.save(small_model(), path)
    return str(path)


X = np.array([[1, -5, 2], [0, 1, 1]], dtype=np.float32)
IDX = np.array([0, 9, 3, 3], dtype=np.int64)
W = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
EXPECTED_Y = np.maximum(X @ W + 1, 0)


def _run(args: list[str]) -> int:
    return cli.main(["run", *args])


@pytest.mark.parametrize("kind", ["npy", "npz", "pb", "json"])
def test_inputs_from_files(kind: str, model_path: str, tmp_path: Path) -> None:
    if kind == "npy":
        np.save(tmp_path / "x.npy", X)
        np.save(tmp_path / "i.npy", IDX)
        inputs = ["--input", f"X={tmp_path / 'x.npy'}", "--input", f"idx={tmp_path / 'i.npy'}"]
    elif kind == "npz":
        np.savez(tmp_path / "feeds.npz", X=X, idx=IDX)
        inputs = ["--input", str(tmp_path / "feeds.npz")]
    elif kind == "pb":
        (tmp_path / "x.pb").write_bytes(onnx.numpy_helper.from_array(X).SerializeToString())
        (tmp_path / "i.pb").write_bytes(onnx.numpy_helper.from_array(IDX).SerializeToString())
        inputs = ["--input", f"X={tmp_path / 'x.pb'}", "--input", f"idx={tmp_path / 'i.pb'}"]
    else:  # JSON nested lists take the input's dtype
        (tmp_path / "x.json").write_text(json.dumps(X.tolist()))
        (tmp_path / "i.json").write_text(json.dumps(IDX.tolist()))
        inputs = ["--input", f"X={tmp_path / 'x.json'}", "--input", f"idx={tmp_path / 'i.json'}"]
    out = tmp_path / "out"
    assert _run([model_path, *inputs, "--output-dir", str(out)]) == 0
    y = np.load(out / "Y.npy")
    assert y.dtype == np.float32 and np.array_equal(y, EXPECTED_Y)
    assert np.array_equal(np.load(out / "rows.npy"), np.arange(20, dtype=np.float32).reshape(10, 2)[IDX])


def test_random_inputs_use_dims_and_small_ints(model_path: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run([model_path, "--dim", "batch=5", "--output-dir", str(out)]) == 0
    assert np.load(out / "Y.npy").shape == (5, 2)  # ints drawn in [0, 10): the Gather stays in range
    printed = capsys.readouterr().out
    assert "output Y: float32[5,2]" in printed and "min=" in printed


def test_unfixed_dim_is_noted(model_path: str, capsys) -> None:
    assert _run([model_path]) == 0
    assert "--dim" in capsys.readouterr().err


def test_fetch_intermediate_and_dump(model_path: str, tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "feeds.npz", X=X, idx=IDX)
    feeds = ["--input", str(tmp_path / "feeds.npz")]
    assert _run([model_path, *feeds, "--output", "shifted"]) == 0
    assert "output shifted: float32[2,2]" in capsys.readouterr().out

    dump = tmp_path / "dump"
    assert _run([model_path, *feeds, "--dump", str(dump)]) == 0
    index = json.loads((dump / "index.json").read_text())
    assert set(index) == {"xw", "shifted", "Y", "rows"}
    assert index["shifted"]["node"] == "add/1" and index["shifted"]["op"] == "Add"
    assert index["shifted"]["shape"] == [2, 2] and index["shifted"]["dtype"] == "float32"
    assert np.array_equal(np.load(dump / index["xw"]["file"]), X @ W)


def test_errors_are_one_line(model_path: str, tmp_path: Path, capsys) -> None:
    assert _run([model_path, "--input", f"X={tmp_path / 'missing.npy'}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert _run([model_path, "--input", "nope=x.npy"]) == 1
    assert "not inputs of the model" in capsys.readouterr().err
    assert _run([model_path, "--output", "nope"]) == 1
    assert "no such value" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("1")
    assert _run([model_path, "--input", f"X={tmp_path / 'x.txt'}"]) == 1
    assert "unknown extension" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", Z=X)
    assert _run([model_path, "--input", f"X={tmp_path / 'other.npz'}"]) == 1
    assert "no array named 'X'" in capsys.readouterr().err
