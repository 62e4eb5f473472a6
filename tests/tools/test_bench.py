"""`onnxrt bench` and the measuring code that benchmarks/run.py shares with it."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxrt.cli import main as cli_main
from onnxrt.tools import bench


def _tiny_model(path) -> str:
    """y = relu(x @ w) with a symbolic batch dim, plus an int64 'ids' input that passes through."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    ids_out = helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["batch", "seq"])
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"]), helper.make_node("Identity", ["ids"], ["ids_out"])],
        "tiny", [x, ids], [y, ids_out], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    file = str(path / "tiny.onnx")
    onnx.save(model, file)
    return file


@pytest.fixture
def tiny(tmp_path) -> str:
    return _tiny_model(tmp_path)


def test_model_inputs_skip_initializers(tiny):
    inputs = bench.model_inputs(tiny)
    assert [(i.name, i.type, i.shape) for i in inputs] == [("x", "tensor(float)", ["batch", 4]), ("ids", "tensor(int64)", ["batch", "seq"])]


def test_make_inputs_dims_recipes_and_given():
    inputs = [bench.InputInfo("x", "tensor(float)", ["batch", 4]), bench.InputInfo("ids", "tensor(int64)", ["batch", "seq"])]
    feeds, unresolved = bench.make_inputs(inputs, {"batch": 2})
    assert feeds["x"].shape == (2, 4) and feeds["x"].dtype == np.float32
    assert feeds["ids"].shape == (2, 1) and feeds["ids"].dtype == np.int64
    assert unresolved == ["seq"]
    recipe = {"ids": {"shape": ["batch", 16], "fill": "randint", "low": 5, "high": 7}}
    feeds, unresolved = bench.make_inputs(inputs, {"batch": 3}, recipe, given={"x": np.ones((3, 4), np.float32)})
    assert feeds["ids"].shape == (3, 16) and set(np.unique(feeds["ids"])) <= {5, 6}
    assert np.array_equal(feeds["x"], np.ones((3, 4))) and unresolved == []
    value = bench.make_inputs([bench.InputInfo("sr", "tensor(int64)", [])], recipes={"sr": {"fill": "value", "value": 16000}})[0]["sr"]
    assert value.shape == () and value == 16000 and value.dtype == np.int64


def test_recipe_file_fill_reads_a_npy_beside_the_recipe(tmp_path):
    page = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    np.save(tmp_path / "page.npy", page)
    recipe_path = tmp_path / "m.json"
    recipe_path.write_text(json.dumps({"inputs": {"x": {"shape": [1, 3, 4], "dtype": "float32", "fill": "file", "file": "page.npy"}}}))
    recipes, _ = bench.load_recipe(str(recipe_path))
    feeds, _ = bench.make_inputs([bench.InputInfo("x", "tensor(float)", [1, 3, 4])], recipes=recipes)
    assert np.array_equal(feeds["x"], page)
    with pytest.raises(ValueError, match=r"holds shape \(1, 3, 4\), expected \(1, 3, 5\)"):
        bench.make_inputs([bench.InputInfo("x", "tensor(float)", [1, 3, 5])],
                          recipes={"x": {**recipes["x"], "shape": [1, 3, 5]}})
    recipe_path.write_text(json.dumps({"inputs": {"x": {"fill": "file", "file": "../elsewhere.npy"}}}))
    with pytest.raises(ValueError, match="outside the recipe's folder"):
        bench.load_recipe(str(recipe_path))


