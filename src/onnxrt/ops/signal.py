"""Signal processing kernels: DFT, STFT, Hann/Hamming/Blackman windows, MelWeightMatrix."""

from __future__ import annotations

import numpy as np
from onnx import helper as _onnx_helper

from onnxrt.errors import InvalidArgument
from onnxrt.ops.registry import op

_FLOAT_KINDS = (np.float16, np.float32, np.float64)


def _scalar_int(value, op_name: str, input_name: str) -> int:
    arr = np.asarray(value)
    if arr.size != 1:
        raise InvalidArgument(f"{op_name}: input '{input_name}' must be a scalar, got shape {list(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op_name}: input '{input_name}' must be an integer, got dtype {arr.dtype}")
    return int(arr.reshape(-1)[0])


def _to_complex(x: np.ndarray, op_name: str, input_name: str) -> tuple[np.ndarray, bool]:
    """[..., 1] real or [..., 2] complex ONNX layout -> numpy array (real or complex128)."""
    if x.ndim < 2 or x.shape[-1] not in (1, 2):
        raise InvalidArgument(
            f"{op_name}: input '{input_name}' must end in a dimension of 1 (real) or 2 (complex), "
            f"got shape {list(x.shape)}")
    # numpy's FFT works in single precision for float32 data, like onnxruntime's kernels
    real_t = np.float64 if x.dtype == np.float64 else np.float32
    cplx_t = np.complex128 if x.dtype == np.float64 else np.complex64
    if x.shape[-1] == 1:
        return x[..., 0].astype(real_t), False
    out = np.empty(x.shape[:-1], dtype=cplx_t)
    out.real = x[..., 0]
    out.imag = x[..., 1]
    return out, True


