"""Calibration: run the float model on onnxrt over the calibration data and choose activation ranges."""

from __future__ import annotations

import abc
import sys
from typing import Any, Iterable, Iterator

import numpy as np
import onnx

from onnxrt.quantization.types import CalibrationMethod

Feeds = dict[str, np.ndarray]


class CalibrationDataReader(abc.ABC):
    """Source of calibration inputs: ``get_next()`` returns one feed dict, or None when exhausted."""

    @abc.abstractmethod
    def get_next(self) -> Feeds | None:
        raise NotImplementedError

    def rewind(self) -> None:
        """Start again from the first batch (needed for the accuracy report). Optional."""
        raise NotImplementedError(f"{type(self).__name__} cannot rewind")

    def __iter__(self) -> Iterator[Feeds]:
        while True:
            item = self.get_next()
            if item is None:
                return
            yield item

    def __len__(self) -> int:
        raise TypeError("length unknown")


class ListDataReader(CalibrationDataReader):
    """A reader over a list of feed dicts (convenience for tests and the command line)."""

    def __init__(self, feeds: Iterable[Feeds]):
        self._feeds = list(feeds)
        self._position = 0

    def get_next(self) -> Feeds | None:
        if self._position >= len(self._feeds):
            return None
        self._position += 1
        return self._feeds[self._position - 1]

    def rewind(self) -> None:
        self._position = 0

    def __len__(self) -> int:
        return len(self._feeds)


def as_reader(data: Any) -> CalibrationDataReader:
    if isinstance(data, CalibrationDataReader) or (hasattr(data, "get_next") and callable(data.get_next)):
        return data
    if isinstance(data, dict):
        return ListDataReader([data])
    if isinstance(data, (list, tuple)):
        return ListDataReader(data)
    raise TypeError(f"calibration data must be a CalibrationDataReader (get_next/rewind) or a list of feed dicts, "
                    f"got {type(data).__name__}")


def try_rewind(reader: CalibrationDataReader) -> bool:
    try:
        reader.rewind()
        return True
    except (NotImplementedError, AttributeError):
        return False


class _Progress:
    """tqdm when installed, else a one-line bar on stderr; silent when disabled."""

    def __init__(self, total: int | None, description: str, enabled: bool):
        self._count, self._total, self._description, self._enabled = 0, total, description, enabled
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=description, unit="batch", file=sys.stderr, leave=False)
            except ImportError:
                pass

    def update(self) -> None:
        self._count += 1
        if self._bar is not None:
            self._bar.update(1)
        elif self._enabled:
            if self._total:
                filled = int(30 * self._count / self._total)
                bar = "#" * filled + "." * (30 - filled)
                sys.stderr.write(f"\r{self._description} [{bar}] {self._count}/{self._total}")
            else:
                sys.stderr.write(f"\r{self._description}: {self._count} batches")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self._count:
            sys.stderr.write("\n")


def _reader_length(reader: CalibrationDataReader) -> int | None:
    try:
        return len(reader)  # type: ignore[arg-type]
    except TypeError:
        return None


def run_with_intermediates(model: onnx.ModelProto, tensor_names: list[str], reader: CalibrationDataReader,
                           show_progress: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Yield, per calibration batch, the values of ``tensor_names`` computed by onnxrt.

    The tensors are fetched by making them extra graph outputs of a copy of the model."""
    import onnxrt

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in tensor_names:
        if name not in existing:
            augmented.graph.output.append(onnx.ValueInfoProto(name=name))
            existing.add(name)
    session = onnxrt.InferenceSession(augmented.SerializeToString(), plain_session_options())
    input_names = {i.name for i in session.get_inputs()}
    progress = _Progress(_reader_length(reader), "calibrating", show_progress)
    try:
        for feeds in reader:
            unknown = set(feeds) - input_names
            if unknown:
                raise ValueError(f"calibration data has inputs {sorted(unknown)} the model does not take "
                                 f"(model inputs: {sorted(input_names)})")
            values = session.run(tensor_names, feeds)
            progress.update()
            yield dict(zip(tensor_names, values))
    finally:
        progress.close()


def plain_session_options():
    """Session options without graph optimizations: calibration reads the exact tensors of the model
    as written, and stays independent of the optimizer's passes."""
    import onnxrt

    options = onnxrt.SessionOptions()
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


class RangeCollector:
    """Accumulates what each method needs: min/max, or a sample of values for histograms."""

    SAMPLE_LIMIT = 1 << 20

    def __init__(self, method: CalibrationMethod, extra_options: dict[str, Any] | None = None):
        self.method = method
        self.options = extra_options or {}
        self.minimum: dict[str, float] = {}
        self.maximum: dict[str, float] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self._rng = np.random.default_rng(0)

    def add(self, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            array = np.asarray(value)
            if array.dtype.kind != "f" or array.size == 0:
                continue
            low, high = float(np.min(array)), float(np.max(array))
            self.minimum[name] = min(low, self.minimum.get(name, low))
            self.maximum[name] = max(high, self.maximum.get(name, high))
            if self.method != CalibrationMethod.MinMax:
                flat = array.astype(np.float32).ravel()
                if flat.size > self.SAMPLE_LIMIT // 8:
                    flat = self._rng.choice(flat, self.SAMPLE_LIMIT // 8, replace=False)
                self.samples.setdefault(name, []).append(flat)

    def ranges(self) -> dict[str, tuple[float, float]]:
        result = {}
        for name in self.minimum:
            low, high = self.minimum[name], self.maximum[name]
            if self.method == CalibrationMethod.Percentile:
                threshold = float(np.percentile(np.abs(np.concatenate(self.samples[name])),
                                                float(self.options.get("CalibPercentile", 99.999))))
                low, high = (max(low, -threshold), min(high, threshold))
            elif self.method == CalibrationMethod.Entropy:
                threshold = _entropy_threshold(np.concatenate(self.samples[name]),
                                               int(self.options.get("CalibNumBins", 2048)),
                                               int(self.options.get("CalibNumQuantizedBins", 128)))
                low, high = (max(low, -threshold), min(high, threshold))
            result[name] = (low, high)
        return result


def _entropy_threshold(values: np.ndarray, num_bins: int, num_quantized_bins: int) -> float:
    """Clipping threshold on |x| that minimises the KL divergence between the clipped histogram and
    its quantized approximation (the classic TensorRT calibration idea)."""
    magnitude = np.abs(values)
    top = float(magnitude.max()) if magnitude.size else 0.0
    if top == 0.0:
        return 0.0
    hist, edges = np.histogram(magnitude, bins=num_bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best_threshold, best_divergence = top, np.inf
    for i in range(num_quantized_bins, num_bins + 1, max(1, num_bins // 256)):
        reference = hist[:i].copy()
        reference[i - 1] += hist[i:].sum()  # outliers folded into the last bin
        # merge i bins into num_quantized_bins groups, spread each group's mass over its non-empty bins
        groups = np.array_split(np.arange(i), num_quantized_bins)
        approximation = np.zeros(i)
        for group in groups:
            chunk = hist[group]
            nonzero = chunk > 0
            if nonzero.any():
                approximation[group[nonzero]] = chunk.sum() / nonzero.sum()
        p = reference / reference.sum()
        q_total = approximation.sum()
        if q_total == 0:
            continue
        q = approximation / q_total
        mask = p > 0
        divergence = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if divergence < best_divergence:
            best_divergence, best_threshold = divergence, float(edges[i])
    return best_threshold