def test_make_inputs_is_deterministic_per_seed():
    inputs = [bench.InputInfo("x", "tensor(float)", [8])]
    a = bench.make_inputs(inputs, seed=1)[0]["x"]
    assert np.array_equal(a, bench.make_inputs(inputs, seed=1)[0]["x"])
    assert not np.array_equal(a, bench.make_inputs(inputs, seed=2)[0]["x"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bench.parse_dims(["batch"]), "NAME=VALUE"),
        (lambda: bench.parse_dims(["batch=x"]), "integer"),
        (lambda: bench.make_inputs([bench.InputInfo("x", "tensor(float)", [1])], recipes={"nope": {}}), "no model input named 'nope'"),
        (lambda: bench.make_inputs([bench.InputInfo("x", "tensor(float)", [1])], recipes={"x": {"fill": "sparkly"}}), "unknown fill"),
        (lambda: bench.make_inputs([bench.InputInfo("s", "seq(tensor(float))", [])]), "only tensors"),
        (lambda: bench.model_inputs("/no/such/model.onnx"), "not found"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call()


def test_max_relative_error():
    a = np.array([1.0, 2.0, 4.0], np.float32)
    assert bench.max_relative_error([a], [a]) == 0.0
    assert bench.max_relative_error([a + np.float32(0.04)], [a]) == pytest.approx(0.01, rel=1e-4)
    assert math.isinf(bench.max_relative_error([a[:2]], [a]))
    assert math.isinf(bench.max_relative_error([a], [a, a]))
    assert bench.max_relative_error([np.array([np.nan])], [np.array([np.nan])]) == 0.0
    assert bench.max_relative_error([np.array(["a"], object)], [np.array(["a"], object)]) == 0.0


def test_geometric_mean_ignores_missing():
    assert bench.geometric_mean([2.0, 8.0, None]) == pytest.approx(4.0)
    assert bench.geometric_mean([]) is None


def test_measure_interleaved_against_onnxruntime(tiny):
    pytest.importorskip("onnxruntime")
    feeds, _ = bench.make_inputs(bench.model_inputs(tiny), {"batch": 2, "seq": 3})
    mine, theirs = bench.measure(tiny, feeds, ["onnxrt", "onnxruntime"], warmup=1, runs=4, threads=1)
    for result in (mine, theirs):
        assert result.status == "ok", result.error
        assert len(result.times_s) == 4 and result.import_s > 0 and result.load_s > 0 and result.first_run_s > 0
        assert result.median_s <= result.p90_s and result.throughput > 0
        assert result.peak_bytes is not None and result.peak_bytes > 0  # importing a runtime costs memory
    assert mine.max_rel_error == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(mine.outputs[0], np.maximum(feeds["x"] @ (np.arange(12, dtype=np.float32).reshape(4, 3) / 10), 0), rtol=1e-5)


def test_measure_reports_a_runtime_error_per_runtime(tiny):
    pytest.importorskip("onnxruntime")  # the quickest worker to start; the error path is the same for every runtime
    feeds = {"x": np.zeros((2, 5), np.float32), "ids": np.zeros((2, 3), np.int64)}  # x has the wrong width
    (result,) = bench.measure(tiny, feeds, ["onnxruntime"], warmup=0, runs=1)
    assert result.status == "error" and result.error and "onnxruntime" in result.error


def test_cli_bench_json(tiny, tmp_path, capsys):
    ids = tmp_path / "ids.npy"
    np.save(ids, np.arange(6, dtype=np.int64).reshape(2, 3))
    out = tmp_path / "result.json"
    code = cli_main(["bench", tiny, "--dim", "batch=2", "--input", f"ids={ids}", "--runs", "3", "--warmup", "0", "--threads", "1", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["inputs"] == {"x": {"shape": [2, 4], "dtype": "float32"}, "ids": {"shape": [2, 3], "dtype": "int64"}}
    (result,) = report["results"]
    assert result["runtime"] == "onnxrt" and result["runs"] == 3 and result["status"] == "ok"
    printed = capsys.readouterr().out
    assert "median" in printed and "peak memory" in printed


def test_compare_report_prints_ratios(capsys):
    def result(name, median):
        return bench.RuntimeResult(name, load_s=0.5, first_run_s=median * 2, times_s=[median] * 3, peak_bytes=2**20)

    report = {"model": "m.onnx", "inputs": {"x": {"shape": [1], "dtype": "float32"}}, "threads": 2, "opt_level": "all"}
    bench._print_report(report, [result("onnxrt", 0.004), result("onnxruntime", 0.002)])
    printed = capsys.readouterr().out
    assert "onnxrt/onnxruntime: median 2.00x" in printed and "peak memory 1.00x" in printed


def test_cli_bench_bad_dim_is_one_line_error(tiny, capsys):
    assert cli_main(["bench", tiny, "--dim", "batch"]) == 1
    assert "NAME=VALUE" in capsys.readouterr().err


def _benchmarks_module(name: str):
    """Import benchmarks/NAME.py (a script folder, not a package)."""
    import importlib
    import sys
    from pathlib import Path

    folder = str(Path(__file__).resolve().parents[2] / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def test_suite_markdown_and_docs_update(tmp_path):
    run = _benchmarks_module("run")
    ok = bench.RuntimeResult("onnxrt", load_s=0.1, first_run_s=0.02, times_s=[0.01, 0.012], peak_bytes=3 * 2**20, max_rel_error=1e-6)
    other = bench.RuntimeResult("onnxruntime", load_s=0.05, first_run_s=0.01, times_s=[0.005, 0.006], peak_bytes=2**20)
    ref = bench.RuntimeResult("reference", status="timeout", error="no answer")
    record = {
        "model": "tiny", "results": {"onnxrt": ok.to_json(), "onnxruntime": other.to_json(), "reference": ref.to_json()},
        "latency_ratio": 2.0, "p90_ratio": 2.0, "memory_ratio": 3.0, "reference_ratio": None,
    }
    machine = {k: "x" for k in ("date", "git_commit", "nproc", "cpu", "memory_gb", "onnxrt", "onnxruntime", "numpy", "onnx", "python")}
    report = {"machine": {**machine, "git_dirty": False}, "threads": 2, "opt_level": "all", "command": "python benchmarks/run.py",
              "models": [record], "geomean": {"models": 1, "latency_ratio": 2.0, "p90_ratio": 2.0, "memory_ratio": 3.0}}
    table = run.markdown(report)
    assert "| tiny | 11 | 5.5 | 2.00x |" in table and "timeout" in table and "**2.00x**" in table
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# B\n\nintro\n\n{run.BEGIN_MARK}\nold table\n{run.END_MARK}\n\nafter\n")
    run.update_docs(table, str(docs))
    text = docs.read_text()
    assert "old table" not in text and "| tiny |" in text and text.startswith("# B\n\nintro") and text.endswith("after\n")


def test_make_models_rejects_unknown_names():
    make_models = _benchmarks_module("make_models")
    assert [m.name for m in make_models.select_models("light_vgg19,silero_vad")] == ["light_vgg19", "silero_vad"]
    with pytest.raises(SystemExit, match="unknown model"):
        make_models.select_models("light_vgg19,no_such_model")


def test_make_models_light_model_and_sidecar(tmp_path):
    make_models = _benchmarks_module("make_models")
    sidecar = make_models.ensure_model(make_models.MODELS_BY_NAME["light_squeezenet"], str(tmp_path))
    assert (tmp_path / "light_squeezenet.onnx").is_file()
    assert json.loads((tmp_path / "light_squeezenet.json").read_text()) == sidecar
    feeds, unresolved = bench.make_inputs(bench.model_inputs(str(tmp_path / sidecar["file"])), recipes=sidecar["inputs"])
    assert unresolved == [] and all(a.dtype == np.float32 for a in feeds.values())
