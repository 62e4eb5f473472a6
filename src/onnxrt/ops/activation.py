"""Activation functions: Relu family, sigmoid family, Gelu/Swish/SwiGLU/Mish, Clip, Shrink.

float16, bfloat16 (and other ml_dtypes floats) are computed in float32 and cast back once, which is
both faster and more accurate than numpy's per-operation half-precision loops. Attributes (Python
floats) are converted to the computing dtype once per call so float32 stays float32.
"""

from __future__ import annotations

import math

import numpy as np

from onnxrt.ops._common import leaky_relu_into, relu_into
from onnxrt.ops.elementwise import (
    F16,
    F32,
    FLOATS,
    NUMERIC,
    SIGNED,
    _arr,
    _check,
    _dtype,
    _same,
    _erf_table,
    blockwise,
)
from onnxrt.ops.registry import KernelContext, op, op_factory

_RELU_TYPES = FLOATS | SIGNED
_PRELU_TYPES = FLOATS | frozenset(np.dtype(t) for t in (np.int32, np.int64, np.uint32, np.uint64))


def _prep(op_name: str, X, allowed: frozenset = FLOATS, input_name: str = "X"):
    """(array to compute on, dtype to cast the result back to or None)."""
    dt = _dtype(op_name, input_name, X)
    if dt not in allowed:
        _check(op_name, input_name, dt, allowed)
    if dt == F16 or dt.kind == "V":
        return X.astype(F32), dt
    return X, None


def _done(r, back):
    if back is not None:
        return np.asarray(r).astype(back)
    return r if type(r) is np.ndarray else np.asarray(r)


# Past these exp overflows (and warns). On a short array, clipping there costs less than np.errstate
# (~1.5 us); it changes nothing above the type's smallest normal number (sigmoid(-88) is 6e-39).
_EXP_ARG_LIMIT = {np.dtype(np.float32): 88.0, np.dtype(np.float64): 709.0}
_SIGMOID_CLIP_MAX_SIZE = 4096  # values up to which the clip replaces np.errstate


def _sigmoid_inplace(r: np.ndarray) -> np.ndarray:
    """r <- 1 / (1 + exp(-r)), in place on a float array the caller owns."""
    np.negative(r, out=r)
    limit = _EXP_ARG_LIMIT.get(r.dtype) if r.size <= _SIGMOID_CLIP_MAX_SIZE else None
    if limit is not None:
        np.minimum(r, limit, out=r)
        np.exp(r, out=r)
    else:
        with np.errstate(over="ignore"):
            np.exp(r, out=r)
    r += 1
    np.reciprocal(r, out=r)
    return r


def _fresh(X: np.ndarray) -> np.ndarray:
    """A float array the kernel owns, holding X (0-d safe)."""
    return np.array(X, copy=True)


def _relu_general(X):
    Xc, back = _prep("Relu", X, _RELU_TYPES)
    return _done(np.maximum(Xc, Xc.dtype.type(0)), back)


def _known_dtype(ctx: KernelContext, allowed: frozenset) -> np.dtype | None:
    """The input's dtype when shape inference knew it and numpy computes in it natively (no float16 or
    ml_dtypes round trip): the run-time callable can then be a bare ufunc call behind one identity test."""
    dts = ctx.input_dtypes
    dt = dts[0] if dts else None
    if dt is None:
        return None
    dt = np.dtype(dt)
    if dt not in allowed or dt == F16 or dt.kind == "V":
        return None
    return dt


@op_factory("Relu", 1)
def relu(ctx: KernelContext):
    dt = _known_dtype(ctx, _RELU_TYPES)
    if dt is None:
        return _relu_general
    nd = np.ndarray

    def run(X):
        if X.__class__ is nd and X.dtype is dt:
            return relu_into(X)
        return _relu_general(X)

    def into_x(X):  # the plan's in-place variant: X dies here and is the run's to overwrite
        if X.__class__ is nd and X.dtype is dt and X.ndim:
            return relu_into(X, X)
        return run(X)

    run.inplace = {0: into_x}

    return run


