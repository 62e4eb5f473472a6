"""Every `onnxrt` subcommand on three representative models: a CNN (torch export), a transformer (tiny
random-init BERT, torch + transformers export) and scikit-learn models (skl2onnx).

Each command runs through ``onnxrt.cli.main``. Every model a command writes (optimize at each level,
quantize, float16) must pass onnx.checker and run in onnxruntime with outputs matching onnxrt's on that
same written model. Exported models are cached under the git-ignored ``.cache/tools_on_models/``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxrt
from onnxrt import cli

ort = pytest.importorskip("onnxruntime")


def _require(*modules: str) -> None:
    """Skip unless the exporters' packages are installed (found, not imported: importing torch and
    transformers takes seconds, and a cached export needs neither)."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "tools_on_models"


@dataclass
class Case:
    path: Path
    feeds: dict[str, np.ndarray]
    dims: list[str] = field(default_factory=list)  # --dim arguments
    quantizable: bool = True  # has MatMul/Conv/Gemm weights the quantizers rewrite
    has_matmul: bool = False  # 4-bit MatMulNBits applies
    # |onnxrt - onnxruntime| allowed on quantized / float16 outputs, relative to the outputs' scale
    quant_tol: float = 0.02
    fp16_tol: float = 5e-3


# --------------------------------------------------------------------------------------------
# the models
# --------------------------------------------------------------------------------------------


def _cnn() -> Case:
    from tests.models._transformer_models import export_small_cnn

    path = CACHE / "small_cnn.onnx"
    if not path.is_file():
        _require("torch")
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.onnx")
        export_small_cnn(tmp)
        tmp.replace(path)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    return Case(path, {"image": x})


def _bert() -> Case:
    _require("torch", "transformers")
    from tests.tools.bert_export import export_bert

    path = export_bert(layers=2, hidden=64, heads=4, vocab=500, seq=8)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 500, (1, 8), dtype=np.int64)
    mask = np.ones((1, 8), dtype=np.int64)
    mask[0, 6:] = 0
    return Case(path, {"input_ids": ids, "attention_mask": mask}, dims=["--dim", "batch=1", "--dim", "seq=8"],
                has_matmul=True)


def _sklearn(kind: str) -> Case:
    path = CACHE / f"sklearn_{kind}.onnx"
    data = CACHE / f"sklearn_{kind}_X.npy"
    if not (path.is_file() and data.is_file()):  # importing scikit-learn and skl2onnx takes seconds
        _export_sklearn(kind, path, data)
    return Case(path, {"X": np.load(data)}, quantizable=kind != "rf", has_matmul=kind != "rf")


def _export_sklearn(kind: str, path: Path, data: Path) -> None:
    _require("sklearn", "skl2onnx")
    import skl2onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=200, n_features=10, n_informative=6, n_classes=3, random_state=0)
    X = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "rf":  # ai.onnx.ml TreeEnsembleClassifier + ZipMap (a sequence of maps)
            est = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X, y)
            options = None
        else:  # Scaler + MatMul/Add/Relu/Softmax
            est = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=300, random_state=0)).fit(X, y)
            options = {MLPClassifier: {"zipmap": False}}
        model = skl2onnx.to_onnx(est, X[:1], target_opset={"": 17, "ai.onnx.ml": 3}, options=options)
    CACHE.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    np.save(data, X[:16])


MAKERS = {"cnn": _cnn, "bert": _bert, "sklearn_rf": lambda: _sklearn("rf"), "sklearn_mlp": lambda: _sklearn("mlp")}
_cases: dict[str, Case] = {}


@pytest.fixture(params=list(MAKERS))
def case(request) -> Case:
    if request.param not in _cases:
        _cases[request.param] = MAKERS[request.param]()
    return _cases[request.param]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _cli(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = cli.main(["--traceback", *map(str, argv)])
    assert rc == 0, f"onnxrt {' '.join(map(str, argv))} exited {rc}\n{out.getvalue()}"
    return out.getvalue()


def _as_array(value) -> np.ndarray:
    if isinstance(value, list) and value and isinstance(value[0], dict):  # ZipMap
        return np.array([[row[k] for k in sorted(row)] for row in value], dtype=np.float64)
    return np.asarray(value)


def _run_onnxrt(path: Path, feeds: dict) -> list:
    return onnxrt.InferenceSession(str(path)).run(None, feeds)


def _run_onnxruntime(path: Path, feeds: dict) -> list:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _feeds_for(path: Path, feeds: dict) -> dict:
    """The case's feeds, cast to the (possibly float16) input types of the written model."""
    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for inp in model.graph.input:
        if inp.name in feeds:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
            out[inp.name] = feeds[inp.name].astype(dtype)
    return out


def _assert_close(ours: list, ref: list, rel: float, what: str) -> None:
    assert len(ours) == len(ref), what
    for k, (a, e) in enumerate(zip(ours, ref)):
        a, e = _as_array(a), _as_array(e)
        assert a.shape == e.shape and a.dtype == e.dtype, f"{what}: output {k}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        if e.dtype.kind in "iub" or e.dtype == object:
            np.testing.assert_array_equal(a, e, err_msg=f"{what}: output {k}")
        else:
            scale = max(float(np.max(np.abs(e.astype(np.float64)))), 1e-3)
            np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=0, atol=rel * scale,
                                       err_msg=f"{what}: output {k}")


def _check_written(path: Path, case: Case, rel: float, what: str) -> None:
    """onnx.checker passes; onnxruntime runs it; its outputs match onnxrt's on the same model."""
    onnx.checker.check_model(str(path), full_check=True)
    feeds = _feeds_for(path, case.feeds)
    _assert_close(_run_onnxrt(path, feeds), _run_onnxruntime(path, feeds), rel, what)


