"""Recurrent and sequence models as real exporters and projects ship them, on onnxrt vs onnxruntime.

torch 2.13 exports of nn.LSTM / nn.GRU (bidirectional, stacked, batch_first, initial states,
packed sequences), a TorchScript loop around a recurrent cell (ONNX Loop + If), and the Silero
voice-activity detector taken from its PyPI wheel (extracted at test time into .cache/, skipped
when the wheel cannot be downloaded). Outputs must agree within 1e-4 relative.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

import onnxrt

torch = pytest.importorskip("torch")

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "recurrent_models"
RTOL, ATOL = 1e-4, 1e-5


def _export(module, args: tuple, input_names: list[str], output_names: list[str], dynamic_axes=None) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript exporter: seconds faster than dynamo for these, and the one that turns
        # scripted control flow into ONNX Loop / If
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=17, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes)
    return buffer.getvalue()


def _compare(model: bytes, feeds: dict[str, np.ndarray], expected: list[np.ndarray] | None = None) -> list:
    ours = onnxrt.InferenceSession(model).run(None, feeds)
    ref = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert len(ours) == len(ref)
    for k, (a, e) in enumerate(zip(ours, ref)):
        assert a.shape == e.shape and a.dtype == e.dtype, (k, a.shape, e.shape, a.dtype, e.dtype)
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL, err_msg=f"output {k}")
    for k, (a, t) in enumerate(zip(ours, expected or [])):
        np.testing.assert_allclose(a, t, rtol=RTOL, atol=ATOL, err_msg=f"output {k} vs torch")
    return ours


def _op_types(model: bytes) -> set[str]:
    proto = onnx.load_from_string(model)
    found = set()

    def walk(graph):
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(proto.graph)
    return found


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class _Stacked(torch.nn.Module):
    def __init__(self, cell: str, batch_first: bool, with_state: bool):
        super().__init__()
        kind = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
        self.rnn = kind(5, 8, num_layers=2, bidirectional=True, batch_first=batch_first)
        self.head = torch.nn.Linear(16, 3)
        self.with_state = with_state

    def forward(self, x, *state):
        if self.with_state:
            y, final = self.rnn(x, state if len(state) > 1 else state[0])
        else:
            y, final = self.rnn(x)
        finals = final if isinstance(final, tuple) else (final,)
        return (self.head(y),) + finals


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
@pytest.mark.parametrize("with_state", [True, False], ids=["initial_state", "zero_state"])
def test_stacked_bidirectional(cell, batch_first, with_state):
    module = _Stacked(cell, batch_first, with_state).eval()
    batch, seq = 3, 7
    x = torch.randn((batch, seq, 5) if batch_first else (seq, batch, 5))
    state = ()
    if with_state:
        state = (torch.randn(4, batch, 8),) + ((torch.randn(4, batch, 8),) if cell == "lstm" else ())
    names = ["x", "h0", "c0"][: 1 + len(state)]
    outs = ["y", "h_n"] + (["c_n"] if cell == "lstm" else [])
    seq_axis = 1 if batch_first else 0
    axes = {"x": {0 if batch_first else 1: "batch", seq_axis: "seq"}}
    model = _export(module, (x, *state), names, outs, dynamic_axes=axes if not with_state else None)
    assert cell.upper() in _op_types(model)
    with torch.no_grad():
        expected = [t.numpy() for t in module(x, *state)]
    _compare(model, dict(zip(names, [t.numpy() for t in (x, *state)])), expected)
    if not with_state:  # dynamic batch and sequence length: a longer, larger batch through the same file
        x2 = torch.randn((5, 11, 5) if batch_first else (11, 5, 5))
        with torch.no_grad():
            expected2 = [t.numpy() for t in module(x2)]
        _compare(model, {"x": x2.numpy()}, expected2)


class _Packed(torch.nn.Module):
    """Variable-length batches the way training code writes them: pack, run, unpack."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 6, bidirectional=True, batch_first=True)

    def forward(self, x, lengths):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, (h, _) = self.rnn(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return y, h


def test_packed_sequences_with_lengths():
    module = _Packed().eval()
    x = torch.randn(4, 9, 4)
    lengths = torch.tensor([9, 4, 7, 2])
    try:
        model = _export(module, (x, lengths), ["x", "lengths"], ["y", "h"])
    except Exception as e:  # the exporter's own limitation, not onnxrt's
        pytest.skip(f"torch cannot export packed sequences here: {type(e).__name__}: {e}")
    with torch.no_grad():
        expected = [t.numpy() for t in module(x, lengths)]
    feeds = {i.name: v for i, v in zip(onnx.load_from_string(model).graph.input, [x.numpy(), lengths.numpy()])}
    ours = _compare(model, feeds, expected)
    # past each sequence's end the padded output is zero
    assert not ours[0][3, 2:].any()


class _LoopedCell(torch.nn.Module):
    """A GRU cell (written out: the exporter cannot script nn.GRUCell) stepped by a scripted loop,
    with a data-dependent branch: ONNX Loop + If."""

    def __init__(self):
        super().__init__()
        self.gates_x = torch.nn.Linear(4, 18)
        self.gates_h = torch.nn.Linear(6, 18)
        self.out = torch.nn.Linear(6, 2)

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gx, gh = self.gates_x(x), self.gates_h(h)
        r = torch.sigmoid(gx[:, 0:6] + gh[:, 0:6])
        z = torch.sigmoid(gx[:, 6:12] + gh[:, 6:12])
        n = torch.tanh(gx[:, 12:18] + r * gh[:, 12:18])
        return (1 - z) * n + z * h

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        outputs = torch.zeros(0, x.shape[1], 2)
        for t in range(x.shape[0]):
            h = self.cell(x[t], h)
            if bool(h.sum() > 0):
                h = h * 0.5
            else:
                h = torch.tanh(h + 1.0)
            outputs = torch.cat([outputs, self.out(h).unsqueeze(0)])
        return outputs


def test_scripted_loop_around_a_cell():
    scripted = torch.jit.script(_LoopedCell().eval())
    x, h = torch.randn(6, 3, 4), torch.randn(3, 6)
    model = _export(scripted, (x, h), ["x", "h"], ["y"], dynamic_axes={"x": {0: "seq"}})
    ops = _op_types(model)
    assert "Loop" in ops and "If" in ops, ops
    for steps in (6, 1, 10):
        xs = torch.randn(steps, 3, 4)
        with torch.no_grad():
            expected = [scripted(xs, h).numpy()]
        _compare(model, {"x": xs.numpy(), "h": h.numpy()}, expected)


# --------------------------------------------------------------------------------------------
# Silero VAD, shipped as ONNX inside its PyPI wheel
# --------------------------------------------------------------------------------------------

SILERO_VERSION = "6.2.3"
SILERO_FILES = ["silero_vad.onnx", "silero_vad_16k_op15.onnx"]


def _silero_model(name: str) -> Path:
    target = CACHE / f"silero_vad-{SILERO_VERSION}" / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    wheels = list(target.parent.glob("silero_vad-*.whl"))
    if not wheels:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            f"silero-vad=={SILERO_VERSION}", "-d", str(target.parent)],
                           check=True, timeout=180, capture_output=True)
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"cannot download the silero-vad wheel: {e}")
        wheels = list(target.parent.glob("silero_vad-*.whl"))
        if not wheels:
            pytest.skip("pip download produced no silero-vad wheel")
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = next((m for m in wheel.namelist() if m.endswith("/" + name)), None)
        if member is None:
            pytest.skip(f"{name} is not in {wheels[0].name}")
        target.write_bytes(wheel.read(member))
    return target


