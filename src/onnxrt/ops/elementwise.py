"""Elementwise maths, comparison, logic, bitwise and variadic operators.

Every kernel checks its input dtypes (exact ONNX typing: both operands of a binary op share one
dtype), computes with numpy ufuncs and returns arrays (never numpy scalars) of exactly the spec's
output dtype. bfloat16 and the other ml_dtypes floats are computed in float32 and cast back.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import ml_dtypes
import numpy as np

from onnxrt.ops.registry import KernelContext, op, op_factory
from onnxrt.runtime import threads

# -- dtype sets ----------------------------------------------------------------------------

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
BF16 = np.dtype(ml_dtypes.bfloat16)
BOOL = np.dtype(np.bool_)
OBJ = np.dtype(object)

FLOATS = frozenset({F16, F32, F64, BF16})
FLOAT8S = frozenset(
    np.dtype(getattr(ml_dtypes, n))
    for n in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
    if hasattr(ml_dtypes, n)
)
SIGNED = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
UNSIGNED = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
INTS = SIGNED | UNSIGNED
NUMERIC = FLOATS | INTS
SIGNED_NUMERIC = FLOATS | SIGNED
ALL_PLAIN = NUMERIC | {BOOL}
WITH_STRINGS = ALL_PLAIN | {OBJ}


def _arr(value: Any) -> np.ndarray:
    """numpy ufuncs return scalars for 0-d operands: wrap them back into arrays."""
    return value if type(value) is np.ndarray else np.asarray(value)


def _dtype(op_name: str, input_name: str, value: Any) -> np.dtype:
    try:
        return value.dtype
    except AttributeError:
        raise TypeError(
            f"{op_name}: input '{input_name}' must be a tensor, got {type(value).__name__}"
        ) from None


def _names(dtypes) -> str:
    return ", ".join(sorted(str(d) for d in dtypes))


def _check(op_name: str, input_name: str, dt: np.dtype, allowed: frozenset) -> None:
    if dt not in allowed:
        raise TypeError(
            f"{op_name}: input '{input_name}' has unsupported element type {dt}; expected one of {_names(allowed)}"
        )


def _same(op_name: str, a: str, da: np.dtype, b: str, db: np.dtype) -> None:
    if da != db:
        raise TypeError(f"{op_name}: inputs '{a}' ({da}) and '{b}' ({db}) must have the same element type")


def _broadcast_error(op_name: str, arrays, names) -> ValueError:
    shapes = ", ".join(f"'{n}' {tuple(np.shape(a))}" for n, a in zip(names, arrays))
    return ValueError(f"{op_name}: input shapes are not broadcast-compatible: {shapes}")


# -- unary ops -----------------------------------------------------------------------------


def _unary(op_name: str, fn: Callable[[np.ndarray], Any], allowed: frozenset, result: np.dtype | None = None):
    """A kernel applying ``fn`` elementwise; output dtype = input dtype (or ``result``)."""

    def kernel(X):
        dt = _dtype(op_name, "X", X)
        if dt not in allowed:
            _check(op_name, "X", dt, allowed)
        if dt.kind == "V":  # bfloat16 / float8: through float32
            r = fn(X.astype(F32))
            return _arr(r) if result is not None else np.asarray(r).astype(dt)
        r = fn(X)
        if type(r) is not np.ndarray:
            r = np.asarray(r)
        if result is None and r.dtype != dt:
            r = r.astype(dt)
        return r

    kernel.__name__ = op_name.lower()
    return kernel


def _known_dtypes(ctx: KernelContext, count: int) -> list[np.dtype] | None:
    """The first ``count`` input dtypes when shape inference knew them all, else None."""
    dts = list(ctx.input_dtypes)[:count]
    if len(dts) < count or any(d is None for d in dts):
        return None
    return [np.dtype(d) for d in dts]


def _register_unary(op_name: str, versions, fn, allowed, result=None) -> None:
    checked = _unary(op_name, fn, allowed, result)

    def factory(ctx: KernelContext):
        # Prepare-time specialisation: when the input dtype is known to be a plain (non ml_dtypes)
        # dtype the op accepts and keeps, the run-time callable is the ufunc plus one identity test
        # on the dtype (anything unexpected goes through the checked kernel).
        known = _known_dtypes(ctx, 1)
        if known is None or known[0] not in allowed or known[0].kind == "V" or result is not None:
            return checked
        dt = known[0]
        if fn(np.zeros(1, dtype=dt)).dtype != dt:
            return checked

        def fast(X):
            if type(X) is not np.ndarray or X.dtype is not dt:
                return checked(X)
            r = fn(X)
            return r if type(r) is np.ndarray else np.asarray(r)

        def into_x(X):  # the plan's in-place variant: X dies here and is the run's to overwrite
            if type(X) is not np.ndarray or X.dtype is not dt or X.ndim == 0:
                return fast(X)
            return fn(X, out=X)

        fast.__name__ = op_name.lower()
        if isinstance(fn, np.ufunc):
            fast.inplace = {0: into_x}
        return fast

    op_factory(op_name, *versions)(factory)


_register_unary("Abs", (1,), np.abs, NUMERIC)
_register_unary("Neg", (1,), np.negative, SIGNED_NUMERIC)
_register_unary("Reciprocal", (1,), np.reciprocal, FLOATS)
_register_unary("Sqrt", (1,), np.sqrt, FLOATS)
_register_unary("Exp", (1,), np.exp, FLOATS)
_register_unary("Log", (1,), np.log, FLOATS)
_register_unary("Floor", (1,), np.floor, FLOATS)
_register_unary("Ceil", (1,), np.ceil, FLOATS)
_register_unary("Round", (11,), np.rint, FLOATS)  # half to even
_register_unary("Sign", (9,), np.sign, NUMERIC)
_register_unary("Sin", (7,), np.sin, FLOATS)
_register_unary("Cos", (7,), np.cos, FLOATS)
_register_unary("Tan", (7,), np.tan, FLOATS)
_register_unary("Asin", (7,), np.arcsin, FLOATS)
_register_unary("Acos", (7,), np.arccos, FLOATS)
_register_unary("Atan", (7,), np.arctan, FLOATS)
_register_unary("Sinh", (9,), np.sinh, FLOATS)
_register_unary("Cosh", (9,), np.cosh, FLOATS)
_register_unary("Tanh", (1,), np.tanh, FLOATS)
_register_unary("Asinh", (9,), np.arcsinh, FLOATS)
_register_unary("Acosh", (9,), np.arccosh, FLOATS)
_register_unary("Atanh", (9,), np.arctanh, FLOATS)
_register_unary("IsNaN", (9,), np.isnan, FLOATS | FLOAT8S, result=BOOL)
_register_unary("BitwiseNot", (18,), np.invert, INTS)
_register_unary("Not", (1,), np.logical_not, frozenset({BOOL}))


@op("IsInf", 10)
def isinf(X, *, detect_negative=1, detect_positive=1):
    dt = _dtype("IsInf", "X", X)
    _check("IsInf", "X", dt, FLOATS | FLOAT8S)
    if dt.kind == "V":
        X = X.astype(F32)
    if detect_negative and detect_positive:
        return _arr(np.isinf(X))
    if detect_positive:
        return _arr(np.equal(X, np.inf))
    if detect_negative:
        return _arr(np.equal(X, -np.inf))
    return np.zeros(X.shape, dtype=BOOL)


# -- erf / erfc ------------------------------------------------------------------------------
# erfc(a) = exp(-a^2) * erfcx(a) for a >= 0. erfcx is smooth on [0, inf) and, in the variable
# t = K / (K + a) in (0, 1], is well approximated by one polynomial: it is fitted once at import by
# Chebyshev interpolation of math.erfc(a) * exp(a^2) (asymptotic series where that overflows), and
# evaluated by Horner in u = 2t - 1 (small power-basis coefficients: stable). erfc keeps its relative
# accuracy deep into the tail (Gelu needs that for large negative inputs); erf = 1 - erfc, except
# near 0 where a Taylor series keeps the relative accuracy.


def _erfcx_scalar(z: float) -> float:
    if z < 25.0:
        return math.erfc(z) * math.exp(z * z)
    total, term = 0.0, 1.0
    for n in range(12):  # asymptotic series, ample at z >= 25
        total += term
        term *= -(2 * n + 1) / (2.0 * z * z)
    return total / (z * math.sqrt(math.pi))


class _ErfcTable:
    K = 3.0

    def __init__(self, dtype: np.dtype, deg: int, taylor_terms: int, taylor_below: float) -> None:
        self.dtype = dtype
        nodes = np.cos(np.pi * (np.arange(deg + 1) + 0.5) / (deg + 1))
        ts = (nodes + 1.0) / 2.0
        values = [_erfcx_scalar(self.K * (1.0 - t) / t) for t in ts]
        from numpy.polynomial import chebyshev as _cheb  # on first use: a 5 ms import otherwise paid by every process

        self.coef = [dtype.type(c) for c in _cheb.cheb2poly(_cheb.chebfit(nodes, values, deg))]
        # erf(x) = 2/sqrt(pi) * sum (-1)^k x^(2k+1) / (k! (2k+1)) = x * P(x^2)
        self.taylor = [dtype.type((-1) ** k * 2.0 / math.sqrt(math.pi) / (math.factorial(k) * (2 * k + 1)))
                       for k in range(taylor_terms)]
        self.taylor_below = dtype.type(taylor_below)

    def erfc_abs_into(self, a: np.ndarray, r: np.ndarray) -> np.ndarray:
        """r <- erfc(a) for a >= 0 (NaN stays NaN, +inf gives 0); ``r`` may be ``a``."""
        t = self.dtype.type
        with np.errstate(over="ignore"):  # a*a overflowing to inf gives exp(-inf) = 0, as wanted
            e = np.multiply(a, a)
        np.negative(e, out=e)
        np.exp(e, out=e)
        u = np.add(a, t(self.K), out=r)
        np.divide(t(2.0 * self.K), u, out=u)
        u -= t(1)  # u = 2 K / (K + a) - 1 in (-1, 1]
        c = self.coef
        acc = np.multiply(u, c[-1])
        acc += c[-2]
        for ck in c[-3::-1]:
            acc *= u
            acc += ck
        np.multiply(acc, e, out=r)
        return r

    def erfc_abs(self, a: np.ndarray) -> np.ndarray:
        """erfc(a) for a >= 0, in a new array."""
        out = np.empty(a.shape, dtype=self.dtype)
        blockwise(self.erfc_abs_into, out, a)
        return out

    def erf_into(self, x: np.ndarray, r: np.ndarray) -> np.ndarray:
        """r <- erf(x) (one cache-sized block)."""
        a = np.abs(x)
        self.erfc_abs_into(a, r)
        np.subtract(self.dtype.type(1), r, out=r)
        np.copysign(r, x, out=r)
        # Near 0, 1 - erfc loses relative accuracy: there the Taylor series x * P(x^2) (on x clamped
        # to the small range, so it stays finite everywhere) replaces it. The choice is an
        # exact arithmetic select r * (1 - m) + p * m with m in {0, 1} (both finite, so the product
        # with 0 is 0): a masked copy is 10x slower.
        b = self.taylor_below
        xs = np.clip(x, -b, b)
        x2 = np.multiply(xs, xs, out=a if a is not x else None)
        p = np.full_like(x2, self.taylor[-1])
        for c in self.taylor[-2::-1]:
            p *= x2
            p += c
        p *= xs
        m = np.less(np.abs(x), b).astype(self.dtype)
        p *= m
        np.subtract(self.dtype.type(1), m, out=m)
        r *= m
        r += p
        return r

    def erf(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, dtype=self.dtype)
        blockwise(self.erf_into, out, x)
        return out


# Elementwise work with many passes runs block by block so every pass hits cache: 32K floats
# (128 KB) measured best for erfc (4.4 ms -> 1.6 ms per 393K floats against whole-array passes).
BLOCK = 1 << 15


def blockwise(fn: Callable[..., Any], out: np.ndarray, *inputs: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """``fn(*input_blocks, out_block)`` over cache-sized blocks of the flattened arrays (all of the
    shape of ``out``, C-contiguous or made so); the blocks are shared out over the intra-op pool."""
    flat_in = [np.ascontiguousarray(x).reshape(-1) for x in inputs]
    flat_out = out.reshape(-1)
    size = flat_out.size
    if size <= block:
        fn(*flat_in, flat_out)
        return out
    n_blocks = -(-size // block)

    def run(sl: slice) -> None:
        for b in range(sl.start, sl.stop):
            lo, hi = b * block, min(size, (b + 1) * block)
            fn(*(x[lo:hi] for x in flat_in), flat_out[lo:hi])

    if size >= threads.ELEMENTWISE_MIN_SIZE:
        threads.parallel_for(run, n_blocks)
    else:
        run(slice(0, n_blocks))
    return out


_ERF_TABLES: dict[np.dtype, _ErfcTable] = {}


def _erf_table(dtype: np.dtype) -> _ErfcTable:
    table = _ERF_TABLES.get(dtype)
    if table is None:
        if dtype == F32:
            table = _ErfcTable(F32, 12, 8, 0.5)
        else:
            table = _ErfcTable(F64, 20, 9, 0.125)
        _ERF_TABLES[dtype] = table
    return table


def erf_array(x: np.ndarray) -> np.ndarray:
    """erf of a float32 or float64 array (a new array of the same dtype)."""
    return _erf_table(x.dtype).erf(_arr(x))


def erfc_abs_array(a: np.ndarray) -> np.ndarray:
    """erfc(a) for a float32/float64 array of non-negative values (a new array)."""
    return _erf_table(a.dtype).erfc_abs(_arr(a))


@op("Erf", 9)
def erf(input):  # noqa: A002 - ONNX input name
    dt = _dtype("Erf", "input", input)
    _check("Erf", "input", dt, NUMERIC)
    if dt == F32 or dt == F64:
        return erf_array(np.asarray(input))
    if dt in FLOATS:
        return erf_array(np.asarray(input, dtype=F32)).astype(dt)
    return erf_array(np.asarray(input, dtype=F64)).astype(dt)


# -- binary ops ----------------------------------------------------------------------------


def _legacy_align(op_name: str, A: np.ndarray, B: np.ndarray, broadcast: int, axis: int | None) -> np.ndarray:
    """Opset-1..6 broadcasting: B is broadcast onto A's shape, suffix-aligned or from ``axis``."""
    a_shape, b_shape = np.shape(A), np.shape(B)
    if not broadcast:
        if a_shape != b_shape:
            raise ValueError(
                f"{op_name}: without broadcast=1, inputs must have the same shape; got A {a_shape} and B {b_shape}"
            )
        return B
    if len(b_shape) > len(a_shape):
        raise ValueError(f"{op_name}: B {b_shape} has a higher rank than A {a_shape} (legacy broadcast)")
    def fits(a_dims: tuple, b_dims: tuple) -> bool:
        # exporters of that era also relied on B's size-1 dims stretching, as numpy's do
        return len(a_dims) == len(b_dims) and all(b in (a, 1) for a, b in zip(a_dims, b_dims))

    if axis is None or int(np.prod(b_shape, dtype=np.int64)) == 1:
        if int(np.prod(b_shape, dtype=np.int64)) != 1 and not fits(a_shape[len(a_shape) - len(b_shape):], b_shape):
            raise ValueError(f"{op_name}: B {b_shape} is not a suffix of A {a_shape} (legacy broadcast)")
        return B
    ax = axis + len(a_shape) if axis < 0 else axis
    if not 0 <= ax <= len(a_shape) - len(b_shape) or not fits(a_shape[ax:ax + len(b_shape)], b_shape):
        raise ValueError(
            f"{op_name}: B {b_shape} does not match A {a_shape} starting at axis {axis} (legacy broadcast)"
        )
    return np.reshape(B, b_shape + (1,) * (len(a_shape) - ax - len(b_shape)))


