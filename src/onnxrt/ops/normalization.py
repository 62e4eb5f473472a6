"""BatchNormalization, InstanceNormalization, LayerNormalization, GroupNormalization,
RMSNormalization, LRN, LpNormalization, MeanVarianceNormalization.

Statistics are computed on a fresh C-contiguous copy of the input in the compute dtype (float32 for
float16 and the ml_dtypes floats, the input's own type for float32/float64), normalised in place, then
scaled, shifted and cast to the output dtype once.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from onnxrt.ops._common import normalize_axis
from onnxrt.ops.registry import KernelContext, op, op_factory


def _cdt(dtype: np.dtype) -> np.dtype:
    if dtype == np.float32 or dtype == np.float64:
        return dtype
    return np.dtype(np.float32)


def _check_float(x, op_name: str, input_name: str) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op_name}: input '{input_name}' must be a tensor, got {type(x).__name__}")
    if x.dtype.kind in "biuOUS" or (x.dtype.kind == "V" and "int" in x.dtype.name):
        raise TypeError(f"{op_name}: input '{input_name}' must be a float tensor, got dtype {x.dtype}")


def _fresh_rows(X: np.ndarray, rows: int, cols: int, cdt: np.dtype) -> np.ndarray:
    """A new C-contiguous (rows, cols) copy of X in ``cdt``."""
    return np.array(X, dtype=cdt, order="C", copy=True).reshape(rows, cols)


def _standardize_rows(x: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """In place: x <- (x - mean) / sqrt(var + eps) per row. Returns (mean, inv_std_dev), shape (rows,)."""
    n = x.shape[1]
    if n == 0:
        z = np.zeros(x.shape[0], dtype=x.dtype)
        return z, np.full(x.shape[0], 1.0 / math.sqrt(epsilon) if epsilon > 0 else np.inf, dtype=x.dtype)
    mean = x.mean(axis=1)
    x -= mean[:, None]
    var = np.einsum("ij,ij->i", x, x)
    var /= x.dtype.type(n)
    var += x.dtype.type(epsilon)
    inv = np.sqrt(var, out=var)
    np.reciprocal(inv, out=inv)
    x *= inv[:, None]
    return mean, inv


def inverse_rms(rows: np.ndarray, epsilon: float) -> np.ndarray:
    """1 / sqrt(mean(x^2) + epsilon) of each row of a 2-D float array, shape (rows,): the sum of
    squares as one einsum pass (RMS normalizations)."""
    n = rows.shape[1]
    t = rows.dtype.type
    if n:
        inv = np.einsum("ij,ij->i", rows, rows)
        inv *= t(1.0 / n)
    else:
        inv = np.zeros(rows.shape[0], dtype=rows.dtype)
    inv += t(epsilon)
    np.sqrt(inv, out=inv)
    return np.reciprocal(inv, out=inv)


def _standardize_new(X: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, inv_std_dev, (X - mean) * inv_std_dev) per row of a 2-D float array, the last in a new
    array: row means as a matrix-vector product (BLAS), so three passes over memory in all."""
    n = X.shape[1]
    t = X.dtype.type
    mean = X @ np.full(n, 1.0 / n, dtype=X.dtype)
    x = np.subtract(X, mean[:, None])
    var = np.einsum("ij,ij->i", x, x)
    var *= t(1.0 / n)
    var += t(epsilon)
    inv = np.sqrt(var, out=var)
    np.reciprocal(inv, out=inv)
    x *= inv[:, None]
    return mean, inv, x


def _check_broadcast(p: np.ndarray, shape: tuple[int, ...], op_name: str, input_name: str) -> None:
    try:
        ok = np.broadcast_shapes(p.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{op_name}: input '{input_name}' of shape {p.shape} is not unidirectionally broadcastable "
            f"to X's shape {tuple(shape)}"
        )


def _per_channel(p: np.ndarray, C: int, ndim: int, op_name: str, input_name: str) -> np.ndarray:
    if p.size != C:
        raise ValueError(f"{op_name}: input '{input_name}' must have {C} elements (one per channel), got shape {p.shape}")
    return p.reshape((C,) + (1,) * (ndim - 2))


# -- LayerNormalization / RMSNormalization ------------------------------------------------------------


def _stat_dtype(ctx: KernelContext, index: int) -> np.dtype | None:
    """The dtype shape inference gave an output, if any."""
    dts = ctx.output_dtypes
    if index < len(dts) and dts[index] is not None:
        return np.dtype(dts[index])
    return None


