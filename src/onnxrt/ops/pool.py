"""Pooling: AveragePool, MaxPool (with indices), LpPool, the Global* pools, MaxUnpool.

MaxPool and AveragePool accumulate over the kernel taps: one in-place ufunc (maximum / add) per tap
on a strided view of the padded input, which streams through memory instead of reducing over tiny
trailing window axes. The padded input lives in a reused per-thread buffer whose border (the pad
value) is written once. LpPool and MaxPool's indices reduce over a strided window view. Average
divisors are separable, so they are an outer product of per-axis counts, computed once per shape.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator

import numpy as np

from onnxrt.ops._common import strided_view, thread_scratch, thread_scratch_flat
from onnxrt.ops.conv import inside_range, pad_spatial, resolve_pads, spatial_list, window_view
from onnxrt.ops.registry import KernelContext, op, op_factory


# Values per block of channels in flat_reduce: its three buffers (bordered image, row and column
# reductions) stay in the 2 MB L2. Measured 32K / 64K / 128K on inception's pools: 172 / 164 / 191 us
# (192x28x28 average), 289 / 272 / 311 us (320x28x28 max).
_FLAT_BLOCK = 1 << 16
# Values per block of channels in strided_reduce (its bordered block and row reductions in the L2):
# 32K / 64K / 128K on SqueezeNet's 64x111x111 3x3 stride-2 max pool: 599 / 484 / 469 us.
_STRIDED_BLOCK = 1 << 17


# AveragePool's GEMM path (averaging_matrix) makes prod(in_sp) multiply-adds per output value where the
# tap passes make one add per window tap, each ~20x slower: it is taken while the input has at most
# this many positions per window tap. Measured (us, tap passes / GEMM, positions per tap): 1024x7x7
# 3x3 stride 1 206 / 42 (5), 576x14x14 270 / 174 (22), 272x14x14 stride 2 103 / 44 (22); 512x14x14
# 2x2 stride 2 68 / 68 (49), 480x3x80 3x2 54 / 59 (40), 136x28x28 3x3 stride 2 131 / 245 (87).
_MATRIX_MAX_POSITIONS_PER_TAP = 24
_MATRIX_MAX_ENTRIES = 1 << 18  # 1 MB of float32 weights at most


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return dtype
    return np.dtype(np.float32)


class _AxisTaps:
    """How tap_reduce starts one axis's accumulation (decided once per shape): ``kind`` is "view"
    (a 1-tap kernel reaching every output: the input itself), "pair" (the first two taps that reach
    every output), "widest" (the one such tap and the widest partial one), "copy" (the one tap
    alone) or "fill" (none reaches every output: the identity); ``start`` the taps it starts from,
    ``rest`` the taps accumulated after, each (output slice, input slice)."""

    def __init__(self, o: int, kernel: int, taps: list[tuple[slice, slice]]) -> None:
        full = [tap for tap in taps if tap[0] == slice(0, o)]
        others = [tap for tap in taps if not any(tap is f for f in full[:2])]
        if kernel == 1 and full:
            self.kind, self.start, self.rest = "view", full[:1], []
        elif len(full) >= 2:
            self.kind, self.start, self.rest = "pair", full[:2], others
        elif full and others:
            widest = max(others, key=lambda tap: tap[0].stop - tap[0].start)
            self.kind, self.start = "widest", [full[0], widest]
            self.rest = [tap for tap in others if tap is not widest]
        elif full:
            self.kind, self.start, self.rest = "copy", full, []
        else:
            self.kind, self.start, self.rest = "fill", [], taps


class _Geometry:
    """Output size and padding of a windowed pool for one input shape."""

    def __init__(self, op_name: str, in_sp, attrs: dict) -> None:
        n = len(in_sp)
        kernel = attrs.get("kernel_shape")
        if not kernel or len(kernel) != n:
            raise ValueError(
                f"{op_name}: attribute kernel_shape={kernel} must have one value per spatial axis ({n}) "
                f"of the input"
            )
        self.kernel = [int(k) for k in kernel]
        self.strides = spatial_list(attrs.get("strides"), n, 1, "strides", op_name)
        self.dilations = spatial_list(attrs.get("dilations"), n, 1, "dilations", op_name)
        auto_pad = attrs.get("auto_pad", "NOTSET") or "NOTSET"
        self.begin, self.end = resolve_pads(op_name, auto_pad, in_sp, self.kernel, self.strides, self.dilations,
                                            attrs.get("pads"))
        ceil_mode = bool(attrs.get("ceil_mode", 0))
        self.dk = [(k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations)]
        out = []
        for i in range(n):
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                o = -(-in_sp[i] // self.strides[i])
            else:
                span = in_sp[i] + self.begin[i] + self.end[i] - self.dk[i]
                if span < 0:
                    raise ValueError(
                        f"{op_name}: the padded input ({in_sp[i] + self.begin[i] + self.end[i]}) on spatial axis {i} "
                        f"is shorter than the dilated kernel ({self.dk[i]})"
                    )
                if ceil_mode:
                    o = -(-span // self.strides[i]) + 1
                    if (o - 1) * self.strides[i] >= in_sp[i] + self.begin[i]:
                        o -= 1
                else:
                    o = span // self.strides[i] + 1
            out.append(o)
        self.out = out
        # extra padding at the end so that every window lies inside the padded input
        self.extra = [max(0, (o - 1) * s + dk - (i + b + e))
                      for o, s, dk, i, b, e in zip(out, self.strides, self.dk, in_sp, self.begin, self.end)]
        self.in_sp = list(in_sp)
        # what averages multiply by, made on first use: 1 / the window counts (cached_reciprocal) and the
        # averaging matrix (averaging_matrix), by (kind, count_include_pad, dtype)
        self._averaging: dict[tuple, np.ndarray] = {}
        # tap_reduce reads x in place unless a stride-1 axis is padded (see there); per axis, the
        # (output slice, input slice) of every kernel tap that reads the input it is given
        self.read_in_place = not any(st == 1 and (b or e or x_) for st, b, e, x_
                                     in zip(self.strides, self.begin, self.end, self.extra))
        self.axis_taps = []
        for i in range(n):
            b = self.begin[i] if self.read_in_place else 0
            length = in_sp[i] if self.read_in_place else in_sp[i] + self.begin[i] + self.end[i] + self.extra[i]
            regions = (inside_range(out[i], length, t * self.dilations[i] - b, self.strides[i])
                       for t in range(self.kernel[i]))
            self.axis_taps.append(_AxisTaps(out[i], self.kernel[i], [r for r in regions if r is not None]))
        # 2-D stride-1 windows reduce over the flattened padded image instead (flat_reduce), and
        # unpadded strided ones whose windows overlap along both axes (3x3 stride 2) start that way
        # (strided_reduce; with padding, its bordered copy cost more than tap_reduce's partial taps:
        # ResNet's 64x112x112 max pool 1.00 -> 1.24 ms)
        flat_ok = n == 2 and self.dilations == [1, 1] and min(self.begin + self.end) >= 0
        self.flat = flat_ok and self.strides == [1, 1]
        self.strided_flat = (flat_ok and self.strides != [1, 1] and not any(self.begin + self.end + self.extra)
                             and all(k > s for k, s in zip(self.kernel, self.strides)))
        # small images average by one GEMM against a matrix of the windows' weights (averaging_matrix)
        positions = math.prod(in_sp)
        self.by_matrix = (0 < positions <= _MATRIX_MAX_POSITIONS_PER_TAP * math.prod(self.kernel)
                          and positions * math.prod(out) <= _MATRIX_MAX_ENTRIES)
        # one window over the whole unpadded input (the 7x7 average pool that ends a CNN): the global pool
        self.whole = (self.kernel == self.in_sp and self.dilations == [1] * n and not any(self.begin + self.end)
                      and self.out == [1] * n)

    def padded(self, x: np.ndarray, value: Any) -> np.ndarray:
        """x in a reused per-thread buffer padded with ``value`` (pads and the extra end padding);
        the border is filled once when the buffer is made, only the interior is copied per call."""
        begin = self.begin
        end = [e + x_ for e, x_ in zip(self.end, self.extra)]
        if min(begin + end) < 0 or not (any(begin) or any(end)):
            return pad_spatial(x, begin, end, value)
        shape = x.shape[:2] + tuple(d + b + e for d, b, e in zip(x.shape[2:], begin, end))
        key = ("pool", shape, tuple(begin), x.dtype.str, float(value))
        buf = thread_scratch(key, lambda: np.full(shape, value, dtype=x.dtype))
        buf[(slice(None), slice(None)) + tuple(slice(b, b + d) for b, d in zip(begin, x.shape[2:]))] = x
        return buf

    def flat_reduce(self, x: np.ndarray, ufunc: np.ufunc, value: Any, scale: Any = None) -> np.ndarray:
        """A 2-D stride-1 pool of x (N, C, H, W), times ``scale`` when given, a block of channels
        at a time over the flattened zero-bordered (here: ``value``-bordered) image.

        Flattened, a window's rows are Wp apart and its columns 1 apart, so every tap of the
        separable reduction is one long contiguous ufunc call over the whole block (SIMD loops),
        where per-row views make inner loops only W long (7-56 values in CNNs): inception's 3x3
        average pools 256 -> 165 us (576x14x14), 275 -> 164 us (192x28x28). Positions whose
        window runs off a row's end are computed and dropped; the outputs are a strided view of
        the result, copied out (and scaled) into the output."""
        N, C, H, W = x.shape
        (kh, kw), (b0, b1) = self.kernel, self.begin
        e0, e1 = self.end[0] + self.extra[0], self.end[1] + self.extra[1]
        hp, wp = H + b0 + e0, W + b1 + e1
        ho, wo = self.out
        plane = hp * wp
        cb = max(1, min(C, _FLAT_BLOCK // plane))
        bordered = bool(b0 or b1 or e0 or e1)
        rows = thread_scratch_flat(("pool_flat_rows", x.dtype.str), (cb * plane,), x.dtype)
        cols = thread_scratch_flat(("pool_flat_cols", x.dtype.str), (cb * plane,), x.dtype)
        y = np.empty((N, C, ho, wo), dtype=x.dtype)
        item = x.dtype.itemsize
        for n, c0, m, block in _channel_blocks(x, cb):
            # padded(): the block in a per-thread buffer whose border was filled when it was made
            flat = (self.padded(block, value) if bordered else np.ascontiguousarray(block)).reshape(-1)
            length = m * plane - (kh - 1) * wp  # every window's top row starts before this
            r = flat[:length]
            if kh > 1:
                r = rows[:length]
                ufunc(flat[:length], flat[wp:wp + length], out=r)
                for i in range(2, kh):
                    ufunc(r, flat[i * wp:i * wp + length], out=r)
            length -= kw - 1
            c = r[:length]
            if kw > 1:
                c = cols[:length]
                ufunc(r[:length], r[1:1 + length], out=c)
                for j in range(2, kw):
                    ufunc(c, r[j:j + length], out=c)
            windows = strided_view(c, 0, (m, ho, wo), (plane * item, wp * item, item))
            if scale is None:
                y[n, c0:c0 + m] = windows
            else:
                np.multiply(windows, scale, out=y[n, c0:c0 + m])
        return y

    def strided_reduce(self, x: np.ndarray, ufunc: np.ufunc, scale: Any = None) -> np.ndarray:
        """A 2-D unpadded strided pool of x (N, C, H, W) with windows overlapping along both axes,
        times ``scale`` when given, a block of channels at a time.

        Along the width, every position's window is reduced over the flattened block:
        kw - 1 contiguous ufunc calls (SIMD loops), where strided taps run element by element;
        along the height only the output rows and columns are reduced, kh - 1 calls over strided
        views of that result. SqueezeNet's 3x3 stride-2 max pools: 64x111x111 640 -> 469 us,
        128x55x55 284 -> 216 us, 256x27x27 140 -> 103 us (tap_reduce against this)."""
        N, C, hp, wp = x.shape
        (kh, kw), (sh, sw) = self.kernel, self.strides
        ho, wo = self.out
        plane = hp * wp
        cb = max(1, min(C, _STRIDED_BLOCK // plane))
        rows = thread_scratch_flat(("pool_strided_rows", x.dtype.str), (cb * plane,), x.dtype)
        y = np.empty((N, C, ho, wo), dtype=x.dtype)
        item = x.dtype.itemsize
        for n, c0, m, block in _channel_blocks(x, cb):
            flat = np.ascontiguousarray(block).reshape(-1)
            length = m * plane - (kw - 1)  # every window used starts before this
            ufunc(flat[:length], flat[1:1 + length], out=rows[:length])
            for j in range(2, kw):
                ufunc(rows[:length], flat[j:j + length], out=rows[:length])
            # the window reductions at every row, output columns only (in bounds: the last used one
            # starts at (m-1)*plane + (hp-1)*wp + (wo-1)*sw < length)
            reduced = strided_view(rows, 0, (m, hp, wo), (plane * item, wp * item, sw * item))
            out = y[n, c0:c0 + m]
            span = sh * (ho - 1) + 1
            ufunc(reduced[:, 0:span:sh], reduced[:, 1:1 + span:sh], out=out)
            for i in range(2, kh):
                ufunc(out, reduced[:, i:i + span:sh], out=out)
            if scale is not None:
                np.multiply(out, scale, out=out)
        return y

    def reduce(self, x: np.ndarray, ufunc: np.ufunc, value: Any, scale: Any = None) -> np.ndarray:
        """The pool of x (N, C, *spatial) by ``ufunc`` (``value`` its identity, for padding), times
        ``scale`` when given, through the path this geometry takes (flat_reduce, strided_reduce or
        tap_reduce)."""
        if x.ndim == 4 and x.size and self.flat:
            return self.flat_reduce(x, ufunc, value, scale)
        if x.ndim == 4 and x.size and self.strided_flat:
            return self.strided_reduce(x, ufunc, scale)
        y = self.tap_reduce(x, ufunc, value)
        if scale is not None:
            y *= scale
        return y

    def tap_reduce(self, x: np.ndarray, ufunc: np.ufunc, value: Any) -> np.ndarray:
        """ufunc-accumulate of the kernel taps of x (padded with ``value``, the ufunc's identity) into
        a fresh array.

        The window reduction is separable (max and sum are associative and commutative), so it runs
        one spatial axis at a time, outermost first: a 3x3 window costs 3 + 3 passes instead of 9,
        and every pass but the last axis's reads whole contiguous rows (the SIMD loops).

        With strides above 1 no padded copy of x is made: a tap reads only the outputs whose input
        lies inside x (padding would add the identity), and the taps that reach every output start
        the accumulation (ResNet's 3x3 stride-2 max pool: 1.12 -> 0.88 ms). A stride-1 axis with
        padding reads a padded copy: there most taps reach only part of the outputs, and their
        shorter, offset slices cost more than the copy (3x3 average pool of 256x28x28: 0.52 vs 0.70 ms)."""
        lead = x.ndim - len(self.kernel)
        cur = x if self.read_in_place else self.padded(x, value)
        fresh = False
        for i, (o, taps) in enumerate(zip(self.out, self.axis_taps)):
            pre = (slice(None),) * (lead + i)

            def view(tap: tuple) -> np.ndarray:
                return cur[pre + (tap[1],)]

            def outputs(a: np.ndarray, sl: slice) -> np.ndarray:
                return a[pre + (sl,)]

            if taps.kind == "view":
                cur = view(taps.start[0])
                continue
            if taps.kind == "pair":
                out = ufunc(view(taps.start[0]), view(taps.start[1]))
            elif taps.kind == "widest":
                # the one full tap combined with the widest partial one over its outputs, copied
                # alone at the ends: one pass, not a copy and then an accumulation
                whole, widest = view(taps.start[0]), taps.start[1]
                out = np.empty(whole.shape, dtype=whole.dtype)
                sl = widest[0]
                ufunc(outputs(whole, sl), view(widest), out=outputs(out, sl))
                for end in (slice(0, sl.start), slice(sl.stop, o)):
                    if end.stop > end.start:
                        outputs(out, end)[...] = outputs(whole, end)
            elif taps.kind == "copy":
                out = np.array(view(taps.start[0]), copy=True)
            else:  # no tap reaches every output: start from the identity
                out = np.full(cur.shape[:lead + i] + (o,) + cur.shape[lead + i + 1:], value, dtype=cur.dtype)
            for tap in taps.rest:
                dst = outputs(out, tap[0])
                ufunc(dst, view(tap), out=dst)
            cur, fresh = out, True
        return cur if fresh else np.array(cur, copy=True)

    def averaging_matrix(self, include_pad: bool, dtype) -> np.ndarray:
        """(prod(in_sp), prod(out)) matrix whose column for an output position holds 1 / its window's
        count at each input position of the window: the average pool of x (N, C, *in_sp) is
        x.reshape(N * C, -1) @ it, one GEMM (see _MATRIX_MAX_POSITIONS_PER_TAP). Made on first use."""
        key = ("matrix", include_pad, np.dtype(dtype).str)
        m = self._averaging.get(key)
        if m is None:
            n = len(self.kernel)
            outs = np.indices(self.out).reshape(n, -1)  # (n, P_out): each output position
            weights = 1.0 / self.divisor(include_pad, np.float64).reshape(-1)
            m = np.zeros((math.prod(self.in_sp), outs.shape[1]), dtype=np.float64)
            for tap in itertools.product(*(range(k) for k in self.kernel)):
                pos = [o * s + t * d - b for o, s, t, d, b in zip(outs, self.strides, tap, self.dilations, self.begin)]
                inside = np.logical_and.reduce([(p >= 0) & (p < size) for p, size in zip(pos, self.in_sp)])
                flat = np.ravel_multi_index([p[inside] for p in pos], self.in_sp)
                m[flat, np.flatnonzero(inside)] = weights[inside]
            m = m.astype(dtype)
            m.flags.writeable = False
            self._averaging[key] = m
        return m

    def cached_reciprocal(self, include_pad: bool, dtype) -> np.ndarray:
        """1 / the window counts (a scalar when they are all the same): multiplying by it is ~4x
        faster than dividing by the counts, within an ulp of the quotient."""
        key = ("reciprocal", include_pad, np.dtype(dtype).str)
        r = self._averaging.get(key)
        if r is None:
            d = self.divisor(include_pad, np.float64)
            r = 1.0 / d
            r = np.asarray(r.flat[0] if np.all(r == r.flat[0]) else r).astype(dtype)
            self._averaging[key] = r
        return r

    def windows(self, x: np.ndarray, value: Any) -> np.ndarray:
        xp = pad_spatial(x, self.begin, [e + x_ for e, x_ in zip(self.end, self.extra)], value)
        w = window_view(xp, self.kernel, self.strides, self.dilations)
        n = len(self.kernel)
        sl = (Ellipsis,) + tuple(slice(0, o) for o in self.out) + (slice(None),) * n
        return w[sl] if w.shape[-2 * n:-n] != tuple(self.out) else w

    def divisor(self, include_pad: bool, dtype) -> np.ndarray:
        n = len(self.kernel)
        d = np.ones((), dtype=dtype)
        for i in range(n):
            starts = np.arange(self.out[i]) * self.strides[i] - self.begin[i]
            taps = starts[:, None] + np.arange(self.kernel[i])[None, :] * self.dilations[i]
            lo, hi = (-self.begin[i], self.in_sp[i] + self.end[i]) if include_pad else (0, self.in_sp[i])
            cnt = ((taps >= lo) & (taps < hi)).sum(axis=1).astype(dtype)
            d = d[..., None] * cnt.reshape((1,) * i + (-1,))
        return d


def _channel_blocks(x: np.ndarray, per_block: int) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """(image index, first channel, channels, the (1, channels, H, W) block) of x (N, C, H, W), blocks
    of ``per_block`` channels."""
    N, C = x.shape[:2]
    for n in range(N):
        for c0 in range(0, C, per_block):
            m = min(per_block, C - c0)
            yield n, c0, m, x[n:n + 1, c0:c0 + m]


def _check_input(op_name: str, X: Any) -> None:
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{op_name}: input 'X' must be a tensor, got {type(X).__name__}")
    if X.ndim < 3:
        raise ValueError(f"{op_name}: input 'X' must have rank >= 3 (N, C, spatial...), got shape {X.shape}")


def _geometry_cache(op_name: str, attrs: dict):
    cache: dict[tuple, _Geometry] = {}

    def get(shape) -> _Geometry:
        geo = cache.get(shape)
        if geo is None:
            geo = cache[shape] = _Geometry(op_name, shape, attrs)
        return geo

    return get


# ---------------------------------------------------------------------------------------------
# AveragePool / LpPool


@op_factory("AveragePool", 1, 7, 10, 11, 19, 22)
def average_pool_factory(ctx: KernelContext):
    attrs = dict(ctx.attrs)
    include_pad = bool(attrs.get("count_include_pad", 0))
    geometry = _geometry_cache("AveragePool", attrs)

    def average_pool(X):
        _check_input("AveragePool", X)
        if X.dtype.kind not in "fV":
            raise TypeError(f"AveragePool: input 'X' must be a float tensor, got {X.dtype}")
        geo = geometry(X.shape[2:])
        if geo.whole:
            return global_average_pool(X)  # a matrix-vector product: 544x7x7 in 3 us, 45 over the taps
        cdt = _compute_dtype(X.dtype)
        x = X.astype(cdt, copy=False)
        if geo.by_matrix:
            rows = math.prod(X.shape[:2])
            s = np.matmul(x.reshape(rows, -1), geo.averaging_matrix(include_pad, cdt)).reshape(X.shape[:2] + tuple(geo.out))
        else:
            s = geo.reduce(x, np.add, 0, geo.cached_reciprocal(include_pad, cdt))
        return s.astype(X.dtype, copy=False)

    return average_pool


@op_factory("LpPool", 1, 2, 11, 18, 22)
def lp_pool_factory(ctx: KernelContext):
    attrs = dict(ctx.attrs)
    p = attrs.get("p", 2)
    geometry = _geometry_cache("LpPool", attrs)

    def lp_pool(X):
        _check_input("LpPool", X)
        if X.dtype.kind not in "fV":
            raise TypeError(f"LpPool: input 'X' must be a float tensor, got {X.dtype}")
        geo = geometry(X.shape[2:])
        cdt = _compute_dtype(X.dtype)
        n = len(geo.kernel)
        w = geo.windows(np.abs(X.astype(cdt, copy=False)), 0)
        pp = cdt.type(p)
        s = np.power(w, pp).sum(axis=tuple(range(-n, 0)), dtype=cdt)
        return np.power(s, cdt.type(1.0) / pp).astype(X.dtype, copy=False)

    return lp_pool


# ---------------------------------------------------------------------------------------------
# MaxPool


def _lowest(dtype: np.dtype):
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return -np.inf


@op_factory("MaxPool", 1, 8, 10, 11, 12, 22)
def max_pool_factory(ctx: KernelContext):
    attrs = dict(ctx.attrs)
    storage_order = int(attrs.get("storage_order", 0))
    want_indices = ctx.num_outputs > 1 and ctx.output_names[1] != ""
    geometry = _geometry_cache("MaxPool", attrs)
    pos_cache: dict[tuple, np.ndarray] = {}

    def positions(geo: _Geometry) -> np.ndarray:
        key = tuple(geo.in_sp)
        pos = pos_cache.get(key)
        if pos is None:
            n = len(geo.in_sp)
            if storage_order == 0:
                mult = [math.prod(geo.in_sp[i + 1:]) for i in range(n)]
            else:
                mult = [math.prod(geo.in_sp[:i]) for i in range(n)]
            grid = np.indices(geo.in_sp, dtype=np.int64)
            flat = sum(grid[i] * mult[i] for i in range(n))
            pos = geo.windows(flat, -1)
            pos = np.ascontiguousarray(pos).reshape(tuple(geo.out) + (-1,))
            pos_cache[key] = pos
        return pos

    def max_pool(X):
        _check_input("MaxPool", X)
        if X.dtype.kind not in "fiuV":
            raise TypeError(f"MaxPool: input 'X' must be a numeric tensor, got {X.dtype}")
        geo = geometry(X.shape[2:])
        n = len(geo.kernel)
        x = X if X.dtype.kind in "fiu" else X.astype(np.float32)
        if not want_indices:
            # NaN propagates like the reference's max (np.maximum keeps NaN)
            y = geo.reduce(x, np.maximum, _lowest(x.dtype))
            return y if y.dtype == X.dtype else y.astype(X.dtype)
        w = geo.windows(x, _lowest(x.dtype))
        flat = np.ascontiguousarray(w).reshape(w.shape[:2 + n] + (-1,))
        arg = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        pos = positions(geo)
        o_idx = np.indices(geo.out, dtype=np.int64)
        idx = pos[tuple(o_idx) + (arg,)]
        N, C = X.shape[:2]
        base = (np.arange(N * C, dtype=np.int64) * math.prod(geo.in_sp)).reshape((N, C) + (1,) * n)
        return np.ascontiguousarray(y, dtype=X.dtype), idx + base

    return max_pool


# ---------------------------------------------------------------------------------------------
# Global pools


def _global_check(op_name: str, X) -> tuple[int, ...]:
    _check_input(op_name, X)
    return tuple(range(2, X.ndim))


@op("GlobalAveragePool", 1, 22)
def global_average_pool(X):
    axes = _global_check("GlobalAveragePool", X)
    cdt = _compute_dtype(X.dtype)
    if X.dtype == cdt and X.ndim > 2 and X.size and X.flags.c_contiguous:
        # a matrix-vector product with ones: BLAS sums rows far faster than a reduction over
        # short trailing axes
        P = math.prod(X.shape[2:])
        s = X.reshape(-1, P) @ np.full(P, 1.0 / P, dtype=cdt)
        return s.reshape(X.shape[:2] + (1,) * (X.ndim - 2))
    return np.mean(X, axis=axes, keepdims=True, dtype=cdt).astype(X.dtype, copy=False)


@op("GlobalMaxPool", 1, 22)
def global_max_pool(X):
    axes = _global_check("GlobalMaxPool", X)
    x = X if X.dtype.kind in "fiu" else X.astype(np.float32)
    return np.asarray(np.max(x, axis=axes, keepdims=True)).astype(X.dtype, copy=False)


@op("GlobalLpPool", 1, 2, 22)
def global_lp_pool(X, *, p=2):
    axes = _global_check("GlobalLpPool", X)
    cdt = _compute_dtype(X.dtype)
    pp = cdt.type(p)
    s = np.sum(np.power(np.abs(X.astype(cdt, copy=False)), pp), axis=axes, keepdims=True, dtype=cdt)
    return np.power(s, cdt.type(1.0) / pp).astype(X.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# MaxUnpool


@op("MaxUnpool", 9, 11, 22)
def max_unpool(X, I, output_shape=None, *, kernel_shape=None, pads=None, strides=None):  # noqa: E741
    op_name = "MaxUnpool"
    _check_input(op_name, X)
    if not isinstance(I, np.ndarray) or I.shape != X.shape:
        raise ValueError(f"{op_name}: input 'I' must have the shape of 'X' {X.shape}, got {getattr(I, 'shape', I)}")
    n = X.ndim - 2
    if not kernel_shape or len(kernel_shape) != n:
        raise ValueError(f"{op_name}: attribute kernel_shape={kernel_shape} must have {n} values")
    strides = spatial_list(strides, n, 1, "strides", op_name)
    begin, end = resolve_pads(op_name, "NOTSET", X.shape[2:], kernel_shape, strides, [1] * n, pads)
    # Indices address the image the pooled tensor came from (the default unpooled shape); a larger
    # output_shape places that image at the top-left corner.
    shape = list(X.shape[:2]) + [
        (i - 1) * s + k - b - e for i, s, k, b, e in zip(X.shape[2:], strides, kernel_shape, begin, end)
    ]
    total = math.prod(shape)
    idx = I.reshape(-1).astype(np.int64, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= total):
        raise ValueError(f"{op_name}: input 'I' has indices outside [0, {total}) for the unpooled shape {shape}")
    y = np.zeros(total, dtype=X.dtype)
    y[idx] = X.reshape(-1)
    y = y.reshape(shape)
    if output_shape is not None:
        req = [int(v) for v in np.asarray(output_shape).reshape(-1)]
        if len(req) != X.ndim:
            raise ValueError(f"{op_name}: input 'output_shape' {req} must have {X.ndim} values")
        req = list(X.shape[:2]) + req[2:]
        if req != shape:
            out = np.zeros(req, dtype=X.dtype)
            sl = tuple(slice(0, min(a, b)) for a, b in zip(req, shape))
            out[sl] = y[sl]
            y = out
    return y