def _binary(op_name: str, fn: Callable, allowed: frozenset, result: np.dtype | None = None,
            names: tuple[str, str] = ("A", "B")):
    """A two-input kernel; both inputs share one dtype; output dtype = input dtype or ``result``."""
    na, nb = names

    def kernel(A, B):
        da = _dtype(op_name, na, A)
        db = _dtype(op_name, nb, B)
        if da != db:
            _same(op_name, na, da, nb, db)
        if da not in allowed:
            _check(op_name, na, da, allowed)
        try:
            if da.kind == "V":
                r = fn(A.astype(F32), B.astype(F32))
                return _arr(r) if result is not None else np.asarray(r).astype(da)
            r = fn(A, B)
        except ValueError as e:
            if "broadcast" in str(e):
                raise _broadcast_error(op_name, (A, B), names) from None
            raise
        return r if type(r) is np.ndarray else np.asarray(r)

    kernel.__name__ = op_name.lower()
    return kernel


def _broadcasts_into(shape: tuple, target: tuple) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without enlarging it."""
    if len(shape) > len(target):
        return False
    return all(d == 1 or d == t for d, t in zip(shape[::-1], target[::-1]))


def _register_binary(op_name: str, fn: Callable, allowed: frozenset, versions, legacy_versions=(),
                     result: np.dtype | None = None) -> None:
    kernel = _binary(op_name, fn, allowed, result)

    def factory(ctx: KernelContext):
        # Prepare-time specialisation (see _register_unary): both dtypes known, equal and plain.
        known = _known_dtypes(ctx, 2)
        if known is None or known[0] != known[1] or known[0] not in allowed or known[0].kind == "V":
            return kernel
        dt = known[0]
        probe = np.ones(1, dtype=dt)  # ones: 0/0 would warn (and a warning filter could make it an error)
        if fn(probe, probe).dtype != (dt if result is None else result):
            return kernel

        def fast(A, B):
            if type(A) is not np.ndarray or type(B) is not np.ndarray or A.dtype is not dt or B.dtype is not dt:
                return kernel(A, B)
            try:
                r = fn(A, B)
            except ValueError as e:
                if "broadcast" in str(e):
                    raise _broadcast_error(op_name, (A, B), ("A", "B")) from None
                raise
            return r if type(r) is np.ndarray else np.asarray(r)

        def writing_into(position: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
            """The plan's in-place variant for input ``position`` (it dies here and is the run's to
            overwrite): the result goes into that input when it already has the result's shape."""
            def run(A, B):
                dst, other = (A, B) if position == 0 else (B, A)
                if (type(dst) is np.ndarray and type(other) is np.ndarray and dst.dtype is dt
                        and other.dtype is dt and dst.ndim and _broadcasts_into(other.shape, dst.shape)):
                    return fn(A, B, out=dst)
                return fast(A, B)

            return run

        fast.__name__ = op_name.lower()
        if isinstance(fn, np.ufunc) and result is None:
            fast.inplace = {0: writing_into(0), 1: writing_into(1)}
        return fast

    op_factory(op_name, *versions)(factory)
    if legacy_versions:

        def legacy(ctx: KernelContext):
            broadcast = int(ctx.attrs.get("broadcast", 0))
            axis = ctx.attrs.get("axis")

            def run(A, B):
                return kernel(A, _legacy_align(op_name, A, B, broadcast, axis))

            return run

        op_factory(op_name, *legacy_versions)(legacy)


