"""`onnxrt profile`: the per-op table comes from onnxrt's onnxruntime-format trace."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from onnxrt import cli
from onnxrt.tools.profile import summarize_trace


@pytest.fixture
def model_path(tmp_path: Path) -> str:
    graph = h.make_graph(
        [h.make_node("Relu", ["X"], ["a"], name="r1"), h.make_node("Relu", ["a"], ["b"], name="r2"),
         h.make_node("Sigmoid", ["b"], ["Y"], name="s")],
        "g",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 8])],
        # a and b are outputs too, so the three nodes stay three steps (no elementwise-chain fusion)
        [h.make_tensor_value_info(n, T.FLOAT, ["N", 8]) for n in ("Y", "a", "b")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return str(path)


def test_table_counts_calls_per_op(model_path: str, tmp_path: Path, capsys) -> None:
    trace = tmp_path / "trace.json"
    assert cli.main(["profile", model_path, "--runs", "3", "--dim", "N=4", "--trace", str(trace), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.split("\ntrace written")[0])
    calls = {row["name"]: row["calls"] for row in summary["rows"]}
    assert calls == {"Relu": 6, "Sigmoid": 3}  # the warm-up run is left out
    assert summary["runs"] == 3
    assert 0 < sum(r["share"] for r in summary["rows"]) <= 1.0
    events = json.loads(trace.read_text())
    assert any(e.get("cat") == "Node" and e["args"]["op_name"] == "Sigmoid" for e in events)


def test_text_table_by_node(model_path: str, capsys) -> None:
    assert cli.main(["profile", model_path, "--runs", "2", "--by-node", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["node", "calls"]
    assert "(1 more)" in out and "2 run(s)" in out


def test_summarize_handcrafted_trace() -> None:
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000},
        {"cat": "Node", "name": "a_kernel_time", "ts": 10, "dur": 600, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "b_kernel_time", "ts": 700, "dur": 200, "args": {"op_name": "Relu"}},
    ]
    summary = summarize_trace(events)
    assert [(r["name"], r["share"]) for r in summary["rows"]] == [("Conv", 0.6), ("Relu", 0.2)]
    with pytest.raises(ValueError, match="JSON array"):
        summarize_trace({"not": "a list"})  # type: ignore[arg-type]


def test_bad_runs(model_path: str, capsys) -> None:
    assert cli.main(["profile", model_path, "--runs", "0"]) == 1
    assert "--runs" in capsys.readouterr().err