@pytest.mark.parametrize("name", SILERO_FILES)
def test_silero_vad_streaming(name):
    path = _silero_model(name)
    ours = onnxrt.InferenceSession(str(path))
    ref = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in ref.get_inputs()]
    assert [i.name for i in ours.get_inputs()] == inputs
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(512 * 6) / sr
    # quiet noise, then a voiced-like harmonic burst: the stream exercises both If branches' states
    audio = (0.01 * rng.normal(size=t.size) + np.where(t > 0.08, 0.5, 0.0) * np.sin(2 * np.pi * 220 * t)
             * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    state_ours = state_ref = np.zeros((2, 1, 128), dtype=np.float32)
    context = 64
    previous = np.zeros((1, context), dtype=np.float32)
    for k in range(6):
        chunk = audio[k * 512:(k + 1) * 512].reshape(1, -1)
        window = np.concatenate([previous, chunk], axis=1) if "16k_op15" not in name else chunk
        previous = chunk[:, -context:]
        feed = {"input": window, "sr": np.array(sr, dtype=np.int64)}
        prob_o, state_ours = ours.run(None, {**feed, "state": state_ours})
        prob_r, state_ref = ref.run(None, {**feed, "state": state_ref})
        np.testing.assert_allclose(prob_o, prob_r, rtol=RTOL, atol=ATOL, err_msg=f"chunk {k} probability")
        np.testing.assert_allclose(state_ours, state_ref, rtol=RTOL, atol=ATOL, err_msg=f"chunk {k} state")