def _int_div(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero (C semantics); x / 0 gives 0 instead of crashing."""
    if A.dtype.kind == "u":
        with np.errstate(divide="ignore"):
            return np.floor_divide(A, B)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rem = np.fmod(A, B)
        q = np.subtract(A, rem)
        np.floor_divide(q, B, out=q)
    return q


def _div(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    if A.dtype.kind in "iu":
        return _int_div(A, B)
    return np.divide(A, B)


_register_binary("Add", np.add, NUMERIC, (7,), (1,))
_register_binary("Sub", np.subtract, NUMERIC, (7,), (1,))
_register_binary("Mul", np.multiply, NUMERIC, (7,), (1,))
_register_binary("Div", _div, NUMERIC, (7,), (1,))

_register_binary("And", np.logical_and, frozenset({BOOL}), (7,), (1,))
_register_binary("Or", np.logical_or, frozenset({BOOL}), (7,), (1,))
_register_binary("Xor", np.logical_xor, frozenset({BOOL}), (7,), (1,))
_register_binary("BitwiseAnd", np.bitwise_and, INTS, (18,))
_register_binary("BitwiseOr", np.bitwise_or, INTS, (18,))
_register_binary("BitwiseXor", np.bitwise_xor, INTS, (18,))

_register_binary("Equal", np.equal, WITH_STRINGS, (7,), (1,), result=BOOL)
_register_binary("Greater", np.greater, NUMERIC, (7,), (1,), result=BOOL)
_register_binary("Less", np.less, NUMERIC, (7,), (1,), result=BOOL)
_register_binary("GreaterOrEqual", np.greater_equal, NUMERIC, (12,), result=BOOL)
_register_binary("LessOrEqual", np.less_equal, NUMERIC, (12,), result=BOOL)


# -- Mod -------------------------------------------------------------------------------------


@op_factory("Mod", 10)
def mod(ctx: KernelContext):
    fmod = int(ctx.attrs.get("fmod", 0))
    if fmod not in (0, 1):
        raise ValueError(f"Mod: attribute fmod must be 0 or 1, got {fmod}")
    ufunc = np.fmod if fmod else np.mod

    def compute(A, B):
        with np.errstate(divide="ignore", invalid="ignore"):
            return ufunc(A, B)

    return _binary("Mod", compute, NUMERIC)


# -- BitShift ----------------------------------------------------------------------------------


@op_factory("BitShift", 11)
def bitshift(ctx: KernelContext):
    direction = ctx.attrs.get("direction", "")
    if direction not in ("LEFT", "RIGHT"):
        raise ValueError(f"BitShift: attribute direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    left = direction == "LEFT"

    def compute(X, Y):
        dt = X.dtype
        bits = dt.itemsize * 8
        # Shift counts outside [0, bits) give what the sign fill alone produces.
        if dt.kind == "u":
            valid = Y < bits
        else:
            valid = (Y >= 0) & (Y < bits)
        all_valid = bool(valid.all())
        y = Y if all_valid else np.where(valid, Y, 0).astype(dt)
        r = np.left_shift(X, y) if left else np.right_shift(X, y)
        if all_valid:
            return r
        if left or dt.kind == "u":
            fill = np.zeros((), dtype=dt)
        else:
            fill = np.where(X < 0, dt.type(-1), dt.type(0))
        return np.where(valid, r, fill).astype(dt, copy=False)

    return _binary("BitShift", compute, INTS, names=("X", "Y"))


# -- Pow ---------------------------------------------------------------------------------------


def _pow(X, Y, square: bool = False):
    dx = _dtype("Pow", "X", X)
    dy = _dtype("Pow", "Y", Y)
    _check("Pow", "X", dx, NUMERIC)
    _check("Pow", "Y", dy, NUMERIC)
    try:
        if square:
            if dx.kind == "V":
                return np.asarray(np.square(X.astype(F32))).astype(dx)
            return _arr(np.square(X))
        if dx.kind == "f" or dx.kind == "V":
            xc = X.astype(F32) if dx.kind == "V" else X
            if dy != xc.dtype:
                # same precision arithmetic as the base (exponents of another type converted)
                if dy.kind in "iu" or dy.kind == "V" or dy.itemsize < xc.dtype.itemsize:
                    Y = Y.astype(xc.dtype)
                else:  # wider float exponent: compute in its precision, then narrow
                    xc = xc.astype(dy)
            r = np.power(xc, Y)
            return np.asarray(r).astype(dx, copy=False)
        # integer base: result is the base's type
        if dy.kind in "iu":
            if dy.kind == "i" and bool((Y < 0).any()):
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    r = np.power(X.astype(F64), Y.astype(F64))
                    r = np.where(np.isfinite(r), r, 0)
                return np.asarray(r).astype(dx)
            with np.errstate(over="ignore"):
                r = np.power(X, Y.astype(dx) if dy != dx and dy.itemsize <= dx.itemsize else Y)
            return np.asarray(r).astype(dx, copy=False)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            yf = Y.astype(F32) if dy.kind == "V" else Y
            r = np.power(X.astype(F64), yf.astype(F64))
            r = np.where(np.isfinite(r), r, 0)
        return np.asarray(r).astype(dx)
    except ValueError as e:
        if "broadcast" in str(e):
            raise _broadcast_error("Pow", (X, Y), ("X", "Y")) from None
        raise


@op_factory("Pow", 7)
def pow_(ctx: KernelContext):
    y = ctx.const_inputs[1] if len(ctx.const_inputs) > 1 else None
    if y is not None and y.ndim == 0 and y.dtype.kind in "fiu" and float(y) == 2.0:
        def run_square(X, Y):
            if getattr(X, "dtype", None) is not None and X.dtype.kind in "fV":
                return _pow(X, Y, square=True)
            return _pow(X, Y)
        return run_square
    return _pow


@op_factory("Pow", 1)
def pow_legacy(ctx: KernelContext):
    broadcast = int(ctx.attrs.get("broadcast", 0))
    axis = ctx.attrs.get("axis")

    def run(X, Y):
        if X.dtype != Y.dtype:
            _same("Pow", "X", X.dtype, "Y", Y.dtype)
        return _pow(X, _legacy_align("Pow", X, Y, broadcast, axis))

    return run


# -- variadic ----------------------------------------------------------------------------------


def _variadic(op_name: str, ufunc, allowed: frozenset, mean: bool = False):
    def kernel(*data):
        if not data:
            raise ValueError(f"{op_name}: at least one input is required")
        names = [f"data_{i}" for i in range(len(data))]
        dt = _dtype(op_name, names[0], data[0])
        _check(op_name, names[0], dt, allowed)
        for n, d in zip(names[1:], data[1:]):
            dd = _dtype(op_name, n, d)
            if dd != dt:
                _same(op_name, names[0], dt, n, dd)
        via = dt.kind == "V"
        arrays = [d.astype(F32) if via else d for d in data]
        try:
            if len(arrays) == 1:
                acc = np.array(arrays[0], copy=True)
            else:
                acc = _arr(ufunc(arrays[0], arrays[1]))
                for d in arrays[2:]:
                    if np.shape(d) == acc.shape or np.broadcast_shapes(acc.shape, np.shape(d)) == acc.shape:
                        ufunc(acc, d, out=acc)
                    else:
                        acc = _arr(ufunc(acc, d))
        except ValueError as e:
            if "broadcast" in str(e) or "shape" in str(e):
                raise _broadcast_error(op_name, data, names) from None
            raise
        if mean:
            acc = acc / acc.dtype.type(len(data)) if acc.dtype.kind == "f" else acc // len(data)
            acc = _arr(acc)
        return acc.astype(dt) if via else acc

    kernel.__name__ = op_name.lower()
    return kernel


op("Max", 1)(_variadic("Max", np.maximum, NUMERIC))
op("Min", 1)(_variadic("Min", np.minimum, NUMERIC))
op("Sum", 1)(_variadic("Sum", np.add, NUMERIC))
op("Mean", 1)(_variadic("Mean", np.add, FLOATS, mean=True))


# -- Where ---------------------------------------------------------------------------------------


@op("Where", 9)
def where(condition, X, Y):
    dc = _dtype("Where", "condition", condition)
    if dc != BOOL:
        raise TypeError(f"Where: input 'condition' must be bool, got {dc}")
    dx = _dtype("Where", "X", X)
    dy = _dtype("Where", "Y", Y)
    if dx != dy:
        _same("Where", "X", dx, "Y", dy)
    try:
        r = np.where(condition, X, Y)
    except ValueError:
        raise _broadcast_error("Where", (condition, X, Y), ("condition", "X", "Y")) from None
    if r.dtype != dx:
        r = r.astype(dx)
    return r
