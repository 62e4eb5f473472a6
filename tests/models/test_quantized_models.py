"""Models quantized by onnxruntime.quantization, run on onnxrt and onnxruntime side by side.

A small CNN (made with onnx.helper) and a tiny BERT (transformers, random init, exported with torch
when it is installed) are quantized every way onnxruntime's quantizer offers: quantize_dynamic
(int8, per-tensor and per-channel), quantize_static in QDQ and QOperator formats (random
calibration data) and MatMulNBits 4-bit weight-only. Models are written to the git-ignored
``.cache/quantized_models`` folder and reused between runs.

Tolerances: the integer parts are exact on both runtimes, but float ops between them (LayerNorm,
Softmax, Erf, exp) differ in the last ulp, and a dynamic quantization of such a value can then round
to the neighbouring code. Outputs are compared relative to their own magnitude, allowing for those
single-step flips; the exact figures each model reaches are in the assertions.

Run as a script (``python tests/models/test_quantized_models.py``) to time float against dynamic
int8 BERT on onnxrt, interleaved, next to onnxruntime (small models; ``benchmarks/quantized_bert.py``
times BERT-base).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import onnxrt
from onnxrt import errors as onnxrt_errors

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "quantized_models"
RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Every test draws its calibration data and inputs from the same seed, whatever ran before it in
    the worker: with one generator for the module, the quantized models (and the rare rounding-boundary
    cases below) changed with the test order pytest-xdist picked."""
    global RNG
    RNG = np.random.default_rng(3)