def _from_complex(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = np.empty(y.shape + (2,), dtype=dtype)
    out[..., 0] = y.real
    out[..., 1] = y.imag
    return out


def _dft(x: np.ndarray, dft_length, axis: int, inverse: int, onesided: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in _FLOAT_KINDS:
        raise TypeError(f"DFT: input 'input' must be float16/float32/float64, got {x.dtype}")
    r = x.ndim
    if not (-r <= axis <= -2 or 0 <= axis <= r - 2):
        raise InvalidArgument(f"DFT: axis {axis} is out of range [-{r}, -2] U [0, {r - 2}] for an input of rank {r}")
    ax = axis + r if axis < 0 else axis  # axis within the signal array (last dim dropped)
    sig, is_complex = _to_complex(x, "DFT", "input")
    n = None if dft_length is None else _scalar_int(dft_length, "DFT", "dft_length")
    if n is not None and n < 1:
        raise InvalidArgument(f"DFT: dft_length must be positive, got {n}")
    if onesided and inverse:
        if n is None:
            n = 2 * (sig.shape[ax] - 1)
            if n < 1:
                raise InvalidArgument(f"DFT: cannot infer the IRFFT length from axis size {sig.shape[ax]}")
        y = np.fft.irfft(sig, n=n, axis=ax)
        return y[..., None].astype(x.dtype)
    if inverse:
        y = np.fft.ifft(sig, n=n, axis=ax)
    else:
        y = np.fft.fft(sig, n=n, axis=ax)
        if onesided:
            keep = y.shape[ax] // 2 + 1
            y = np.take(y, np.arange(keep), axis=ax)
    return _from_complex(y, x.dtype)


@op("DFT", 17)
def dft_17(input, dft_length=None, *, axis=1, inverse=0, onesided=0):  # noqa: A002
    return _dft(input, dft_length, int(axis), int(inverse), int(onesided))


@op("DFT", 20)
def dft_20(input, dft_length=None, axis=None, *, inverse=0, onesided=0):  # noqa: A002
    ax = -2 if axis is None else _scalar_int(axis, "DFT", "axis")
    return _dft(input, dft_length, ax, int(inverse), int(onesided))


@op("STFT", 17)
def stft(signal, frame_step, window=None, frame_length=None, *, onesided=1):
    signal = np.asarray(signal)
    if signal.dtype not in _FLOAT_KINDS:
        raise TypeError(f"STFT: input 'signal' must be float16/float32/float64, got {signal.dtype}")
    if signal.ndim != 3:
        raise InvalidArgument(f"STFT: input 'signal' must have shape [batch, length, 1 or 2], got {list(signal.shape)}")
    sig, is_complex = _to_complex(signal, "STFT", "signal")
    length = sig.shape[1]
    step = _scalar_int(frame_step, "STFT", "frame_step")
    if step < 1:
        raise InvalidArgument(f"STFT: frame_step must be positive, got {step}")
    if window is not None:
        window = np.asarray(window)
        if window.ndim != 1:
            raise InvalidArgument(f"STFT: input 'window' must be 1-D, got shape {list(window.shape)}")
    if frame_length is not None:
        flen = _scalar_int(frame_length, "STFT", "frame_length")
        if window is not None and window.shape[0] != flen:
            raise InvalidArgument(
                f"STFT: window length {window.shape[0]} does not match frame_length {flen}")
    elif window is not None:
        flen = int(window.shape[0])
    else:
        flen = length
    if not 1 <= flen <= length:
        raise InvalidArgument(f"STFT: frame_length {flen} must be in [1, signal length {length}]")
    if onesided and is_complex:
        raise InvalidArgument("STFT: onesided=1 requires a real signal (last dimension 1)")
    frames = (length - flen) // step + 1
    idx = np.arange(frames)[:, None] * step + np.arange(flen)[None, :]
    framed = sig[:, idx]  # [batch, frames, flen]
    if window is not None:
        framed = framed * window.astype(framed.real.dtype)
    y = np.fft.rfft(framed, axis=-1) if onesided else np.fft.fft(framed, axis=-1)
    return _from_complex(y, signal.dtype)


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------


def _out_dtype(output_datatype: int, op_name: str) -> np.dtype:
    try:
        return np.dtype(_onnx_helper.tensor_dtype_to_np_dtype(int(output_datatype)))
    except Exception as e:  # noqa: BLE001
        raise InvalidArgument(f"{op_name}: unsupported output_datatype {output_datatype}") from e


def _window(size, periodic: int, output_datatype: int, op_name: str, coeffs: tuple[float, ...]):
    n = _scalar_int(size, op_name, "size")
    if n < 0:
        raise InvalidArgument(f"{op_name}: size must be non-negative, got {n}")
    dtype = _out_dtype(output_datatype, op_name)
    denom = n if periodic else n - 1
    k = np.arange(n, dtype=np.float64)
    phase = 2.0 * np.pi * k / denom if denom > 0 else np.zeros(n)
    w = np.zeros(n)
    for i, c in enumerate(coeffs):
        w += c * np.cos(i * phase) * (-1) ** i
    return w.astype(dtype)


@op("HannWindow", 17)
def hann_window(size, *, periodic=1, output_datatype=1):
    return _window(size, periodic, output_datatype, "HannWindow", (0.5, 0.5))


@op("HammingWindow", 17)
def hamming_window(size, *, periodic=1, output_datatype=1):
    alpha = 25.0 / 46.0
    return _window(size, periodic, output_datatype, "HammingWindow", (alpha, 1.0 - alpha))


@op("BlackmanWindow", 17)
def blackman_window(size, *, periodic=1, output_datatype=1):
    return _window(size, periodic, output_datatype, "BlackmanWindow", (0.42, 0.5, 0.08))


# --------------------------------------------------------------------------------------------
# MelWeightMatrix
# --------------------------------------------------------------------------------------------


def _scalar_float(value, op_name: str, input_name: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise InvalidArgument(f"{op_name}: input '{input_name}' must be a scalar, got shape {list(arr.shape)}")
    return float(arr.reshape(-1)[0])


@op("MelWeightMatrix", 17)
def mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, *,
                      output_datatype=1):
    name = "MelWeightMatrix"
    n_mel = _scalar_int(num_mel_bins, name, "num_mel_bins")
    n_dft = _scalar_int(dft_length, name, "dft_length")
    rate = _scalar_int(sample_rate, name, "sample_rate")
    lo = _scalar_float(lower_edge_hertz, name, "lower_edge_hertz")
    hi = _scalar_float(upper_edge_hertz, name, "upper_edge_hertz")
    if n_mel < 1 or n_dft < 1 or rate < 1:
        raise InvalidArgument(f"{name}: num_mel_bins, dft_length and sample_rate must be positive")
    if not 0 <= lo <= hi:
        raise InvalidArgument(f"{name}: need 0 <= lower_edge_hertz <= upper_edge_hertz, got {lo}, {hi}")
    dtype = _out_dtype(output_datatype, name)
    n_spec = n_dft // 2 + 1
    mel_lo = 2595.0 * np.log10(1.0 + lo / 700.0)
    mel_hi = 2595.0 * np.log10(1.0 + hi / 700.0)
    # onnxruntime spaces num_mel_bins + 2 points with a step of (hi - lo) / (num_mel_bins + 2)
    step = (mel_hi - mel_lo) / (n_mel + 2)
    mels = mel_lo + step * np.arange(n_mel + 2)
    hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    bins = np.floor((n_dft + 1) * hz / rate).astype(np.int64)
    if bins.max() >= n_spec + 1:
        raise InvalidArgument(f"{name}: upper_edge_hertz {hi} maps beyond the {n_spec} spectrogram bins")
    left, center, right = bins[:-2], bins[1:-1], bins[2:]
    j = np.arange(n_spec, dtype=np.float64)[:, None]
    up = (j - left) / np.maximum(center - left, 1)
    down = (right - j) / np.maximum(right - center, 1)
    rising = (j >= left) & (j <= center)
    falling = (j > center) & (j < right)
    out = np.where(rising, up, np.where(falling, down, 0.0))
    out = np.where(j == center, 1.0, out)
    return out.astype(dtype)