@op_factory("LayerNormalization", 17)
def layer_normalization(ctx: KernelContext):
    axis = int(ctx.attrs.get("axis", -1))
    epsilon = float(ctx.attrs.get("epsilon", 1e-5))
    stash_type = int(ctx.attrs.get("stash_type", 1))
    mean_dt = _stat_dtype(ctx, 1)
    inv_dt = _stat_dtype(ctx, 2)
    want_stats = ctx.num_outputs > 1

    def run(X, Scale, B=None):
        _check_float(X, "LayerNormalization", "X")
        _check_float(Scale, "LayerNormalization", "Scale")
        if X.ndim == 0:
            raise ValueError("LayerNormalization: input 'X' must have rank >= 1, got a scalar")
        a = normalize_axis(axis, X.ndim, "LayerNormalization")
        _check_broadcast(Scale, X.shape, "LayerNormalization", "Scale")
        if B is not None:
            _check_float(B, "LayerNormalization", "B")
            _check_broadcast(B, X.shape, "LayerNormalization", "B")
        rows = math.prod(X.shape[:a])
        cols = math.prod(X.shape[a:])
        cdt = _cdt(X.dtype)
        if cols and X.dtype == cdt and X.flags.c_contiguous:
            mean, inv, x = _standardize_new(X.reshape(rows, cols), epsilon)
        else:
            x = _fresh_rows(X, rows, cols, cdt)
            mean, inv = _standardize_rows(x, epsilon)
        y = x.reshape(X.shape)
        y *= Scale if Scale.dtype == cdt else Scale.astype(cdt)
        if B is not None:
            y += B if B.dtype == cdt else B.astype(cdt)
        Y = y.astype(X.dtype, copy=False)
        if not want_stats:
            return Y
        stat_shape = X.shape[:a] + (1,) * (X.ndim - a)
        default = np.dtype(ml_dtypes.bfloat16) if stash_type == 16 else np.dtype(np.float32)  # U
        m = mean.reshape(stat_shape).astype(mean_dt or default, copy=False)
        s = inv.reshape(stat_shape).astype(inv_dt or default, copy=False)
        return Y, m, s

    return run


@op_factory("RMSNormalization", 23)
def rms_normalization(ctx: KernelContext):
    axis = int(ctx.attrs.get("axis", -1))
    epsilon = float(ctx.attrs.get("epsilon", 1e-5))

    def run(X, scale):
        _check_float(X, "RMSNormalization", "X")
        _check_float(scale, "RMSNormalization", "scale")
        if X.ndim == 0:
            raise ValueError("RMSNormalization: input 'X' must have rank >= 1, got a scalar")
        a = normalize_axis(axis, X.ndim, "RMSNormalization")
        _check_broadcast(scale, X.shape, "RMSNormalization", "scale")
        rows = math.prod(X.shape[:a])
        cols = math.prod(X.shape[a:])
        cdt = _cdt(X.dtype)
        x = _fresh_rows(X, rows, cols, cdt)
        if cols:
            x *= inverse_rms(x, epsilon)[:, None]
        y = x.reshape(X.shape)
        y *= scale if scale.dtype == cdt else scale.astype(cdt)
        return y.astype(scale.dtype, copy=False)

    return run


# -- InstanceNormalization / GroupNormalization ------------------------------------------------------


@op("InstanceNormalization", 1, 6)
def instance_normalization(input, scale, B, *, epsilon=1e-5):  # noqa: A002 - ONNX input name
    X = input
    _check_float(X, "InstanceNormalization", "input")
    if X.ndim < 2:
        raise ValueError(f"InstanceNormalization: input 'input' must be (N x C x ...), got shape {X.shape}")
    N, C = X.shape[:2]
    cdt = _cdt(X.dtype)
    x = _fresh_rows(X, N * C, math.prod(X.shape[2:]), cdt)
    _standardize_rows(x, epsilon)
    y = x.reshape(X.shape)
    y *= _per_channel(scale, C, X.ndim, "InstanceNormalization", "scale").astype(cdt, copy=False)
    y += _per_channel(B, C, X.ndim, "InstanceNormalization", "B").astype(cdt, copy=False)
    return y.astype(X.dtype, copy=False)