@op("LeakyRelu", 1)
def leaky_relu(X, *, alpha=0.01):
    Xc, back = _prep("LeakyRelu", X)
    return _done(_arr(leaky_relu_into(Xc, alpha)), back)


def _prelu(X, slope):
    Xc, back = _prep("PRelu", X, _PRELU_TYPES)
    ds = _dtype("PRelu", "slope", slope)
    if ds != X.dtype:
        _same("PRelu", "X", X.dtype, "slope", ds)
    s = slope.astype(F32) if back is not None else slope
    return Xc, s, back


def _prelu_apply(Xc, s, back, x_shape):
    try:
        prod = np.multiply(Xc, s)
    except ValueError:
        raise ValueError(
            f"PRelu: slope {tuple(np.shape(s))} is not broadcastable to X {tuple(x_shape)}"
        ) from None
    if prod.shape != tuple(x_shape):
        raise ValueError(
            f"PRelu: slope {tuple(np.shape(s))} must broadcast unidirectionally to X {tuple(x_shape)}"
        )
    zero = Xc.dtype.type(0)
    return _done(np.where(Xc < zero, prod, Xc), back)


@op("PRelu", 7)
def prelu(X, slope):
    Xc, s, back = _prelu(X, slope)
    return _prelu_apply(Xc, s, back, np.shape(X))


@op("PRelu", 1)
def prelu_legacy(X, slope):
    """Opset 1..6: a slope of size 1 is shared; a 1-D slope of size C applies per channel (axis 1)."""
    Xc, s, back = _prelu(X, slope)
    shape = np.shape(X)
    if s.ndim == 1 and len(shape) >= 2 and s.shape[0] == shape[1] and s.shape[0] != 1:
        s = s.reshape((shape[1],) + (1,) * (len(shape) - 2))
    return _prelu_apply(Xc, s, back, shape)


@op("Elu", 1)
def elu(X, *, alpha=1.0):
    Xc, back = _prep("Elu", X)
    neg = np.minimum(Xc, Xc.dtype.type(0))
    np.expm1(neg, out=neg)
    neg *= Xc.dtype.type(alpha)
    neg += np.maximum(Xc, Xc.dtype.type(0))
    return _done(neg, back)


@op("Selu", 1)
def selu(X, *, alpha=1.6732632423543772, gamma=1.0507010221481323):
    Xc, back = _prep("Selu", X)
    t = Xc.dtype.type
    neg = np.minimum(Xc, t(0))
    np.expm1(neg, out=neg)
    neg *= t(alpha)
    neg += np.maximum(Xc, t(0))
    neg *= t(gamma)
    return _done(neg, back)


@op("Celu", 12)
def celu(X, *, alpha=1.0):
    Xc, back = _prep("Celu", X)
    if alpha == 0:
        raise ValueError("Celu: attribute alpha must be non-zero")
    t = Xc.dtype.type
    r = np.divide(Xc, t(alpha))
    with np.errstate(over="ignore", invalid="ignore"):
        np.expm1(r, out=r)
        r *= t(alpha)
    np.minimum(r, t(0), out=r)
    r += np.maximum(Xc, t(0))
    return _done(r, back)


def _sigmoid_general(X):
    Xc, back = _prep("Sigmoid", X)
    return _done(_sigmoid_inplace(_fresh(Xc)), back)


@op_factory("Sigmoid", 1)
def sigmoid(ctx: KernelContext):
    dt = _known_dtype(ctx, FLOATS)
    if dt is None:
        return _sigmoid_general
    one = dt.type(1)
    negative, exp, add, reciprocal = np.negative, np.exp, np.add, np.reciprocal

    def run(X):
        try:
            if X.dtype is dt and X.ndim:
                r = negative(X)
                with np.errstate(over="ignore"):
                    exp(r, out=r)
                add(r, one, out=r)
                reciprocal(r, out=r)
                return r
        except AttributeError:
            pass
        return _sigmoid_general(X)

    return run


