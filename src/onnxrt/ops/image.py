"""Image ops: Resize, Upsample, GridSample, AffineGrid, RoiAlign, NonMaxSuppression.

Resize is separable: each resized axis gets a (out, taps) table of source indices and weights,
applied with one gather and a weighted sum over the taps.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from onnxrt.ops.registry import KernelContext, op, op_factory

# ---------------------------------------------------------------------------------------------
# Resize


def _work_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, roi: tuple[float, float] | None):
    """Map output positions to (float64) source coordinates; also an extrapolation mask or None."""
    y = np.arange(out_len, dtype=np.float64)
    out_f = scale * in_len  # the (possibly fractional) output length the transforms use
    extra = None
    if mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        adjustment = out_len / out_f
        x = (in_len / 2.0) * (1 - adjustment) + (y + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        x = np.full(out_len, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    elif mode == "align_corners":
        x = np.zeros(out_len) if out_f == 1 else y * (in_len - 1) / (out_f - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_half_pixel_for_nn":
        x = (y + 0.5) / scale
    elif mode == "tf_crop_and_resize":
        start, end = roi if roi is not None else (0.0, 1.0)
        if out_f == 1:
            x = np.full(out_len, (end - start) * (in_len - 1) / 2.0)
        else:
            x = y * (end - start) * (in_len - 1) / (out_f - 1)
        x = x + start * (in_len - 1)
        extra = (x < 0) | (x > in_len - 1)
    else:
        raise ValueError(f"Resize: unknown coordinate_transformation_mode '{mode}'")
    return x, extra


def _cubic_kernel(d: np.ndarray, A: float) -> np.ndarray:
    d = np.abs(d)
    d2 = d * d
    d3 = d2 * d
    near = (A + 2) * d3 - (A + 3) * d2 + 1
    far = A * d3 - 5 * A * d2 + 8 * A * d - 4 * A
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _axis_table(x: np.ndarray, in_len: int, interp: str, scale: float, nearest_mode: str, cubic_a: float,
                exclude_outside: bool, antialias: bool):
    """(indices (out, T) int, weights (out, T) float64 or None for nearest)."""
    if interp == "nearest":
        fl = np.floor(x)
        frac = x - fl
        if nearest_mode == "round_prefer_floor":
            up = frac > 0.5
        elif nearest_mode == "round_prefer_ceil":
            up = frac >= 0.5
        elif nearest_mode == "floor":
            up = np.zeros_like(frac, dtype=bool)
        elif nearest_mode == "ceil":
            up = frac > 0
        elif nearest_mode == "simple":  # Resize-10 / Upsample: truncate, ceil when downsampling
            up = (frac > 0) if scale < 1 else np.zeros_like(frac, dtype=bool)
        else:
            raise ValueError(f"Resize: unknown nearest_mode '{nearest_mode}'")
        idx = (fl + up).astype(np.int64)
        return np.clip(idx, 0, in_len - 1)[:, None], None
    s = min(scale, 1.0) if antialias else 1.0
    if interp == "linear":
        start = int(math.floor(-1 / s) + 1)
        stop = 2 - start
    elif interp == "cubic":
        start = int(math.floor(-2 / s) + 1)
        stop = 2 - start
    else:
        raise ValueError(f"Resize: unknown mode '{interp}'")
    base = np.floor(x)
    taps = base[:, None] + np.arange(start, stop)[None, :]
    d = (taps - x[:, None]) * s
    if interp == "linear":
        w = np.clip(1 - np.abs(d), 0, 1)
    else:
        w = _cubic_kernel(d, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    taps = taps.astype(np.int64)
    if exclude_outside:
        w = np.where((taps < 0) | (taps >= in_len), 0.0, w)
        tot = w.sum(axis=1, keepdims=True)
        w = w / np.where(tot == 0, 1.0, tot)
    return np.clip(taps, 0, in_len - 1), w


def _resize_axis(data: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    if w is None:
        return np.take(data, idx[:, 0], axis=axis)
    g = np.take(data, idx, axis=axis)  # (..., out, T, ...)
    wshape = (1,) * axis + w.shape + (1,) * (data.ndim - axis - 1)
    g *= w.astype(data.dtype).reshape(wshape)
    return g.sum(axis=axis + 1)


def _integer_repeats(shape: tuple, tables: list) -> list[int] | None:
    """Per axis, the whole factor k when every changed axis reads input i // k at output i (and
    nothing falls outside the input), else None."""
    reps = [1] * len(shape)
    for a, out_len, idx, w, extra in tables:
        k, rem = divmod(out_len, shape[a]) if shape[a] else (0, 1)
        if w is not None or rem or k < 1 or (extra is not None and extra.any()):
            return None
        if not np.array_equal(idx[:, 0], np.arange(out_len) // k):
            return None
        reps[a] = k
    return reps


def _repeat_axes(x: np.ndarray, reps: list[int]) -> np.ndarray:
    """x with each axis a repeated reps[a] times element by element: np.repeat along the last axis,
    then one broadcast copy for the others, whose inner loop runs over whole rows (a broadcast
    copy with the last axis repeated too runs its inner loop over k elements: 2-3x slower)."""
    if reps[-1] > 1:
        x = np.repeat(x, reps[-1], axis=-1)
    reps = list(reps[:-1]) + [1]
    if all(k == 1 for k in reps):
        return x
    out = np.empty(tuple(d * k for d, k in zip(x.shape, reps)), dtype=x.dtype)
    np.copyto(out.reshape(tuple(v for d, k in zip(x.shape, reps) for v in (d, k))),
              x.reshape(tuple(v for d in x.shape for v in (d, 1))))
    return out


def _resize(op_name: str, X: np.ndarray, roi, scales, sizes, *, mode: str, coord_mode: str, nearest_mode: str,
            cubic_a: float, exclude_outside: bool, extrapolation_value: float, antialias: bool, axes,
            keep_policy: str) -> np.ndarray:
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{op_name}: input 'X' must be a tensor, got {type(X).__name__}")
    r = X.ndim
    axes = list(range(r)) if not axes else [a + r if a < 0 else a for a in axes]
    if any(not 0 <= a < r for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"{op_name}: attribute axes={axes} is invalid for an input of rank {r}")
    na = len(axes)
    scales = None if scales is None or np.size(scales) == 0 else np.asarray(scales, dtype=np.float64).reshape(-1)
    sizes = None if sizes is None or np.size(sizes) == 0 else [int(v) for v in np.asarray(sizes).reshape(-1)]
    if (scales is None) == (sizes is None):
        raise ValueError(f"{op_name}: exactly one of 'scales' and 'sizes' must be given (non-empty)")
    full_scale = [1.0] * r
    out_shape = list(X.shape)
    if scales is not None:
        if scales.size != na:
            raise ValueError(f"{op_name}: input 'scales' has {scales.size} values, expected {na}")
        if np.any(scales <= 0):
            raise ValueError(f"{op_name}: input 'scales' must be positive, got {scales.tolist()}")
        for a, s in zip(axes, scales):
            full_scale[a] = float(s)
            out_shape[a] = int(math.floor(float(s) * X.shape[a]))
    else:
        if len(sizes) != na:
            raise ValueError(f"{op_name}: input 'sizes' has {len(sizes)} values, expected {na}")
        if any(s < 0 for s in sizes):
            raise ValueError(f"{op_name}: input 'sizes' must be non-negative, got {sizes}")
        ratios = [s / X.shape[a] if X.shape[a] else 1.0 for a, s in zip(axes, sizes)]
        if keep_policy == "stretch":
            for a, s, q in zip(axes, sizes, ratios):
                full_scale[a] = q
                out_shape[a] = s
        elif keep_policy in ("not_larger", "not_smaller"):
            q = min(ratios) if keep_policy == "not_larger" else max(ratios)
            for a in axes:
                full_scale[a] = q
                out_shape[a] = int(q * X.shape[a] + 0.5)
        else:
            raise ValueError(f"{op_name}: unknown keep_aspect_ratio_policy '{keep_policy}'")
    roi_pairs: dict[int, tuple[float, float]] = {}
    if coord_mode == "tf_crop_and_resize":
        if roi is None or np.size(roi) == 0:
            raise ValueError(f"{op_name}: coordinate_transformation_mode tf_crop_and_resize needs input 'roi'")
        rv = np.asarray(roi, dtype=np.float64).reshape(-1)
        if rv.size == 2 * na:
            for i, a in enumerate(axes):
                roi_pairs[a] = (float(rv[i]), float(rv[na + i]))
        elif rv.size == 2 * r:
            for a in range(r):
                roi_pairs[a] = (float(rv[a]), float(rv[r + a]))
        else:
            raise ValueError(f"{op_name}: input 'roi' has {rv.size} values, expected {2 * na}")
    if any(X.shape[a] == 0 for a in axes) and any(out_shape[a] for a in axes):
        raise ValueError(f"{op_name}: cannot resize an empty axis of input shape {X.shape}")

    is_nearest = mode == "nearest"
    if is_nearest:
        data = X
    else:
        if X.dtype.kind not in "fiuV":
            raise TypeError(f"{op_name}: mode '{mode}' needs a numeric input, got {X.dtype}")
        data = X.astype(_work_dtype(X.dtype), copy=False)
    tables = []  # (axis, out_len, idx, w, extra) of every axis that changes
    for a in axes:
        in_len, out_len, s = X.shape[a], out_shape[a], full_scale[a]
        roi_a = roi_pairs.get(a)
        if out_len == in_len and math.isclose(s, 1.0) and (roi_a is None or (
                math.isclose(roi_a[0], 0.0) and math.isclose(roi_a[1], 1.0))):
            continue
        if out_len == 0:
            tables.append((a, 0, None, None, None))
            continue
        x, extra = _source_coords(coord_mode, out_len, in_len, s, roi_a)
        idx, w = _axis_table(x, in_len, mode, s, nearest_mode, cubic_a, exclude_outside, antialias)
        tables.append((a, out_len, idx, w, extra))
    repeats = _integer_repeats(data.shape, tables) if is_nearest else None
    if repeats is not None:
        # nearest upsampling by whole factors (FPN-style x2, x4): every output element in one pass
        return _repeat_axes(data, repeats)
    for a, out_len, idx, w, extra in tables:
        if out_len == 0:
            shp = list(data.shape)
            shp[a] = 0
            data = np.empty(shp, dtype=data.dtype)
            continue
        data = _resize_axis(data, a, idx, w)
        if extra is not None and extra.any():
            mshape = (1,) * a + (out_len,) + (1,) * (r - a - 1)
            data = np.where(extra.reshape(mshape), data.dtype.type(extrapolation_value) if data.dtype.kind == "f"
                            else extrapolation_value, data)
    if data.dtype != X.dtype:
        if X.dtype.kind in "iu":
            info = np.iinfo(X.dtype)
            data = np.clip(np.rint(data), info.min, info.max)
        data = data.astype(X.dtype)
    return np.ascontiguousarray(data)


def _resize_kwargs(attrs: dict) -> dict:
    return dict(
        mode=attrs.get("mode", "nearest"),
        coord_mode=attrs.get("coordinate_transformation_mode", "half_pixel"),
        nearest_mode=attrs.get("nearest_mode", "round_prefer_floor"),
        cubic_a=float(attrs.get("cubic_coeff_a", -0.75)),
        exclude_outside=bool(attrs.get("exclude_outside", 0)),
        extrapolation_value=float(attrs.get("extrapolation_value", 0.0)),
        antialias=bool(attrs.get("antialias", 0)),
        axes=attrs.get("axes"),
        keep_policy=attrs.get("keep_aspect_ratio_policy", "stretch"),
    )


def _legacy_kwargs(mode: str, op_name: str) -> dict:
    if mode not in ("nearest", "linear", "bilinear"):
        raise ValueError(f"{op_name}: unknown mode '{mode}' (expected nearest or linear)")
    return dict(mode="linear" if mode == "bilinear" else mode, coord_mode="asymmetric", nearest_mode="simple",
                cubic_a=-0.75, exclude_outside=False, extrapolation_value=0.0, antialias=False, axes=None,
                keep_policy="stretch")


@op_factory("Resize", 11, 13, 18, 19)
def resize_factory(ctx: KernelContext):
    kw = _resize_kwargs(ctx.attrs)

    def resize(X, roi=None, scales=None, sizes=None):
        return _resize("Resize", X, roi, scales, sizes, **kw)

    return resize


@op_factory("Resize", 10)
def resize10_factory(ctx: KernelContext):
    kw = _legacy_kwargs(ctx.attrs.get("mode", "nearest"), "Resize")

    def resize(X, scales):
        return _resize("Resize", X, None, scales, None, **kw)

    return resize


@op_factory("Upsample", 7, 9)
def upsample_factory(ctx: KernelContext):
    kw = _legacy_kwargs(ctx.attrs.get("mode", "nearest"), "Upsample")
    attr_scales = ctx.attrs.get("scales")

    def upsample(X, scales=None):
        s = attr_scales if scales is None else scales
        if s is None:
            raise ValueError("Upsample: 'scales' is required")
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if s.size != X.ndim:
            raise ValueError(f"Upsample: 'scales' has {s.size} values, expected {X.ndim} (the input rank)")
        return _resize("Upsample", X, None, s, None, **kw)

    return upsample


# ---------------------------------------------------------------------------------------------
# GridSample


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    rng = hi - lo
    if rng <= 0:
        return np.full_like(x, lo)
    below = x < lo
    above = x > hi
    dx = np.where(below, lo - x, np.where(above, x - hi, 0))
    n = np.trunc(dx / rng)
    rem = dx - n * rng
    even = (n % 2) == 0
    from_lo = np.where(even, lo + rem, hi - rem)
    from_hi = np.where(even, hi - rem, lo + rem)
    return np.where(below, from_lo, np.where(above, from_hi, x))


def _grid_sample(X, grid, *, align_corners=0, mode="linear", padding_mode="zeros", op_name="GridSample"):
    if X.ndim < 3:
        raise ValueError(f"{op_name}: input 'X' must have rank >= 3, got shape {X.shape}")
    n = X.ndim - 2
    N, C = X.shape[:2]
    in_sp = list(X.shape[2:])
    if grid.ndim != X.ndim or grid.shape[0] != N or grid.shape[-1] != n:
        raise ValueError(f"{op_name}: input 'grid' has shape {grid.shape}, expected ({N}, *out_spatial, {n})")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    if mode not in ("linear", "nearest", "cubic"):
        raise ValueError(f"{op_name}: unknown mode '{mode}'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"{op_name}: unknown padding_mode '{padding_mode}'")
    out_sp = grid.shape[1:-1]
    P = math.prod(out_sp)
    gdt = grid.dtype if grid.dtype.kind == "f" and grid.dtype.itemsize >= 4 else np.dtype(np.float32)
    g = grid.astype(gdt, copy=False).reshape(N, P, n)
    cdt = _work_dtype(X.dtype)
    xf = X.astype(cdt, copy=False).reshape(N, C, -1)
    coords, lows, highs = [], [], []
    for i in range(n):
        L = in_sp[i]
        v = g[:, :, n - 1 - i]
        if align_corners:
            c = (v + 1) / 2 * (L - 1)
            lo, hi = 0.0, float(L - 1)
        else:
            c = ((v + 1) * L - 1) / 2
            lo, hi = -0.5, L - 0.5
        if mode == "nearest":
            c = np.rint(c)
        if padding_mode == "border":
            c = np.where((c < lo) | (c > hi), np.clip(c, 0, L - 1), c)
        elif padding_mode == "reflection":
            c = _reflect(c, lo, hi)
        coords.append(c.astype(np.float64))
        lows.append(lo)
        highs.append(hi)

    def tap_index(i: int, t: np.ndarray):
        L = in_sp[i]
        if padding_mode == "zeros":
            valid = (t >= 0) & (t < L)
            return np.clip(t, 0, L - 1), valid
        if padding_mode == "border":
            return np.clip(t, 0, L - 1), None
        r = _reflect(t.astype(np.float64), lows[i], highs[i]).astype(np.int64)
        return np.clip(r, 0, L - 1), None

    per_axis = []  # per axis: list of (index, weight or None, valid or None)
    for i in range(n):
        c = coords[i]
        if mode == "nearest":
            t = c.astype(np.int64)
            idx, valid = tap_index(i, t)
            per_axis.append([(idx, None, valid)])
            continue
        base = np.floor(c)
        f = c - base
        base = base.astype(np.int64)
        if mode == "linear":
            offs, ws = (0, 1), (1 - f, f)
        else:
            offs = (-1, 0, 1, 2)
            ws = tuple(_cubic_kernel(f - o, -0.75) for o in offs)
        taps = []
        for o, wgt in zip(offs, ws):
            idx, valid = tap_index(i, base + o)
            taps.append((idx, wgt, valid))
        per_axis.append(taps)
    flat_mult = [math.prod(in_sp[i + 1:]) for i in range(n)]
    out = np.zeros((N, C, P), dtype=cdt)
    for combo in itertools.product(*per_axis):
        flat = np.zeros((N, P), dtype=np.int64)
        wgt = None
        valid = None
        for i, (idx, w, v) in enumerate(combo):
            flat += idx * flat_mult[i]
            if w is not None:
                wgt = w if wgt is None else wgt * w
            if v is not None:
                valid = v if valid is None else valid & v
        vals = np.take_along_axis(xf, np.broadcast_to(flat[:, None, :], (N, C, P)), axis=2)
        if valid is not None:
            wgt = valid.astype(np.float64) if wgt is None else np.where(valid, wgt, 0.0)
        if wgt is None:
            out += vals
        else:
            out += vals * wgt[:, None, :].astype(cdt)
    return out.reshape((N, C) + tuple(out_sp)).astype(X.dtype, copy=False)


@op("GridSample", 16)
def grid_sample_16(X, grid, *, align_corners=0, mode="bilinear", padding_mode="zeros"):
    if X.ndim != 4:
        raise ValueError(f"GridSample: opset-16 GridSample needs a 4-D input 'X', got shape {X.shape}")
    return _grid_sample(X, grid, align_corners=align_corners, mode=mode, padding_mode=padding_mode)


@op("GridSample", 20, 22)
def grid_sample(X, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    return _grid_sample(X, grid, align_corners=align_corners, mode=mode, padding_mode=padding_mode)


# ---------------------------------------------------------------------------------------------
# AffineGrid


@op("AffineGrid", 20)
def affine_grid(theta, size, *, align_corners=0):
    sz = [int(v) for v in np.asarray(size).reshape(-1)]
    if len(sz) not in (4, 5):
        raise ValueError(f"AffineGrid: input 'size' must have 4 or 5 values (N, C, H, W[, D]), got {sz}")
    n = len(sz) - 2
    N = sz[0]
    if theta.ndim != 3 or theta.shape != (N, n, n + 1):
        raise ValueError(f"AffineGrid: input 'theta' has shape {theta.shape}, expected {(N, n, n + 1)}")
    cdt = _work_dtype(theta.dtype)
    spatial = sz[2:]
    lines = []
    for L in spatial:
        if align_corners:
            v = np.linspace(-1.0, 1.0, L) if L > 1 else np.zeros(L)
        else:
            v = (2.0 * np.arange(L) + 1.0) / L - 1.0
        lines.append(v.astype(cdt))
    mesh = np.meshgrid(*lines, indexing="ij")  # spatial order (D,) H, W
    # homogeneous base coordinates in (x, y[, z], 1) order
    base = np.stack([m.reshape(-1) for m in mesh[::-1]] + [np.ones(math.prod(spatial), dtype=cdt)], axis=-1)
    out = np.matmul(base[None], np.swapaxes(theta.astype(cdt, copy=False), 1, 2))  # (N, P, n)
    return out.reshape([N] + spatial + [n]).astype(theta.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# RoiAlign


def _roi_align(X, rois, batch_indices, *, mode="avg", output_height=1, output_width=1, sampling_ratio=0,
               spatial_scale=1.0, half_pixel=True):
    op_name = "RoiAlign"
    if X.ndim != 4:
        raise ValueError(f"{op_name}: input 'X' must be 4-D (N, C, H, W), got shape {X.shape}")
    if rois.ndim != 2 or rois.shape[1] != 4:
        raise ValueError(f"{op_name}: input 'rois' must have shape (num_rois, 4), got {rois.shape}")
    R = rois.shape[0]
    bi = np.asarray(batch_indices).reshape(-1).astype(np.int64)
    if bi.shape[0] != R:
        raise ValueError(f"{op_name}: input 'batch_indices' has {bi.shape[0]} entries, expected {R}")
    N, C, H, W = X.shape
    if R and (bi.min() < 0 or bi.max() >= N):
        raise ValueError(f"{op_name}: 'batch_indices' must lie in [0, {N}), got {bi.tolist()}")
    if mode not in ("avg", "max"):
        raise ValueError(f"{op_name}: unknown mode '{mode}'")
    oh, ow = int(output_height), int(output_width)
    cdt = _work_dtype(X.dtype)
    if R == 0:
        return np.zeros((0, C, oh, ow), dtype=X.dtype)
    r = rois.astype(np.float64) * spatial_scale - (0.5 if half_pixel else 0.0)
    x0, y0, x1, y1 = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
    rw, rh = x1 - x0, y1 - y0
    if not half_pixel:
        rw, rh = np.maximum(rw, 1.0), np.maximum(rh, 1.0)
    bh, bw = rh / oh, rw / ow
    if sampling_ratio > 0:
        gh = np.full(R, int(sampling_ratio))
        gw = np.full(R, int(sampling_ratio))
    else:
        gh = np.ceil(rh / oh).astype(np.int64)
        gw = np.ceil(rw / ow).astype(np.int64)
    Sh, Sw = max(int(gh.max()), 1), max(int(gw.max()), 1)

    def axis_samples(start, bin_size, grid, S, out, length):
        # positions (R, out, S), with per-sample validity for the ROI's own grid size
        s = np.arange(S)
        pos = (start[:, None, None] + np.arange(out)[None, :, None] * bin_size[:, None, None]
               + (s[None, None, :] + 0.5) * bin_size[:, None, None] / np.maximum(grid, 1)[:, None, None])
        in_grid = s[None, None, :] < grid[:, None, None]
        outside = (pos < -1.0) | (pos > length)
        p = np.maximum(pos, 0.0)
        low = np.floor(p).astype(np.int64)
        clamp = low >= length - 1
        low = np.where(clamp, length - 1, low)
        high = np.where(clamp, length - 1, low + 1)
        p = np.where(clamp, low, p)
        frac = p - low
        return low, high, frac, in_grid, outside

    yl, yh, fy, vy, oy = axis_samples(y0, bh, gh, Sh, oh, H)
    xl, xh, fx, vx, ox = axis_samples(x0, bw, gw, Sw, ow, W)
    # broadcast to (R, oh, Sh, ow, Sw)
    Y = lambda a: a[:, :, :, None, None]  # noqa: E731
    Xb = lambda a: a[:, None, None, :, :]  # noqa: E731
    valid = Y(vy) & Xb(vx)
    zero = Y(oy) | Xb(ox)
    ly, lx = Y(fy), Xb(fx)
    hy, hx = 1 - ly, 1 - lx
    weights = [hy * hx, hy * lx, ly * hx, ly * lx]
    corners = [(Y(yl), Xb(xl)), (Y(yl), Xb(xh)), (Y(yh), Xb(xl)), (Y(yh), Xb(xh))]
    xf = X.astype(cdt, copy=False)
    b = bi[:, None, None, None, None]
    terms = []
    for (yy, xx), w in zip(corners, weights):
        w = np.where(zero, 0.0, w).astype(cdt)
        v = xf[b, :, yy, xx]  # (R, oh, Sh, ow, Sw, C)
        terms.append(v * w[..., None])
    if mode == "avg":
        val = terms[0] + terms[1] + terms[2] + terms[3]
        val = np.where(valid[..., None], val, 0)
        count = np.maximum(gh * gw, 1).astype(cdt)
        res = val.sum(axis=(2, 4)) / count[:, None, None, None]
    else:
        val = np.maximum(np.maximum(terms[0], terms[1]), np.maximum(terms[2], terms[3]))
        val = np.where(valid[..., None], val, -np.inf)
        res = val.max(axis=(2, 4))
        res = np.where(np.isneginf(res), 0, res)
    return np.ascontiguousarray(res.transpose(0, 3, 1, 2)).astype(X.dtype, copy=False)


@op("RoiAlign", 10)
def roi_align_10(X, rois, batch_indices, *, mode="avg", output_height=1, output_width=1, sampling_ratio=0,
                 spatial_scale=1.0):
    return _roi_align(X, rois, batch_indices, mode=mode, output_height=output_height, output_width=output_width,
                      sampling_ratio=sampling_ratio, spatial_scale=spatial_scale, half_pixel=False)


@op("RoiAlign", 16, 22)
def roi_align(X, rois, batch_indices, *, coordinate_transformation_mode="half_pixel", mode="avg", output_height=1,
              output_width=1, sampling_ratio=0, spatial_scale=1.0):
    if coordinate_transformation_mode not in ("half_pixel", "output_half_pixel"):
        raise ValueError(f"RoiAlign: unknown coordinate_transformation_mode '{coordinate_transformation_mode}'")
    return _roi_align(X, rois, batch_indices, mode=mode, output_height=output_height, output_width=output_width,
                      sampling_ratio=sampling_ratio, spatial_scale=spatial_scale,
                      half_pixel=coordinate_transformation_mode == "half_pixel")


# ---------------------------------------------------------------------------------------------
# NonMaxSuppression


def _scalar(v, kind, default, name):
    if v is None or np.size(v) == 0:
        return default
    a = np.asarray(v).reshape(-1)
    if a.size != 1:
        raise ValueError(f"NonMaxSuppression: input '{name}' must be a scalar, got shape {np.shape(v)}")
    return kind(a[0])


@op("NonMaxSuppression", 10, 11)
def non_max_suppression(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None,
                        *, center_point_box=0):
    op_name = "NonMaxSuppression"
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise ValueError(f"{op_name}: input 'boxes' must have shape (batch, spatial, 4), got {boxes.shape}")
    if scores.ndim != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ValueError(
            f"{op_name}: input 'scores' has shape {scores.shape}, expected "
            f"({boxes.shape[0]}, num_classes, {boxes.shape[1]})"
        )
    max_out = _scalar(max_output_boxes_per_class, int, 0, "max_output_boxes_per_class")
    iou_thr = _scalar(iou_threshold, float, 0.0, "iou_threshold")
    score_thr = _scalar(score_threshold, float, None, "score_threshold")
    if max_out <= 0 or boxes.shape[1] == 0:
        return np.zeros((0, 3), dtype=np.int64)
    b = boxes.astype(np.float64)
    if center_point_box:
        xc, yc, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
        x1, x2, y1, y2 = xc - w / 2, xc + w / 2, yc - h / 2, yc + h / 2
    else:
        y1 = np.minimum(b[..., 0], b[..., 2])
        y2 = np.maximum(b[..., 0], b[..., 2])
        x1 = np.minimum(b[..., 1], b[..., 3])
        x2 = np.maximum(b[..., 1], b[..., 3])
    area = (x2 - x1) * (y2 - y1)
    # pairwise IoU per batch: (B, S, S)
    iw = np.clip(np.minimum(x2[:, :, None], x2[:, None, :]) - np.maximum(x1[:, :, None], x1[:, None, :]), 0, None)
    ih = np.clip(np.minimum(y2[:, :, None], y2[:, None, :]) - np.maximum(y1[:, :, None], y1[:, None, :]), 0, None)
    inter = iw * ih
    union = area[:, :, None] + area[:, None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    sc = scores.astype(np.float64)
    out = []
    for bi in range(boxes.shape[0]):
        for ci in range(scores.shape[1]):
            s = sc[bi, ci]
            order = np.argsort(-s, kind="stable")
            if score_thr is not None:
                order = order[s[order] > score_thr]
            suppressed = np.zeros(s.shape[0], dtype=bool)
            picked = []
            for j in order:  # greedy selection is sequential by nature
                if suppressed[j]:
                    continue
                picked.append(j)
                if len(picked) >= max_out:
                    break
                suppressed |= iou[bi, j] > iou_thr
            out.extend((bi, ci, j) for j in picked)
    if not out:
        return np.zeros((0, 3), dtype=np.int64)
    return np.array(out, dtype=np.int64)
