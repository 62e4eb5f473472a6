"""RNN / GRU / LSTM against onnxruntime on random inputs, over option combinations."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx import numpy_helper as onnx_numpy

import onnxrt
from onnxrt.ops import rnn as rnn_ops

SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _model(op, inputs, outputs, opset=14, **attrs):
    node = helper.make_node(op, [n for n, _ in inputs], [n for n, _ in outputs], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT, None)
         for n, v in inputs if n],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n, _ in outputs if n],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _inputs(op, rng, D, layout, with_b=True, seq_lens=None, init=True, peep=False):
    G = GATES[op]
    X = rng.standard_normal((SEQ, BATCH, INPUT) if layout == 0 else (BATCH, SEQ, INPUT)).astype(np.float32)
    st = (D, BATCH, HIDDEN) if layout == 0 else (BATCH, D, HIDDEN)
    ins = [
        ("X", X),
        ("W", (rng.standard_normal((D, G * HIDDEN, INPUT)) * 0.5).astype(np.float32)),
        ("R", (rng.standard_normal((D, G * HIDDEN, HIDDEN)) * 0.5).astype(np.float32)),
        ("B", rng.standard_normal((D, 2 * G * HIDDEN)).astype(np.float32) if with_b else None),
        ("sequence_lens", None if seq_lens is None else np.array(seq_lens, dtype=np.int32)),
        ("initial_h", rng.standard_normal(st).astype(np.float32) if init else None),
    ]
    if op == "LSTM":
        ins.append(("initial_c", rng.standard_normal(st).astype(np.float32) if init else None))
        ins.append(("P", rng.standard_normal((D, 3 * HIDDEN)).astype(np.float32) if peep else None))
    while ins[-1][1] is None:
        ins.pop()
    return [(n if v is not None else "", v) for n, v in ins]


def _ort_run(op, inputs, outputs, attrs):
    """onnxruntime's CPU RNNs reject layout=1: run layout 0 on transposed data and transpose back."""
    layout = attrs.get("layout", 0)
    feeds = {n: v for n, v in inputs if n}
    if layout == 1:
        attrs = dict(attrs, layout=0)
        feeds = {n: (v.transpose(1, 0, 2) if n in ("X", "initial_h", "initial_c") else v) for n, v in feeds.items()}
    model = _model(op, inputs, outputs, **attrs)
    res = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    if layout == 1:
        res = [r.transpose(2, 0, 1, 3) if r.ndim == 4 else r.transpose(1, 0, 2) for r in res]
    return res


def _compare(op, inputs, n_out, **attrs):
    outputs = [("Y", None), ("Y_h", None), ("Y_c", None)][:n_out]
    attrs["hidden_size"] = HIDDEN
    model = _model(op, inputs, outputs, **attrs)
    feeds = {n: v for n, v in inputs if n}
    expected = _ort_run(op, inputs, outputs, attrs)
    actual = onnxrt.InferenceSession(model.SerializeToString()).run(None, feeds)
    for e, a in zip(expected, actual):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