@op("HardSigmoid", 1)
def hard_sigmoid(X, *, alpha=0.2, beta=0.5):
    Xc, back = _prep("HardSigmoid", X)
    t = Xc.dtype.type
    r = _arr(np.multiply(Xc, t(alpha)))
    r += t(beta)
    np.clip(r, t(0), t(1), out=r)  # one pass; np.maximum/minimum against a scalar miss their SIMD loops
    return _done(r, back)


@op("HardSwish", 14)
def hard_swish(X):
    Xc, back = _prep("HardSwish", X)
    t = Xc.dtype.type
    r = _arr(np.multiply(Xc, t(1.0 / 6.0)))
    r += t(0.5)
    np.clip(r, t(0), t(1), out=r)
    r *= Xc
    return _done(r, back)


@op("Softplus", 1)
def softplus(X):
    Xc, back = _prep("Softplus", X)
    return _done(np.logaddexp(Xc, Xc.dtype.type(0)), back)


@op("Softsign", 1)
def softsign(X):
    Xc, back = _prep("Softsign", X)
    r = _arr(np.abs(Xc))
    r += Xc.dtype.type(1)
    np.divide(Xc, r, out=r)
    return _done(r, back)


@op("ThresholdedRelu", 10)
def thresholded_relu(X, *, alpha=1.0):
    Xc, back = _prep("ThresholdedRelu", X)
    t = Xc.dtype.type
    return _done(np.where(Xc > t(alpha), Xc, t(0)), back)


@op("Shrink", 9)
def shrink(input, *, bias=0.0, lambd=0.5):  # noqa: A002 - ONNX input name
    Xc, back = _prep("Shrink", input, NUMERIC, "input")
    t = Xc.dtype.type
    if Xc.dtype.kind == "f":
        lo, hi, b = t(-lambd), t(lambd), t(bias)
    else:  # integer inputs: compare against the float thresholds, shift by the bias in T
        lo, hi, b = -float(lambd), float(lambd), t(bias)
    with np.errstate(over="ignore"):
        r = np.where(Xc < lo, Xc + b, np.where(Xc > hi, Xc - b, t(0)))
    return _done(r.astype(Xc.dtype, copy=False), back)


@op("Mish", 18)
def mish(X):
    Xc, back = _prep("Mish", X)
    r = np.logaddexp(Xc, Xc.dtype.type(0))
    r = _arr(r)
    np.tanh(r, out=r)
    r *= Xc
    return _done(r, back)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# float32 erf-Gelu without erf: with a = |x| and h = Phi(-a) = erfc(a / sqrt 2) / 2,
#     x * Phi(x) = max(x, 0) - a * h        (exact rearrangement for either sign of x)
# and h = u * P(u) * exp(-a^2 / 2), u = 1 / (a + k), P a degree-5 polynomial fitted here (least squares
# reweighted towards minimax, k chosen for the smallest error) to the relative error of h on a in
# [0, 12]: at most 3.2e-6 (3.5e-6 evaluated in float32), so the tail for negative x keeps that relative
# accuracy (no 1 - erf cancellation). onnxruntime's own Gelu is within 6.9e-6 of the truth where
# |x * Phi(x)| > 0.01 and 1.8e-5 on [-3, 0). From |x| = 12 (clamped) the result is max(x, 0) - 2e-32
# at most. 22 numpy passes over blocks that stay in cache (a degree-6 fit, 3.6e-7, took 25: ConvNeXt's
# 8.6M Gelu values 44 ms).
_GELU_U_SHIFT = 3.27  # u = 1 / (|x| + this)
_GELU_U_POLY = (0.4000422961743696, 1.250580039905887, 4.920638392665451, -0.3831864092933813, 75.00872024322236,
                -94.49273274022653)
_GELU_BLOCK = 65536  # floats per block: its 3 buffers stay in L2 (measured best of 16k-128k)
# |x| is clamped here: beyond it h(|x|) * |x| < 1e-30 (the output is x or 0 to float32 precision),
# and exp(-x^2 / 2) would otherwise leave float32's normal range, where arithmetic on subnormal
# numbers runs ~2.5x slower over the whole block (measured: 4.2 ms vs 11.3 ms for 1.2M values)
_GELU_CLAMP = 12.0


