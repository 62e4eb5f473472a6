"""onnxruntime's quantized contrib operators (domain com.microsoft).

onnx.defs has no schemas for these, so every attribute default is given here. Semantics follow
onnxruntime's ContribOperators documentation and, where the text is silent, onnxruntime's
observable behaviour (the tests compare against it).

Integer arithmetic is exact and goes through float BLAS (see ``quantization._exact_matmul``).
Requantisation rounds half to even in float32 like onnxruntime's MLAS. Element-wise 8-bit ops
(QLinearSigmoid, QLinearLeakyRelu, QLinearConcat's and QLinearWhere's requantisation) use a
256-entry table built once per node when the scales and zero points are constant, which is what
onnxruntime does too, so results are bit-exact. QLinearAdd follows MLAS's x86 kernel step for step
(its fused multiply-adds included); it and QLinearMul are checked bit-exact on every pair of codes.
QLinearSoftmax and the average pools compute in float32 and may differ from onnxruntime's vectorised
code by one quantization step on values that sit exactly on a rounding boundary.

QEmbedLayerNormalization dequantizes its constant tables once per session. Known difference:
onnxruntime 1.31 ignores MatMulNBits' packed uint8 zero points when g_idx is given (it uses the
default 2**(bits-1)); onnxrt applies them as documented, (q - zp) * scale.

Weight-only formats (MatMulNBits, GatherBlockQuantized) dequantize their constant weight once
per session (MatMulNBits keeps the float weight, laid out for ``A @ W``) and then use float GEMM.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import ml_dtypes
import numpy as np

from onnxrt.ops import quantization as q
from onnxrt.ops._common import contiguous_copy
from onnxrt.ops.cast import _describe
from onnxrt.ops.contrib_attention import _add, _attend_merged, _causal, _key_mask, _masked_heads_attrs
from onnxrt.ops.registry import KernelContext, op_factory

MS = "com.microsoft"
_F32 = np.dtype(np.float32)
_U8 = np.dtype(np.uint8)
_FLOATS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float64))


# -- helpers ---------------------------------------------------------------------------------------


def _tensor(op_name: str, name: str, v: Any, required: bool = True) -> np.ndarray | None:
    if v is None:
        if required:
            raise ValueError(f"{op_name}: required input '{name}' is missing")
        return None
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{op_name}: input '{name}' must be a tensor, got {type(v).__name__}")
    return v


def _scalar_f32(op_name: str, name: str, v: Any) -> np.float32:
    v = _tensor(op_name, name, v)
    if v.dtype not in _FLOATS:
        raise TypeError(f"{op_name}: '{name}' must be a float tensor, got {_describe(v.dtype)}")
    if v.size != 1:
        raise ValueError(f"{op_name}: '{name}' must be a scalar (one element), got shape {list(v.shape)}")
    return np.float32(v.reshape(-1)[0])


def _zero_point(op_name: str, name: str, v: Any, dtype: np.dtype) -> int:
    """A per-tensor zero point as a Python int (0 when omitted); its type must be ``dtype``."""
    if v is None:
        return 0
    v = _tensor(op_name, name, v)
    if v.dtype != dtype:
        raise TypeError(f"{op_name}: '{name}' has type {_describe(v.dtype)}, expected {_describe(dtype)}")
    if v.size != 1:
        raise ValueError(f"{op_name}: '{name}' must be a scalar (one element), got shape {list(v.shape)}")
    return int(v.reshape(-1)[0])


def _quantize_f32(values: np.ndarray, inv_or_scale: np.float32, zp: int, dtype: np.dtype, divide: bool = True) -> np.ndarray:
    """saturate(rint(values / scale) + zp) into ``dtype`` (values: float32 temporary, overwritten)."""
    v = np.asarray(values, dtype=_F32)
    if divide:
        np.divide(v, inv_or_scale, out=v)
    else:
        np.multiply(v, inv_or_scale, out=v)
    np.rint(v, out=v)
    if zp:
        v += np.float32(zp)
    return q._saturate_to(v, dtype, owned=True)


def _codes(dtype: np.dtype) -> np.ndarray:
    """Every value of an 8-bit type, in order, as that type."""
    lo, hi = q._INT_RANGE[dtype]
    return np.arange(lo, hi + 1, dtype=np.int32).astype(dtype)


def _apply_table(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Look ``x``'s 8-bit codes up in a 256-entry table indexed from the type's minimum."""
    idx = x.view(_U8) if x.dtype == _U8 else (x.view(_U8) ^ np.uint8(0x80))  # int8 -> 0..255 order
    return table[idx]


class _TableCache:
    """A lookup table per distinct (scale, zero point) tuple; constant params hit the cache every run."""

    def __init__(self, build: Callable[..., np.ndarray]) -> None:
        self.build = build
        self.tables: dict[tuple, np.ndarray] = {}

    def get(self, key: tuple) -> np.ndarray:
        t = self.tables.get(key)
        if t is None:
            if len(self.tables) > 64:  # non-constant params: do not grow without bound
                self.tables.clear()
            t = self.tables[key] = self.build(*key)
        return t


# -- QuantizeLinear / DequantizeLinear (com.microsoft) -----------------------------------------------


@op_factory("QuantizeLinear", 1, domain=MS)
def ms_quantize_linear(ctx: KernelContext):
    axis = int(ctx.attrs.get("axis", 1))
    block_size = int(ctx.attrs.get("block_size", 0))

    def run(x, y_scale, y_zero_point=None):
        _tensor("QuantizeLinear", "x", x)
        _tensor("QuantizeLinear", "y_scale", y_scale)
        if x.dtype not in _FLOATS:
            raise TypeError(f"QuantizeLinear: input 'x' must be float or float16, got {_describe(x.dtype)}")
        out = _U8 if y_zero_point is None else y_zero_point.dtype
        if out not in q._INT_RANGE or out == np.dtype(np.int32):
            raise TypeError(f"QuantizeLinear: zero point type {_describe(out)} is not int8/uint8/int16/uint16/int4/uint4")
        return q._quantize(x, y_scale, y_zero_point, out, axis, block_size, True, _F32)

    return run


@op_factory("DequantizeLinear", 1, domain=MS)
def ms_dequantize_linear(ctx: KernelContext):
    axis = int(ctx.attrs.get("axis", 1))
    block_size = int(ctx.attrs.get("block_size", 0))

    def run(x, x_scale, x_zero_point=None):
        _tensor("DequantizeLinear", "x", x)
        _tensor("DequantizeLinear", "x_scale", x_scale)
        if x.dtype not in q._INT_RANGE:
            raise TypeError(f"DequantizeLinear: input 'x' of type {_describe(x.dtype)} is not a quantized integer type")
        if x_zero_point is not None and x_zero_point.dtype != x.dtype:
            raise TypeError(
                f"DequantizeLinear: x_zero_point has type {_describe(x_zero_point.dtype)}, expected {_describe(x.dtype)}"
            )
        if x_scale.dtype not in _FLOATS:
            raise TypeError(f"DequantizeLinear: x_scale must be a float tensor, got {_describe(x_scale.dtype)}")
        return q._dequantize(x, x_scale, x_zero_point, x_scale.dtype, axis, block_size)

    return run


