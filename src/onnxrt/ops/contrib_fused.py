"""com.microsoft fused ops that onnxrt's graph optimizer emits, with onnxruntime's CPU semantics.

FusedConv / FusedGemm (Conv / Gemm followed by an activation), FusedMatMul (MatMul with transposes and
a scale), Gelu, FastGelu, BiasGelu, QuickGelu, SkipLayerNormalization, SkipSimplifiedLayerNormalization,
and SimplifiedLayerNormalization (which onnxruntime registers in the ai.onnx domain, opset 1).

Conv and Gemm reuse the standard kernels (so weight preparation and fast paths are shared); the
activation then runs in place on the freshly computed output.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from onnxrt.ops import registry
from onnxrt.ops._common import leaky_relu_into, relu_into
from onnxrt.ops.activation import _gelu_erf_f32, _sigmoid_inplace
from onnxrt.ops.elementwise import erf_array
from onnxrt.ops.normalization import _standardize_new, _standardize_rows, inverse_rms
from onnxrt.ops.registry import KernelContext, op, op_factory

MS = "com.microsoft"
_ACTIVATION_ATTRS = ("activation", "activation_params", "activation_alpha", "activation_beta", "activation_gamma")


def _check_float(X: Any, op_name: str, input_name: str) -> None:
    if not isinstance(X, np.ndarray) or X.dtype.kind != "f":
        got = X.dtype if isinstance(X, np.ndarray) else type(X).__name__
        raise TypeError(f"{op_name}: input '{input_name}' must be a float tensor, got {got}")


def _identity(y: np.ndarray) -> np.ndarray:
    return y


def _keeping_zero(activation: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``activation``, marked as mapping 0 to 0 (``keeps_zero``): a conv may then run it over zeros
    it wants to stay zeros (a zero border around its output)."""
    activation.keeps_zero = True  # type: ignore[attr-defined]
    return activation


_keeping_zero(_identity)


def inplace_activation(name: str, params: list[float]) -> Callable[[np.ndarray], np.ndarray]:
    """An in-place activation on an array the kernel owns (onnxruntime's MLAS activation kinds):
    FusedConv/FusedGemm, the NCHWc Conv and the planner's elementwise chains use this one table."""

    def need(n: int) -> list[float]:
        if len(params) < n:
            raise ValueError(f"activation '{name}' needs {n} parameter(s), got {list(params)}")
        return params

    if name in ("", "Identity"):
        return _identity
    if name == "Relu":
        return _keeping_zero(lambda y: relu_into(y, y))
    if name == "Tanh":
        return _keeping_zero(lambda y: np.tanh(y, out=y))
    if name == "Sigmoid":
        return _sigmoid_inplace
    if name == "LeakyRelu":
        (alpha,) = need(1)[:1]
        if alpha == 1.0:  # how the optimizer spells "no activation" where onnxruntime requires one
            return _identity

        return _keeping_zero(lambda y: leaky_relu_into(y, alpha, y))
    if name == "Clip":
        lo, hi = need(2)[:2]

        def clip(y: np.ndarray) -> np.ndarray:
            return np.clip(y, y.dtype.type(lo), y.dtype.type(hi), out=y)

        return _keeping_zero(clip) if lo <= 0 <= hi else clip
    if name == "HardSigmoid":
        alpha, beta = need(2)[:2]

        def hard_sigmoid(y: np.ndarray) -> np.ndarray:
            y *= y.dtype.type(alpha)
            y += y.dtype.type(beta)
            return np.clip(y, 0, 1, out=y)

        return hard_sigmoid
    raise ValueError(f"unsupported activation '{name}' (expected Relu, Tanh, Sigmoid, LeakyRelu, Clip or HardSigmoid)")


def _owned(y: Any, dtype: np.dtype) -> np.ndarray:
    y = np.asarray(y)
    if not y.flags.writeable or y.base is not None:
        y = np.array(y, dtype=dtype)  # the inner kernel may return a view of its input
    return y


def _inner_kernel(ctx: KernelContext, op_type: str, opset: int, defaults: dict[str, Any]) -> Callable[..., Any]:
    attrs = {**defaults, **{k: v for k, v in ctx.attrs.items() if k not in _ACTIVATION_ATTRS}}
    found = registry.lookup("", op_type, opset)
    if found is None:
        raise NotImplementedError(f"{ctx.describe()}: no {op_type} kernel to build on")
    since, factory = found
    return factory(dataclasses.replace(ctx, op_type=op_type, domain="", opset=opset, since_version=since, attrs=attrs))