_GELU_COEFS = tuple(np.float32(c) for c in _GELU_U_POLY)
# exp(-a^2 / 2) as exp2(a^2 * this): numpy's float32 exp2 loop is ~1.7x faster than its exp
_GELU_HALF_SQUARE_LOG2E = np.float32(-0.5 / math.log(2.0))
_gelu_rows: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.float32), np.empty(0, np.float32))


def _gelu_operands(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only float32 rows of the clamp and of ones, ``size`` long, cut from a pair made once and
    grown to the largest block asked (not made on every call): minimum and divide run their SIMD
    loops only against arrays, not scalars (64K values: 8 / 12 us against 15 / 14 us); max(x, 0) is
    relu_into, which reads a row of zeros for the same reason."""
    global _gelu_rows
    rows = _gelu_rows
    if rows[0].size < size:
        rows = (np.full(size, _GELU_CLAMP, np.float32), np.ones(size, np.float32))
        for row in rows:
            row.flags.writeable = False
        _gelu_rows = rows  # one assignment: a thread sees the old pair or the new one
    return rows[0][:size], rows[1][:size]


def _gelu_erf_f32(X: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Exact (erf) GELU of float32 ``X`` (+ ``bias`` along the last axis, added block by block):
    x * Phi(x) = max(x, 0) - |x| * h(|x|) with h(a) = Phi(-a) evaluated as a polynomial in
    u = 1 / (a + k) times exp(-a^2 / 2), over cache-sized blocks."""
    f = np.float32
    coefs, half_square_log2e = _GELU_COEFS, _GELU_HALF_SQUARE_LOG2E
    out = np.empty(X.shape, dtype=f)
    xf = np.ascontiguousarray(X).reshape(-1)
    of = out.reshape(-1)
    n = xf.size
    row = bias.size if bias is not None else 1
    bs = min(n, max(1, _GELU_BLOCK // row) * row)  # whole rows, so the bias lines up
    buf_a, buf_u, buf_e = np.empty(bs, f), np.empty(bs, f), np.empty(bs, f)
    buf_x = np.empty(bs, f) if bias is not None else None
    clamps, ones = _gelu_operands(bs)

    def block(lo: int, hi: int) -> None:
        x, r = xf[lo:hi], of[lo:hi]
        k = hi - lo
        a, u, e = buf_a[:k], buf_u[:k], buf_e[:k]
        if bias is not None:
            x = buf_x[:k]
            np.add(xf[lo:hi].reshape(-1, row), bias, out=x.reshape(-1, row))
        np.abs(x, out=a)
        np.minimum(a, clamps[:k], out=a)  # inf: h = 0 (not 0 * inf); NaN stays NaN
        np.add(a, f(_GELU_U_SHIFT), out=u)
        np.divide(ones[:k], u, out=u)
        np.multiply(u, coefs[-1], out=r)
        r += coefs[-2]
        for c in coefs[-3::-1]:
            r *= u
            r += c
        r *= u  # h * exp(a^2 / 2)
        np.multiply(a, a, out=e)
        e *= half_square_log2e
        np.exp2(e, out=e)
        r *= e
        r *= a  # a * h
        relu_into(x, e)
        np.subtract(e, r, out=r)

    for lo in range(0, n, bs):
        block(lo, min(n, lo + bs))
    return out


@op_factory("Gelu", 20)
def gelu(ctx: KernelContext):
    approximate = ctx.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"Gelu: attribute approximate must be 'none' or 'tanh', got {approximate!r}")

    def run_erf(X):
        if type(X) is np.ndarray and X.dtype == F32 and X.ndim:
            with np.errstate(under="ignore", over="ignore"):
                return _gelu_erf_f32(X)
        # x * Phi(x), Phi(x) = erfc(-x/sqrt 2)/2: through erfc so large negative x keep their tail
        Xc, back = _prep("Gelu", X)
        if Xc.dtype == F32 and Xc.ndim:
            with np.errstate(under="ignore", over="ignore"):
                return _done(_gelu_erf_f32(Xc), back)
        table = _erf_table(Xc.dtype)
        t = Xc.dtype.type

        def block(x: np.ndarray, r: np.ndarray) -> None:
            a = np.abs(x)
            a *= t(1.0 / math.sqrt(2.0))
            table.erfc_abs_into(a, r)
            r *= t(0.5)  # r = h = Phi(-|x|)
            # Phi(x) = h + m * (1 - 2h) with m = (x >= 0) in {0, 1}: exactly h where x < 0, 1 - h
            # (one extra rounding) where x >= 0. A masked ufunc (where=) is ~50x slower.
            m = np.greater_equal(x, t(0)).astype(x.dtype)
            np.multiply(r, t(-2), out=a)
            a += t(1)
            a *= m
            r += a
            r *= x

        Xa = np.asarray(Xc)
        r = np.empty(Xa.shape, dtype=Xa.dtype)
        blockwise(block, r, Xa)
        return _done(r, back)

    def run_tanh(X):
        # 0.5 * x * (1 + tanh(z)) == x * sigmoid(2 z): no cancellation for large negative x
        Xc, back = _prep("Gelu", X)
        t = Xc.dtype.type
        r = _arr(np.multiply(Xc, Xc))
        r *= t(0.044715)
        r += t(1)
        r *= Xc
        r *= t(2.0 * _SQRT_2_OVER_PI)
        _sigmoid_inplace(r)
        r *= Xc
        return _done(r, back)

    return run_tanh if approximate == "tanh" else run_erf


def _swish(Xc: np.ndarray, alpha: float) -> np.ndarray:
    r = _arr(np.multiply(Xc, Xc.dtype.type(alpha))) if alpha != 1.0 else _fresh(Xc)
    _sigmoid_inplace(r)
    r *= Xc
    return r


@op("Swish", 24)
def swish(X, *, alpha=1.0):
    Xc, back = _prep("Swish", X)
    return _done(_swish(Xc, alpha), back)


@op("SwiGLU", 28)
def swiglu(A, B, *, alpha=1.0):
    Ac, back = _prep("SwiGLU", A, FLOATS, "A")
    db = _dtype("SwiGLU", "B", B)
    if db != A.dtype:
        _same("SwiGLU", "A", A.dtype, "B", db)
    if np.shape(A) != np.shape(B):
        raise ValueError(f"SwiGLU: inputs A {tuple(np.shape(A))} and B {tuple(np.shape(B))} must have the same shape")
    r = _swish(Ac, alpha)
    r *= B.astype(F32) if back is not None else B
    return _done(r, back)


# -- Clip ---------------------------------------------------------------------------------------


def _clip(Xc: np.ndarray, lo, hi, back):
    if lo is None and hi is None:
        return _done(np.array(Xc, copy=True), back)
    if lo is not None:
        r = _arr(np.maximum(Xc, lo))
        if hi is not None:
            np.minimum(r, hi, out=r)
    else:
        r = _arr(np.minimum(Xc, hi))
    return _done(r, back)


@op_factory("Clip", 1)
def clip_legacy(ctx: KernelContext):
    lo_attr = ctx.attrs.get("min")
    hi_attr = ctx.attrs.get("max")

    def run(input):  # noqa: A002
        Xc, back = _prep("Clip", input, FLOATS, "input")
        t = Xc.dtype.type
        return _clip(Xc, None if lo_attr is None else t(lo_attr), None if hi_attr is None else t(hi_attr), back)

    return run


def _bound(value, name: str, dt: np.dtype, compute: np.dtype):
    if value is None:
        return None
    dv = _dtype("Clip", name, value)
    if dv != dt:
        _same("Clip", "input", dt, name, dv)
    if np.size(value) != 1:
        raise ValueError(f"Clip: input '{name}' must be a scalar (one element), got shape {tuple(np.shape(value))}")
    return np.asarray(value).reshape(()).astype(compute)[()]


@op("Clip", 11)
def clip(input, min=None, max=None):  # noqa: A002 - ONNX input names
    Xc, back = _prep("Clip", input, NUMERIC, "input")
    dt = input.dtype
    return _clip(Xc, _bound(min, "min", dt, Xc.dtype), _bound(max, "max", dt, Xc.dtype), back)