# -- matmul family ----------------------------------------------------------------------------------


def _dynamic_quantize_u8(a: np.ndarray) -> tuple[np.ndarray, np.float32, int, float, float]:
    """A float tensor quantized to uint8 over [min(0, a), max(0, a)], like DynamicQuantizeLinear,
    returned as (a_q - zero point) in float32 (what the integer matmul consumes), scale, zero point,
    and the smallest and largest of those values.

    Three passes over ``a``: min and max, one division into a new float32 array, rint in place.
    ``rint(a / scale)`` is monotone in ``a``, so its extremes are those of min(a) and max(a), computed
    on the scalars with the same float32 division; the saturation to [-zp, 255 - zp] (uint8's range
    minus zp) is a pass of its own only when one of them falls outside, which float rounding allows
    but rarely does."""
    if a.size:
        a_min, a_max = np.min(a), np.max(a)
    else:
        a_min = a_max = np.float32(0)
    if np.isnan(a_min) or np.isnan(a_max):
        raise ValueError("dynamic quantization: input contains NaN")
    lo = np.float32(min(np.float32(0), a_min))
    hi = np.float32(max(np.float32(0), a_max))
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.float32((hi - lo) / np.float32(255))
    if scale == 0:
        scale = np.float32(1)
    if not np.isfinite(scale):
        raise ValueError("dynamic quantization: the input's range is not finite")
    zp = int(np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)))
    v = np.divide(a, scale, dtype=_F32)
    np.rint(v, out=v)
    r_lo = float(np.rint(np.float32(a_min) / scale))
    r_hi = float(np.rint(np.float32(a_max) / scale))
    if r_lo < -zp or r_hi > 255 - zp:
        np.clip(v, np.float32(-zp), np.float32(255 - zp), out=v)
        r_lo, r_hi = max(r_lo, float(-zp)), min(r_hi, float(255 - zp))
    return v, scale, zp, r_lo, r_hi


def _b_params(op_name: str, b: np.ndarray, b_scale: np.ndarray, b_zp: np.ndarray | None):
    n = b.shape[-1]
    s = q._as_f32(_tensor(op_name, "b_scale", b_scale))
    if s.size != 1 and s.shape[-1] != n:
        raise ValueError(f"{op_name}: b_scale has shape {list(s.shape)}; expected a scalar or {n} values (B's columns)")
    if b_zp is not None:
        if b_zp.dtype != b.dtype:
            raise TypeError(f"{op_name}: b_zero_point has type {_describe(b_zp.dtype)}, expected {_describe(b.dtype)}")
        if b_zp.size != 1 and b_zp.shape[-1] != n:
            raise ValueError(f"{op_name}: b_zero_point has shape {list(b_zp.shape)}; expected a scalar or {n} values")
    return (s.reshape(()) if s.size == 1 else s), b_zp


