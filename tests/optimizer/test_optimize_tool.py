import os

import onnx
import pytest

from onnxrt.cli import main

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def test_optimize_command_writes_a_checked_model(tmp_path, capsys):
    out = tmp_path / "sq.onnx"
    assert main(["optimize", os.path.join(LIGHT, "light_squeezenet.onnx"), "-o", str(out), "--level", "extended"]) == 0
    onnx.checker.check_model(onnx.load(str(out)))
    assert "fuse_activations" in capsys.readouterr().out


def test_optimize_command_missing_model(tmp_path, capsys):
    assert main(["optimize", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_optimize_command_bad_level(tmp_path):
    with pytest.raises(SystemExit):
        main(["optimize", "m.onnx", "-o", "o.onnx", "--level", "max"])