def _cache_path(name: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE / name


def _ort_session(path: Path, optimize: bool = True, threads: int = 0) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _compare(path: Path, feeds: dict, rel_tol: float, optimize_ort: bool = True) -> float:
    """Max |onnxrt - onnxruntime| relative to the output's largest magnitude; asserts dtypes and shapes."""
    exp = _ort_session(path, optimize_ort).run(None, feeds)
    so = onnxrt.SessionOptions()
    if os.environ.get("ONNXRT_QTEST_NO_OPT"):  # isolate kernels from graph rewrites when debugging
        so.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    act = onnxrt.InferenceSession(str(path), so).run(None, feeds)
    worst = 0.0
    for e, a in zip(exp, act):
        assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
        if e.dtype.kind in "iu":
            np.testing.assert_array_equal(a, e)
            continue
        err = float(np.abs(a.astype(np.float64) - e).max() / max(float(np.abs(e).max()), 1e-6))
        worst = max(worst, err)
    assert worst <= rel_tol, f"{path.name}: relative difference {worst:.3g} > {rel_tol}"
    return worst


def _op_types(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


# -- the CNN ---------------------------------------------------------------------------------------


def _cnn_model() -> onnx.ModelProto:
    """Conv/Relu/MaxPool/Add/Concat/Sigmoid/LeakyRelu/AveragePool/Mul/GlobalAveragePool/Gemm/Softmax."""

    def w(name, *shape, scale=0.2):
        return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [w("w1", 8, 3, 3, 3), w("b1", 8), w("w2", 8, 8, 3, 3), w("b2", 8), w("w3", 8, 8, 1, 1), w("b3", 8),
             w("w4", 16, 16, 3, 3, scale=0.1), w("b4", 16), w("fc", 10, 16), w("fcb", 10)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["a2"]),
        helper.make_node("MaxPool", ["a2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "w3", "b3"], ["c3"]),
        helper.make_node("Sigmoid", ["c3"], ["s3"]),
        helper.make_node("Mul", ["c3", "s3"], ["m3"]),
        helper.make_node("LeakyRelu", ["p2"], ["l3"], alpha=0.1),
        helper.make_node("Concat", ["m3", "l3"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w4", "b4"], ["c4"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("AveragePool", ["c4"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["ap"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", T.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("probs", T.FLOAT, ["N", 10]),
                               helper.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class _RandomReader:
    """CalibrationDataReader over a few random batches."""

    def __init__(self, make_feed, count: int = 4) -> None:
        self.feeds = iter([make_feed() for _ in range(count)])

    def get_next(self):
        return next(self.feeds, None)


def _cnn_feed():
    return {"x": RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)}


@pytest.fixture(scope="module")
def cnn_path() -> Path:
    p = _cache_path("cnn_float.onnx")
    onnx.save(_cnn_model(), str(p))
    return p


def _quantize(quantizer, src: Path, dst: Path, *args, **kw) -> Path:
    """onnxruntime.quantization's ``quantizer(src, dst, ...)`` from a private copy of ``src``: it writes
    (and deletes) '<src>-inferred.onnx' beside its input, and two xdist workers quantizing the same
    model deleted each other's file."""
    with tempfile.TemporaryDirectory() as tmp:
        private = Path(tmp) / src.name
        shutil.copyfile(src, private)
        quantizer(str(private), str(dst), *args, **kw)
    return dst


def _quantize_static(src: Path, dst: Path, make_feed, quant_format: str, per_channel: bool, **kw) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    return _quantize(quantize_static, src, dst, _RandomReader(make_feed),
                     quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                     per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **kw)


@pytest.mark.parametrize("quant_format", ["qdq", "qoperator"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_cnn_static(cnn_path, quant_format, per_channel):
    dst = _quantize_static(cnn_path, _cache_path(f"cnn_static_{quant_format}_{int(per_channel)}.onnx"), _cnn_feed,
                           quant_format, per_channel)
    ops = _op_types(dst)
    if quant_format == "qoperator":
        assert {"QLinearConv", "QLinearAdd", "QLinearConcat", "QLinearGlobalAveragePool"} <= ops, ops
    else:
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, ops
    feed = _cnn_feed()
    if quant_format == "qoperator":  # integer kernels on both sides: bit-exact (MLAS rounding reproduced)
        _compare(dst, feed, rel_tol=0.0)
    # QDQ: onnxruntime fuses the pairs into integer kernels, onnxrt runs the graph as written; even
    # unfused, a float AveragePool result one ulp away on an exact .5 tie quantizes to the next code.
    # Either way the outputs agree to a quantization step or two of the logits.
    _compare(dst, feed, rel_tol=0.05)
    _compare(dst, feed, rel_tol=0.05, optimize_ort=False)


@pytest.mark.parametrize("per_channel", [False, True])
def test_cnn_dynamic(cnn_path, per_channel):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = _cache_path(f"cnn_dynamic_{int(per_channel)}.onnx")
    _quantize(quantize_dynamic, cnn_path, dst, per_channel=per_channel, weight_type=QuantType.QUInt8,
              op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    assert "ConvInteger" in _op_types(dst)
    _compare(dst, _cnn_feed(), rel_tol=1e-4)


# -- the tiny BERT -----------------------------------------------------------------------------------


def export_bert(path: Path, hidden: int = 64, layers: int = 2, heads: int = 4, vocab: int = 200, seq: int = 16) -> Path:
    """A randomly initialised transformers BertModel exported with torch (input_ids, attention_mask)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from onnxrt.testing.models import export_bert as export

    return export(path, hidden=hidden, layers=layers, heads=heads, vocab=vocab, seq=seq, max_positions=max(128, seq))


def _bert_feed(batch: int = 2, seq: int = 16, vocab: int = 200):
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq * 3 // 4:] = 0  # one padded sequence
    return {"input_ids": RNG.integers(0, vocab, (batch, seq)).astype(np.int64), "attention_mask": mask}


@pytest.fixture(scope="module")
def bert_path() -> Path:
    return export_bert(_cache_path("bert_tiny_float.onnx"))


def test_bert_float_matches(bert_path):
    _compare(bert_path, _bert_feed(), rel_tol=1e-4)


@pytest.mark.parametrize("per_channel", [False, True])
def test_bert_dynamic_int8(bert_path, per_channel):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = _cache_path(f"bert_tiny_dynamic_{int(per_channel)}.onnx")
    _quantize(quantize_dynamic, bert_path, dst, per_channel=per_channel, weight_type=QuantType.QInt8)
    ops = _op_types(dst)
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops
    feed = _bert_feed()
    # the graph as written: identical integer arithmetic, only float-op ulps differ (measured ~2e-7;
    # the margin covers a dynamic-quantization code flipping on a tie)
    _compare(dst, feed, rel_tol=1e-4, optimize_ort=False)
    # onnxruntime's own optimizations fuse MatMulInteger chains into DynamicQuantizeMatMul
    _compare(dst, feed, rel_tol=1e-4)


def test_bert_fused_dynamic_int8(bert_path):
    """onnxruntime's transformers optimizer fuses Attention/EmbedLayerNormalization first, so the
    quantizer writes QAttention and QEmbedLayerNormalization (next to SkipLayerNormalization, BiasGelu)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    fused = _cache_path("bert_tiny_fused.onnx")
    if not fused.exists():
        optimize_model(str(bert_path), model_type="bert", num_heads=4, hidden_size=64).save_model_to_file(str(fused))
    dst = _cache_path("bert_tiny_fused_dynamic.onnx")
    _quantize(quantize_dynamic, fused, dst, weight_type=QuantType.QInt8,
              extra_options={"DefaultTensorType": T.FLOAT})  # contrib-op outputs have no inferred type
    assert {"QAttention", "QEmbedLayerNormalization"} <= _op_types(dst)
    try:
        onnxrt.InferenceSession(str(dst))
    except onnxrt_errors.NotImplemented as e:  # another contrib op not there yet
        pytest.skip(str(e))
    feed = _bert_feed()
    _compare(dst, feed, rel_tol=1e-4, optimize_ort=False)  # measured ~2e-7
    _compare(dst, feed, rel_tol=1e-4)


@pytest.mark.parametrize("quant_format", ["qdq", "qoperator"])
def test_bert_static(bert_path, quant_format):
    dst = _quantize_static(bert_path, _cache_path(f"bert_tiny_static_{quant_format}.onnx"), _bert_feed,
                           quant_format, per_channel=False, op_types_to_quantize=["MatMul", "Add", "Gather"])
    ops = _op_types(dst)
    if quant_format == "qoperator":
        assert "QLinearMatMul" in ops, ops
    feed = _bert_feed()
    # as written, the arithmetic is the same (measured ~1e-7; the integer kernels are bit-exact, see
    # tests/ops/test_contrib_quant.py); onnxruntime's fusions (QDQ pairs into QLinear kernels,
    # requantising at other points) move outputs by a few quantization steps (~2.5e-2). The float
    # LayerNormalizations between the quantized ops differ from onnxruntime's by an ulp here and there
    # (summation order): on 1 of 70 random calibrations measured, one such value sat on a quantization
    # boundary and the output moved by a step (7e-3).
    _compare(dst, feed, rel_tol=1e-4, optimize_ort=False)
    _compare(dst, feed, rel_tol=0.05)


def test_bert_matmul_nbits_4bit(bert_path):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    dst = _cache_path("bert_tiny_nbits4.onnx")
    quantizer = MatMulNBitsQuantizer(onnx.load(str(bert_path)), block_size=32, is_symmetric=False)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    assert "MatMulNBits" in _op_types(dst)
    _compare(dst, _bert_feed(), rel_tol=1e-4)


# -- LSTM -----------------------------------------------------------------------------------------------


def export_lstm(path: Path, bidirectional: bool) -> Path:
    """A torch.nn.LSTM (input 12, hidden 16), exported with torch; outputs y, h, c."""
    torch = pytest.importorskip("torch")
    if path.exists():
        return path

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(12, 16, bidirectional=bidirectional)

        def forward(self, x):
            y, (h, c) = self.lstm(x)
            return y, h, c

    torch.manual_seed(0)
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(Net().eval(), (torch.randn(5, 2, 12),), str(tmp), input_names=["x"],
                          output_names=["y", "h", "c"], dynamic_axes={"x": {0: "seq", 1: "batch"}},
                          opset_version=14, dynamo=False)
    tmp.replace(path)
    return path


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_lstm_dynamic_int8(bidirectional, per_channel):
    """quantize_dynamic writes DynamicQuantizeLSTM (W [D, in, 4H], R [D, H, 4H], int8, per direction or
    per gate column). onnxruntime quantizes X once and the hidden state at every step; with more than one
    intra-op thread it splits the batch and quantizes each part on its own range, so results depend on
    its thread count: compared with one thread, the results agree to float rounding (measured ~1e-7)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = export_lstm(_cache_path(f"lstm_float_{int(bidirectional)}.onnx"), bidirectional)
    dst = _cache_path(f"lstm_dynamic_{int(bidirectional)}_{int(per_channel)}.onnx")
    _quantize(quantize_dynamic, src, dst, per_channel=per_channel, weight_type=QuantType.QInt8,
              op_types_to_quantize=["LSTM"])
    assert "DynamicQuantizeLSTM" in _op_types(dst)
    x = RNG.standard_normal((7, 3, 12)).astype(np.float32)
    exp = _ort_session(dst, threads=1).run(None, {"x": x})
    act = onnxrt.InferenceSession(str(dst)).run(None, {"x": x})
    for e, a in zip(exp, act):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    # against the float model: weight and activation quantization error only
    ref = _ort_session(src, threads=1).run(None, {"x": x})
    assert float(np.abs(act[0] - ref[0]).max()) < 0.05


# -- timing (python tests/models/test_quantized_models.py) -----------------------------------------


def _bench(sessions: dict, feed: dict, rounds: int) -> dict[str, float]:
    """Median latency per session, the sessions interleaved round by round."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, feed)  # warm-up
    for _ in range(rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feed)
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    import argparse

    import threadpoolctl
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parser = argparse.ArgumentParser(description="float vs dynamic-int8 BERT on onnxrt and onnxruntime")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for onnxrt and intra-op threads for onnxruntime (default 1: the "
                             "machine is shared, and oversubscribed BLAS threads make timings meaningless)")
    args = parser.parse_args()
    threadpoolctl.threadpool_limits(args.threads)

    for label, hidden, layers, heads, seq, rounds in (("tiny", 64, 2, 4, 16, 60), ("larger", 256, 4, 4, 128, 20)):
        src = export_bert(_cache_path(f"bench_bert_{label}.onnx"), hidden=hidden, layers=layers, heads=heads,
                          vocab=1000, seq=seq)
        dst = _cache_path(f"bench_bert_{label}_int8.onnx")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        feed = _bert_feed(1, seq, 1000)
        so = onnxrt.SessionOptions()
        so.intra_op_num_threads = args.threads  # the session sets BLAS threads from this on every run
        if os.environ.get("ONNXRT_QTEST_NO_OPT"):
            so.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
        sessions = {"onnxrt float": onnxrt.InferenceSession(str(src), so),
                    "onnxrt int8": onnxrt.InferenceSession(str(dst), so),
                    "ort float": _ort_session(src, threads=args.threads),
                    "ort int8": _ort_session(dst, threads=args.threads)}
        t = _bench(sessions, feed, rounds)
        print(f"BERT {label} (hidden {hidden}, {layers} layers, seq {seq}, batch 1): " +
              ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in t.items()))
        print(f"  onnxrt int8/float = {t['onnxrt int8'] / t['onnxrt float']:.2f}; "
              f"onnxrt/ort float = {t['onnxrt float'] / t['ort float']:.1f}, int8 = {t['onnxrt int8'] / t['ort int8']:.1f}")


if __name__ == "__main__":
    main()