# --------------------------------------------------------------------------------------------
# commands that read
# --------------------------------------------------------------------------------------------


def test_run_outputs_and_dump(case: Case, tmp_path: Path):
    feeds_file = tmp_path / "feeds.npz"
    np.savez(feeds_file, **case.feeds)
    out_dir, dump_dir = tmp_path / "out", tmp_path / "dump"
    text = _cli("run", case.path, "-i", feeds_file, "--output-dir", out_dir)
    assert text.strip()
    ref_sess = ort.InferenceSession(str(case.path), providers=["CPUExecutionProvider"])
    expected = ref_sess.run(None, case.feeds)
    for meta, value in zip(ref_sess.get_outputs(), expected):
        if isinstance(value, list):  # sequence of maps: not an array file
            continue
        saved = np.load(out_dir / f"{meta.name}.npy", allow_pickle=False)
        _assert_close([saved], [value], 1e-4, f"run --output-dir {meta.name}")

    _cli("run", case.path, *case.dims, "--dump", dump_dir)  # random inputs
    index = json.loads((dump_dir / "index.json").read_text())
    model = onnx.load(str(case.path), load_external_data=False)
    assert len(index) >= len(model.graph.node) // 2
    for entry in index.values():
        assert (dump_dir / entry["file"]).is_file()


def test_bench(case: Case, tmp_path: Path):
    report = tmp_path / "bench.json"
    _cli("bench", case.path, *case.dims, "--runs", "2", "--warmup", "0", "--compare", "onnxruntime",
         "--json", report)
    assert json.loads(report.read_text())


def test_profile(case: Case, tmp_path: Path):
    trace = tmp_path / "trace.json"
    data = json.loads(_cli("profile", case.path, *case.dims, "--runs", "2", "--warmup", "0", "--json",
                           "--trace", trace))
    assert data
    assert json.loads(trace.read_text())


def test_inspect_json(case: Case):
    data = json.loads(_cli("inspect", case.path, *case.dims, "--json"))
    model = onnx.load(str(case.path), load_external_data=False)
    assert sum(data["op_histogram"].values()) >= len(model.graph.node)
    assert [i["name"] for i in data["inputs"]] == [i.name for i in model.graph.input
                                                   if i.name not in {t.name for t in model.graph.initializer}]
    assert not data["unsupported_nodes"]


def test_graph_html(case: Case, tmp_path: Path):
    html = tmp_path / "graph.html"
    _cli("graph", case.path, *case.dims, "-o", html)
    text = html.read_text()
    assert "<svg" in text and "</html>" in text.lower()


def test_check(case: Case):
    text = _cli("check", case.path)
    assert "FAIL" not in text


# --------------------------------------------------------------------------------------------
# commands that write a model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "layout", "all"])
def test_optimize(case: Case, tmp_path: Path, level: str):
    out = tmp_path / f"opt_{level}.onnx"
    _cli("optimize", case.path, "-o", out, "--level", level, "--quiet")
    _check_written(out, case, 1e-4, f"optimize --level {level}")
    # and the optimized model computes what the original does
    _assert_close(_run_onnxrt(out, case.feeds), _run_onnxruntime(case.path, case.feeds), 1e-4,
                  f"optimize --level {level} vs the original")


def test_quantize_dynamic(case: Case, tmp_path: Path):
    out = tmp_path / "dyn.onnx"
    _cli("quantize", case.path, "-o", out, "--mode", "dynamic", "--json")
    if case.quantizable:
        ops = {n.op_type for n in onnx.load(str(out)).graph.node}
        assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}, ops
    _check_written(out, case, case.quant_tol, "quantize dynamic")


@pytest.mark.parametrize("fmt, per_channel", [("QDQ", False), ("QDQ", True), ("QOperator", False)],
                         ids=["QDQ", "QDQ-per-channel", "QOperator"])
def test_quantize_static(case: Case, tmp_path: Path, fmt: str, per_channel: bool):
    out = tmp_path / "static.onnx"
    _cli("quantize", case.path, "-o", out, "--mode", "static", "--format", fmt, "--random-batches", "2",
         "--no-progress", *case.dims, *(["--per-channel"] if per_channel else []), "--json")
    if case.quantizable:
        ops = {n.op_type for n in onnx.load(str(out)).graph.node}
        expected = {"QuantizeLinear", "DequantizeLinear"} if fmt == "QDQ" else {"QLinearMatMul", "QLinearConv"}
        assert ops & expected if fmt != "QDQ" else expected <= ops, ops
    _check_written(out, case, case.quant_tol, f"quantize static {fmt}")


def test_quantize_4bit(case: Case, tmp_path: Path):
    if not case.has_matmul:
        pytest.skip("no MatMul with a constant weight")
    out = tmp_path / "q4.onnx"
    _cli("quantize", case.path, "-o", out, "--mode", "4bit", "--block-size", "32", "--symmetric", "--json")
    assert "MatMulNBits" in {n.op_type for n in onnx.load(str(out)).graph.node}
    _check_written(out, case, case.quant_tol, "quantize 4bit")


@pytest.mark.parametrize("keep_io", [True, False], ids=["keep-io-types", "float16-io"])
def test_float16(case: Case, tmp_path: Path, keep_io: bool):
    out = tmp_path / "fp16.onnx"
    _cli("float16", case.path, "-o", out, *(["--keep-io-types"] if keep_io else []), *case.dims)
    _check_written(out, case, case.fp16_tol, "float16")
