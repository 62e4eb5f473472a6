"""Cast, CastLike, BitCast: converting and reinterpreting element types.

One conversion routine, :func:`convert`, serves every pair of ONNX element types
(it is also used by the quantization kernels):

* float -> float rounds to nearest even (numpy / ml_dtypes); float8 targets saturate
  to +-max unless ``saturate=0`` (then overflow gives NaN, or Inf for e5m2);
* float8e8m0 targets follow onnxruntime: ``round_mode`` up/down/nearest on the
  power-of-two exponent, out-of-range values clamp (saturate) or become NaN;
* float -> integer truncates toward zero, integer -> narrower integer wraps, also for
  the 4- and 2-bit integer types; anything -> bool is ``!= 0``;
* strings parse like onnxruntime (``strtod``/``strtoll`` prefixes, 'NaN', 'INF',
  '-inf', scientific notation, hex floats) and numbers print with ``%.8g`` for floats
  ('NaN', 'INF', '-INF' for the special values) and in decimal for integers.
"""

from __future__ import annotations

import re
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto

from onnxrt.ops.registry import KernelContext, op_factory
from onnxrt.types import elem_type_name, np_dtype, onnx_elem_type

# -- dtype classes ---------------------------------------------------------------------------

_F8 = {
    np.dtype(ml_dtypes.float8_e4m3fn),
    np.dtype(ml_dtypes.float8_e4m3fnuz),
    np.dtype(ml_dtypes.float8_e5m2),
    np.dtype(ml_dtypes.float8_e5m2fnuz),
}
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
_SUB_BYTE_BITS = {
    np.dtype(ml_dtypes.int4): 4,
    np.dtype(ml_dtypes.uint4): 4,
    np.dtype(ml_dtypes.float4_e2m1fn): 4,
    np.dtype(ml_dtypes.int2): 2,
    np.dtype(ml_dtypes.uint2): 2,
}
for _name in ("float6_e2m3fn", "float6_e3m2fn"):
    if hasattr(ml_dtypes, _name):
        _SUB_BYTE_BITS[np.dtype(getattr(ml_dtypes, _name))] = 6
_EXOTIC_INT = {np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2)}
_OBJECT = np.dtype(object)
_BOOL = np.dtype(np.bool_)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def is_exotic_float(dt: np.dtype) -> bool:
    """bfloat16, float8*, float4, float6: ml_dtypes floats (numpy kind 'V')."""
    return dt.kind == "V" and dt not in _EXOTIC_INT


def is_float(dt: np.dtype) -> bool:
    return dt.kind == "f" or is_exotic_float(dt)


def is_integer(dt: np.dtype) -> bool:
    return dt.kind in "iu" or dt in _EXOTIC_INT


def float8_max(dt: np.dtype) -> float:
    return float(ml_dtypes.finfo(dt).max)


def _describe(dt: np.dtype) -> str:
    try:
        return f"tensor({elem_type_name(onnx_elem_type(dt))})"
    except ValueError:
        return str(dt)


def dtype_of_to(to: Any, op_name: str = "Cast") -> np.dtype:
    """The numpy dtype named by a Cast ``to`` attribute (an int, or a type name in Cast-1)."""
    if isinstance(to, str):
        try:
            to = TensorProto.DataType.Value(to.upper())
        except ValueError:
            raise ValueError(f"{op_name}: attribute 'to' names an unknown type '{to}'") from None
    try:
        return np_dtype(int(to))
    except ValueError:
        raise ValueError(f"{op_name}: attribute 'to' = {to} is not a supported ONNX element type") from None


# -- numbers -> numbers -------------------------------------------------------------------------


def _widen(x: np.ndarray) -> np.ndarray:
    """An ml_dtypes array as a standard numpy one holding the same values exactly."""
    dt = x.dtype
    if dt in _EXOTIC_INT:
        return x.astype(np.int8)
    if is_exotic_float(dt):
        return x.astype(np.float32)
    return x