@op_factory("FusedConv", 1, domain=MS)
def fused_conv(ctx: KernelContext):
    act = inplace_activation(str(ctx.attrs.get("activation", "")), list(ctx.attrs.get("activation_params", []) or []))
    from onnxrt.ops.conv import conv_kernel

    # the residual Z (added before the activation, as onnxruntime does) and the activation are applied
    # on each GEMM output block while it is in cache
    return conv_kernel(ctx, None if act is _identity else act)


@op_factory("FusedGemm", 1, domain=MS)
def fused_gemm(ctx: KernelContext):
    params = [float(ctx.attrs.get("activation_alpha", 0.01 if ctx.attrs.get("activation") == "LeakyRelu" else 0.2)),
              float(ctx.attrs.get("activation_beta", 0.5))]
    act = inplace_activation(str(ctx.attrs.get("activation", "")), params)
    gemm = _inner_kernel(ctx, "Gemm", 13, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})

    def run(A, B, C=None):
        _check_float(A, "FusedGemm", "A")
        return act(_owned(gemm(A, B, C), A.dtype))

    return run


@op("FusedMatMul", 1, domain=MS)
def fused_matmul(A, B, *, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
    _check_float(A, "FusedMatMul", "A")
    _check_float(B, "FusedMatMul", "B")
    if transBatchA or transBatchB:
        raise ValueError("FusedMatMul: transBatchA/transBatchB are not supported by onnxrt")
    if transA:
        A = A.T if A.ndim == 2 else np.swapaxes(A, -1, -2)
    if transB:
        B = B.T if B.ndim == 2 else np.swapaxes(B, -1, -2)
    y = np.asarray(np.matmul(A, B))
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    return y


def _compute_dtype(X: np.ndarray) -> np.dtype:
    return X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _gelu(x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x * 0.5 * (1 + erf(x / sqrt 2)) of x (+ bias along the last axis), float32 or float64; x is
    owned when no bias is given."""
    if x.dtype == np.float32 and x.ndim and x.size:
        with np.errstate(under="ignore", over="ignore"):
            return _gelu_erf_f32(x, bias)
    if bias is not None:
        x = x + bias
    t = erf_array(x * x.dtype.type(1 / math.sqrt(2.0)))
    t += 1
    t *= x
    t *= x.dtype.type(0.5)
    return t


@op("Gelu", 1, domain=MS)
def gelu(X):
    _check_float(X, "Gelu", "X")
    cdt = _compute_dtype(X)
    return _gelu(X.astype(cdt, copy=False)).astype(X.dtype, copy=False)


@op("BiasGelu", 1, domain=MS)
def bias_gelu(A, B):
    _check_float(A, "BiasGelu", "A")
    if B.ndim != 1 or A.shape[-1:] != B.shape:
        raise ValueError(f"BiasGelu: bias must be 1-D matching the last dim of A {A.shape}, got {B.shape}")
    cdt = _compute_dtype(A)
    return _gelu(A.astype(cdt, copy=False), B.astype(cdt, copy=False)).astype(A.dtype, copy=False)


def _fast_gelu_f32(X: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """FastGelu in float32 over blocks of whole rows that stay in cache: 9 passes per block."""
    f = np.float32
    out = X.astype(f, copy=True)
    L = out.shape[-1]
    x2 = out.reshape(-1, L)
    rows = max(1, 32768 // max(L, 1))
    tmp = np.empty((min(rows, x2.shape[0]), L), f)
    c1, c2 = f(0.044715 * math.sqrt(2.0 / math.pi)), f(math.sqrt(2.0 / math.pi))
    for lo in range(0, x2.shape[0], rows):
        x = x2[lo:lo + rows]
        t = tmp[: x.shape[0]]
        if bias is not None:
            x += bias
        np.multiply(x, x, out=t)  # tanh(x (c2 + c1 x^2))
        t *= c1
        t += c2
        t *= x
        np.tanh(t, out=t)
        t += f(1)
        t *= f(0.5)
        x *= t
    return out


@op("FastGelu", 1, domain=MS)
def fast_gelu(X, bias=None):
    _check_float(X, "FastGelu", "X")
    cdt = _compute_dtype(X)
    if cdt == np.float32 and X.ndim and (bias is None or bias.shape == X.shape[-1:]):
        return _fast_gelu_f32(X, None if bias is None else bias.astype(cdt, copy=False)).astype(X.dtype, copy=False)
    x = X.astype(cdt, copy=True)
    if bias is not None:
        x += bias.astype(cdt, copy=False)
    t = x * x
    t *= cdt.type(0.044715)
    t += 1
    t *= x
    t *= cdt.type(math.sqrt(2.0 / math.pi))
    np.tanh(t, out=t)
    t += 1
    t *= x
    t *= cdt.type(0.5)
    return t.astype(X.dtype, copy=False)


@op("QuickGelu", 1, domain=MS)
def quick_gelu(X, *, alpha=1.702):
    _check_float(X, "QuickGelu", "X")
    cdt = _compute_dtype(X)
    x = X.astype(cdt, copy=False)
    s = x * cdt.type(alpha)
    _sigmoid_inplace(s)
    s *= x
    return s.astype(X.dtype, copy=False)


def _skip_sum(op_name: str, X, skip, bias) -> np.ndarray:
    """input + skip (+ bias) in a new C-contiguous array of the compute dtype."""
    _check_float(X, op_name, "input")
    if X.ndim not in (2, 3):
        raise ValueError(f"{op_name}: input must be 2-D or 3-D, got shape {X.shape}")
    if skip.shape[-1] != X.shape[-1]:
        raise ValueError(f"{op_name}: skip's last dim {skip.shape} does not match input {X.shape}")
    cdt = _compute_dtype(X)
    s = np.empty(X.shape, dtype=cdt)
    np.add(X, skip, out=s, dtype=cdt, casting="unsafe")  # skip may be [S,H] or [1,S,H]: broadcast like onnxruntime
    if bias is not None:
        s += bias.astype(cdt, copy=False)
    return s


def _standardized(s: np.ndarray, epsilon: float, simplified: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """((s - mean) * inv_std_dev per row of the last axis, in a new array; the row means (zeros when
    ``simplified``: RMS normalization); the inverse standard deviations), the statistics as
    (rows, 1) columns."""
    rows = s.reshape(-1, s.shape[-1])
    if simplified:
        inv = inverse_rms(rows, epsilon)
        mean = np.zeros(rows.shape[0], dtype=rows.dtype)
        y = np.multiply(rows, inv[:, None])
    elif rows.shape[1]:
        mean, inv, y = _standardize_new(rows, epsilon)
    else:
        y = rows.copy()
        mean, inv = _standardize_rows(y, epsilon)
    return y.reshape(s.shape), mean[:, None], inv[:, None]


def _stat_shape(X: np.ndarray) -> tuple[int, ...]:
    return X.shape[:-1] + (1,)


def _skip_outputs(input, s: np.ndarray, y: np.ndarray, mean: np.ndarray, inv: np.ndarray) -> tuple:  # noqa: A002
    f32 = np.float32
    return (y.astype(input.dtype, copy=False), mean.reshape(_stat_shape(input)).astype(f32),
            inv.reshape(_stat_shape(input)).astype(f32), s.astype(input.dtype, copy=False))


@op("SkipLayerNormalization", 1, domain=MS)
def skip_layer_normalization(input, skip, gamma, beta=None, bias=None, *, epsilon=1e-12):  # noqa: A002
    s = _skip_sum("SkipLayerNormalization", input, skip, bias)
    y, mean, inv = _standardized(s, epsilon, simplified=False)
    y *= gamma.astype(y.dtype, copy=False)
    if beta is not None:
        y += beta.astype(y.dtype, copy=False)
    return _skip_outputs(input, s, y, mean, inv)


@op("SkipSimplifiedLayerNormalization", 1, domain=MS)
def skip_simplified_layer_normalization(input, skip, gamma, bias=None, *, epsilon=1e-12):  # noqa: A002
    s = _skip_sum("SkipSimplifiedLayerNormalization", input, skip, bias)
    y, mean, inv = _standardized(s, epsilon, simplified=True)
    y *= gamma.astype(y.dtype, copy=False)
    return _skip_outputs(input, s, y, mean, inv)


@op("SimplifiedLayerNormalization", 1)
def simplified_layer_normalization(X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    _check_float(X, "SimplifiedLayerNormalization", "X")
    a = axis + X.ndim if axis < 0 else axis
    if not 0 <= a < X.ndim:
        raise ValueError(f"SimplifiedLayerNormalization: axis {axis} out of range for rank {X.ndim}")
    cdt = np.dtype(np.float64) if X.dtype == np.float64 else np.dtype(np.float32)
    rows = X.astype(cdt).reshape(math.prod(X.shape[:a]), -1)
    inv = inverse_rms(rows, epsilon)[:, None]
    y = (rows * inv).reshape(X.shape) * scale.astype(cdt, copy=False)
    stat_shape = X.shape[:a] + (1,) * (X.ndim - a)
    return y.astype(X.dtype, copy=False), inv.reshape(stat_shape).astype(cdt)
