"""ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceLogSum,
ReduceLogSumExp, ReduceSumSquare.

Axes come from the ``axes`` attribute before ReduceSum-13 / the others' opset 18, and from the optional
second input from then on (with ``noop_with_empty_axes``). No axes means every axis, unless
``noop_with_empty_axes`` is set, which makes the op the identity. Reducing an empty set yields the
reduction's identity (0 for sums, 1 for products, -inf for max/log-sum, +inf for min, NaN for mean).
Integer inputs stay integers (sums wrap as in C); float16 and the ml_dtypes floats accumulate in float32.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from onnxrt.ops._common import normalize_axis
from onnxrt.ops.registry import KernelContext, op_factory

# since-version from which ``axes`` is an input instead of an attribute
_AXES_INPUT_SINCE = {"ReduceSum": 13}
_DEFAULT_AXES_INPUT_SINCE = 18


def _acc_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in: float16 / ml_dtypes floats go through float32, others stay."""
    if dtype == np.float16 or (dtype.kind == "V" and "int" not in dtype.name):
        return np.dtype(np.float32)
    if dtype.kind == "V":  # int4 / uint4 / int2 / uint2
        return np.dtype(np.int32)
    return dtype


def _is_int(dtype: np.dtype) -> bool:
    return dtype.kind in "iu"


def _sum(x: np.ndarray, axes, keepdims: bool) -> np.ndarray:
    # (np.add.reduce is what np.sum calls, without its ~1.5 us of Python dispatch)
    return np.add.reduce(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


def _mean(x: np.ndarray, axes, keepdims: bool) -> np.ndarray:
    count = 1
    for a in axes:
        count *= x.shape[a]
    s = np.add.reduce(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    if _is_int(x.dtype):
        if count == 0:
            return np.zeros(s.shape, dtype=x.dtype)
        q = np.abs(s) // x.dtype.type(count)  # C-style truncation toward zero
        return np.where(s < 0, -q, q).astype(x.dtype, copy=False)
    s = np.asarray(s)
    if count:  # (errstate costs ~2 us a call; only 0 / 0 warns)
        if s.ndim:
            s /= x.dtype.type(count)
            return s
        return np.asarray(s / x.dtype.type(count), dtype=x.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(s / x.dtype.type(count), dtype=x.dtype)


def _extreme(x: np.ndarray, axes, keepdims: bool, maximum: bool) -> np.ndarray:
    dt = x.dtype
    if dt == np.bool_:
        ident = not maximum
    elif _is_int(dt):
        info = np.iinfo(dt)
        ident = info.min if maximum else info.max
    else:
        ident = -np.inf if maximum else np.inf
    f = np.max if maximum else np.min
    return f(x, axis=axes, keepdims=keepdims, initial=ident)


def _prod(x, axes, keepdims):
    return np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


def _l1(x, axes, keepdims):
    if x.dtype.kind == "u":
        return _sum(x, axes, keepdims)
    return np.sum(np.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype)


def _sum_square(x, axes, keepdims):
    return np.sum(np.square(x), axis=axes, keepdims=keepdims, dtype=x.dtype)


def _float_of(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) if _is_int(x.dtype) else x


def _l2(x, axes, keepdims):
    xf = _float_of(x)
    s = np.asarray(np.sum(np.square(xf), axis=axes, keepdims=keepdims))
    return np.sqrt(s, out=s) if s.ndim else np.sqrt(s)


def _log_sum(x, axes, keepdims):
    xf = _float_of(x)
    s = np.asarray(np.sum(xf, axis=axes, keepdims=keepdims))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(s)


def _log_sum_exp(x, axes, keepdims):
    xf = _float_of(x)
    if xf.size == 0:
        shape = _reduced_shape(xf.shape, axes, keepdims)
        return np.full(shape, -np.inf, dtype=xf.dtype)
    m = np.max(xf, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, xf.dtype.type(0))  # all -inf / inf slices: no shift
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        e = np.subtract(xf, m)
        np.exp(e, out=e)
        s = np.sum(e, axis=axes, keepdims=True)
        np.log(s, out=s)
        s += m
    if not keepdims:
        s = s.reshape(_reduced_shape(xf.shape, axes, False))
    return s


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


_KINDS: dict[str, Callable] = {
    "ReduceSum": _sum,
    "ReduceMean": _mean,
    "ReduceMax": lambda x, a, k: _extreme(x, a, k, True),
    "ReduceMin": lambda x, a, k: _extreme(x, a, k, False),
    "ReduceProd": _prod,
    "ReduceL1": _l1,
    "ReduceL2": _l2,
    "ReduceLogSum": _log_sum,
    "ReduceLogSumExp": _log_sum_exp,
    "ReduceSumSquare": _sum_square,
}


@functools.lru_cache(maxsize=1024)
def _check_axes(axes: tuple[int, ...], rank: int, name: str) -> tuple[int, ...]:
    out = tuple(normalize_axis(int(a), rank, name) for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: 'axes' {list(axes)} contains duplicates for a tensor of rank {rank}")
    return out


def _axes_from_input(value, name: str) -> list[int]:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: input 'axes' must be int64, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name}: input 'axes' must be 1-D, got shape {arr.shape}")
    return [int(v) for v in arr.reshape(-1)]


def _make_factory(name: str):
    reduce_fn = _KINDS[name]
    input_since = _AXES_INPUT_SINCE.get(name, _DEFAULT_AXES_INPUT_SINCE)

    def factory(ctx: KernelContext):
        keepdims = bool(ctx.attrs.get("keepdims", 1))
        axes_is_input = ctx.since_version >= input_since
        noop = axes_is_input and bool(ctx.attrs.get("noop_with_empty_axes", 0))
        static_axes: tuple[int, ...] | None = None
        dynamic = False
        if not axes_is_input:
            a = ctx.attrs.get("axes")
            static_axes = tuple(a) if a is not None else None
        elif ctx.num_inputs >= 2 and ctx.input_names[1]:
            const = ctx.const_inputs[1] if len(ctx.const_inputs) > 1 else None
            if const is not None:
                static_axes = tuple(_axes_from_input(const, name))
            else:
                dynamic = True

        def run(data, axes=None):
            if not isinstance(data, np.ndarray):
                raise TypeError(f"{name}: input 'data' must be a tensor, got {type(data).__name__}")
            ax = static_axes
            if dynamic and axes is not None:
                ax = tuple(_axes_from_input(axes, name))
            if not ax:
                if noop:
                    return data
                axes_t = tuple(range(data.ndim))
            else:
                axes_t = _check_axes(ax, data.ndim, name)
            dt = data.dtype
            if dt.kind in "OUS":
                raise TypeError(f"{name}: input 'data' has unsupported dtype {dt}")
            acc = _acc_dtype(dt)
            x = data if acc == dt else data.astype(acc)
            out = reduce_fn(x, axes_t, keepdims)
            if type(out) is not np.ndarray or out.dtype != dt:
                out = np.asarray(out).astype(dt, copy=False)
            return out

        return run

    return factory


for _name in _KINDS:
    _since = _AXES_INPUT_SINCE.get(_name, _DEFAULT_AXES_INPUT_SINCE)
    op_factory(_name, 1, _since)(_make_factory(_name))