def _to_float8(x: np.ndarray, dst: np.dtype, saturate: bool) -> np.ndarray:
    if x.dtype == _BOOL or x.dtype.kind in "iu" or x.dtype == np.float16:
        x = x.astype(np.float32)
    if saturate:
        m = float8_max(dst)
        x = np.clip(x, x.dtype.type(-m), x.dtype.type(m))  # NaN stays NaN
    return x.astype(dst)


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """float8e8m0 (2**(e-127), e in 0..254, 255 = NaN) like onnxruntime."""
    if round_mode not in ("up", "down", "nearest"):
        raise ValueError(f"Cast: round_mode must be 'up', 'down' or 'nearest', got '{round_mode}'")
    v = x.astype(np.float64)
    mant, ex = np.frexp(v)  # v = mant * 2**ex, mant in [0.5, 1) for v > 0
    if round_mode == "down":
        k = ex - 1
    elif round_mode == "up":
        k = np.where(mant == 0.5, ex - 1, ex)
    else:  # nearest, ties up: 1.5 * 2**e rounds to 2**(e+1)
        k = np.where(mant < 0.75, ex - 1, ex)
    code = np.clip(k.astype(np.int64) + 127, 0, 254)
    too_big = v > 2.0**127
    too_small = ~(v >= 2.0**-127)  # zero, negatives, -inf and NaN land here
    nan = np.isnan(v)
    if saturate:
        code = np.where(too_big, 254, np.where(too_small, 0, code))
    else:
        code = np.where(too_big | too_small, 255, code)
    code = np.where(nan, 255, code)
    return code.astype(np.uint8).view(_E8M0)


