"""What quantization did: model size before and after, and how far the outputs moved."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxrt.quantization.calibrate import plain_session_options


@dataclass
class OutputDifference:
    name: str
    max_abs_diff: float
    cosine_similarity: float


@dataclass
class QuantizationReport:
    """Returned by the quantize functions; ``str(report)`` is the text the command line prints."""

    float_size_bytes: int
    quantized_size_bytes: int
    outputs: list[OutputDifference] = field(default_factory=list)
    batches_compared: int = 0
    runtime: str = ""  # which runtime computed the output differences
    note: str = ""
    model: onnx.ModelProto | None = field(default=None, repr=False)

    @property
    def size_ratio(self) -> float:
        """float size / quantized size (4.0 means four times smaller)."""
        return self.float_size_bytes / max(self.quantized_size_bytes, 1)

    def as_dict(self) -> dict[str, Any]:
        return {"float_size_bytes": self.float_size_bytes, "quantized_size_bytes": self.quantized_size_bytes,
                "size_ratio": self.size_ratio, "batches_compared": self.batches_compared, "runtime": self.runtime,
                "outputs": [vars(o) for o in self.outputs], "note": self.note}

    def __str__(self) -> str:
        lines = [f"model size: {_mb(self.float_size_bytes)} -> {_mb(self.quantized_size_bytes)} "
                 f"({self.size_ratio:.2f}x smaller)"]
        if self.outputs:
            lines.append(f"output difference over {self.batches_compared} batch(es) ({self.runtime}):")
            for o in self.outputs:
                lines.append(f"  {o.name}: max abs diff {o.max_abs_diff:.4g}, cosine similarity {o.cosine_similarity:.6f}")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def model_size(model: onnx.ModelProto, path: str | os.PathLike | None = None) -> int:
    """Bytes on disk (file plus external data) when saved at ``path``, else the serialized size."""
    if path is not None and Path(path).is_file():
        size = Path(path).stat().st_size
        data = Path(str(path) + ".data")
        return size + (data.stat().st_size if data.is_file() else 0)
    return model.ByteSize()


def _session(model: onnx.ModelProto):
    """onnxrt when it can load the model, else onnxruntime (e.g. a com.microsoft kernel onnxrt lacks)."""
    import onnxrt

    data = model.SerializeToString()
    try:
        return onnxrt.InferenceSession(data, plain_session_options()), "onnxrt", ""
    except Exception as e:  # noqa: BLE001
        try:
            import onnxruntime

            return (onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]), "onnxruntime",
                    f"note: onnxrt could not load the quantized model ({str(e).splitlines()[0][:160]}); "
                    f"compared with onnxruntime")
        except ImportError:
            raise e from None


def build_report(float_model: onnx.ModelProto, quantized: onnx.ModelProto, reader, model_output=None,
                 show_progress: bool = False) -> QuantizationReport:
    report = QuantizationReport(model_size(float_model), model_size(quantized, model_output), model=quantized)
    if reader is None:
        return report
    import onnxrt

    float_session = onnxrt.InferenceSession(float_model.SerializeToString(), plain_session_options())
    quant_session, runtime, note = _session(quantized)
    names = [o.name for o in float_session.get_outputs()]
    dots = np.zeros(len(names))
    norms_a = np.zeros(len(names))
    norms_b = np.zeros(len(names))
    max_abs = np.zeros(len(names))
    batches = 0
    for feeds in reader:
        expected = float_session.run(None, feeds)
        actual = quant_session.run(None, feeds)
        for i, (a, b) in enumerate(zip(expected, actual)):
            a = np.asarray(a)
            b = np.asarray(b)
            if a.dtype.kind != "f":
                continue
            a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
            dots[i] += a64 @ b64
            norms_a[i] += a64 @ a64
            norms_b[i] += b64 @ b64
            if a64.size:
                max_abs[i] = max(max_abs[i], float(np.max(np.abs(a64 - b64))))
        batches += 1
    for i, name in enumerate(names):
        denominator = np.sqrt(norms_a[i] * norms_b[i])
        cosine = float(dots[i] / denominator) if denominator > 0 else (1.0 if norms_a[i] == norms_b[i] else 0.0)
        report.outputs.append(OutputDifference(name, float(max_abs[i]), cosine))
    report.batches_compared, report.runtime, report.note = batches, runtime, note
    return report
