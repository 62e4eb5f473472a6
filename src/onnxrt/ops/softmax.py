"""Softmax, LogSoftmax, Hardmax.

Opset < 13: the input is seen as a 2-D matrix [prod(shape[:axis]), prod(shape[axis:])] (default axis 1)
and the op works along its second dimension, i.e. over all axes from ``axis`` to the last.
Opset >= 13: the op works along the single axis ``axis`` (default -1).
"""

from __future__ import annotations

import numpy as np

from onnxrt.ops._common import normalize_axis
from onnxrt.ops.registry import KernelContext, op_factory


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The float type arithmetic runs in: float16 and the ml_dtypes floats go through float32."""
    if dtype == np.float32 or dtype == np.float64:
        return dtype
    return np.dtype(np.float32)


def _check_float(X, op_name: str) -> None:
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{op_name}: input 'input' must be a tensor, got {type(X).__name__}")
    if X.dtype.kind in "biuOUS" or (X.dtype.kind == "V" and "int" in X.dtype.name):
        raise TypeError(f"{op_name}: input 'input' must be a float tensor, got dtype {X.dtype}")


def _axes(X: np.ndarray, axis: int, flatten: bool, op_name: str) -> tuple[int, ...]:
    if X.ndim == 0:
        raise ValueError(f"{op_name}: input 'input' must have rank >= 1, got a scalar")
    a = normalize_axis(axis, X.ndim, op_name)
    return tuple(range(a, X.ndim)) if flatten else (a,)


def native_dtype(dtype: np.dtype) -> np.dtype:
    """Softmax runs in the input's own float type (float16 and bfloat16 included, rounding after each
    step as the ONNX reference and the ops of its function body do); other ml_dtypes go through float32."""
    if dtype.kind == "f" or dtype.name == "bfloat16":
        return dtype
    return np.dtype(np.float32)


_SOFTMAX_BLOCK = 32768  # elements per block of rows for large inputs: the passes stay in L2


def _softmax_rows(x: np.ndarray, out: np.ndarray, log: bool, ones: np.ndarray) -> None:
    """(Log)softmax of each row of the 2-D ``x`` into ``out`` (same shape, owned by the caller)."""
    np.subtract(x, np.max(x, axis=1, keepdims=True), out=out)
    if log:
        tmp = np.exp(out)
        s = (tmp @ ones).reshape(-1, 1)
        np.log(s, out=s)
        out -= s
    else:
        np.exp(out, out=out)
        s = (out @ ones).reshape(-1, 1)
        np.reciprocal(s, out=s)
        out *= s


def _softmax_last_axis(X: np.ndarray, log: bool, cdt: np.dtype) -> np.ndarray:
    """(Log)softmax over the last axis of a float32/float64 array, in a fresh array: row sums as a
    matrix-vector product with ones (BLAS, 4x faster than a sum along short rows), multiply by the
    reciprocal instead of dividing. Inputs larger than a block go through blocks of whole rows, so
    that the five passes over each block hit cache instead of memory (3-4x faster on attention
    scores of long sequences; for small inputs the per-block call overhead would cost more)."""
    L = X.shape[-1]
    x = X.reshape(-1, L)
    out = np.empty(x.shape, dtype=cdt)
    ones = np.ones(L, dtype=cdt)
    rows = _SOFTMAX_BLOCK // L
    if x.size <= 4 * _SOFTMAX_BLOCK or rows < 8:
        _softmax_rows(x, out, log, ones)
    else:
        for lo in range(0, x.shape[0], rows):
            _softmax_rows(x[lo:lo + rows], out[lo:lo + rows], log, ones)
    return out.reshape(X.shape)


def softmax_along(X: np.ndarray, axes: tuple[int, ...], log: bool = False, cdt: np.dtype | None = None) -> np.ndarray:
    """(Log)softmax over ``axes`` in ``cdt`` (default: the input's own float type), in a fresh array."""
    if cdt is None:
        cdt = native_dtype(X.dtype)
    if (cdt == np.float32 or cdt == np.float64) and X.dtype == cdt and axes == (X.ndim - 1,) \
            and X.shape[-1] > 0 and X.flags.c_contiguous:
        return _softmax_last_axis(X, log, cdt)
    if X.dtype != cdt:
        X = X.astype(cdt)
    # ml_dtypes' bfloat16 sum accumulates in bfloat16 (one rounding per element): sum in float32
    sum_dt = np.float32 if cdt.kind == "V" else cdt
    m = np.max(X, axis=axes, keepdims=True).astype(cdt, copy=False)
    out = np.subtract(X, m, dtype=cdt)
    if log:
        tmp = np.exp(out)
        s = np.sum(tmp, axis=axes, keepdims=True, dtype=sum_dt).astype(cdt, copy=False)
        del tmp
        np.log(s, out=s)
        out -= s
    else:
        np.exp(out, out=out)
        s = np.sum(out, axis=axes, keepdims=True, dtype=sum_dt).astype(cdt, copy=False)
        out /= s
    return out


def _softmax_factory(log: bool):
    def factory(ctx: KernelContext):
        flatten = ctx.since_version < 13
        axis = int(ctx.attrs.get("axis", 1 if flatten else -1))
        name = ctx.op_type

        def run(input):  # noqa: A002 - ONNX input name
            _check_float(input, name)
            axes = _axes(input, axis, flatten, name)
            if input.size == 0:
                return np.empty(input.shape, dtype=input.dtype)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                out = softmax_along(input, axes, log)
            return out.astype(input.dtype, copy=False)

        return run

    return factory


op_factory("Softmax", 1, 13)(_softmax_factory(False))
op_factory("LogSoftmax", 1, 13)(_softmax_factory(True))


@op_factory("Hardmax", 1, 13)
def hardmax(ctx: KernelContext):
    flatten = ctx.since_version < 13
    axis = int(ctx.attrs.get("axis", 1 if flatten else -1))

    def run(input):  # noqa: A002 - ONNX input name
        _check_float(input, "Hardmax")
        axes = _axes(input, axis, flatten, "Hardmax")
        X = input
        if X.dtype.kind == "V":
            X = X.astype(np.float32)
        out = np.zeros(input.shape, dtype=input.dtype)
        if input.size == 0:
            return out
        a = axes[0]
        if flatten:
            # one dimension for all trailing axes; reshape of the result is a view
            lead = X.shape[:a]
            X2 = X.reshape(lead + (-1,))
            o2 = out.reshape(lead + (-1,))
        else:
            X2, o2 = X, out
        idx = np.expand_dims(np.argmax(X2, axis=a), a)  # first maximum wins
        np.put_along_axis(o2, idx, 1, axis=a)
        return out

    return run