@op_factory("GroupNormalization", 18, 21)
def group_normalization(ctx: KernelContext):
    G = int(ctx.attrs["num_groups"])
    epsilon = float(ctx.attrs.get("epsilon", 1e-5))
    per_group = ctx.since_version < 21  # opset 18: scale and bias hold one value per group

    def run(X, scale, bias):
        _check_float(X, "GroupNormalization", "X")
        if X.ndim < 2:
            raise ValueError(f"GroupNormalization: input 'X' must be (N x C x ...), got shape {X.shape}")
        N, C = X.shape[:2]
        if G <= 0 or C % G:
            raise ValueError(f"GroupNormalization: num_groups {G} must divide the channel count {C}")
        cdt = _cdt(X.dtype)
        x = _fresh_rows(X, N * G, (C // G) * math.prod(X.shape[2:]), cdt)
        _standardize_rows(x, epsilon)
        y = x.reshape(X.shape)
        params = []
        for p, name in ((scale, "scale"), (bias, "bias")):
            _check_float(p, "GroupNormalization", name)
            want = G if per_group else C
            if p.size != want:
                raise ValueError(
                    f"GroupNormalization: input '{name}' must have {want} elements "
                    f"({'one per group' if per_group else 'one per channel'}), got shape {p.shape}"
                )
            p = p.reshape(-1).astype(cdt, copy=False)
            if per_group:
                p = np.repeat(p, C // G)
            params.append(p.reshape((C,) + (1,) * (X.ndim - 2)))
        y *= params[0]
        y += params[1]
        return y.astype(X.dtype, copy=False)

    return run


# -- BatchNormalization ------------------------------------------------------------------------------


@op_factory("BatchNormalization", 1, 6, 7, 9, 14)
def batch_normalization(ctx: KernelContext):
    since = ctx.since_version
    epsilon = float(ctx.attrs.get("epsilon", 1e-5))
    momentum = float(ctx.attrs.get("momentum", 0.9))
    spatial = bool(ctx.attrs.get("spatial", 1)) if since < 9 else True
    if since >= 14:
        training = bool(ctx.attrs.get("training_mode", 0))
    elif since < 7:
        training = ctx.num_outputs > 1 and not ctx.attrs.get("is_test", 0)
    else:
        training = ctx.num_outputs > 1

    def param(p, X, name):
        _check_float(p, "BatchNormalization", name)
        if spatial or X.ndim < 2:
            C = X.shape[1] if X.ndim >= 2 else X.shape[0]
            if p.size != C:
                raise ValueError(f"BatchNormalization: input '{name}' must have {C} elements, got shape {p.shape}")
            return p.reshape((C,) + (1,) * max(X.ndim - 2, 0))
        if p.size != math.prod(X.shape[1:]):
            raise ValueError(
                f"BatchNormalization: input '{name}' (non-spatial) must have shape {X.shape[1:]}, got {p.shape}"
            )
        return p.reshape(X.shape[1:])

    def affine(X, scale, B, mean, var, cdt):
        """Y = X * a + b with a = scale / sqrt(var + eps), b = B - mean * a."""
        a = param(scale, X, "scale").astype(cdt) / np.sqrt(param(var, X, "input_var").astype(cdt) + cdt.type(epsilon))
        b = param(B, X, "B").astype(cdt) - param(mean, X, "input_mean").astype(cdt) * a
        return a, b

    const = list(ctx.const_inputs) + [None] * 5
    pre = None
    if not training and all(c is not None for c in const[1:5]):
        pre = {}  # per (shape, dtype) of X: the folded (a, b)

    def folded(X, scale, B, input_mean, input_var, cdt):
        key = (X.ndim, X.shape[1:] if not spatial else None, cdt)
        ab = pre.get(key) if pre is not None else None
        if ab is None:
            ab = affine(X, scale, B, input_mean, input_var, cdt)
            if pre is not None:
                pre[key] = ab
        return ab

    def into_x(X, scale, B, input_mean, input_var):  # the plan's in-place variant: X dies here
        if type(X) is np.ndarray and X.dtype in (np.float32, np.float64) and X.ndim >= 2:
            a, b = folded(X, scale, B, input_mean, input_var, X.dtype)
            np.multiply(X, a, out=X)
            X += b
            return X
        return run(X, scale, B, input_mean, input_var)

    def run(X, scale, B, input_mean, input_var):
        _check_float(X, "BatchNormalization", "X")
        if X.ndim < 1:
            raise ValueError("BatchNormalization: input 'X' must have rank >= 1")
        cdt = _cdt(X.dtype)
        if not training:
            a, b = folded(X, scale, B, input_mean, input_var, cdt)
            y = np.multiply(X, a, dtype=cdt)
            y += b
            return y.astype(X.dtype, copy=False)
        # training: statistics of this batch over every axis but the channel one
        axes = (0,) + tuple(range(2, X.ndim)) if spatial else (0,)
        xc = X.astype(cdt)
        cur_mean = xc.mean(axis=axes, keepdims=True)
        xc -= cur_mean
        cur_var = np.mean(np.square(xc), axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(cur_var + cdt.type(epsilon))
        xc *= inv * param(scale, X, "scale").astype(cdt)
        xc += param(B, X, "B").astype(cdt)
        Y = xc.astype(X.dtype, copy=False)
        m_dt = input_mean.dtype
        v_dt = input_var.dtype
        cm = cur_mean.reshape(input_mean.shape)
        cv = cur_var.reshape(input_var.shape)
        mom = cdt.type(momentum)
        run_mean = (input_mean.astype(cdt) * mom + cm * (cdt.type(1) - mom)).astype(m_dt, copy=False)
        run_var = (input_var.astype(cdt) * mom + cv * (cdt.type(1) - mom)).astype(v_dt, copy=False)
        if since >= 14:
            return Y, run_mean, run_var
        return Y, run_mean, run_var, cm.astype(m_dt, copy=False), cv.astype(v_dt, copy=False)

    if not training:
        run.inplace = {0: into_x}
    return run


# -- LRN / LpNormalization / MeanVarianceNormalization ------------------------------------------------


@op_factory("LRN", 1, 13)
def lrn(ctx: KernelContext):
    size = int(ctx.attrs["size"])
    alpha = float(ctx.attrs.get("alpha", 1e-4))
    beta = float(ctx.attrs.get("beta", 0.75))
    bias = float(ctx.attrs.get("bias", 1.0))
    if size < 1:
        raise ValueError(f"LRN: attribute 'size' must be >= 1, got {size}")
    before = (size - 1) // 2
    after = size - 1 - before

    def run(X):
        _check_float(X, "LRN", "X")
        if X.ndim < 2:
            raise ValueError(f"LRN: input 'X' must be (N x C x ...), got shape {X.shape}")
        cdt = _cdt(X.dtype)
        C = X.shape[1]
        sq = np.square(X, dtype=cdt)
        pad = [(0, 0)] * X.ndim
        pad[1] = (before, after)
        sq = np.pad(sq, pad)
        acc = np.zeros((X.shape[0], C) + X.shape[2:], dtype=cdt)
        for k in range(size):  # one slice per window offset, not per element
            acc += sq[:, k : k + C]
        acc *= cdt.type(alpha / size)
        acc += cdt.type(bias)
        np.power(acc, cdt.type(beta), out=acc)
        np.divide(X, acc, out=acc, dtype=cdt)
        return acc.astype(X.dtype, copy=False)

    return run


@op("LpNormalization", 1)
def lp_normalization(input, *, axis=-1, p=2):  # noqa: A002 - ONNX input name
    X = input
    _check_float(X, "LpNormalization", "input")
    if p not in (1, 2):
        raise ValueError(f"LpNormalization: attribute 'p' must be 1 or 2, got {p}")
    if X.ndim == 0:
        raise ValueError("LpNormalization: input 'input' must have rank >= 1")
    a = normalize_axis(axis, X.ndim, "LpNormalization")
    cdt = _cdt(X.dtype)
    x = X.astype(cdt) if X.dtype != cdt else X
    if p == 1:
        norm = np.sum(np.abs(x), axis=a, keepdims=True)
    else:
        norm = np.sqrt(np.sum(np.square(x), axis=a, keepdims=True))
    out = np.zeros(X.shape, dtype=cdt)
    np.divide(x, norm, out=out, where=norm != 0)  # all-zero slices stay zero
    return out.astype(X.dtype, copy=False)


@op("MeanVarianceNormalization", 9)
def mean_variance_normalization(X, *, axes=(0, 2, 3)):
    _check_float(X, "MeanVarianceNormalization", "X")
    ax = tuple(normalize_axis(int(a), X.ndim, "MeanVarianceNormalization") for a in axes)
    if len(set(ax)) != len(ax):
        raise ValueError(f"MeanVarianceNormalization: 'axes' {list(axes)} contains duplicates")
    cdt = _cdt(X.dtype)
    x = np.array(X, dtype=cdt, copy=True)
    x -= x.mean(axis=ax, keepdims=True)
    std = np.sqrt(np.mean(np.square(x), axis=ax, keepdims=True))
    std += cdt.type(1e-9)
    x /= std
    return x.astype(X.dtype, copy=False)
