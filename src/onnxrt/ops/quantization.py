"""Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
ConvInteger, QLinearMatMul, QLinearConv.

Integer products are exact: operands minus zero points are at most 255 in magnitude, so a
product sum over K terms is exact in float32 BLAS while K * 255**2 < 2**24 and in float64
BLAS up to K * 255**2 < 2**53; the kernels pick the cheaper exact one. Convolutions are
im2col (a strided window view, one copy) followed by one batched matmul per group.
Requantisation follows onnxruntime: ``rint(acc * (a_scale * b_scale / y_scale)) + y_zp``
in float32, saturated to the output type; NaN saturates to the type's minimum.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import ml_dtypes
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from onnxrt.ops._common import normalize_axis
from onnxrt.ops.cast import _F8, _describe, convert, is_exotic_float, is_float
from onnxrt.ops.registry import KernelContext, op, op_factory
from onnxrt.types import np_dtype

_INT_RANGE = {
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint16): (0, 65535),
    np.dtype(np.int16): (-32768, 32767),
    np.dtype(ml_dtypes.uint4): (0, 15),
    np.dtype(ml_dtypes.int4): (-8, 7),
    np.dtype(ml_dtypes.uint2): (0, 3),
    np.dtype(ml_dtypes.int2): (-2, 1),
    np.dtype(np.int32): (-(2**31), 2**31 - 1),
}
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_EXACT_F32 = 2.0**24
_EXACT_F64 = 2.0**53


# -- helpers ---------------------------------------------------------------------------------------


def _check_tensor(op_name: str, name: str, v: Any) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{op_name}: input '{name}' must be a tensor, got {type(v).__name__}")
    return v


def _param_layout(p: np.ndarray, x_shape: tuple[int, ...], axis: int, block_size: int, op_name: str, what: str) -> np.ndarray:
    """Scale / zero point ``p`` laid out to broadcast against ``x``: per-tensor, per-axis or blocked."""
    r = len(x_shape)
    if block_size and block_size > 0:
        if p.ndim != r:
            raise ValueError(
                f"{op_name}: blocked quantization needs '{what}' of rank {r} (the input's), got shape {p.shape}"
            )
        a = normalize_axis(axis, r, op_name)
        d, s = x_shape[a], p.shape[a]
        expected = list(x_shape)
        expected[a] = s
        if list(p.shape) != expected or s * block_size < d or (s - 1) * block_size >= d:
            want = list(x_shape)
            want[a] = -(-d // block_size)
            raise ValueError(
                f"{op_name}: '{what}' has shape {list(p.shape)}, expected {want} for input shape {list(x_shape)}, "
                f"axis {axis}, block_size {block_size}"
            )
        return np.repeat(p, block_size, axis=a)[(slice(None),) * a + (slice(0, d),)]
    if p.size == 1 and p.ndim <= 1:
        return p.reshape(())
    if p.ndim == 1:
        a = normalize_axis(axis, r, op_name)
        if p.shape[0] != x_shape[a]:
            raise ValueError(
                f"{op_name}: per-axis '{what}' has {p.shape[0]} elements, expected {x_shape[a]} "
                f"(input dimension {a} of shape {list(x_shape)})"
            )
        shape = [1] * r
        shape[a] = p.shape[0]
        return p.reshape(shape)
    raise ValueError(
        f"{op_name}: '{what}' must be a scalar, a 1-D tensor (per axis) or have the input's rank with "
        f"block_size > 0 (blocked); got shape {list(p.shape)} for input shape {list(x_shape)}"
    )


def _as_f32(v: np.ndarray) -> np.ndarray:
    """Float values as float32 (exotic and half floats are exact there)."""
    if v.dtype == _F32:
        return v
    if v.dtype.kind == "V" and not is_exotic_float(v.dtype):  # int4 family
        return v.astype(np.int8).astype(np.float32)
    return v.astype(np.float32)


def _saturate_to(values: np.ndarray, dst: np.dtype, saturate: bool = True, owned: bool = False) -> np.ndarray:
    """Quantized values (already rounded for integer targets) saturated into ``dst``.

    ``owned``: ``values`` is a temporary of the caller's that may be overwritten.
    """
    if dst in _INT_RANGE:
        lo, hi = _INT_RANGE[dst]
        if values.dtype.kind == "f":
            # fmax/fmin return the non-NaN operand: NaN saturates to the minimum, like onnxruntime
            out = values if owned and values.flags.writeable else None
            v = np.fmax(values, values.dtype.type(lo), out=out)
            np.fmin(v, values.dtype.type(hi), out=v)
        else:
            v = np.clip(values, lo, hi)
        if dst.kind == "V":
            return v.astype(np.int8 if lo < 0 else np.uint8).astype(dst)
        return v.astype(dst)
    if is_float(dst):
        return convert(values, dst, saturate=saturate)
    raise TypeError(f"quantized output type {_describe(dst)} is not supported")


def _to_int_values(v: np.ndarray) -> np.ndarray:
    """An integer (incl. int4/int2) tensor as int32."""
    if v.dtype.kind == "V":
        return v.astype(np.int8).astype(np.int32)
    return v.astype(np.int32)


# -- QuantizeLinear / DequantizeLinear ------------------------------------------------------------


def _quantize(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    out_dtype: np.dtype,
    axis: int,
    block_size: int,
    saturate: bool,
    precision: np.dtype,
    op_name: str = "QuantizeLinear",
) -> np.ndarray:
    s = _param_layout(scale, x.shape, axis, block_size, op_name, "y_scale")
    wide = _F64 if x.dtype.kind in "iu" or precision == _F64 else _F32
    xf = x.astype(wide) if x.dtype != wide else x
    sf = s.astype(wide) if s.dtype != wide else s
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = xf / sf
        if precision != wide:
            q = q.astype(precision).astype(np.float32)  # division rounded to the requested precision
    q = np.asarray(q)  # this function's temporary (0-d results come back as numpy scalars)
    if out_dtype in _INT_RANGE:
        np.rint(q, out=q)
        if zero_point is not None:
            zp = _param_layout(zero_point, x.shape, axis, block_size, op_name, "y_zero_point")
            q += _to_int_values(zp).astype(q.dtype)
        return _saturate_to(q, out_dtype, owned=True)
    if zero_point is not None:
        zp = _param_layout(zero_point, x.shape, axis, block_size, op_name, "y_zero_point")
        q = q + _as_f32(zp).astype(q.dtype)
    return np.asarray(_saturate_to(np.asarray(q), out_dtype, saturate))


def _precision_dtype(scale_dtype: np.dtype, precision: int) -> np.dtype:
    if precision:
        dt = np_dtype(precision)
        if not is_float(dt):
            raise TypeError(f"QuantizeLinear: attribute precision must name a float type, got {_describe(dt)}")
        return dt if dt in (_F64, np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)) else _F32
    # Without the attribute, divide in float32 like onnxruntime does for every scale type (the
    # opset-23 text says a float16/bfloat16 scale sets the precision; onnxruntime 1.31 ignores that).
    return _F32


@op_factory("QuantizeLinear", 10, 13, 19, 21, 23, 24, 25)
def quantize_linear(ctx: KernelContext):
    axis = int(ctx.attrs.get("axis", 1))
    block_size = int(ctx.attrs.get("block_size", 0))
    saturate = bool(ctx.attrs.get("saturate", 1))
    output_dtype = int(ctx.attrs.get("output_dtype", 0))
    precision = int(ctx.attrs.get("precision", 0))
    fixed_out = np_dtype(output_dtype) if output_dtype else None
    if fixed_out is not None and fixed_out not in _INT_RANGE and not is_float(fixed_out):
        raise TypeError(f"QuantizeLinear: output_dtype {_describe(fixed_out)} is not a quantized type")

    def run(x, y_scale, y_zero_point=None):
        _check_tensor("QuantizeLinear", "x", x)
        _check_tensor("QuantizeLinear", "y_scale", y_scale)
        if y_zero_point is not None:
            _check_tensor("QuantizeLinear", "y_zero_point", y_zero_point)
            if fixed_out is not None and y_zero_point.dtype != fixed_out:
                raise TypeError(
                    f"QuantizeLinear: y_zero_point has type {_describe(y_zero_point.dtype)} but output_dtype is "
                    f"{_describe(fixed_out)}; they must match"
                )
            out = y_zero_point.dtype
        else:
            out = fixed_out if fixed_out is not None else np.dtype(np.uint8)
        if out not in _INT_RANGE and not is_float(out) or out == np.dtype(np.int32):
            raise TypeError(f"QuantizeLinear: output type {_describe(out)} is not a quantized type")
        if not is_float(x.dtype) and x.dtype != np.int32:
            raise TypeError(f"QuantizeLinear: input 'x' must be float, float16, bfloat16 or int32, got {_describe(x.dtype)}")
        return _quantize(x, y_scale, y_zero_point, out, axis, block_size, saturate,
                         _precision_dtype(y_scale.dtype, precision))

    return run


def _dequantize(x, scale, zero_point, out_dtype, axis, block_size, op_name="DequantizeLinear"):
    s = _param_layout(scale, x.shape, axis, block_size, op_name, "x_scale")
    if is_float(x.dtype):
        d = _as_f32(x)
        if zero_point is not None:
            d = d - _as_f32(_param_layout(zero_point, x.shape, axis, block_size, op_name, "x_zero_point"))
        wide = _F32
    else:
        wide = _F64 if x.dtype.itemsize >= 4 and x.dtype.kind != "V" else _F32
        if zero_point is not None:
            zp = _param_layout(zero_point, x.shape, axis, block_size, op_name, "x_zero_point")
            if wide == _F64:
                d = x.astype(np.int64) - zp.astype(np.int64)
            else:
                d = _to_int_values(x) - _to_int_values(zp)
        else:
            d = _to_int_values(x) if x.dtype.kind == "V" else x
        d = d.astype(wide)
    y = d * _as_f32(s).astype(wide, copy=False)
    return y.astype(out_dtype, copy=False)


@op_factory("DequantizeLinear", 10, 13, 19, 21, 23, 24, 25)
def dequantize_linear(ctx: KernelContext):
    axis = int(ctx.attrs.get("axis", 1))
    block_size = int(ctx.attrs.get("block_size", 0))
    output_dtype = int(ctx.attrs.get("output_dtype", 0))
    fixed_out = np_dtype(output_dtype) if output_dtype else None
    if fixed_out is not None and not is_float(fixed_out):
        raise TypeError(f"DequantizeLinear: output_dtype must be a float type, got {_describe(fixed_out)}")

    def run(x, x_scale, x_zero_point=None):
        if folded is not None and x is consts[0] and x_scale is consts[1] and x_zero_point is consts[2]:
            return folded
        _check_tensor("DequantizeLinear", "x", x)
        _check_tensor("DequantizeLinear", "x_scale", x_scale)
        if not is_float(x_scale.dtype):
            raise TypeError(f"DequantizeLinear: x_scale must be a float tensor, got {_describe(x_scale.dtype)}")
        if x_zero_point is not None:
            _check_tensor("DequantizeLinear", "x_zero_point", x_zero_point)
            if x_zero_point.dtype != x.dtype:
                raise TypeError(
                    f"DequantizeLinear: x_zero_point has type {_describe(x_zero_point.dtype)}, expected the type of "
                    f"x, {_describe(x.dtype)}"
                )
        if x.dtype not in _INT_RANGE and not is_float(x.dtype):
            raise TypeError(f"DequantizeLinear: input 'x' of type {_describe(x.dtype)} is not a quantized type")
        out = fixed_out
        if out is None:
            out = x_scale.dtype if x_scale.dtype in (_F32, np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)) else _F32
        return _dequantize(x, x_scale, x_zero_point, out, axis, block_size)

    # Dequantizing a constant weight (QDQ models, quantized embeddings) gives the same float
    # tensor every run: compute it once here and hand out a read-only array.
    consts = (list(ctx.const_inputs) + [None] * 3)[:3]
    names = (list(ctx.input_names) + [""] * 3)[:3]
    folded = None
    if consts[0] is not None and consts[1] is not None and (consts[2] is not None or not names[2]):
        folded = np.asarray(run(*consts))
        folded.flags.writeable = False
    return run


def _dynamic_range_params(x: np.ndarray) -> tuple[np.float32, int]:
    """DynamicQuantizeLinear's uint8 scale and zero point for ``x``: range [min(0, x), max(0, x)]
    over the non-NaN values, scale = range / 255 (1 when the range is 0), zero point =
    rint(clip(-min / scale, 0, 255)); all in float32 like onnxruntime."""
    lo_x = float(x.min()) if x.size else 0.0
    hi_x = float(x.max()) if x.size else 0.0
    if math.isnan(lo_x) or math.isnan(hi_x):  # NaNs take no part in the range
        finite = x[~np.isnan(x)]
        lo_x, hi_x = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    lo = np.float32(min(0.0, lo_x))
    hi = np.float32(max(0.0, hi_x))
    if math.isfinite(lo_x) and math.isfinite(hi_x) and hi_x - lo_x < 1e38:
        scale = (hi - lo) / np.float32(255)
        if scale == 0:
            scale = np.float32(1)
        zp_f = float(np.float32(0) - lo / scale)
    else:  # infinities: float32 overflow is the expected outcome, not worth a warning
        with np.errstate(over="ignore", invalid="ignore"):
            scale = np.float32((hi - lo) / np.float32(255))
            if scale == 0:
                scale = np.float32(1)
            zp_f = float(np.float32(0) - lo / scale)
    zp = 0 if math.isnan(zp_f) else round(min(255.0, max(0.0, zp_f)))  # round(): half to even, like rint
    return scale, zp


@op("DynamicQuantizeLinear", 11)
def dynamic_quantize_linear(x):
    _check_tensor("DynamicQuantizeLinear", "x", x)
    if x.dtype != _F32:
        raise TypeError(f"DynamicQuantizeLinear: input 'x' must be tensor(float), got {_describe(x.dtype)}")
    scale, zp = _dynamic_range_params(x)
    # one temporary: x / scale, rounded, shifted and saturated in place (NaN saturates to 0 via fmax)
    if math.isfinite(scale):
        q = np.divide(x, scale, dtype=np.float32)
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = np.divide(x, scale, dtype=np.float32)
    q = np.asarray(q)
    np.rint(q, out=q)
    if zp:
        q += np.float32(zp)
    np.fmax(q, np.float32(0), out=q)
    np.fmin(q, np.float32(255), out=q)
    return q.astype(np.uint8), np.array(scale, dtype=np.float32), np.array(zp, dtype=np.uint8)


# -- integer matmul ---------------------------------------------------------------------------------


def _check_int8(op_name: str, name: str, v: np.ndarray, allow_f8: bool = False) -> None:
    ok = v.dtype in (np.dtype(np.int8), np.dtype(np.uint8)) or (allow_f8 and v.dtype in _F8)
    if not ok:
        want = "int8, uint8 or float8" if allow_f8 else "int8 or uint8"
        raise TypeError(f"{op_name}: input '{name}' must be {want}, got {_describe(v.dtype)}")


def _zp_matching(op_name: str, name: str, zp: np.ndarray | None, x: np.ndarray) -> None:
    if zp is not None and zp.dtype != x.dtype:
        raise TypeError(f"{op_name}: '{name}' has type {_describe(zp.dtype)}, expected {_describe(x.dtype)} (its tensor's)")


def _check_8bit_operands(op_name: str, operands: Sequence[tuple[str, Any, str, Any]], *,
                         zero_points_required: bool = False, allow_f8: bool = False) -> None:
    """Each (name, tensor, zero point's name, zero point) of an integer product: the tensor is 8-bit
    and its zero point, when given (or required), a tensor of the same type."""
    for name, v, zp_name, zp in operands:
        _check_tensor(op_name, name, v)
        if zero_points_required or zp is not None:
            _check_tensor(op_name, zp_name, zp)
    for name, v, zp_name, zp in operands:
        _check_int8(op_name, name, v, allow_f8)
        _zp_matching(op_name, zp_name, zp, v)


def _shifted(v: np.ndarray, zp: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """v - zp as a float array of ``dtype`` (exact: |v - zp| <= 255)."""
    if zp is not None and zp.size == 1 and zp.dtype.kind in "iu":  # the common per-tensor case: one pass
        return np.subtract(v, dtype.type(int(zp.reshape(-1)[0])), dtype=dtype)
    out = v.astype(dtype)
    if zp is not None:
        out -= zp.astype(dtype)
    return out


def _a_zero_point(op_name: str, zp: np.ndarray | None, a: np.ndarray, name: str) -> np.ndarray | None:
    """Per-tensor, or per-row ([M] or [..., M, 1]) zero point of A laid out to broadcast."""
    if zp is None:
        return None
    if zp.size == 1:
        return zp.reshape(())
    if zp.ndim == 1 and a.ndim >= 2 and zp.shape[0] == a.shape[-2]:
        return zp.reshape(-1, 1)
    if zp.ndim == a.ndim:
        return zp
    raise ValueError(
        f"{op_name}: '{name}' of shape {list(zp.shape)} must be a scalar, an [M] vector or have the rank of "
        f"its input (shape {list(a.shape)})"
    )


def _b_zero_point(op_name: str, zp: np.ndarray | None, b: np.ndarray, name: str) -> np.ndarray | None:
    """Per-tensor, or per-column ([N] or [..., 1, N]) zero point of B."""
    if zp is None:
        return None
    if zp.size == 1:
        return zp.reshape(())
    if zp.ndim == 1 and zp.shape[0] == b.shape[-1]:
        return zp
    if zp.ndim == b.ndim:
        return zp
    raise ValueError(
        f"{op_name}: '{name}' of shape {list(zp.shape)} must be a scalar, an [N] vector or have the rank of "
        f"its input (shape {list(b.shape)})"
    )


def _check_matmul_shapes(op_name: str, a: np.ndarray, b: np.ndarray) -> int:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"{op_name}: inputs must have rank >= 1, got shapes {list(a.shape)} and {list(b.shape)}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(
            f"{op_name}: inner dimensions differ: A has shape {list(a.shape)}, B has shape {list(b.shape)} "
            f"({ka} != {kb})"
        )
    return ka


# Largest integer magnitude a float32 accumulation may reach and stay exact, with a margin for the
# float32 rounding of the bound itself (relative error below K * 2**-24).
_F32_SAFE = _EXACT_F32 * 0.99


def _shifted_magnitude(v: np.ndarray, zp: np.ndarray | None) -> float:
    """An upper bound of |v - zp| from v's dtype range and the zero point, without reading v."""
    lo, hi = _INT_RANGE.get(v.dtype, (-255, 255))
    if zp is None:
        return float(max(-lo, hi))
    if zp.size == 1 and zp.dtype.kind in "iu":
        z = int(zp.reshape(-1)[0])
        return float(max(hi - z, z - lo))
    z = _to_int_values(np.asarray(zp))
    return float(max(hi - int(z.min()), int(z.max()) - lo))


class _IntB:
    """B - b_zp for an integer matmul, as float32 (and float64 on demand), with the per-row
    (per-k) maximum magnitude that bounds how large a float32 accumulation can grow."""

    def __init__(self, b: np.ndarray, zp: np.ndarray | None) -> None:
        self.f32 = _shifted(b, zp, _F32)
        self._f64: np.ndarray | None = None
        mag = np.abs(self.f32)
        # (..., K, 1): |A| @ kmax bounds every |partial sum| of A @ B's output rows
        self.kmax = mag.reshape(-1, 1) if b.ndim == 1 else mag.max(axis=-1, keepdims=True)
        self.max = float(mag.max()) if mag.size else 0.0
        # sum over k of the per-k maxima (largest over any leading batch dims): a_magnitude * ksum
        # bounds every partial sum without reading A
        self.ksum = float(self.kmax.reshape(-1, self.kmax.shape[-2]).sum(axis=-1).max()) if mag.size else 0.0

    @property
    def f64(self) -> np.ndarray:
        if self._f64 is None:
            self._f64 = self.f32.astype(_F64)
        return self._f64

    def freeze(self) -> "_IntB":
        self.f32.flags.writeable = False
        self.kmax.flags.writeable = False
        return self


class _ConstCache:
    """(value - zero point) of a constant B operand (transposed first with ``transposed``), computed
    once per session; any other B is converted on each call."""

    def __init__(self, value: np.ndarray | None, zp: np.ndarray | None, have_zp_input: bool, layout,
                 transposed: bool = False) -> None:
        self.value = value
        self.zp = zp
        self.ok = value is not None and (zp is not None or not have_zp_input)
        self.layout = layout
        self.transposed = transposed
        self._cached: _IntB | None = None
        if self.ok:  # prepared once, at session construction (a bad zero point raises at run instead)
            try:
                self._cached = self._make(value, zp).freeze()
            except (TypeError, ValueError):
                self._cached = None

    def _make(self, value: np.ndarray, zp: np.ndarray | None) -> _IntB:
        return _IntB(value.T if self.transposed else value, self.layout(zp, value))

    def get(self, value: np.ndarray, zp: np.ndarray | None) -> _IntB:
        if self.ok and value is self.value and zp is self.zp:
            if self._cached is None:
                self._cached = self._make(value, zp).freeze()
            return self._cached
        return self._make(value, zp)


def _const_b_cache(op_name: str, ctx: KernelContext, b_idx: int, zp_idx: int) -> _ConstCache:
    """The B-operand cache of a node whose B is input ``b_idx`` and B's zero point input ``zp_idx``."""
    consts = list(ctx.const_inputs) + [None] * (max(b_idx, zp_idx) + 1)
    have_zp = ctx.num_inputs > zp_idx and bool(ctx.input_names[zp_idx])
    return _ConstCache(consts[b_idx], consts[zp_idx], have_zp,
                       lambda zp, b: _b_zero_point(op_name, zp, b, "b_zero_point"))


def _exact_matmul(af: np.ndarray, a_magnitude: float, bi: _IntB, a_low: float | None = None) -> np.ndarray:
    """af @ B exactly, for integer-valued float32 ``af`` with |af| <= a_magnitude (and af >= a_low).

    float32 BLAS is exact while every partial sum stays below 2**24 (integers all the way); the
    bound is first taken from the value ranges (K * |a| * max|b|, or |a| * sum_k max_n |b_kn|), then,
    if that is too coarse, from the data: sum_k |a_mk| * max_n |b_kn|, one matrix-vector product
    (with a lower bound ``a_low`` of af, |a| <= a - 2 * a_low makes it one without an |af| pass).
    Otherwise float64 (exact to 2**53).
    """
    k = af.shape[-1]
    if bi.f32.ndim == 2 and af.ndim > 2:  # (..., M, K) @ (K, N): one 2-D GEMM, the shape BLAS likes
        y = _exact_matmul(af.reshape(-1, k), a_magnitude, bi, a_low)
        return y.reshape(*af.shape[:-1], bi.f32.shape[-1])
    if k * a_magnitude * bi.max < _F32_SAFE or a_magnitude * bi.ksum < _F32_SAFE:
        return np.matmul(af, bi.f32)
    if k < 2**16 and af.size:
        if a_low is not None and bi.f32.ndim == 2:  # mostly non-negative A (after Relu, Gelu): no |af| pass
            bound = float(np.matmul(af, bi.kmax).max()) + 2.0 * max(0.0, -a_low) * bi.ksum
            if bound < _F32_SAFE:
                return np.matmul(af, bi.f32)
        if float(np.matmul(np.abs(af), bi.kmax).max()) < _F32_SAFE:
            return np.matmul(af, bi.f32)
    return np.matmul(af.astype(_F64), bi.f64)


def _int_matmul(op_name, a, b, a_zp, b_zp, b_cache: _ConstCache | None = None):
    """(A - a_zp) @ (B - b_zp) exactly, as a float array (float32 or float64)."""
    _check_matmul_shapes(op_name, a, b)
    azp = _a_zero_point(op_name, a_zp, a, "a_zero_point")
    af = _shifted(a, azp, _F32)
    if b_cache is not None:
        bi = b_cache.get(b, b_zp)
    else:
        bi = _IntB(b, _b_zero_point(op_name, b_zp, b, "b_zero_point"))
    return _exact_matmul(af, _shifted_magnitude(a, azp), bi)


def _float_to_int32(acc: np.ndarray) -> np.ndarray:
    """Exact integer-valued floats as int32, wrapping like 32-bit accumulation."""
    if acc.dtype == _F32:  # exact float32 results are below 2**24
        return acc.astype(np.int32)
    if acc.size and float(np.abs(acc).max()) >= 2.0**31:
        return acc.astype(np.int64).astype(np.int32)
    return acc.astype(np.int32)


@op_factory("MatMulInteger", 10)
def matmul_integer(ctx: KernelContext):
    b_cache = _const_b_cache("MatMulInteger", ctx, 1, 3)

    def run(A, B, a_zero_point=None, b_zero_point=None):
        _check_8bit_operands("MatMulInteger", [("A", A, "a_zero_point", a_zero_point),
                                               ("B", B, "b_zero_point", b_zero_point)])
        acc = _int_matmul("MatMulInteger", A, B, a_zero_point, b_zero_point, b_cache)
        return np.asarray(_float_to_int32(acc))

    return run


def _requantize(acc: np.ndarray, multiplier: np.ndarray, y_zero_point: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    """saturate(rint(acc * multiplier) + y_zp) for integer outputs; float8 outputs round once."""
    v = np.asarray(acc.astype(np.float32, copy=False) * multiplier)
    if out_dtype in _INT_RANGE:
        np.rint(v, out=v)
        v += _to_int_values(y_zero_point).astype(np.float32)
        return _saturate_to(v, out_dtype, owned=True)
    return _saturate_to(v + _as_f32(y_zero_point), out_dtype, True)


def _scale_f32(op_name: str, name: str, s: np.ndarray) -> np.ndarray:
    _check_tensor(op_name, name, s)
    if not is_float(s.dtype):
        raise TypeError(f"{op_name}: '{name}' must be a float tensor, got {_describe(s.dtype)}")
    return _as_f32(s)


@op_factory("QLinearMatMul", 10, 21)
def qlinear_matmul(ctx: KernelContext):
    allow_f8 = ctx.since_version >= 21
    b_cache = _const_b_cache("QLinearMatMul", ctx, 3, 5)

    def run(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
        name = "QLinearMatMul"
        _check_8bit_operands(name, [("a", a, "a_zero_point", a_zero_point), ("b", b, "b_zero_point", b_zero_point)],
                             zero_points_required=True, allow_f8=allow_f8)
        _check_tensor(name, "y_zero_point", y_zero_point)
        _check_int8(name, "y_zero_point", y_zero_point, allow_f8)
        sa = _a_zero_point(name, _scale_f32(name, "a_scale", a_scale), a, "a_scale")
        sb = _b_zero_point(name, _scale_f32(name, "b_scale", b_scale), b, "b_scale")
        sy = _b_zero_point(name, _scale_f32(name, "y_scale", y_scale), b, "y_scale")
        if a.dtype in _F8 or b.dtype in _F8:
            _check_matmul_shapes(name, a, b)
            af = _shifted(a, _a_zero_point(name, a_zero_point, a, "a_zero_point"), _F32)
            bf = _shifted(b, _b_zero_point(name, b_zero_point, b, "b_zero_point"), _F32)
            acc = np.matmul(af, bf)
        else:
            acc = _int_matmul(name, a, b, a_zero_point, b_zero_point, b_cache)
        multiplier = (sa * sb) / sy
        yzp = _b_zero_point(name, y_zero_point, b, "y_zero_point")
        return np.asarray(_requantize(acc, multiplier, yzp, y_zero_point.dtype))

    return run


# -- integer convolution ----------------------------------------------------------------------------


def _conv_pads(op_name: str, in_spatial, k_spatial, strides, dilations, pads, auto_pad):
    nd = len(k_spatial)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nd):
            out = -(-in_spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (k_spatial[i] - 1) * dilations[i] + 1 - in_spatial[i])
            small = total // 2
            if auto_pad == "SAME_UPPER":
                begin.append(small)
                end.append(total - small)
            else:
                begin.append(total - small)
                end.append(small)
        return begin, end
    if auto_pad == "VALID":
        return [0] * nd, [0] * nd
    if auto_pad not in ("NOTSET", ""):
        raise ValueError(f"{op_name}: auto_pad '{auto_pad}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if pads is None:
        return [0] * nd, [0] * nd
    if len(pads) != 2 * nd:
        raise ValueError(f"{op_name}: pads has {len(pads)} values, expected {2 * nd} for {nd} spatial dimensions")
    if any(p < 0 for p in pads):
        raise ValueError(f"{op_name}: negative pads {pads} are not supported")
    return list(pads[:nd]), list(pads[nd:])


def _conv_integer_core(op_name, x, w_shape, w_grouped, group, strides, dilations, pads, auto_pad, dtype):
    """Convolution of (x - x_zp) (float ``dtype``) with pre-grouped weights; returns (N, M, *O)."""
    n, c = x.shape[:2]
    m = w_shape[0]
    kshape = list(w_shape[2:])
    nd = len(kshape)
    spatial = list(x.shape[2:])
    begin, end = _conv_pads(op_name, spatial, kshape, strides, dilations, pads, auto_pad)
    if any(begin) or any(end):
        x = np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end)))
    padded = x.shape[2:]
    dk = [(k - 1) * d + 1 for k, d in zip(kshape, dilations)]
    out = [(p - e) // s + 1 for p, e, s in zip(padded, dk, strides)]
    if any(o <= 0 for o in out):
        raise ValueError(
            f"{op_name}: the (padded) input spatial shape {list(padded)} is smaller than the dilated kernel {dk}"
        )
    win = sliding_window_view(x, dk, axis=tuple(range(2, 2 + nd)))  # (N, C, *W, *dk)
    sl = (slice(None), slice(None)) + tuple(slice(0, o * s, s) for o, s in zip(out, strides)) \
        + tuple(slice(None, None, d) for d in dilations)
    win = win[sl]  # (N, C, *O, *K)
    perm = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
    p = math.prod(out)
    cols = win.transpose(perm).reshape(n, group, (c // group) * math.prod(kshape), p)
    y = np.matmul(w_grouped, cols)  # (G, Mg, CK) @ (N, G, CK, P) -> (N, G, Mg, P)
    return y.reshape(n, m, *out)


def _conv_attrs(ctx: KernelContext):
    a = ctx.attrs
    ap = a.get("auto_pad", "NOTSET")
    if isinstance(ap, bytes):
        ap = ap.decode()
    return (int(a.get("group", 1)), a.get("kernel_shape"), a.get("strides"), a.get("dilations"), a.get("pads"), ap)


def _check_conv_inputs(op_name, x, w, group, kernel_shape):
    if x.ndim < 3:
        raise ValueError(f"{op_name}: input 'x' must have rank >= 3 (N, C, spatial...), got shape {list(x.shape)}")
    if w.ndim != x.ndim:
        raise ValueError(f"{op_name}: input 'w' has rank {w.ndim}, expected {x.ndim} (the rank of 'x')")
    if group < 1 or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise ValueError(
            f"{op_name}: channels mismatch: x has {x.shape[1]} channels, w has shape {list(w.shape)}, group {group} "
            f"(expected x channels == w.shape[1] * group and w.shape[0] divisible by group)"
        )
    if kernel_shape is not None and list(kernel_shape) != list(w.shape[2:]):
        raise ValueError(f"{op_name}: kernel_shape {list(kernel_shape)} does not match w's spatial shape {list(w.shape[2:])}")


def _w_zero_point(op_name: str, zp: np.ndarray | None, w: np.ndarray, name: str = "w_zero_point"):
    if zp is None:
        return None
    if zp.size == 1:
        return zp.reshape(())
    if zp.ndim == 1 and zp.shape[0] == w.shape[0]:
        return zp.reshape((-1,) + (1,) * (w.ndim - 1))
    raise ValueError(f"{op_name}: '{name}' must be a scalar or have {w.shape[0]} elements (one per output channel), got shape {list(zp.shape)}")


def _make_conv(op_name: str, ctx: KernelContext, w_idx: int, wzp_idx: int):
    group, kernel_shape, strides, dilations, pads, auto_pad = _conv_attrs(ctx)
    consts = ctx.const_inputs + [None] * 9
    w_const, wzp_const = consts[w_idx], consts[wzp_idx]
    has_wzp = ctx.num_inputs > wzp_idx and bool(ctx.input_names[wzp_idx])
    cache: dict[np.dtype, tuple[np.ndarray, float]] = {}

    def grouped_weights(w, w_zp, dtype):
        """(W - w_zp) grouped as (G, M/G, C/G * K), and the largest per-output-channel sum of |W - w_zp|."""
        constant = w is w_const and w_const is not None and (w_zp is wzp_const and (wzp_const is not None or not has_wzp))
        if constant:
            got = cache.get(dtype)
            if got is not None:
                return got
        ws = _shifted(w, _w_zero_point(op_name, w_zp, w), dtype)
        m = w.shape[0]
        ws = ws.reshape(group, m // group, -1)
        l1 = float(np.abs(ws).sum(axis=-1).max()) if ws.size else 0.0
        if constant:
            ws.flags.writeable = False
            cache[dtype] = (ws, l1)
        return ws, l1

    def conv(x, x_zp, w, w_zp):
        _check_conv_inputs(op_name, x, w, group, kernel_shape)
        nd = x.ndim - 2
        st = list(strides) if strides else [1] * nd
        dl = list(dilations) if dilations else [1] * nd
        if len(st) != nd or len(dl) != nd:
            raise ValueError(f"{op_name}: strides {st} / dilations {dl} must have {nd} values")
        if x_zp is not None and x_zp.size != 1:
            raise ValueError(f"{op_name}: x_zero_point must be a scalar, got shape {list(x_zp.shape)}")
        xzp = None if x_zp is None else x_zp.reshape(())
        # float32 is exact while every output's sum of |x| * |w| stays below 2**24
        ws, l1 = grouped_weights(w, w_zp, _F32)
        dt = _F32 if _shifted_magnitude(x, xzp) * l1 < _F32_SAFE else _F64
        if dt == _F64:
            ws, _ = grouped_weights(w, w_zp, _F64)
        xs = _shifted(x, xzp, dt)
        return _conv_integer_core(op_name, xs, w.shape, ws, group, st, dl, pads, auto_pad, dt)

    return conv


@op_factory("ConvInteger", 10)
def conv_integer(ctx: KernelContext):
    conv = _make_conv("ConvInteger", ctx, 1, 3)

    def run(x, w, x_zero_point=None, w_zero_point=None):
        _check_8bit_operands("ConvInteger", [("x", x, "x_zero_point", x_zero_point),
                                             ("w", w, "w_zero_point", w_zero_point)])
        return np.asarray(_float_to_int32(conv(x, x_zero_point, w, w_zero_point)))

    return run


@op_factory("QLinearConv", 10)
def qlinear_conv(ctx: KernelContext):
    conv = _make_conv("QLinearConv", ctx, 3, 5)

    def run(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None):
        name = "QLinearConv"
        _check_8bit_operands(name, [("x", x, "x_zero_point", x_zero_point), ("w", w, "w_zero_point", w_zero_point)],
                             zero_points_required=True)
        _check_tensor(name, "y_zero_point", y_zero_point)
        _check_int8(name, "y_zero_point", y_zero_point)
        sx = _scale_f32(name, "x_scale", x_scale)
        sw = _scale_f32(name, "w_scale", w_scale)
        sy = _scale_f32(name, "y_scale", y_scale)
        if sx.size != 1 or sy.size != 1 or y_zero_point.size != 1:
            raise ValueError(f"{name}: x_scale, y_scale and y_zero_point must be scalars")
        acc = conv(x, x_zero_point, w, w_zero_point)
        m = w.shape[0]
        bshape = (1, m) + (1,) * (x.ndim - 2)
        if B is not None:
            _check_tensor(name, "B", B)
            if B.dtype != np.int32 or B.size != m:
                raise ValueError(f"{name}: bias B must be int32 with {m} elements, got {_describe(B.dtype)} shape {list(B.shape)}")
            acc = acc + B.reshape(bshape).astype(acc.dtype)
        acc32 = _float_to_int32(acc) if acc.dtype == _F64 else acc
        sw_b = _w_zero_point(name, sw, w, "w_scale")
        sw_b = sw_b.reshape(bshape) if sw_b.ndim else sw_b
        multiplier = (sx.reshape(()) * sw_b) / sy.reshape(())
        return np.asarray(_requantize(acc32, multiplier, y_zero_point.reshape(()), y_zero_point.dtype))

    return run