def convert(x: np.ndarray, dst: np.dtype, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """``x`` as element type ``dst`` with ONNX Cast semantics (see the module docstring)."""
    src = x.dtype
    if src == dst:
        return x
    if (src.kind in "biu" and (dst.kind in "biu" or (dst.kind == "f" and dst.itemsize >= 4))
            and src.isnative and dst.isnative):
        # the common case, which no errstate (~2 us) needs: from integers nothing overflows a float32
        # (float16 does) and integers wrap as ONNX says; to bool, nonzero is true
        return x != 0 if dst == _BOOL else x.astype(dst)
    if dst == _OBJECT:
        return to_strings(x)
    if src == _OBJECT:
        return convert(parse_strings(x, dst), dst, saturate, round_mode)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        if src == _BOOL and dst.kind == "V":
            x = x.astype(np.uint8)
            src = x.dtype
        if dst in _F8:
            return _to_float8(_widen(x) if src.kind == "V" else x, dst, saturate)
        if dst == _E8M0:
            return _to_e8m0(_widen(x), saturate, round_mode)
        if dst == _BOOL:
            return _widen(x) != 0
        if dst.kind == "V":  # bfloat16, float4, int4/uint4/int2/uint2
            if src.kind == "V":
                x = _widen(x)
            elif src == np.float16:
                x = x.astype(np.float32)
            elif dst in _EXOTIC_INT and src.kind in "iu" and src.itemsize == 8:
                x = x.astype(np.int32) if src.kind == "i" else x.astype(np.uint32)  # wraps; low bits kept
            return x.astype(dst)
        # standard numpy target
        return _widen(x).astype(dst)


# -- strings ---------------------------------------------------------------------------------------

_FLOAT_PREFIX = re.compile(
    r"\s*([+-]?)(?:"
    r"0[xX]((?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?)"
    r"|((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(inf(?:inity)?)"
    r"|(nan)(?:\([0-9A-Za-z_]*\))?"
    r")",
    re.IGNORECASE,
)
_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")


def _parse_float(s: str) -> float:
    m = _FLOAT_PREFIX.match(s)
    if m is None:
        raise ValueError(f"Cast: input string {s!r} does not start with a number (expected e.g. '3.14', '1e-5', 'NaN', 'INF')")
    sign, hexpart, dec, inf, nan = m.groups()
    if hexpart is not None:
        if "p" not in hexpart.lower():
            hexpart += "p0"
        value = float.fromhex(hexpart)
    elif dec is not None:
        value = float(dec)
    elif inf is not None:
        value = float("inf")
    else:
        value = float("nan")
    return -value if sign == "-" else value


def _parse_int(s: str) -> int:
    m = _INT_PREFIX.match(s)
    if m is None:
        raise ValueError(f"Cast: input string {s!r} does not start with an integer")
    return int(m.group(1))


def _as_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def parse_strings(x: np.ndarray, dst: np.dtype) -> np.ndarray:
    """Numbers from a string tensor: float64 for float targets, int64/uint64 for integers and bool."""
    flat = x.reshape(-1)
    want_float = is_float(dst)
    if want_float:
        try:
            if any("_" in _as_str(s) for s in flat):  # Python's float() accepts '1_0'; strtod does not
                raise ValueError
            out = flat.astype(np.float64)
        except (ValueError, TypeError):
            out = np.array([_parse_float(_as_str(s)) for s in flat], dtype=np.float64)
        return out.reshape(x.shape)
    # integers and bool: strtoll / strtoull prefixes; bool is nonzero-ness of that integer
    try:
        if any("_" in _as_str(s) for s in flat):
            raise ValueError
        out = flat.astype(np.int64)
    except (ValueError, TypeError, OverflowError):
        values = [_parse_int(_as_str(s)) for s in flat]
        unsigned = dst.kind == "u" or dst in (np.dtype(ml_dtypes.uint4), np.dtype(ml_dtypes.uint2))
        for s, v in zip(flat, values):
            if unsigned and not -(2**64) < v < 2**64 or not unsigned and not -(2**63) <= v < 2**63:
                raise ValueError(f"Cast: input string {s!r} is out of range for a 64-bit integer") from None
        out = np.array([v % 2**64 for v in values], dtype=np.uint64)
        if not (dst == np.uint64):
            out = out.view(np.int64)
    return out.reshape(x.shape)


def to_strings(x: np.ndarray) -> np.ndarray:
    """A string (object) tensor: '%.8g' for floats with 'NaN'/'INF'/'-INF', decimal integers."""
    dt = x.dtype
    if dt == _BOOL:
        out = np.where(x, "1", "0")
    elif is_integer(dt):
        out = _widen(x).astype(str)
    elif is_float(dt):
        v = _widen(x)
        if v.dtype != np.float64:
            v = v.astype(np.float64)
        out = np.char.mod("%.8g", v) if v.size else np.empty(v.shape, dtype=str)
        if v.size:
            out = np.where(np.isnan(v), "NaN", np.where(np.isposinf(v), "INF", np.where(np.isneginf(v), "-INF", out)))
    elif dt.kind == "c":
        out = x.astype(str)
    else:
        raise TypeError(f"Cast: cannot convert input of type {_describe(dt)} to tensor(string)")
    return np.asarray(out, dtype=object).reshape(x.shape)


# -- kernels ---------------------------------------------------------------------------------------


@op_factory("Cast", 1, 6, 9, 13, 19, 21, 23, 24, 25)
def cast(ctx: KernelContext):
    dst = dtype_of_to(ctx.attrs["to"], "Cast")
    saturate = bool(ctx.attrs.get("saturate", 1))
    round_mode = ctx.attrs.get("round_mode", "up")
    if round_mode not in ("up", "down", "nearest"):
        raise ValueError(f"Cast: attribute round_mode must be 'up', 'down' or 'nearest', got '{round_mode}'")

    def run(input: np.ndarray) -> np.ndarray:  # noqa: A002 - ONNX name
        if not isinstance(input, np.ndarray):
            raise TypeError(f"Cast: input must be a tensor, got {type(input).__name__}")
        return convert(input, dst, saturate, round_mode)

    return run


@op_factory("CastLike", 15, 19, 21, 23, 24, 25)
def cast_like(ctx: KernelContext):
    saturate = bool(ctx.attrs.get("saturate", 1))
    round_mode = ctx.attrs.get("round_mode", "up")
    if round_mode not in ("up", "down", "nearest"):
        raise ValueError(f"CastLike: attribute round_mode must be 'up', 'down' or 'nearest', got '{round_mode}'")

    def run(input: np.ndarray, target_type: np.ndarray) -> np.ndarray:  # noqa: A002 - ONNX name
        if not isinstance(input, np.ndarray) or not isinstance(target_type, np.ndarray):
            raise TypeError("CastLike: 'input' and 'target_type' must be tensors")
        return convert(input, target_type.dtype, saturate, round_mode)

    return run


def _bit_width(dt: np.dtype) -> int:
    return _SUB_BYTE_BITS.get(dt, dt.itemsize * 8)


@op_factory("BitCast", 26)
def bitcast(ctx: KernelContext):
    dst = dtype_of_to(ctx.attrs["to"], "BitCast")
    if dst == _OBJECT:
        raise TypeError("BitCast: attribute 'to' cannot be tensor(string)")

    def run(input: np.ndarray) -> np.ndarray:  # noqa: A002 - ONNX name
        src = input.dtype
        if src == _OBJECT:
            raise TypeError("BitCast: input of type tensor(string) cannot be reinterpreted")
        if _bit_width(src) != _bit_width(dst):
            raise TypeError(
                f"BitCast: input type {_describe(src)} has {_bit_width(src)} bits but 'to' type {_describe(dst)} "
                f"has {_bit_width(dst)}; BitCast needs equal bit widths"
            )
        if src == dst:
            return input
        if src in _SUB_BYTE_BITS:  # one element per byte, the code in the low bits
            code = np.ascontiguousarray(input).view(np.uint8) & np.uint8((1 << _SUB_BYTE_BITS[src]) - 1)
            return code.view(dst).reshape(input.shape)
        return np.ascontiguousarray(input).view(dst).reshape(input.shape)

    return run