CASES = [
    dict(direction="forward"),
    dict(direction="reverse", seq_lens=[5, 2, 3]),
    dict(direction="bidirectional", seq_lens=[3, 5, 1]),
    dict(direction="bidirectional", layout=1, clip=0.7),
    dict(direction="reverse", layout=1, seq_lens=[4, 5, 2], init=False, with_b=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_against_onnxruntime(op, case):
    case = dict(case)
    rng = np.random.default_rng(hash((op, str(case))) % 2**32)
    direction = case.pop("direction")
    layout = case.pop("layout", 0)
    D = 2 if direction == "bidirectional" else 1
    inputs = _inputs(op, rng, D, layout, with_b=case.pop("with_b", True), seq_lens=case.pop("seq_lens", None),
                     init=case.pop("init", True))
    _compare(op, inputs, 3 if op == "LSTM" else 2, direction=direction, layout=layout, **case)


def test_gru_linear_before_reset_and_activations():
    rng = np.random.default_rng(1)
    inputs = _inputs("GRU", rng, 2, 0, seq_lens=[2, 5, 4])
    _compare("GRU", inputs, 2, direction="bidirectional", linear_before_reset=1,
             activations=["HardSigmoid", "Tanh", "Sigmoid", "LeakyRelu"], activation_alpha=[0.3, 0.05],
             activation_beta=[0.4])


def test_lstm_peepholes_input_forget_clip():
    rng = np.random.default_rng(2)
    inputs = _inputs("LSTM", rng, 1, 0, peep=True, seq_lens=[5, 3, 1])
    _compare("LSTM", inputs, 3, input_forget=1, clip=1.5)


def test_lstm_bidirectional_peepholes_activations():
    rng = np.random.default_rng(3)
    inputs = _inputs("LSTM", rng, 2, 1, peep=True)
    _compare("LSTM", inputs, 3, direction="bidirectional", layout=1,
             activations=["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Softsign", "Elu"],
             activation_alpha=[0.25, 0.9], activation_beta=[0.45])


def test_rnn_relu_and_only_y_h():
    rng = np.random.default_rng(4)
    inputs = _inputs("RNN", rng, 1, 0)
    model = _model("RNN", inputs, [("", None), ("Y_h", None)], hidden_size=HIDDEN, activations=["Relu"])
    feeds = {n: v for n, v in inputs if n}
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    actual = onnxrt.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-6)


def test_bad_weight_shape_names_the_input():
    rng = np.random.default_rng(5)
    inputs = dict(_inputs("GRU", rng, 1, 0))
    inputs["W"] = inputs["W"][:, :-1]
    model = _model("GRU", [(n, v) for n, v in inputs.items()], [("Y", None)], hidden_size=HIDDEN)
    sess = onnxrt.InferenceSession(model.SerializeToString())
    with pytest.raises(Exception, match="W must have shape"):
        sess.run(None, {n: v for n, v in inputs.items() if n})


def test_unknown_activation_rejected():
    rng = np.random.default_rng(6)
    inputs = _inputs("RNN", rng, 1, 0)
    model = _model("RNN", inputs, [("Y", None)], hidden_size=HIDDEN, activations=["Swishy"])
    with pytest.raises(Exception, match="unsupported activation"):
        onnxrt.InferenceSession(model.SerializeToString())


def _one_step_lstm(layout, with_b, init, batch, weights_as_inputs=False, activations=None):
    rng = np.random.default_rng(layout * 8 + with_b * 4 + init * 2 + batch)
    H, I = HIDDEN, INPUT
    X = rng.standard_normal((1, batch, I) if layout == 0 else (batch, 1, I)).astype(np.float32)
    st = (1, batch, H) if layout == 0 else (batch, 1, H)
    weights = {"W": (rng.standard_normal((1, 4 * H, I)) * 0.5).astype(np.float32),
               "R": (rng.standard_normal((1, 4 * H, H)) * 0.5).astype(np.float32)}
    if with_b:
        weights["B"] = rng.standard_normal((1, 8 * H)).astype(np.float32)
    feeds = {"X": X}
    if init:
        feeds["initial_h"] = rng.standard_normal(st).astype(np.float32)
        feeds["initial_c"] = rng.standard_normal(st).astype(np.float32)
    names = ["X", "W", "R", "B" if with_b else "", "", "initial_h" if init else "", "initial_c" if init else ""]
    while not names[-1]:
        names.pop()
    extra = {} if activations is None else {"activations": activations}
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], hidden_size=H, layout=layout, **extra)
    inits = [] if weights_as_inputs else [onnx_numpy.from_array(v, k) for k, v in weights.items()]
    if weights_as_inputs:
        feeds.update(weights)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in feeds],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h", "Y_c")],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=10)
    return model, feeds


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("with_b", [True, False])
@pytest.mark.parametrize("init", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("activations", [None, ["HardSigmoid", "Tanh", "Relu"]])
def test_one_step_lstm_with_constant_weights_takes_the_short_path(monkeypatch, layout, with_b, init, batch, activations):
    # a streaming LSTM (one step per call, weights in the file) skips the general path's layout work;
    # it gives the general path's results within rounding (with the default activations it runs one
    # GEMM of [x, h], which sums in another order), and onnxruntime's
    general_model, general_feeds = _one_step_lstm(layout, with_b, init, batch, True, activations)
    expected = onnxrt.InferenceSession(general_model.SerializeToString()).run(None, general_feeds)
    model, feeds = _one_step_lstm(layout, with_b, init, batch, activations=activations)
    session = onnxrt.InferenceSession(model.SerializeToString())

    def general_path(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(rnn_ops._Common, "prepare", general_path)
    actual = session.run(None, feeds)
    for e, a in zip(expected, actual):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    assert not np.shares_memory(actual[0], actual[1])
    if layout == 0:  # onnxruntime's CPU LSTM takes layout 0 only
        theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        for t, a in zip(theirs, actual):
            np.testing.assert_allclose(a, t, rtol=1e-5, atol=1e-6)


def test_one_step_lstm_with_a_bad_state_shape_still_names_it():
    model, feeds = _one_step_lstm(0, True, True, 3)
    feeds["initial_h"] = feeds["initial_h"][:, :2]
    with pytest.raises(onnxrt.RuntimeException, match="initial_h"):
        onnxrt.InferenceSession(model.SerializeToString()).run(None, feeds)