def _add_bias(op_name: str, y: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if bias is not None:
        _tensor(op_name, "bias", bias)
        if bias.shape != (y.shape[-1],):
            raise ValueError(f"{op_name}: bias must have shape [{y.shape[-1]}], got {list(bias.shape)}")
        y += q._as_f32(bias)
    return y


def _scale_and_bias(op_name: str, y: np.ndarray, multiplier: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y * multiplier (+ bias) in float32, in place on the matmul's own result."""
    if y.dtype != _F32:  # the float64 fallback for very large sums: one rounding to float32
        y = y.astype(_F32)
    np.multiply(y, multiplier, out=y)
    return _add_bias(op_name, y, bias)


@op_factory("DynamicQuantizeMatMul", 1, domain=MS)
def dynamic_quantize_matmul(ctx: KernelContext):
    """A quantized to uint8 from its own range (DynamicQuantizeLinear's rule), then (A_q - zp) @ (B - b_zp)
    exactly in float32 BLAS against (B - b_zp) converted once per session, times a_scale * b_scale.

    No uint8 or int32 tensor is made: A is rounded and clipped straight into the float32 operand
    (rint(A / s) clipped to [-zp, 255 - zp] is A_q - zp), so the zero point needs no correction term.
    """
    name = "DynamicQuantizeMatMul"
    cache = q._const_b_cache(name, ctx, 1, 3)

    def run(A, B, b_scale, b_zero_point=None, bias=None):
        _tensor(name, "A", A)
        _tensor(name, "B", B)
        if A.dtype != _F32:
            raise TypeError(f"{name}: input 'A' must be float, got {_describe(A.dtype)}")
        q._check_int8(name, "B", B)
        q._check_matmul_shapes(name, A, B)
        sb, bzp = _b_params(name, B, b_scale, b_zero_point)
        af, sa, _, a_lo, a_hi = _dynamic_quantize_u8(A)
        y = q._exact_matmul(af, max(-a_lo, a_hi), cache.get(B, bzp), a_lo)
        return _scale_and_bias(name, y, sa * sb, bias)

    return run


@op_factory("MatMulIntegerToFloat", 1, domain=MS)
def matmul_integer_to_float(ctx: KernelContext):
    name = "MatMulIntegerToFloat"
    cache = q._const_b_cache(name, ctx, 1, 5)

    def run(A, B, a_scale, b_scale, a_zero_point=None, b_zero_point=None, bias=None):
        _tensor(name, "A", A)
        _tensor(name, "B", B)
        q._check_int8(name, "A", A)
        q._check_int8(name, "B", B)
        q._zp_matching(name, "a_zero_point", a_zero_point, A)
        sa = q._as_f32(_tensor(name, "a_scale", a_scale))
        sb, bzp = _b_params(name, B, b_scale, b_zero_point)
        y = q._int_matmul(name, A, B, a_zero_point, bzp, cache)
        return _scale_and_bias(name, y, q._a_zero_point(name, sa, A, "a_scale") * sb, bias)

    return run


@op_factory("QGemm", 1, domain=MS)
def qgemm(ctx: KernelContext):
    name = "QGemm"
    trans_a = bool(ctx.attrs.get("transA", 0))
    trans_b = bool(ctx.attrs.get("transB", 0))
    alpha = np.float32(ctx.attrs.get("alpha", 1.0))
    consts = list(ctx.const_inputs) + [None] * 9

    def b_zero_point_layout(zp: np.ndarray, B: np.ndarray) -> np.ndarray:
        return zp.reshape(()) if zp.size == 1 else zp.reshape(B.shape[0] if trans_b else B.shape[1])

    cache = q._ConstCache(consts[3], consts[5], True, b_zero_point_layout, transposed=trans_b)

    def run(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None, y_zero_point=None):
        for n_, v in (("A", A), ("B", B), ("a_zero_point", a_zero_point), ("b_zero_point", b_zero_point)):
            _tensor(name, n_, v)
        q._check_int8(name, "A", A)
        q._check_int8(name, "B", B)
        if A.ndim != 2 or B.ndim != 2:
            raise ValueError(f"{name}: A and B must be 2-D, got shapes {list(A.shape)} and {list(B.shape)}")
        a = A.T if trans_a else A
        n = B.shape[0] if trans_b else B.shape[1]
        k_b = B.shape[1] if trans_b else B.shape[0]
        if a.shape[1] != k_b:
            raise ValueError(f"{name}: inner dimensions differ: op(A) is {list(a.shape)}, op(B) has K={k_b}")
        sa = _scalar_f32(name, "a_scale", a_scale)
        azp = _zero_point(name, "a_zero_point", a_zero_point, A.dtype)
        sb = q._as_f32(_tensor(name, "b_scale", b_scale))
        if b_zero_point.dtype != B.dtype:
            raise TypeError(f"{name}: b_zero_point has type {_describe(b_zero_point.dtype)}, expected {_describe(B.dtype)}")
        if sb.size not in (1, n) or b_zero_point.size not in (1, n):
            raise ValueError(f"{name}: b_scale and b_zero_point must be scalars or have {n} values (one per column)")
        af = a.astype(_F32)
        if azp:
            af -= np.float32(azp)
        acc = q._exact_matmul(af, q._shifted_magnitude(A, np.asarray(azp)), cache.get(B, b_zero_point))
        if C is not None:
            _tensor(name, "C", C)
            if C.dtype != np.int32:
                raise TypeError(f"{name}: C must be int32 (quantized with scale alpha * a_scale * b_scale), got {_describe(C.dtype)}")
            acc = acc + C.astype(acc.dtype)
        multiplier = alpha * sa * (sb.reshape(()) if sb.size == 1 else sb.reshape(n))
        if y_scale is None:
            return np.multiply(acc, multiplier, dtype=_F32)
        sy = _scalar_f32(name, "y_scale", y_scale)
        if y_zero_point is None:
            raise ValueError(f"{name}: y_zero_point is required when y_scale is given")
        q._check_int8(name, "y_zero_point", y_zero_point)
        acc32 = q._float_to_int32(acc) if acc.dtype != _F32 else acc
        return np.asarray(q._requantize(acc32, multiplier / sy, y_zero_point.reshape(()), y_zero_point.dtype))

    return run


# -- MatMulNBits ------------------------------------------------------------------------------------


def _unpack_bits(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint8 bytes -> codes, lowest bits first, along the last axis (each byte gives 8 // bits codes)."""
    if bits == 8:
        return packed
    per = 8 // bits
    mask = np.uint8((1 << bits) - 1)
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    codes = (packed[..., None] >> shifts) & mask
    return codes.reshape(*packed.shape[:-1], packed.shape[-1] * per)


def _nbits_dequantize(op_name: str, B: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None,
                      g_idx: np.ndarray | None, K: int, N: int, bits: int, block_size: int) -> np.ndarray:
    """The float weight W (K, N) of MatMulNBits, in the scales' dtype widened to float32."""
    k_blocks = -(-K // block_size)
    blob = block_size * bits // 8
    if B.dtype != _U8:
        raise TypeError(f"{op_name}: input 'B' must be uint8, got {_describe(B.dtype)}")
    if B.size != N * k_blocks * blob:
        raise ValueError(
            f"{op_name}: input 'B' has shape {list(B.shape)}; expected [{N}, {k_blocks}, {blob}] for K={K}, N={N}, "
            f"bits={bits}, block_size={block_size}"
        )
    codes = _unpack_bits(B.reshape(N, k_blocks, blob), bits).reshape(N, k_blocks * block_size)[:, :K]
    s = q._as_f32(scales)
    if s.size != N * k_blocks:
        raise ValueError(f"{op_name}: scales has {s.size} elements; expected N * k_blocks = {N} * {k_blocks}")
    s = s.reshape(N, k_blocks)
    if g_idx is not None and g_idx.size:
        if g_idx.size != K:
            raise ValueError(f"{op_name}: g_idx has {g_idx.size} elements; expected K = {K}")
        group_of_k = g_idx.reshape(K).astype(np.int64)
        if group_of_k.min() < 0 or group_of_k.max() >= k_blocks:
            raise ValueError(f"{op_name}: g_idx values must lie in [0, {k_blocks})")
    else:
        group_of_k = np.arange(K) // block_size
    scale_k = s[:, group_of_k]  # (N, K)
    if zero_points is None:
        zp_k = np.float32(1 << (bits - 1))
        w = codes.astype(_F32) - zp_k
    elif zero_points.dtype == _U8:
        zp_bytes = -(-k_blocks * bits // 8)
        if zero_points.size != N * zp_bytes:
            raise ValueError(
                f"{op_name}: packed uint8 zero_points has {zero_points.size} elements; expected N * "
                f"ceil(k_blocks * bits / 8) = {N * zp_bytes}"
            )
        zp = _unpack_bits(zero_points.reshape(N, zp_bytes), bits)[:, :k_blocks]
        w = codes.astype(_F32) - zp[:, group_of_k].astype(_F32)
    elif zero_points.dtype in _FLOATS:
        if zero_points.size != N * k_blocks:
            raise ValueError(f"{op_name}: float zero_points has {zero_points.size} elements; expected {N * k_blocks}")
        zp = q._as_f32(zero_points).reshape(N, k_blocks)[:, group_of_k]
        w = codes.astype(_F32) - zp
    else:
        raise TypeError(f"{op_name}: zero_points must be uint8 (packed) or the scales' float type, got {_describe(zero_points.dtype)}")
    w *= scale_k
    return contiguous_copy(w.T)  # (K, N) for A @ W


@op_factory("MatMulNBits", 1, domain=MS)
def matmul_nbits(ctx: KernelContext):
    name = "MatMulNBits"
    a = ctx.attrs
    for required in ("K", "N", "block_size"):
        if required not in a:
            raise ValueError(f"{name}: attribute '{required}' is required ({ctx.describe()})")
    K, N, block_size = int(a["K"]), int(a["N"]), int(a["block_size"])
    bits = int(a.get("bits", 4))
    if bits not in (2, 4, 8):
        raise ValueError(f"{name}: bits must be 2, 4 or 8, got {bits}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"{name}: block_size must be a power of 2 not below 16, got {block_size}")
    consts = list(ctx.const_inputs) + [None] * 6
    names = list(ctx.input_names) + [""] * 6
    # The weight is constant in every model the quantizers write: dequantize it once.
    weight_inputs = (1, 2, 3, 4)
    all_const = all(consts[i] is not None or not names[i] for i in weight_inputs)
    cached_w = None
    if all_const:
        cached_w = _nbits_dequantize(name, consts[1], consts[2], consts[3], consts[4], K, N, bits, block_size)
        cached_w.flags.writeable = False

    def run(A, B, scales, zero_points=None, g_idx=None, bias=None):
        _tensor(name, "A", A)
        if A.dtype not in _FLOATS:
            raise TypeError(f"{name}: input 'A' must be float or float16, got {_describe(A.dtype)}")
        if A.shape[-1] != K:
            raise ValueError(f"{name}: input 'A' has last dimension {A.shape[-1]}, expected K = {K}")
        w = cached_w if cached_w is not None else _nbits_dequantize(
            name, B, scales, zero_points, g_idx, K, N, bits, block_size)
        y = np.matmul(A.astype(_F32, copy=False), w)
        if bias is not None:
            y = _add_bias(name, y, bias)
        return y.astype(A.dtype, copy=False)

    return run


# -- GatherBlockQuantized ---------------------------------------------------------------------------


@op_factory("GatherBlockQuantized", 1, domain=MS)
def gather_block_quantized(ctx: KernelContext):
    name = "GatherBlockQuantized"
    gather_axis = int(ctx.attrs.get("gather_axis", 0))
    quantize_axis = int(ctx.attrs.get("quantize_axis", 1))
    block_size = int(ctx.attrs.get("block_size", 128))
    bits = int(ctx.attrs.get("bits", 4))
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"{name}: block_size must be a power of 2 not below 16, got {block_size}")

    def run(data, indices, scales, zero_points=None):
        _tensor(name, "data", data)
        _tensor(name, "indices", indices)
        _tensor(name, "scales", scales)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"{name}: indices must be int32 or int64, got {_describe(indices.dtype)}")
        if data.dtype == _U8:
            if bits not in (4, 8):
                raise ValueError(f"{name}: bits must be 4 or 8 for uint8 data, got {bits}")
            codes = q._to_int_values(_unpack_bits(data, bits)) if bits == 4 else data.astype(np.int32)
            default_zp = 1 << (bits - 1)
        elif data.dtype in (np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4)):
            codes = q._to_int_values(data)
            default_zp = 0
        else:
            raise TypeError(f"{name}: data must be uint8, int4 or uint4, got {_describe(data.dtype)}")
        r = codes.ndim
        ga = gather_axis + r if gather_axis < 0 else gather_axis
        qa = quantize_axis + r if quantize_axis < 0 else quantize_axis
        if not (0 <= ga < r and 0 <= qa < r):
            raise ValueError(f"{name}: gather_axis {gather_axis} / quantize_axis {quantize_axis} out of range for rank {r}")
        if ga == qa:
            raise ValueError(f"{name}: gather_axis and quantize_axis must differ, both are {ga}")
        dim = codes.shape[ga]
        idx = indices.astype(np.int64)
        if idx.size and (idx.min() < -dim or idx.max() >= dim):
            raise ValueError(f"{name}: indices must lie in [{-dim}, {dim - 1}] (data dimension {ga})")
        idx = np.where(idx < 0, idx + dim, idx)
        n_blocks = -(-codes.shape[qa] // block_size)
        want = list(codes.shape)
        want[qa] = n_blocks
        if list(scales.shape) != want:
            raise ValueError(f"{name}: scales has shape {list(scales.shape)}, expected {want}")
        picked = np.take(codes, idx, axis=ga)
        qa_out = qa + idx.ndim - 1 if qa > ga else qa
        s = np.take(q._as_f32(scales), idx, axis=ga)
        s = np.repeat(s, block_size, axis=qa_out)
        s = s[(slice(None),) * qa_out + (slice(0, picked.shape[qa_out]),)]
        if zero_points is not None:
            _tensor(name, "zero_points", zero_points)
            if data.dtype == _U8 and bits == 4:
                zp = q._to_int_values(_unpack_bits(zero_points, 4))
                zp = zp[(slice(None),) * (r - 1) + (slice(0, want[-1]),)]
            else:
                zp = q._to_int_values(zero_points)
            if list(zp.shape) != want:
                raise ValueError(f"{name}: zero_points gives shape {list(zp.shape)} of values, expected {want}")
            zp = np.repeat(np.take(zp, idx, axis=ga), block_size, axis=qa_out)
            zp = zp[(slice(None),) * qa_out + (slice(0, picked.shape[qa_out]),)]
            vals = (picked - zp).astype(_F32)
        else:
            vals = (picked - default_zp).astype(_F32)
        vals *= s
        return vals.astype(scales.dtype, copy=False)

    return run


# -- element-wise QLinear ops -----------------------------------------------------------------------


def _binary_params(op_name, A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp):
    _tensor(op_name, "A", A)
    _tensor(op_name, "B", B)
    q._check_int8(op_name, "A", A)
    if B.dtype != A.dtype:
        raise TypeError(f"{op_name}: A and B must have the same type, got {_describe(A.dtype)} and {_describe(B.dtype)}")
    sa = _scalar_f32(op_name, "A_scale", A_scale)
    sb = _scalar_f32(op_name, "B_scale", B_scale)
    sc = _scalar_f32(op_name, "C_scale", C_scale)
    za = _zero_point(op_name, "A_zero_point", A_zp, A.dtype)
    zb = _zero_point(op_name, "B_zero_point", B_zp, A.dtype)
    zc = _zero_point(op_name, "C_zero_point", C_zp, A.dtype)
    return sa, za, sb, zb, sc, zc


def _centered(x: np.ndarray, zp: int) -> np.ndarray:
    v = x.astype(_F32)
    if zp:
        v -= np.float32(zp)
    return v


def _fma_f32(x: np.ndarray, y: np.float32, z: np.ndarray | np.float32) -> np.ndarray:
    """float32 fused multiply-add x * y + z with one rounding, for 8-bit codes x: the product of an
    8-bit integer and a float32 is exact in float64, and so is its sum with a float32 of the sizes
    requantisation meets, so the only rounding is the final one to float32."""
    return (x.astype(np.float64) * np.float64(y) + np.asarray(z, dtype=np.float64)).astype(_F32)


@op_factory("QLinearAdd", 1, domain=MS)
def qlinear_add(ctx: KernelContext):
    """onnxruntime's x86 kernel (MLAS, AVX2), step for step so that results are bit-exact: with the
    ratios ra = sa / sc and rb = sb / sc and the fixed part f = zc - fma(ra, za, rb * zb), all float32,
    c = rint(fma(a, ra, fma(b, rb, f))) on the raw codes a and b, saturated; a one-element operand is
    folded into f first (f + ra * a0, a multiply and an add). Checked on every pair of codes over
    scales spanning three decades (tests/ops/test_contrib_quant.py)."""

    def run(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
        sa, za, sb, zb, sc, zc = _binary_params("QLinearAdd", A, A_scale, A_zero_point, B, B_scale, B_zero_point,
                                                C_scale, C_zero_point)
        ra, rb = np.float32(sa / sc), np.float32(sb / sc)
        # the build of onnxruntime this is measured against contracts ra * za + rb * zb into one fma
        fixed = np.float32(zc) - _fma_f32(np.asarray(za), ra, rb * np.float32(zb))
        if A.size == 1 and B.size != 1:
            fixed = fixed + ra * np.float32(A.reshape(-1)[0])
            t = _fma_f32(B, rb, fixed)
            shape = np.broadcast_shapes(A.shape, B.shape)
        elif B.size == 1:
            fixed = fixed + rb * np.float32(B.reshape(-1)[0])
            t = _fma_f32(A, ra, fixed)
            shape = np.broadcast_shapes(A.shape, B.shape)
        else:
            t = _fma_f32(A, ra, _fma_f32(B, rb, fixed))
            shape = t.shape
        np.rint(t, out=t)
        return q._saturate_to(np.broadcast_to(t, shape).copy() if t.shape != shape else t, A.dtype, owned=True)

    return run


@op_factory("QLinearMul", 1, domain=MS)
def qlinear_mul(ctx: KernelContext):
    def run(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
        sa, za, sb, zb, sc, zc = _binary_params("QLinearMul", A, A_scale, A_zero_point, B, B_scale, B_zero_point,
                                                C_scale, C_zero_point)
        prod = np.multiply(_centered(A, za), _centered(B, zb))  # exact: |product| <= 2**16
        return _quantize_f32(prod, np.float32(sa * sb / sc), zc, A.dtype, divide=False)

    return run


def _lookup_unary(op_name: str, fn: Callable[[np.ndarray], np.ndarray]):
    """An 8-bit unary op as a table: quantize(fn(dequantize(code))) for every code."""

    def build(dtype, sx, zx, sy, zy):
        x = (_codes(dtype).astype(np.int32) - zx).astype(_F32) * sx
        return _quantize_f32(fn(x).astype(_F32), sy, zy, dtype)

    tables = _TableCache(build)

    def run(X, X_scale, X_zero_point=None, Y_scale=None, Y_zero_point=None):
        _tensor(op_name, "X", X)
        q._check_int8(op_name, "X", X)
        sx = _scalar_f32(op_name, "X_scale", X_scale)
        sy = _scalar_f32(op_name, "Y_scale", Y_scale)
        zx = _zero_point(op_name, "X_zero_point", X_zero_point, X.dtype)
        zy = _zero_point(op_name, "Y_zero_point", Y_zero_point, X.dtype)
        return _apply_table(X, tables.get((X.dtype, sx, zx, sy, zy)))

    return run


def _sigmoid(x: np.ndarray) -> np.ndarray:
    y = x * np.float32(0.5)
    np.tanh(y, out=y)
    y += 1
    y *= np.float32(0.5)
    return y


@op_factory("QLinearSigmoid", 1, domain=MS)
def qlinear_sigmoid(ctx: KernelContext):
    return _lookup_unary("QLinearSigmoid", _sigmoid)


@op_factory("QLinearLeakyRelu", 1, domain=MS)
def qlinear_leaky_relu(ctx: KernelContext):
    alpha = np.float32(ctx.attrs.get("alpha", 0.01))
    return _lookup_unary("QLinearLeakyRelu", lambda x: np.where(x >= 0, x, x * alpha))


def _requant_table(dtype, s_in, z_in, s_out, z_out) -> np.ndarray:
    x = (_codes(dtype).astype(np.int32) - z_in).astype(_F32) * s_in
    return _quantize_f32(x, s_out, z_out, dtype)


_REQUANT = _TableCache(_requant_table)


def _requant(x: np.ndarray, s_in, z_in, s_out, z_out) -> np.ndarray:
    if s_in == s_out and z_in == z_out:
        return x
    return _apply_table(x, _REQUANT.get((x.dtype, s_in, z_in, s_out, z_out)))


@op_factory("QLinearConcat", 1, domain=MS)
def qlinear_concat(ctx: KernelContext):
    name = "QLinearConcat"
    if "axis" not in ctx.attrs:
        raise ValueError(f"{name}: attribute 'axis' is required ({ctx.describe()})")
    axis = int(ctx.attrs["axis"])

    def run(Y_scale, Y_zero_point, *inputs):
        if len(inputs) % 3 or not inputs:
            raise ValueError(f"{name}: inputs after Y_scale, Y_zero_point must be (X, X_scale, X_zero_point) triples, "
                             f"got {len(inputs)} values")
        sy = _scalar_f32(name, "Y_scale", Y_scale)
        _tensor(name, "Y_zero_point", Y_zero_point)
        q._check_int8(name, "Y_zero_point", Y_zero_point)
        dt = Y_zero_point.dtype
        zy = _zero_point(name, "Y_zero_point", Y_zero_point, dt)
        parts = []
        for i in range(0, len(inputs), 3):
            x = _tensor(name, f"X{i // 3}", inputs[i])
            if x.dtype != dt:
                raise TypeError(f"{name}: input X{i // 3} has type {_describe(x.dtype)}, expected {_describe(dt)}")
            sx = _scalar_f32(name, f"X{i // 3}_scale", inputs[i + 1])
            zx = _zero_point(name, f"X{i // 3}_zero_point", inputs[i + 2], dt)
            parts.append(_requant(x, sx, zx, sy, zy))
        r = parts[0].ndim
        a = axis + r if axis < 0 else axis
        if not 0 <= a < r:
            raise ValueError(f"{name}: axis {axis} is out of range for rank {r}")
        return np.concatenate(parts, axis=a)

    return run


@op_factory("QLinearWhere", 1, domain=MS)
def qlinear_where(ctx: KernelContext):
    name = "QLinearWhere"

    def run(condition, X, x_scale, x_zero_point, Y, y_scale, y_zero_point, z_scale, z_zero_point):
        _tensor(name, "condition", condition)
        if condition.dtype != np.bool_:
            raise TypeError(f"{name}: condition must be bool, got {_describe(condition.dtype)}")
        _tensor(name, "X", X)
        _tensor(name, "Y", Y)
        q._check_int8(name, "X", X)
        if Y.dtype != X.dtype:
            raise TypeError(f"{name}: X and Y must have the same type, got {_describe(X.dtype)} and {_describe(Y.dtype)}")
        dt = X.dtype
        sz = _scalar_f32(name, "z_scale", z_scale)
        zz = _zero_point(name, "z_zero_point", z_zero_point, dt)
        xq = _requant(X, _scalar_f32(name, "x_scale", x_scale), _zero_point(name, "x_zero_point", x_zero_point, dt), sz, zz)
        yq = _requant(Y, _scalar_f32(name, "y_scale", y_scale), _zero_point(name, "y_zero_point", y_zero_point, dt), sz, zz)
        return np.where(condition, xq, yq)

    return run


@op_factory("QLinearSoftmax", 1, domain=MS)
def qlinear_softmax(ctx: KernelContext):
    name = "QLinearSoftmax"
    axis = int(ctx.attrs.get("axis", -1))
    opset = int(ctx.attrs.get("opset", 13))

    def run(X, X_scale, x_zero_point, y_scale, y_zero_point):
        _tensor(name, "X", X)
        q._check_int8(name, "X", X)
        sx = _scalar_f32(name, "X_scale", X_scale)
        sy = _scalar_f32(name, "y_scale", y_scale)
        # checked only: softmax is shift-invariant, so the input zero point drops out
        _zero_point(name, "x_zero_point", x_zero_point, X.dtype)
        _tensor(name, "y_zero_point", y_zero_point)
        q._check_int8(name, "y_zero_point", y_zero_point)
        zy = _zero_point(name, "y_zero_point", y_zero_point, y_zero_point.dtype)
        r = X.ndim
        a = axis + r if axis < 0 else axis
        if not 0 <= a < max(r, 1):
            raise ValueError(f"{name}: axis {axis} is out of range for rank {r}")
        if opset < 13:  # the old Softmax: flatten to 2-D at axis
            x2 = X.reshape(math.prod(X.shape[:a]), -1)
            red = -1
        else:
            x2 = X
            red = a
        # exp((x - max) * scale) on the integer codes: exact shift, then one float32 exp
        xi = x2.astype(np.int32)
        d = (xi - xi.max(axis=red, keepdims=True)).astype(_F32)
        d *= sx
        e = np.exp(d, out=d)
        total = e.sum(axis=red, keepdims=True, dtype=_F32)
        y = _quantize_f32(e / (total * sy), np.float32(1), zy, y_zero_point.dtype, divide=False)
        return y.reshape(X.shape)

    return run


def _channels_last_to_first(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, -1, 1)


@op_factory("QLinearGlobalAveragePool", 1, domain=MS)
def qlinear_global_average_pool(ctx: KernelContext):
    name = "QLinearGlobalAveragePool"
    channels_last = bool(ctx.attrs.get("channels_last", 0))

    def run(X, x_scale, x_zero_point, y_scale, y_zero_point):
        _tensor(name, "X", X)
        q._check_int8(name, "X", X)
        if X.ndim < 3:
            raise ValueError(f"{name}: X must have rank >= 3, got shape {list(X.shape)}")
        sx = _scalar_f32(name, "x_scale", x_scale)
        sy = _scalar_f32(name, "y_scale", y_scale)
        zx = _zero_point(name, "x_zero_point", x_zero_point, X.dtype)
        zy = _zero_point(name, "y_zero_point", y_zero_point, X.dtype)
        axes = tuple(range(1, X.ndim - 1)) if channels_last else tuple(range(2, X.ndim))
        size = math.prod(X.shape[a] for a in axes)
        # integer sum (exact), then one float32 scale: (sum - zx * size) * sx / (sy * size)
        acc = X.sum(axis=axes, keepdims=True, dtype=np.int64) - zx * size
        return _quantize_f32(acc.astype(_F32), np.float32(sx / (sy * np.float32(size))), zy, X.dtype, divide=False)

    return run


@op_factory("QLinearAveragePool", 1, domain=MS)
def qlinear_average_pool(ctx: KernelContext):
    from onnxrt.ops.pool import average_pool_factory

    name = "QLinearAveragePool"
    channels_last = bool(ctx.attrs.get("channels_last", 0))
    attrs = {k: v for k, v in ctx.attrs.items() if k != "channels_last"}
    attrs.setdefault("auto_pad", "NOTSET")
    attrs.setdefault("ceil_mode", 0)
    attrs.setdefault("count_include_pad", 0)
    if "kernel_shape" not in attrs:
        raise ValueError(f"{name}: attribute 'kernel_shape' is required ({ctx.describe()})")
    pool_ctx = KernelContext(op_type="AveragePool", domain="", name=ctx.name, opset=19, since_version=19,
                             attrs=attrs, num_inputs=1, num_outputs=1)
    float_pool = average_pool_factory(pool_ctx)

    def run(X, x_scale, x_zero_point, y_scale, y_zero_point=None):
        _tensor(name, "X", X)
        q._check_int8(name, "X", X)
        sx = _scalar_f32(name, "x_scale", x_scale)
        sy = _scalar_f32(name, "y_scale", y_scale)
        zx = _zero_point(name, "x_zero_point", x_zero_point, X.dtype)
        zy = _zero_point(name, "y_zero_point", y_zero_point, X.dtype)
        x = _channels_last_to_first(X) if channels_last else X
        v = _centered(x, zx)
        v *= sx
        y = _quantize_f32(float_pool(v), sy, zy, X.dtype)
        return np.ascontiguousarray(np.moveaxis(y, 1, -1)) if channels_last else y

    return run


# -- QAttention --------------------------------------------------------------------------------------


@op_factory("QAttention", 1, domain=MS)
def qattention(ctx: KernelContext):
    name = "QAttention"
    num_heads, unidirectional, mask_filter_value = _masked_heads_attrs(ctx, name)
    scale_attr = float(ctx.attrs.get("scale", 0.0))
    cache = q._const_b_cache(name, ctx, 1, 7)

    def run(input, weight, bias, input_scale, weight_scale, mask_index=None, input_zero_point=None,
            weight_zero_point=None, past=None):
        for n_, v in (("input", input), ("weight", weight), ("bias", bias)):
            _tensor(name, n_, v)
        q._check_int8(name, "input", input)
        q._check_int8(name, "weight", weight)
        if input.ndim != 3 or weight.ndim != 2 or input.shape[2] != weight.shape[0]:
            raise ValueError(f"{name}: input must be (batch, seq, in) and weight (in, 3 * hidden); got "
                             f"{list(input.shape)} and {list(weight.shape)}")
        batch, seq, _ = input.shape
        hidden = weight.shape[1] // 3
        if weight.shape[1] != 3 * hidden or hidden % num_heads:
            raise ValueError(f"{name}: weight's second dimension {weight.shape[1]} must be 3 * hidden with hidden "
                             f"divisible by num_heads={num_heads}")
        if bias.shape != (3 * hidden,):
            raise ValueError(f"{name}: bias must have shape [{3 * hidden}], got {list(bias.shape)}")
        head = hidden // num_heads
        sa = _scalar_f32(name, "input_scale", input_scale)
        sw = q._as_f32(_tensor(name, "weight_scale", weight_scale))
        if sw.size not in (1, 3 * hidden):
            raise ValueError(f"{name}: weight_scale must be a scalar or have {3 * hidden} values")
        azp = _zero_point(name, "input_zero_point", input_zero_point, input.dtype)
        wzp = weight_zero_point
        if wzp is not None and wzp.dtype != weight.dtype:
            raise TypeError(f"{name}: weight_zero_point has type {_describe(wzp.dtype)}, expected {_describe(weight.dtype)}")
        af = _centered(input, azp)
        # the zero point as given: the cache recognises the constant one and reuses the prepared weight
        acc = q._exact_matmul(af, q._shifted_magnitude(input, np.asarray(azp)), cache.get(weight, wzp))
        qkv = acc.astype(_F32, copy=False)
        qkv *= sa * (sw.reshape(()) if sw.size == 1 else sw.reshape(-1))
        qkv += q._as_f32(bias)
        qkv = qkv.reshape(batch, seq, 3, num_heads, head).transpose(2, 0, 3, 1, 4)  # (3, B, H, S, D)
        qh, kh, vh = qkv[0], qkv[1], qkv[2]
        past_len = 0
        if past is not None:
            _tensor(name, "past", past)
            if past.ndim != 5 or past.shape[0] != 2 or past.shape[1] != batch or past.shape[2] != num_heads \
                    or past.shape[4] != head:
                raise ValueError(f"{name}: past must have shape [2, {batch}, {num_heads}, past_len, {head}], "
                                 f"got {list(past.shape)}")
            past_len = past.shape[3]
            kh = np.concatenate([q._as_f32(past[0]), kh], axis=2)
            vh = np.concatenate([q._as_f32(past[1]), vh], axis=2)
        t = past_len + seq
        additive = None
        if mask_index is not None:
            additive = _key_mask(name, _tensor(name, "mask_index", mask_index), batch, seq, t, past_len,
                                 mask_filter_value)
        if unidirectional:
            additive = _add(additive, _causal(seq, t, past_len))
        scale = float(np.float32(scale_attr if scale_attr else 1.0 / math.sqrt(head)))
        y = _attend_merged(qh, kh, vh, scale, additive)
        present = np.stack([kh, vh]) if ctx.num_outputs > 1 else None
        return y, present

    return run


# -- QEmbedLayerNormalization ------------------------------------------------------------------------


@op_factory("QEmbedLayerNormalization", 1, domain=MS)
def qembed_layer_normalization(ctx: KernelContext):
    """Sum of word, position (0..seq-1) and optional segment embeddings, each dequantized from uint8,
    then layer normalization with dequantized gamma/beta; second output: per-sequence mask length."""
    name = "QEmbedLayerNormalization"
    epsilon = np.float32(ctx.attrs.get("epsilon", 1e-12))
    consts = list(ctx.const_inputs) + [None] * 18
    cache: dict[tuple[int, int, int], np.ndarray] = {}

    def dequant(table_idx: int, scale_idx: int, zp_idx: int, args: list) -> np.ndarray | None:
        table, scale, zp = args[table_idx], args[scale_idx], args[zp_idx]
        if table is None:
            return None
        key = (table_idx, scale_idx, zp_idx)
        constant = all(args[i] is consts[i] and consts[i] is not None for i in (table_idx, scale_idx)) and \
            (zp is None or zp is consts[zp_idx])
        if constant and key in cache:
            return cache[key]
        _tensor(name, f"input {table_idx}", table)
        s = _scalar_f32(name, f"input {scale_idx} (scale)", scale)
        z = 0 if zp is None else _zero_point(name, f"input {zp_idx} (zero point)", zp, table.dtype)
        values = _centered(table, z)
        values *= s
        if constant:
            values.flags.writeable = False
            cache[key] = values
        return values

    def run(input_ids, segment_ids, word_embedding, position_embedding, segment_embedding, gamma, beta, mask,
            word_scale, position_scale, segment_scale, gamma_scale, beta_scale, word_zp, position_zp, segment_zp,
            gamma_zp, beta_zp):
        args = [input_ids, segment_ids, word_embedding, position_embedding, segment_embedding, gamma, beta, mask,
                word_scale, position_scale, segment_scale, gamma_scale, beta_scale, word_zp, position_zp, segment_zp,
                gamma_zp, beta_zp]
        _tensor(name, "input_ids", input_ids)
        if input_ids.ndim != 2 or input_ids.dtype.kind not in "iu":
            raise ValueError(f"{name}: input_ids must be a 2-D integer tensor (batch, seq), got "
                             f"{_describe(input_ids.dtype)} shape {list(input_ids.shape)}")
        batch, seq = input_ids.shape
        word = dequant(2, 8, 13, args)
        pos = dequant(3, 9, 14, args)
        seg = dequant(4, 10, 15, args)
        g = dequant(5, 11, 16, args)
        b = dequant(6, 12, 17, args)
        if word is None or pos is None or g is None or b is None:
            raise ValueError(f"{name}: word/position embeddings, gamma and beta (with scales) are required")
        if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= word.shape[0]):
            raise ValueError(f"{name}: input_ids must lie in [0, {word.shape[0]})")
        if seq > pos.shape[0]:
            raise ValueError(f"{name}: sequence length {seq} exceeds the {pos.shape[0]} position embeddings")
        x = word[input_ids]
        x += pos[:seq]
        if seg is not None and segment_ids is not None:
            if segment_ids.shape != input_ids.shape:
                raise ValueError(f"{name}: segment_ids shape {list(segment_ids.shape)} differs from input_ids'")
            x += seg[segment_ids]
        mean = x.mean(axis=-1, keepdims=True)
        x -= mean
        var = np.mean(np.square(x), axis=-1, keepdims=True)
        x /= np.sqrt(var + epsilon)
        x *= g
        x += b
        if mask is not None:
            _tensor(name, "mask", mask)
            mask_index = mask.astype(np.int32).sum(axis=1, dtype=np.int32)
        else:
            mask_index = np.full((batch,), seq, np.int32)
        return x, mask_index

    return run


# -- DynamicQuantizeLSTM -----------------------------------------------------------------------------


def _lstm_weight(op_name: str, name: str, w: np.ndarray, scale: np.ndarray, zp: np.ndarray, D: int, rows: int, G: int):
    """Per direction: (W[d] - zp[d]) as a prepared exact-matmul operand, and the scale, scalar or [4H]."""
    _tensor(op_name, name, w)
    q._check_int8(op_name, name, w)
    if w.shape != (D, rows, G):
        raise ValueError(f"{op_name}: {name} must have shape {[D, rows, G]}, got {list(w.shape)}")
    s = q._as_f32(_tensor(op_name, f"{name}_scale", scale))
    z = _tensor(op_name, f"{name}_zero_point", zp)
    if z.dtype != w.dtype:
        raise TypeError(f"{op_name}: {name}_zero_point has type {_describe(z.dtype)}, expected {_describe(w.dtype)}")
    out = []
    for what, v in (("scale", s), ("zero_point", z)):
        if v.shape in ((D,), (D, 1)):
            out.append(v.reshape(D, 1))
        elif v.shape == (D, G):
            out.append(v)
        else:
            raise ValueError(f"{op_name}: {name}_{what} must have shape [{D}] or [{D}, {G}], got {list(v.shape)}")
    s2, z2 = out
    ops = [q._IntB(w[d], z2[d] if z2.shape[1] > 1 else z2[d].reshape(())).freeze() for d in range(D)]
    scales = [s2[d].reshape(()) if s2.shape[1] == 1 else np.ascontiguousarray(s2[d]) for d in range(D)]
    return ops, scales


def _quantized_product(a: np.ndarray, bi: q._IntB, b_scale: np.ndarray) -> np.ndarray:
    """a @ W for float ``a`` through dynamic uint8 quantization of ``a`` and the int8 weight, in float32."""
    af, sa, _, lo, hi = _dynamic_quantize_u8(a)
    y = q._exact_matmul(af, max(-lo, hi), bi, lo)
    return _scale_and_bias("DynamicQuantizeLSTM", y, sa * b_scale, None)


@op_factory("DynamicQuantizeLSTM", 1, domain=MS)
def dynamic_quantize_lstm(ctx: KernelContext):
    """LSTM whose W ([D, input, 4H]) and R ([D, H, 4H]) are 8-bit with per-direction or per-gate-column
    scales and zero points. Like onnxruntime, each product quantizes its float operand dynamically to
    uint8 (X once for all steps, the hidden state at every step), multiplies exactly and scales back;
    the gates, peepholes, clip and activations are LSTM's (iofc order)."""
    from onnxrt.ops.rnn import _Common, lstm_step

    name = "DynamicQuantizeLSTM"
    c = _Common(ctx, name, 4, 3, ["Sigmoid", "Tanh", "Tanh"])
    input_forget = bool(ctx.attrs.get("input_forget", 0))
    consts = list(ctx.const_inputs) + [None] * 12
    prepared: dict[str, tuple] = {}

    def weights(key, idx, args, D, rows, G):
        w, s, z = args[idx], args[8 + 2 * (idx - 1)], args[9 + 2 * (idx - 1)]
        const = all(v is consts[i] and consts[i] is not None
                    for v, i in ((w, idx), (s, 8 + 2 * (idx - 1)), (z, 9 + 2 * (idx - 1))))
        if const and key in prepared:
            return prepared[key]
        got = _lstm_weight(name, key, w, s, z, D, rows, G)
        if const:
            prepared[key] = got
        return got

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, W_scale=None,
            W_zero_point=None, R_scale=None, R_zero_point=None):
        args = [X, W, R, B, sequence_lens, initial_h, initial_c, P, W_scale, W_zero_point, R_scale, R_zero_point]
        _tensor(name, "X", X)
        if X.dtype != _F32 or X.ndim != 3:
            raise TypeError(f"{name}: X must be a 3-D float tensor, got {_describe(X.dtype)} shape {list(X.shape)}")
        seq, batch, input_size = X.shape
        _tensor(name, "R", R)
        D = c.num_dir
        H = R.shape[1] if R.ndim == 3 else 0
        if c.hidden_size is not None and c.hidden_size != H:
            raise ValueError(f"{name}: hidden_size={c.hidden_size} but R has shape {list(R.shape)}")
        G = 4 * H
        w_ops, w_scales = weights("W", 1, args, D, input_size, G)
        r_ops, r_scales = weights("R", 2, args, D, H, G)
        if B is not None and B.shape != (D, 2 * G):
            raise ValueError(f"{name}: B must have shape {[D, 2 * G]}, got {list(B.shape)}")
        lens = None
        if sequence_lens is not None:
            lens = np.asarray(sequence_lens).astype(np.int64)
            if lens.shape != (batch,) or (lens.size and (lens.min() < 0 or lens.max() > seq)):
                raise ValueError(f"{name}: sequence_lens must have shape [{batch}] with values in [0, {seq}]")
            if np.all(lens == seq):
                lens = None
        if lens is None:
            order = active = None
        else:
            t_ = np.arange(seq).reshape(seq, 1)
            active = t_ < lens.reshape(1, batch)
            order = np.where(active, lens.reshape(1, batch) - 1 - t_, t_)
        cols = np.arange(batch).reshape(1, batch)
        # the input projection for every step, per direction: (D, seq, batch, 4H)
        x2 = X.reshape(seq * batch, input_size)
        xw = np.empty((D, seq, batch, G), _F32)
        for d in range(D):
            xw[d] = _quantized_product(x2, w_ops[d], w_scales[d]).reshape(seq, batch, G)
            if c.reverse_flags[d]:
                xw[d] = xw[d][::-1] if order is None else xw[d][order, cols]
        if B is not None:
            b = q._as_f32(B).reshape(D, 2, G)
            xw += (b[:, 0] + b[:, 1])[:, None, None, :]
        h = c._state(initial_h, "initial_h", D, batch, H, _F32)
        cell = c._state(initial_c, "initial_c", D, batch, H, _F32)
        peep = None
        if P is not None:
            if P.shape != (D, 3 * H):
                raise ValueError(f"{name}: P must have shape {[D, 3 * H]}, got {list(P.shape)}")
            peep = q._as_f32(P).reshape(D, 3, 1, H)
        f = c.bound_acts(_F32)
        ys = np.zeros((D, seq, batch, H), _F32)
        for t in range(seq):
            g = np.stack([_quantized_product(h[d], r_ops[d], r_scales[d]) for d in range(D)])  # (D, batch, 4H)
            g += xw[:, t]
            h, cell = lstm_step(g, h, cell, ys, t, active, f, c, input_forget, peep)
        return c.finish(dict(dtype=_F32, order=order, cols=cols), ys, [h, cell])

    return run
