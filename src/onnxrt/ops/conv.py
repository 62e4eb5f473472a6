"""Convolutions: Conv, ConvTranspose, DeformConv, Col2Im, CausalConvWithState.

Conv runs as GEMMs against a weight laid out once as (groups, M/g, C/g*K). A 1x1 kernel is a plain
matmul over channels. An ungrouped stride-1 conv with fewer output than input channels multiplies a
tap-stacked weight (K*M, C) by blocks of the flattened zero-bordered image (views, no copy) and sums
K shifted slices of the product; a stride-1 3x3 conv with many channels on a large enough image goes
by Winograd's F(2x2, 3x3) (16 GEMMs with 4 multiply-adds per output and channel instead of 9); other
ungrouped convs build the im2col matrix a block of output rows
at a time (one strided copy per block, cache-sized) and run the GEMM and its epilogue per block. A
stride-1 2-D depthwise kernel gathers each tile of output columns' input windows (one per kernel row)
and multiplies them by banded copies of each channel's kernel rows in one batched matmul; a 2-D
depthwise conv on a narrow or small image (or a channels-last input) goes channels-last, where one
einsum sums every tap's products of contiguous runs; other depthwise and grouped cases build a
per-channel-block or per-group im2col. ConvTranspose is the
adjoint: one matmul to columns, then a scatter-add per kernel tap.
"""

from __future__ import annotations

import itertools
import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from onnxrt.ops._common import RowVector, strided_view, thread_scratch, thread_scratch_flat, thread_scratch_kept
from onnxrt.ops.registry import KernelContext, normalize_domain, op, op_factory
from onnxrt.runtime import blas, threads

# ---------------------------------------------------------------------------------------------
# shared helpers (pool.py imports these too)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in: float64 stays, every other float goes through float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def check_float(op_name: str, name: str, x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op_name}: input '{name}' must be a tensor, got {type(x).__name__}")
    if x.dtype.kind in "biuOUS" or (x.dtype.kind == "V" and "int" in x.dtype.name):
        raise TypeError(f"{op_name}: input '{name}' must be a floating-point tensor, got {x.dtype}")


def spatial_list(value: Sequence[int] | None, n: int, default: int, what: str, op_name: str) -> list[int]:
    if value is None or len(value) == 0:
        return [default] * n
    value = [int(v) for v in value]
    if len(value) != n:
        raise ValueError(f"{op_name}: attribute '{what}' has {len(value)} values, expected {n} (one per spatial axis)")
    return value


def resolve_pads(
    op_name: str,
    auto_pad: str,
    in_sp: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int] | None,
) -> tuple[list[int], list[int]]:
    """(pads_begin, pads_end) per spatial axis for a forward convolution / pooling."""
    n = len(in_sp)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            dk = (kernel[i] - 1) * dilations[i] + 1
            out = -(-in_sp[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + dk - in_sp[i])
            b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            begin.append(b)
            end.append(total - b)
        return begin, end
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    if auto_pad not in ("NOTSET", ""):
        raise ValueError(f"{op_name}: unknown auto_pad '{auto_pad}' (expected NOTSET, SAME_UPPER, SAME_LOWER or VALID)")
    if pads is None or len(pads) == 0:
        return [0] * n, [0] * n
    if len(pads) != 2 * n:
        raise ValueError(f"{op_name}: attribute 'pads' has {len(pads)} values, expected {2 * n}")
    return [int(p) for p in pads[:n]], [int(p) for p in pads[n:]]


def pad_spatial(x: np.ndarray, begin: Sequence[int], end: Sequence[int], value: Any = 0) -> np.ndarray:
    """Pad (or crop, for negative pads) the trailing spatial axes of ``x``."""
    if not any(begin) and not any(end):
        return x
    lead = x.ndim - len(begin)
    if min(min(begin), min(end)) < 0:
        sl = [slice(None)] * lead + [
            slice(max(0, -b), x.shape[lead + i] - max(0, -e)) for i, (b, e) in enumerate(zip(begin, end))
        ]
        x = x[tuple(sl)]
        begin = [max(0, b) for b in begin]
        end = [max(0, e) for e in end]
        if not any(begin) and not any(end):
            return x
    shape = x.shape[:lead] + tuple(d + b + e for d, b, e in zip(x.shape[lead:], begin, end))
    out = np.full(shape, value, dtype=x.dtype) if value != 0 else np.zeros(shape, dtype=x.dtype)
    out[(Ellipsis,) + tuple(slice(b, b + d) for b, d in zip(begin, x.shape[lead:]))] = x
    return out


def out_spatial(padded: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
                op_name: str = "Conv") -> list[int]:
    out = []
    for i, (p, k, s, d) in enumerate(zip(padded, kernel, strides, dilations)):
        dk = (k - 1) * d + 1
        if p < dk:
            raise ValueError(
                f"{op_name}: the (padded) input is {p} long on spatial axis {i}, shorter than the dilated "
                f"kernel extent {dk}"
            )
        out.append((p - dk) // s + 1)
    return out


def tap_slices(kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], out_sp: Sequence[int]):
    """For every kernel tap (row-major), the spatial slices of the padded input it reads."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        yield tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, s, o in zip(tap, dilations, strides, out_sp))


def window_view(xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]) -> np.ndarray:
    """(..., *out_spatial, *kernel) view of strided, dilated windows over the trailing spatial axes."""
    n = len(kernel)
    lead = xp.ndim - n
    dk = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    for i in range(n):
        if xp.shape[lead + i] < dk[i]:
            raise ValueError(
                f"the (padded) input is {xp.shape[lead + i]} long on spatial axis {i}, shorter than the "
                f"dilated kernel extent {dk[i]}"
            )
    v = sliding_window_view(xp, dk, axis=tuple(range(lead, lead + n)))
    sl = (Ellipsis,) + tuple(slice(None, None, s) for s in strides) + tuple(slice(None, None, d) for d in dilations)
    return v[sl]


def scatter_taps(
    cols: np.ndarray, kernel: Sequence[int], in_sp: Sequence[int], strides: Sequence[int],
    dilations: Sequence[int], full: Sequence[int], offset: Sequence[int] = (),
) -> np.ndarray:
    """Adjoint of ``window_view``: cols (N, M, *kernel, *in_sp) summed into (N, M, *full)."""
    n = len(kernel)
    offset = list(offset) or [0] * n
    lead = cols.shape[:2]
    out = np.zeros(lead + tuple(full), dtype=cols.dtype)
    for tap in itertools.product(*(range(k) for k in kernel)):
        sl = [slice(None), slice(None)]
        for i in range(n):
            start = offset[i] + tap[i] * dilations[i]
            sl.append(slice(start, start + (in_sp[i] - 1) * strides[i] + 1, strides[i]))
        out[tuple(sl)] += cols[(slice(None), slice(None)) + tap]
    return out


def inside_range(o_len: int, in_len: int, offset: int, stride: int) -> tuple[slice, slice] | None:
    """Output positions o (0 <= o < o_len) whose input position o*stride + offset lies in
    [0, in_len), as (output slice, input slice); None when there are none."""
    lo = max(0, -(offset // stride)) if offset < 0 else 0
    hi = min(o_len - 1, (in_len - 1 - offset) // stride)
    if lo > hi:
        return None
    start = lo * stride + offset
    return slice(lo, hi + 1), slice(start, start + (hi - lo) * stride + 1, stride)


def _as_weight_dtype(a: np.ndarray, dt: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dt)


# ---------------------------------------------------------------------------------------------
# Conv
#
# Everything that depends only on the input shape (output size, which part of each kernel tap falls
# inside the unpadded input, the kernel path) is worked out once per shape in a _ConvGeometry.
# Scratch buffers are kept per thread and reused between calls: the per-tap im2col matrix and the
# zero-bordered padded image per geometry (the regions padding makes zero are zeroed once, when the
# buffer is made); the row-tiled im2col blocks, the 1x1 ones-row input and the banded depthwise
# buffers in one flat buffer per thread shared by every shape (thread_scratch_flat), their ones rows
# and zero borders written on each use.


class _ConvGeometry:
    """Conv shapes for one input shape: output size, kernel path, per-tap copy regions."""

    def __init__(self, op_name: str, x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
        if len(x_shape) < 3:
            raise ValueError(f"{op_name}: input 'X' must have rank >= 3 (N, C, spatial...), got shape {x_shape}")
        if len(w_shape) != len(x_shape):
            raise ValueError(
                f"{op_name}: input 'W' has rank {len(w_shape)}, expected {len(x_shape)} (same as X {x_shape})")
        n = len(x_shape) - 2
        group = int(attrs.get("group", 1) or 1)
        N, C = x_shape[:2]
        M, Cg = w_shape[:2]
        if Cg * group != C:
            raise ValueError(
                f"{op_name}: input 'X' has {C} channels but 'W' {w_shape} with group={group} expects {Cg * group}")
        if M % group:
            raise ValueError(f"{op_name}: 'W' has {M} output channels, not divisible by group={group}")
        kernel = list(w_shape[2:])
        ks = attrs.get("kernel_shape")
        if ks and [int(k) for k in ks] != kernel:
            raise ValueError(f"{op_name}: attribute kernel_shape={list(ks)} does not match 'W' shape {w_shape}")
        strides = spatial_list(attrs.get("strides"), n, 1, "strides", op_name)
        dilations = spatial_list(attrs.get("dilations"), n, 1, "dilations", op_name)
        begin, end = resolve_pads(op_name, attrs.get("auto_pad", "NOTSET"), x_shape[2:], kernel, strides,
                                  dilations, attrs.get("pads"))
        padded = [i + b + e for i, b, e in zip(x_shape[2:], begin, end)]
        self.osp = tuple(out_spatial(padded, kernel, strides, dilations, op_name))
        self.x_shape, self.n, self.N, self.C, self.M = tuple(x_shape), n, N, C, M
        self.out_shape = (N, M) + self.osp  # the conv's output, channel-first
        self.g, self.Cg, self.Mg = group, Cg, M // group
        self.kernel, self.strides, self.dilations, self.begin, self.end = kernel, strides, dilations, begin, end
        self.K = math.prod(kernel)
        self.P = math.prod(self.osp)
        self.in_sp = list(x_shape[2:])
        if self.K == 1 and not any(begin) and not any(end):
            self.kind = "1x1"
        elif Cg == 1 and group > 1:
            self.kind = "depthwise"
        else:
            self.kind = "im2col"
        # Per kernel tap: (output region, input region) of the part that reads real input, or None.
        self.taps: list[tuple[tuple, tuple] | None] = []
        for tap in itertools.product(*(range(k) for k in kernel)):
            regions = [inside_range(o, i, t * d - b, s)
                       for o, i, t, d, b, s in zip(self.osp, self.in_sp, tap, dilations, begin, strides)]
            if any(r is None for r in regions):
                self.taps.append(None)
            else:
                self.taps.append((tuple(r[0] for r in regions), tuple(r[1] for r in regions)))
        self.key = (self.x_shape, tuple(w_shape), tuple(strides), tuple(dilations), tuple(begin), tuple(end), group)
        # the tiled im2col path reads a zero-bordered copy of the input: non-negative pads only
        self.padded_ok = min(begin + end) >= 0
        row_bytes = (Cg * self.K + 1) * math.prod(self.osp[1:]) * 4
        self.im2col_rows = max(1, min(self.osp[0], _IM2COL_BLOCK_BYTES // max(1, row_bytes)))
        # Flattened zero-bordered image (non-negative pads): its spatial strides, where each kernel
        # tap starts relative to an output position, and the zeros needed past the image's end so
        # the last row's taps stay in bounds (stride-1 depthwise and shifted-GEMM paths).
        self.padded_sp = [i + b + e for i, b, e in zip(self.in_sp, begin, end)]
        self.padded_strides = [math.prod(self.padded_sp[i + 1:]) for i in range(n)]
        self.tap_offsets = [sum(t * d * ps for t, d, ps in zip(tap, dilations, self.padded_strides))
                            for tap in itertools.product(*(range(k) for k in kernel))]
        self.flat_tail = sum((k - 1) * d * ps for k, d, ps in zip(kernel[1:], dilations[1:], self.padded_strides[1:]))
        # stride-1 ungrouped convs with fewer output than input channels go by shifted GEMM sums
        self.shifted = (self.kind == "im2col" and group == 1 and self.padded_ok and M < C
                        and all(s == 1 for s in strides))
        padded_row = self.padded_strides[0]
        self.shifted_rows = max(1, min(self.osp[0], _SHIFTED_BLOCK_BYTES // max(1, self.K * M * padded_row * 4)))
        self.banded = (_BandedDepthwise(self) if self.kind == "depthwise" and n == 2 and self.Mg == 1
                       and min(begin + end) >= 0 and strides == [1, 1] else None)
        self.channels_last = (_ChannelsLastDepthwise(self) if self.kind == "depthwise" and n == 2 and self.Mg == 1
                              and min(begin + end) >= 0 else None)
        # tiny ungrouped convs (silero_vad's encoder: 4 output positions) gather their columns with
        # one np.take through a prepared index: 5 numpy calls instead of the paths' 10-20
        self.gather = (_gather_index(self) if self.kind == "im2col" and group == 1
                       and C * self.K * self.P <= _GATHER_MAX_COLUMNS else None)
        self.winograd = _Winograd(self) if _winograd_pays(self) else None
        self.tap_gemms = (self.kind == "im2col" and group == 1 and self.padded_ok and all(s == 1 for s in strides)
                          and M == C and self.P >= _TAP_GEMMS_MIN_POSITIONS and self.winograd is None
                          and blas.accumulates())
        self.tap_gemm_rows = max(1, min(self.osp[0], _TAP_GEMMS_BLOCK_BYTES // max(1, M * padded_row * 4)))
        # _conv_run takes the conv as ungrouped GEMMs into the (M, P) output (1x1, im2col or gathered
        # columns), which can add their products into a residual's array (its z_in_place)
        self.adds_into_z = (group == 1 and self.kind in ("1x1", "im2col") and self.winograd is None
                            and not self.shifted and not self.tap_gemms)


def _gather_index(geo: "_ConvGeometry") -> np.ndarray:
    """(C*K + 1, P) index into the flattened image (C * prod(in_sp) values) followed by a 0 and a 1:
    the value each (channel, kernel tap; output position) of the column matrix reads, the 0 where it
    falls in the padding; the last row reads the 1 (the ones row of a weight with a bias column).
    The geometry's per-tap regions, written into an index."""
    size = math.prod(geo.in_sp)
    positions = np.arange(size).reshape(geo.in_sp)
    tap = np.full((geo.K,) + geo.osp, -1, dtype=np.intp)
    for t, regions in enumerate(geo.taps):
        if regions is not None:
            out_sl, in_sl = regions
            tap[(t,) + out_sl] = positions[in_sl]
    tap = tap.reshape(geo.K, geo.P)
    zero = geo.C * size
    index = np.where(tap >= 0, np.arange(geo.C).reshape(geo.C, 1, 1) * size + tap, zero)
    return np.concatenate((index.reshape(geo.C * geo.K, geo.P), np.full((1, geo.P), zero + 1)))


def _gather_columns(geo: "_ConvGeometry", x: np.ndarray, with_ones: bool) -> np.ndarray:
    """(C*K [+1], P) column matrix of image ``x`` (C, *in_sp): one np.take through the geometry's
    index (``with_ones``: ending in a ones row)."""
    index = geo.gather if with_ones else geo.gather[:-1]
    return np.concatenate((x.reshape(-1), _ZERO_ONE), dtype=x.dtype).take(index)  # (the method: np.take adds ~1 us)


_ZERO_ONE = np.array([0.0, 1.0])  # what the gather index reads for the padding and the ones row


# (output block, its slice): of output columns on the GEMM paths, of output channels on the depthwise ones
Epilogue = Callable[[np.ndarray, slice], None]


# Columns per GEMM block when an epilogue (bias, residual, activation) follows, so that it runs on
# a block still in cache rather than as extra passes over the whole output.
_EPILOGUE_COLUMNS = 4096
# Bytes of im2col columns built per block (a whole 96-channel 3x3 im2col at 160x160 would be 88 MB).
# Blocks sized for the L2 (1 MB) made GEMMs of a few hundred columns, which OpenBLAS runs well below
# its speed on two threads; measured at 1 MB / 16 MB, each model alone: ResNet-50 (HF) 78 / 73 ms,
# SqueezeNet 11.6 / 11.1, Inception-v2 52.9 / 51.0, VGG-19 370 / 351 (4 MB: 369).
_IM2COL_BLOCK_BYTES = 16 << 20
# Bytes of tap products per block in the shifted-GEMM path: there the block is the GEMM's output,
# and measured (96 -> 24 channels at 160x160) bigger GEMMs win over cache residence up to ~4 MB.
_SHIFTED_BLOCK_BYTES = 4 << 20
# Stride-1 ungrouped convs with as many output as input channels, on maps of at least this many
# positions, sum one GEMM per kernel tap into their output (_conv_tap_gemms) instead of building
# im2col columns. Alone, us (im2col / tap GEMMs), 3x3 with ReLU: 64 channels at 56x56 1839 / 1401, at
# 224x224 28077 / 21366; 128 at 112x112 19768 / 16241, at 28x28 1391 / 1278; 32 at 112x112 2737 / 1845.
# Not taken: 14x14 maps and smaller (256: 1242 / 1219; 512 at 7x7: 1503 / 1914); expansions, even
# (64 -> 128 at 56x56 2540 / 2470; 64 -> 96 at 28x28 645 / 651, slower inside Inception-v2: 1.82 /
# 2.32 ms for its three); fewer outputs than inputs (the shifted path: 128 -> 32 at 56x56 1525 /
# 1744); the Winograd convs (256 at 56x56 14177 / 14736).
_TAP_GEMMS_MIN_POSITIONS = 784
# Bytes of the tap GEMMs' output block (the whole map measured best up to 64 x 224 x 226 floats).
_TAP_GEMMS_BLOCK_BYTES = 16 << 20
# Largest column matrix (values) of the gather path; measured against the other paths: 3-6x faster
# at a few hundred to 1500 values, slower at 80K (16x12x48 3x3: 116 vs 102 us).
_GATHER_MAX_COLUMNS = 1 << 14


def _gemm_into(w: np.ndarray, cols: np.ndarray, out: np.ndarray, bias: np.ndarray | None,
               post: Epilogue | None = None, accumulate: bool = False) -> None:
    """out (M, P) = w (M, K) @ cols (K, P) (+ bias per row), then ``post(block, column_slice)``;
    with ``accumulate``, out += the product instead (out holds the residual: blas.accumulate).

    The GEMM is one BLAS call (BLAS threads are the session's intra-op threads; splitting it over
    the intra-op pool as well would run two threaded GEMMs on the same cores). With an epilogue it
    runs in column blocks, each finished while still in cache."""
    P = cols.shape[1]
    step = _EPILOGUE_COLUMNS if (bias is not None or post is not None) else P
    for p0 in range(0, P, step):
        sl = slice(p0, min(P, p0 + step))
        o = out[:, sl]
        if accumulate:
            blas.accumulate(w, cols[:, sl], o)
        else:
            np.matmul(w, cols[:, sl], out=o)
        if bias is not None:
            o += bias
        if post is not None:
            post(o, sl)


def _gemm_rows_into(a: np.ndarray, w_t: np.ndarray, out: np.ndarray, bias: RowVector | None,
                    activation: Callable[[np.ndarray], Any] | None) -> None:
    """out (P, M) = a (P, K) @ w_t (K, M) (+ bias per column), the channels-last GEMM, then the
    activation; with either, a block of rows at a time so that they run on it in cache."""
    P = a.shape[0]
    step = _EPILOGUE_COLUMNS if (bias is not None or activation is not None) else P
    for p0 in range(0, P, step):
        o = out[p0:p0 + step]
        np.matmul(a[p0:p0 + step], w_t, out=o)
        if bias is not None:
            bias.add_to(o)
        if activation is not None:
            activation(o)


# Buffers made by _bordered_image (by id, weakly held): their border is zero, and only their
# interior was handed out, so a depthwise conv may read one as its zero-padded image.
_ZERO_BORDERED: "weakref.WeakValueDictionary[int, np.ndarray]" = weakref.WeakValueDictionary()


def _bordered_image(geo: _ConvGeometry, border: tuple[tuple, tuple], cdt: np.dtype) -> np.ndarray:
    """A fresh (N, Ho + pads, Wo + pads, M) buffer of ``border`` (begin pads, end pads) whose top and
    bottom border rows are zero; the conv writing its interior rows writes their left and right
    border zeros itself (_with_ones_column with its left and right widening)."""
    (top, left), (bottom, right) = border
    padded = np.empty((geo.N, geo.osp[0] + top + bottom, geo.osp[1] + left + right, geo.M), dtype=cdt)
    padded[:, :top] = 0
    padded[:, top + geo.osp[0]:] = 0
    _ZERO_BORDERED[id(padded)] = padded
    return padded


def _zero_bordered_base(x: np.ndarray, pshape: tuple, dst: tuple[slice, slice]) -> np.ndarray | None:
    """The (Hp, Wp, C) zero-bordered image whose interior ``dst`` is the (C, H, W) image ``x`` (a
    channels-last view made by _bordered_image, padded as ``pshape``), or None."""
    base = x.base
    if type(base) is not np.ndarray or _ZERO_BORDERED.get(id(base)) is not base or base.shape[1:] != pshape:
        return None
    item = x.itemsize
    hp, wp, c = pshape
    if x.strides != (item, wp * c * item, c * item):
        return None
    image_bytes = hp * wp * c * item
    offset = x.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    inside = (dst[0].start * wp + dst[1].start) * c * item
    if (offset - inside) % image_bytes or not 0 <= (offset - inside) // image_bytes < base.shape[0]:
        return None
    return base[(offset - inside) // image_bytes]


def _im2col(geo: _ConvGeometry, x: np.ndarray, cdt: np.dtype, with_ones: bool) -> np.ndarray:
    """(g, Cg*K [+1], P) column matrix of image ``x`` (C, *in_sp), in a reused per-thread buffer.
    With ``with_ones`` the last row of every group is ones, so a bias column in the weight adds the
    bias inside the GEMM."""
    g, Cg, K = geo.g, geo.Cg, geo.K
    rows = Cg * K + (1 if with_ones else 0)

    def make() -> np.ndarray:  # the padding's zeros and the ones row are written once, here
        buf = np.zeros((g, rows, geo.P), dtype=cdt)
        if with_ones:
            buf[:, -1] = 1
        return buf

    cols = thread_scratch(("im2col", geo.key, cdt.str, with_ones), make)
    view = cols[:, :Cg * K].reshape((g, Cg, K) + geo.osp)
    xg = x.reshape((g, Cg) + x.shape[1:])
    lead = (slice(None), slice(None))
    for t, regions in enumerate(geo.taps):
        if regions is not None:
            out_sl, in_sl = regions
            view[lead + (t,) + out_sl] = xg[lead + in_sl]
    return cols


def _with_ones_row(x: np.ndarray, cdt: np.dtype, groups: int = 1) -> np.ndarray:
    """x (C, *sp) (a view, strided or not) copied into a reused per-thread (C + 1, prod(sp)) buffer
    whose last row is ones, for a weight with a bias column; with ``groups``, a (groups, C / groups
    + 1, prod(sp)) buffer, each group's channels followed by a ones row."""
    C, P = x.shape[0], math.prod(x.shape[1:])
    Cg = C // groups

    def ones_rows(buf: np.ndarray) -> None:
        buf[:, Cg] = 1

    cols = thread_scratch_kept(("ones_row_cols", cdt.str), (groups, Cg + 1, P), cdt, (groups, Cg, P), ones_rows)
    # (splitting the contiguous last axis into the spatial ones is a view: the copy lands in cols)
    np.copyto(cols[:, :Cg].reshape((groups, Cg) + x.shape[1:]), x.reshape((groups, Cg) + x.shape[1:]))
    return cols if groups > 1 else cols[0]


def _with_ones_column(image: np.ndarray, cdt: np.dtype, left: int = 0, right: int = 0) -> np.ndarray:
    """(H, W, C) pixels (any layout) copied into a reused per-thread (H * (left + W + right), C + 1)
    buffer whose last column is ones: the channels-last counterpart of :func:`_with_ones_row`. With
    ``left`` / ``right``, each image row is widened by that many pixels of zeros (ones column
    included), so a GEMM against a weight with a bias column writes exact zeros there: rows of a
    zero-bordered image, written in place."""
    H, W, C = image.shape
    wp = left + W + right

    def zeros_and_ones(buf: np.ndarray) -> None:
        buf[:, :left] = 0
        buf[:, left + W:] = 0
        buf[:, left:left + W, C] = 1

    rows = thread_scratch_kept(("ones_column_rows", cdt.str), (H, wp, C + 1), cdt, (H, W, C, left, right),
                               zeros_and_ones)
    np.copyto(rows[:, left:left + W, :C], image)
    return rows.reshape(H * wp, C + 1)


def _padded_image(geo: _ConvGeometry, x: np.ndarray, cdt: np.dtype,
                  tail: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x (C, *in_sp) copied into a reused per-thread zero-bordered buffer: (flat (C, prod(padded) +
    tail) buffer whose tail stays zero, its (C, *padded) view). Negative pads crop the view."""
    psp = [max(0, b) + i + max(0, e) for i, b, e in zip(geo.in_sp, geo.begin, geo.end)]
    size = math.prod(psp)
    flat = thread_scratch(("padded", geo.key, cdt.str, tail), lambda: np.zeros((geo.C, size + tail), dtype=cdt))
    xp = flat[:, :size].reshape((geo.C,) + tuple(psp))
    dst = (slice(None),) + tuple(slice(max(0, b), max(0, b) + i) for i, b in zip(geo.in_sp, geo.begin))
    xp[dst] = x
    if min(geo.begin + geo.end) < 0:
        crop = [slice(None)] + [slice(max(0, -b), p - max(0, -e)) for b, e, p in zip(geo.begin, geo.end, psp)]
        xp = xp[tuple(crop)]
    return flat, xp


def _ones_last_row(buf: np.ndarray) -> None:
    buf[-1] = 1


def _nothing(buf: np.ndarray) -> None:
    pass


def _conv_tiled(geo: _ConvGeometry, x: np.ndarray, wts: "_ConvWeights", out: np.ndarray | None,
                bias_col: np.ndarray | None, post: Epilogue | None, cdt: np.dtype,
                out_last: np.ndarray | None = None, activation: Callable[[np.ndarray], Any] | None = None,
                accumulate: bool = False) -> None:
    """Ungrouped im2col conv of one image x (C, *in_sp) into out (M, P), a block of output rows at
    a time: the block's columns are one strided copy out of the zero-bordered image (a view of
    shape (C, *kernel, rows, *osp[1:])) into a cache-sized buffer, then one GEMM writes the block's
    output columns and the epilogue runs on them while they are in cache. With ``out_last`` (P, M)
    instead, the GEMM runs transposed and writes the output channels-last, then ``activation``. With
    ``accumulate`` the GEMM adds into ``out`` (which holds the residual) rather than writing it."""
    xp = _padded_image(geo, x, cdt)[1] if any(geo.begin) or any(geo.end) else x
    with_ones = wts.gemm_bias is not None
    w = wts.gemm_bias[0] if with_ones else wts.gemm[0]
    K = geo.Cg * geo.K
    row_len = math.prod(geo.osp[1:])
    rows = geo.im2col_rows
    depth = K + (1 if with_ones else 0)
    # one buffer per thread for every tiled conv (they run one after the other): up to
    # _IM2COL_BLOCK_BYTES, not that much per conv shape
    buf = thread_scratch_kept(("im2col_rows", cdt.str), (depth, rows, row_len), cdt, (depth, rows, row_len, with_ones),
                              _ones_last_row if with_ones else _nothing)
    sp = xp.strides[1:]
    view_strides = ((xp.strides[0],) + tuple(s * d for s, d in zip(sp, geo.dilations))
                    + tuple(s * st for s, st in zip(sp, geo.strides)))
    osp0 = geo.osp[0]
    for r0 in range(0, osp0, rows):
        n = min(rows, osp0 - r0)
        start = xp[(slice(None), slice(r0 * geo.strides[0], None))]
        src = np.lib.stride_tricks.as_strided(
            start, (geo.C,) + tuple(geo.kernel) + (n,) + tuple(geo.osp[1:]), view_strides, writeable=False)
        np.copyto(buf[:K, :n].reshape((geo.C,) + tuple(geo.kernel) + (n,) + tuple(geo.osp[1:])), src)
        cols = buf[:, :n].reshape(buf.shape[0], n * row_len)
        sl = slice(r0 * row_len, (r0 + n) * row_len)
        if out_last is not None:
            o = out_last[sl]
            np.matmul(cols.T, w.T, out=o)
            if bias_col is not None and not with_ones:
                wts.bias_row().add_to(o)
            if activation is not None:
                activation(o)
            continue
        o = out[:, sl]
        if accumulate:
            blas.accumulate(w, cols, o)
        else:
            np.matmul(w, cols, out=o)
        if bias_col is not None and not with_ones:
            o += bias_col
        if post is not None:
            post(o, sl)


def _conv_gather(geo: _ConvGeometry, x: np.ndarray, wts: "_ConvWeights", out: np.ndarray,
                 bias_col: np.ndarray | None, post: Epilogue | None, accumulate: bool = False) -> None:
    """Ungrouped conv of a small image x (C, *in_sp) into out (M, P): one np.take makes the whole
    column matrix, one GEMM the output (``accumulate``: adds it to what out holds)."""
    cols = _gather_columns(geo, x, with_ones=False)
    if accumulate:
        blas.accumulate(wts.gemm[0], cols, out)
    else:
        np.matmul(wts.gemm[0], cols, out=out)
    if bias_col is not None:
        out += bias_col
    if post is not None:
        post(out, slice(0, geo.P))


def _small_conv(geo: _ConvGeometry, wts: "_ConvWeights", activation: Callable[[np.ndarray], Any] | None,
                dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray] | None:
    """A run of this conv for one image of this shape and dtype with everything but the numpy calls
    decided beforehand, when the conv is small enough that the general path's bookkeeping (layout
    checks, blocks, epilogue closures: 10-20 us) is most of its time: an ungrouped conv whose column
    matrix is the image itself (1x1, stride 1) or one np.take through a prepared index, of at most
    _GATHER_MAX_COLUMNS values. silero_vad's encoder and decoder, PP-OCR's squeeze-excitation convs.
    None for any other conv."""
    if geo.N != 1 or geo.g != 1 or compute_dtype(dtype) != dtype:
        return None
    C, M, P = geo.C, geo.M, geo.P
    out_shape = (1, M) + geo.osp
    with_ones = wts.gemm_bias is not None  # the bias is the weight's last column: columns end in a ones row
    w = wts.gemm_bias[0] if with_ones else wts.gemm[0]
    bias = None if with_ones or wts.bias is None else wts.bias.reshape(M, 1)
    if geo.kind == "1x1" and all(s == 1 for s in geo.strides) and C * P <= _GATHER_MAX_COLUMNS:
        def columns(X: np.ndarray) -> np.ndarray:
            return _with_ones_row(X[0], dtype) if with_ones else X.reshape(C, P)
    elif geo.gather is not None:
        def columns(X: np.ndarray) -> np.ndarray:
            return _gather_columns(geo, X[0], with_ones)
    else:
        return None

    def run(X: np.ndarray) -> np.ndarray:
        y = np.dot(w, columns(X))
        if bias is not None:
            y += bias
        if activation is not None:
            activation(y)
        return y.reshape(out_shape)

    return run


def _conv_shifted(geo: _ConvGeometry, x: np.ndarray, wts: "_ConvWeights", out: np.ndarray,
                  bias_col: np.ndarray | None, post: Epilogue | None, cdt: np.dtype) -> None:
    """Ungrouped stride-1 conv of one image x (C, *in_sp) into out (M, P) without an im2col matrix.

    On the flattened zero-bordered image every kernel tap reads one contiguous run at a fixed
    offset, so one GEMM of the tap-stacked weight (K*M, C) with a block of image rows (a view, no
    copy) gives every tap's contribution at every padded position, and the output block is the sum
    of K shifted slices of that product. That moves K*M values per output pixel where im2col moves
    K*C, the better deal when the conv has fewer output than input channels."""
    row, offsets = geo.padded_strides[0], geo.tap_offsets
    flat, _ = _padded_image(geo, x, cdt, geo.flat_tail)
    w_taps = wts.tap_stacked()
    M, K = geo.M, geo.K
    rows = geo.shifted_rows
    reach = offsets[-1]  # the last tap reads furthest
    prod_buf = thread_scratch(("shifted_prod", geo.key, cdt.str), lambda: np.empty((K * M, rows * row + reach), dtype=cdt))
    acc_buf = thread_scratch(("shifted_acc", geo.key, cdt.str), lambda: np.empty((M, rows * row), dtype=cdt))
    for r0 in range(0, geo.osp[0], rows):
        n = min(rows, geo.osp[0] - r0)
        L = n * row
        start = r0 * row
        prod = prod_buf[:, :L + reach]
        np.matmul(w_taps, flat[:, start:start + L + reach], out=prod)
        prod3 = prod.reshape(K, M, L + reach)
        acc = acc_buf[:, :L]
        np.add(prod3[0, :, offsets[0]:offsets[0] + L], prod3[1, :, offsets[1]:offsets[1] + L], out=acc)
        for t in range(2, K):
            acc += prod3[t, :, offsets[t]:offsets[t] + L]
        _store_padded_rows(geo, acc, out, r0, n, bias_col, post)


def _store_padded_rows(geo: _ConvGeometry, acc: np.ndarray, out: np.ndarray, r0: int, n: int,
                       bias_col: np.ndarray | None, post: Epilogue | None) -> None:
    """Output rows r0 .. r0 + n, computed at every position of those rows of the zero-bordered image
    (acc, (M, n * padded row)), into out (M, P): the positions off the output's edge dropped, the
    bias added on the way, then ``post`` on the block (the shifted and tap-GEMM paths)."""
    row_out = math.prod(geo.osp[1:])
    sl = slice(r0 * row_out, (r0 + n) * row_out)
    o = out[:, sl]
    keep = (slice(None), slice(None)) + tuple(slice(0, size) for size in geo.osp[1:])
    inside = acc.reshape((geo.M, n) + tuple(geo.padded_sp[1:]))[keep]
    o_rows = o.reshape((geo.M, n) + tuple(geo.osp[1:]))
    if bias_col is None:
        o_rows[...] = inside
    else:
        np.add(inside, bias_col.reshape((geo.M,) + (1,) * geo.n), out=o_rows)
    if post is not None:
        post(o, sl)


def _conv_tap_gemms(geo: _ConvGeometry, x: np.ndarray, wts: "_ConvWeights", out: np.ndarray,
                    bias_col: np.ndarray | None, post: Epilogue | None, cdt: np.dtype) -> None:
    """Ungrouped stride-1 conv of one image x (C, *in_sp) into out (M, P) without an im2col matrix:
    on the flattened zero-bordered image every kernel tap reads one contiguous run of each channel
    at a fixed offset (a (C, L) view, rows a padded image apart), so the block's output at every
    padded position is the sum over taps of (M, C) weight slice @ that view, summed inside BLAS
    (blas.accumulate). The positions off the output's edge are dropped when the block is copied
    out, bias added. Where im2col copies K*C values per output position, this reads the image in
    place and moves the (M, L) block once per tap through BLAS."""
    row, offsets = geo.padded_strides[0], geo.tap_offsets
    flat, _ = _padded_image(geo, x, cdt, geo.flat_tail)
    w_taps = wts.tap_stacked()
    M = geo.M
    rows = geo.tap_gemm_rows
    acc_buf = thread_scratch_flat(("tap_gemms_acc", cdt.str), (M * rows * row,), cdt)
    for r0 in range(0, geo.osp[0], rows):
        n = min(rows, geo.osp[0] - r0)
        L = n * row
        taps = [flat[:, r0 * row + offset:r0 * row + offset + L] for offset in offsets]
        acc = acc_buf[:M * L].reshape(M, L)
        np.matmul(w_taps[:M], taps[0], out=acc)
        for t in range(1, geo.K):
            blas.accumulate(w_taps[t * M:(t + 1) * M], taps[t], acc)
        _store_padded_rows(geo, acc, out, r0, n, bias_col, post)


def _depthwise_block_channels(per_channel_floats: int) -> int:
    """Channels per block so that one block's working set stays around 512 KB (L2-resident)."""
    return max(1, (1 << 17) // max(1, per_channel_floats))


def _row_tile(ow: int) -> int:
    """Output columns per tile of the banded depthwise path: the whole row when it is short, else a
    divisor of it near 14 (measured best: long enough for the GEMM, short enough that the band's
    zeros cost little), else 14 with the last tile partly past the row."""
    if ow <= 16:
        return ow
    for t in (14, 16, 12, 15, 13, 11, 10):
        if ow % t == 0:
            return t
    return 14


_BAND_BLOCK = 1 << 21  # floats of gathered columns per channel block (measured: bigger blocks win)


class _BandedDepthwise:
    """2-D depthwise geometry (channel multiplier 1, non-negative pads, stride 1: at stride 2 the
    band's zeros cost more than the plain im2col path) for the banded-GEMM path.

    Every output row is cut into tiles of ``tw`` columns. For one channel, output tile
    y[h, j*tw:(j+1)*tw] = sum over kernel rows r of x_pad[h*sh + r*dh, window] @ band_r, where the
    window is the ``wt`` input columns the tile reads and band_r (wt, tw) holds the kernel row r on
    shifted diagonals. Gathering the kh windows of each tile side by side gives one
    (C, Ho*tiles, kh*wt) @ (C, kh*wt, tw) batched GEMM: the column gather is a single strided copy,
    about kh*wt/tw values per output instead of the K of a plain im2col, and BLAS does the rest."""

    def __init__(self, geo: _ConvGeometry) -> None:
        (kh, kw), (_, sw), (_, dw) = geo.kernel, geo.strides, geo.dilations
        ho, wo = geo.osp
        self.tw = tw = _row_tile(wo)
        self.tiles = -(-wo // tw)
        self.wt = (tw - 1) * sw + (kw - 1) * dw + 1
        hp = geo.in_sp[0] + geo.begin[0] + geo.end[0]
        wp = geo.in_sp[1] + geo.begin[1] + geo.end[1]
        self.pshape = (geo.C, hp, max(wp, (self.tiles * tw - 1) * sw + (kw - 1) * dw + 1))
        self.dst = (slice(None), slice(geo.begin[0], geo.begin[0] + geo.in_sp[0]),
                    slice(geo.begin[1], geo.begin[1] + geo.in_sp[1]))
        self.layout = (self.pshape, tuple(geo.begin), tuple(geo.in_sp))  # of the zero border
        self.exact = self.tiles * tw == wo
        self.rows = ho * self.tiles
        self.depth = kh * self.wt
        self.cb = min(geo.C, max(1, _BAND_BLOCK // (self.rows * self.depth)))
        self.band_key = (tw, kw, sw, dw)

    def band(self, wts: "_ConvWeights", geo: _ConvGeometry) -> np.ndarray:
        """(C, kh*wt (+1), tw) band matrices of the weight, made once per weight and tiling; with a
        bias, its last row holds the bias (the gathered rows end in a 1)."""
        b = wts.bands.get(self.band_key)
        if b is None:
            kh, kw = geo.kernel
            tw, wt = self.tw, self.wt
            sw, dw = geo.strides[1], geo.dilations[1]
            w = wts.depthwise.reshape(geo.C, kh, kw)
            b = np.zeros((geo.C, kh, wt, tw), dtype=w.dtype)
            for o in range(tw):
                b[:, :, o * sw + np.arange(kw) * dw, o] = w
            b = b.reshape(geo.C, kh * wt, tw)
            if wts.bias is not None:
                b = np.concatenate([b, np.broadcast_to(wts.bias.reshape(geo.C, 1, 1), (geo.C, 1, tw))], axis=1)
            b.flags.writeable = False
            wts.bands[self.band_key] = b
        return b


# When the channels-last depthwise path beats the banded (stride 1) and im2col (strided) ones, its own
# transposes included (measured per MobileNetV2 / PP-OCR / ShuffleNet shape, microseconds):
# * stride 1, either input layout: kernels up to 5 wide at any width (its einsum runs over blocks of
#   columns, _CHANNELS_LAST_RUN; inside the models, ms: PP-OCR's recognizer 240x12x80 5x5 (4) 6.0 ->
#   4.6, 480x6x80 5x5 1.67 -> 1.28, 64x24x160 3x3 0.96 -> 0.74, 128x12x160 0.90 -> 0.88; its detector
#   48x160x160 3x3 6.2 -> 4.7, 96x80x80 2.5 -> 2.1); wider kernels up to 14 columns (ConvNeXt's 7x7,
#   alone: 384x14x14 557 vs 592; 768x7x7 faster still; not 192x28x28: 1205 vs 1125, nor 96x56x56:
#   2504 vs 1673);
# * channel-first input, strided: up to 2048 pixels (240x12x80 5x5 stride (2, 1): 1035 vs 1510), not
#   at 56x56 (144 channels stride 2: 845 vs 795) nor 112x112 (96 channels: 2322 vs 1820);
# * channels-last input (no transpose in): strided up to 16384 pixels (96x112x112: 1456 vs 1820,
#   but 32x320x320: 6498 vs 4871);
# * any input at stride 1 whose kernel rows mostly fall in the top and bottom padding (the banded path
#   computes them all; this one skips them): at most 60% of the (output row, kernel row) pairs inside
#   the image (200x2x96 5x5: 40%, 279 vs 372; 88x3x96 5x5: 60%, 210 vs 240; but 32x6x96 3x3: 89%,
#   120 vs 111).
_CHANNELS_LAST_MAX_KERNEL = 5
_CHANNELS_LAST_WIDE_KERNEL_MAX_WIDTH = 14
_CHANNELS_LAST_MAX_INSIDE_ROWS = 0.6
_CHANNELS_LAST_MAX_STRIDED_PIXELS = 2048
_CHANNELS_LAST_INPUT_MAX_STRIDED_PIXELS = 16384
# Values per inner run of the channels-last einsum at stride 1: the weights are repeated over a block
# of output columns so that one run covers about this many values. The whole row (Wo*C) made the
# repeated weights large, read from L2 or memory for every output row; one pixel (C) made short runs.
# Alone (us, one pixel / a block of 650-1350 values / whole row): 96x56x56 7x7 2928 / 1651 / 2380;
# 32x112x112 3x3 2326 / 511 / 547; 144x56x56 3x3 957 / 564 / 713; 192x28x28 3x3 259 / 181 / 226;
# 384x14x14 7x7 457 / 415 / 600. Inside the models (runs of 512 / 768 / 1024 / 2048 values, ms):
# ConvNeXt-tiny's 18 7x7 convs 15.6 / 15.3 / 16.5 / 16.8 (whole rows: 22.7); MobileNetV2's 12 stride-1
# 3x3 convs 3.85 / 3.62 / 3.60 / 3.64 (whole rows: 4.6); PP-OCR's detector and recognizer alike.
_CHANNELS_LAST_RUN = 768


class _ChannelsLastDepthwise:
    """2-D depthwise geometry (channel multiplier 1, non-negative pads) for the channels-last path.

    On a (H, W, C) image every kernel tap's contribution to a row of outputs is a product of two
    contiguous runs of values: the input run and the channel weights. ``np.einsum`` sums those
    products over the taps in one call, the channels innermost, where on a (C, H, W) image the
    per-channel weight is a scalar per row and every tap costs a broadcast multiply and an add.
    At stride 1 along the width, the width and channel axes of a block of ``block`` output columns
    merge into one run of block*C values, the weights repeated that many times: longer inner loops,
    fewer of them (_CHANNELS_LAST_RUN). The last Wo % block columns take a second call."""

    def __init__(self, geo: _ConvGeometry) -> None:
        self.pshape = (geo.in_sp[0] + geo.begin[0] + geo.end[0], geo.in_sp[1] + geo.begin[1] + geo.end[1], geo.C)
        self.dst = (slice(geo.begin[0], geo.begin[0] + geo.in_sp[0]), slice(geo.begin[1], geo.begin[1] + geo.in_sp[1]))
        # what the zero border of the padded image depends on (thread_scratch_kept)
        self.layout = (self.pshape, tuple(geo.begin), tuple(geo.in_sp))
        self.block = _column_block(geo.osp[1], geo.C) if geo.strides[1] == 1 else 1
        # whole blocks of output columns per row, and the columns left after them (stride 1 only)
        self.blocks, self.rest = divmod(geo.osp[1], self.block)
        groups = _valid_kernel_rows(geo)
        inside = sum((h1 - h0) * (r1 - r0) for h0, h1, r0, r1 in groups) / (geo.osp[0] * geo.kernel[0])
        # (output rows, kernel rows) per einsum call: those inside the image on a short map, else all
        # in one call (an einsum call costs more than the few border taps it would skip)
        short = inside <= _CHANNELS_LAST_MAX_INSIDE_ROWS
        self.row_groups = groups if short else [(0, geo.osp[0], 0, geo.kernel[0])]
        pixels, width = geo.in_sp[0] * geo.in_sp[1], geo.in_sp[1]
        kw = geo.kernel[1]
        if geo.strides == [1, 1]:
            self.from_channels_first = self.from_channels_last = (
                kw <= _CHANNELS_LAST_MAX_KERNEL or width <= max(kw, _CHANNELS_LAST_WIDE_KERNEL_MAX_WIDTH) or short)
        else:
            self.from_channels_first = pixels <= _CHANNELS_LAST_MAX_STRIDED_PIXELS
            self.from_channels_last = pixels <= _CHANNELS_LAST_INPUT_MAX_STRIDED_PIXELS

    def takes(self, x_channels_last: bool) -> bool:
        """Whether this path is the faster one for an input in that layout."""
        return self.from_channels_last if x_channels_last else self.from_channels_first

    def weights(self, wts: "_ConvWeights", geo: _ConvGeometry) -> np.ndarray:
        """(kh, kw, block*C) channels-last weight, repeated for each output column of a block."""
        key = ("channels_last", self.block)
        w = wts.bands.get(key)
        if w is None:
            kh, kw = geo.kernel
            w = wts.depthwise.reshape(geo.C, kh, kw).transpose(1, 2, 0)
            w = np.broadcast_to(w[:, :, None, :], (kh, kw, self.block, geo.C)).reshape(kh, kw, -1)
            w = np.ascontiguousarray(w)
            w.flags.writeable = False
            wts.bands[key] = w
        return w


def _column_block(wo: int, channels: int) -> int:
    """Output columns per weight repeat of the channels-last path (stride 1): a divisor of ``wo``
    whose run of columns * channels values is nearest _CHANNELS_LAST_RUN (within a factor of 2),
    else that many columns with a shorter block at the row's end."""
    want = _CHANNELS_LAST_RUN / channels
    if want <= 1:
        return 1
    nearest = min((b for b in range(1, wo + 1) if wo % b == 0), key=lambda b: abs(math.log(b / want)))
    if abs(math.log(nearest / want)) <= math.log(2):
        return nearest
    return min(wo, round(want))


def _valid_kernel_rows(geo: _ConvGeometry) -> list[tuple[int, int, int, int]]:
    """Output rows grouped by the kernel rows that read the image rather than its top or bottom
    padding: (first row, end row, first kernel row, end kernel row) per run of output rows. A short
    map (PP-OCR's 2- and 3-row recognizer features under a 5x5 kernel) then skips the taps that
    only multiply zeros; a tall one has three runs (top border, inside, bottom border)."""
    kh, sh, dh, top, height = geo.kernel[0], geo.strides[0], geo.dilations[0], geo.begin[0], geo.in_sp[0]
    groups: list[tuple[int, int, int, int]] = []
    for h in range(geo.osp[0]):
        above = top - h * sh  # kernel row r reads image row r * dh - above
        r0 = min(kh, max(0, -(-above // dh)))
        r1 = max(r0, min(kh, (height - 1 + above) // dh + 1))
        if groups and groups[-1][2:] == (r0, r1):
            groups[-1] = (groups[-1][0], h + 1, r0, r1)
        else:
            groups.append((h, h + 1, r0, r1))
    return groups


def _depthwise_channels_last(geo: _ConvGeometry, cl: _ChannelsLastDepthwise, x: np.ndarray, wts: "_ConvWeights",
                             out: np.ndarray, cdt: np.dtype) -> None:
    """Depthwise conv of one image x (C, H, W), of any strides, into ``out`` (Ho, Wo, C) C-contiguous,
    bias added. The zero-bordered (Hp, Wp, C) copy of x lives in a per-thread buffer shared by every
    such conv; from a channels-last x it is a copy of contiguous rows."""
    xp = _zero_bordered_base(x, cl.pshape, cl.dst)
    if xp is None:
        xp = thread_scratch_kept(("dwcl_pad", cdt.str), cl.pshape, cdt, cl.layout,
                                 lambda buf: _zero_border(buf, *cl.dst))
        xp[cl.dst] = x.transpose(1, 2, 0)
    kw, (sh, sw), (dh, dw) = geo.kernel[1], geo.strides, geo.dilations
    wo = geo.osp[1]
    s0, s1, s2 = xp.strides
    w = cl.weights(wts, geo)
    b, blocks, rest = cl.block, cl.blocks, cl.rest
    whole = wo - rest
    for h0, h1, r0, r1 in cl.row_groups:  # each run of output rows over the kernel rows inside the image
        if r0 == r1:
            out[h0:h1] = 0
            continue
        start = (h0 * sh + r0 * dh) * s0
        rows = h1 - h0
        taps = strided_view(xp, start, (rows, blocks, r1 - r0, kw, b * geo.C),
                            (s0 * sh, s1 * sw * b, s0 * dh, s1 * dw, s2))
        np.einsum("hbrsj,rsj->hbj", taps, w[r0:r1], out=out[h0:h1, :whole].reshape(rows, blocks, b * geo.C))
        if rest:  # stride 1 (a block of one column leaves none)
            taps = strided_view(xp, start + whole * s1, (rows, r1 - r0, kw, rest * geo.C),
                                (s0 * sh, s0 * dh, s1 * dw, s2))
            np.einsum("hrsj,rsj->hj", taps, w[r0:r1, :, :rest * geo.C], out=out[h0:h1, whole:].reshape(rows, -1))
    if wts.bias is not None:
        wts.bias_row().add_to(out.reshape(-1, geo.C))


# Values per block of image rows when a channels-last image is copied out channel-first: numpy's
# copy of the whole transposed view walks it in an order that thrashes the cache on large images
# ((320, 320, 16): 3.8 ms whole, 0.88 ms a row at a time; (160, 160, 48): 2.1 / 0.61 ms).
_TRANSPOSE_BLOCK = 1 << 13


def _to_channels_first(image: np.ndarray, out: np.ndarray) -> None:
    """out (C, H, W) = image (H, W, C), a block of image rows at a time."""
    H, W, C = image.shape
    rows = max(1, _TRANSPOSE_BLOCK // max(1, W * C))
    if rows >= H:
        out[...] = image.transpose(2, 0, 1)
        return
    for h in range(0, H, rows):
        out[:, h:h + rows] = image[h:h + rows].transpose(2, 0, 1)


def _zero_border(xp: np.ndarray, rows: slice, cols: slice) -> None:
    """Zero every element of the (H, W, ...) buffer ``xp`` outside ``rows`` x ``cols`` (a (C, H, W)
    buffer is passed as its (H, W, C) view)."""
    xp[:rows.start] = 0
    xp[rows.stop:] = 0
    xp[rows, :cols.start] = 0
    xp[rows, cols.stop:] = 0


def _depthwise_banded(geo: _ConvGeometry, bd: _BandedDepthwise, x: np.ndarray, wts: "_ConvWeights",
                      y: np.ndarray, cdt: np.dtype, post: Epilogue | None = None) -> None:
    band = bd.band(wts, geo)
    C = geo.C
    # the padded image, the gathered columns and the output tiles live in per-thread buffers shared by
    # every banded depthwise conv (one per conv shape held ~30 MB in PP-OCR's recognizer)
    xp = thread_scratch_kept(("dwband_pad", cdt.str), bd.pshape, cdt, bd.layout,
                             lambda buf: _zero_border(buf.transpose(1, 2, 0), *bd.dst[1:]))
    xp[bd.dst] = x
    (kh, _), (sh, sw), (dh, _) = geo.kernel, geo.strides, geo.dilations
    ho, wo = geo.osp
    s0, s1, s2 = xp.strides
    tiles, tw, wt, cb = bd.tiles, bd.tw, bd.wt, bd.cb
    # with a bias, every gathered row ends in a 1 that meets the band's bias row
    depth = bd.depth + (wts.bias is not None)

    def block(sl: slice) -> None:
        c0, c1 = sl.start, sl.stop
        n = c1 - c0
        a = thread_scratch_flat(("dwband_cols", cdt.str), (n, bd.rows, depth), cdt)
        if depth > bd.depth:
            a[:, :, -1] = 1
        src = np.lib.stride_tricks.as_strided(
            xp[c0:c1], (n, ho, tiles, kh, wt), (s0, s1 * sh, s2 * sw * tw, s1 * dh, s2), writeable=False)
        np.copyto(a[:, :, :bd.depth].reshape(n, ho, tiles, kh, wt), src)
        if bd.exact:
            out = y[c0:c1].reshape(n, bd.rows, tw)
            np.matmul(a, band[c0:c1], out=out)
        else:
            tmp = thread_scratch_flat(("dwband_out", cdt.str), (n, bd.rows, tw), cdt)
            np.matmul(a, band[c0:c1], out=tmp)
            out = y[c0:c1]
            out[...] = tmp.reshape(n, ho, tiles * tw)[:, :, :wo]
        if post is not None:
            post(out, sl)

    _blocks(block, C, cb, C * geo.P * geo.K)


def _depthwise(geo: _ConvGeometry, x: np.ndarray, wd: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
               cdt: np.dtype, post: Epilogue | None = None) -> None:
    """Depthwise conv of one image x (C, *in_sp) into y (C*Mg, *osp), block of channels by block:
    the block's (cb, K, P) im2col matrix is built in a reused cache-sized buffer (the regions that
    padding makes zero are the same for every block, so they are zeroed once), and one batched
    matmul (cb, Mg, K) @ (cb, K, P) does the multiply-adds in BLAS. numpy's elementwise multiply by
    a per-channel (broadcast) weight is 3x slower per element than that, and needs two passes per
    tap."""
    C, Mg, K, P = geo.C, geo.Mg, geo.K, geo.P
    if all(s == 1 for s in geo.strides) and min(geo.begin + geo.end) >= 0:
        # Stride 1: on the flattened zero-bordered image every tap is one contiguous run at a fixed
        # offset, so the im2col rows are plain memory copies; rows are computed at the padded width
        # and the extra columns dropped when copying out.
        psp = geo.padded_sp
        flat, _ = _padded_image(geo, x, cdt, geo.flat_tail)
        L = geo.osp[0] * geo.padded_strides[0]
        offsets = geo.tap_offsets
        w3 = wd.reshape(C, Mg, K)
        cb = min(C, _depthwise_block_channels(K * L + Mg * L))
        keep = (slice(None),) * 3 + tuple(slice(0, o) for o in geo.osp[1:])
        yv = y.reshape((C, Mg) + geo.osp)
        ext = (geo.osp[0],) + tuple(psp[1:])

        def flat_block(sl: slice) -> None:
            c0, c1 = sl.start, sl.stop
            n = c1 - c0
            buf = thread_scratch(("dwflat", geo.key, cdt.str, cb), lambda: np.empty((cb, K + Mg, L), dtype=cdt))
            src = flat[c0:c1]
            for t, off in enumerate(offsets):
                buf[:n, t] = src[:, off:off + L]
            acc = buf[:n, K:]
            np.matmul(w3[c0:c1], buf[:n, :K], out=acc)
            if bias is not None:
                acc += bias.reshape(C, Mg, 1)[c0:c1]
            yv[c0:c1] = acc.reshape((n, Mg) + ext)[keep]
            if post is not None:
                post(yv[c0:c1], slice(c0 * Mg, c1 * Mg))

        _blocks(flat_block, C, cb, C * Mg * P * K)
        return

    cb = min(C, _depthwise_block_channels(K * P + Mg * P))
    w3 = wd.reshape(C, Mg, K)
    y3 = y.reshape(C, Mg, P)
    regions = [(t, r[0], r[1]) for t, r in enumerate(geo.taps) if r is not None]
    lead = (slice(None),)

    def block(sl: slice) -> None:
        c0, c1 = sl.start, sl.stop
        n = c1 - c0
        # per-thread buffer; any leading part of it has the same zero regions
        buf = thread_scratch(("dwcols", geo.key, cdt.str, cb), lambda: np.zeros((cb, K) + geo.osp, dtype=cdt))
        xb = x[c0:c1]
        for t, out_sl, in_sl in regions:
            buf[(slice(0, n), t) + out_sl] = xb[lead + in_sl]
        out = y3[c0:c1]
        np.matmul(w3[c0:c1], buf[:n].reshape(n, K, P), out=out)
        if bias is not None:
            out += bias.reshape(C, Mg, 1)[c0:c1]
        if post is not None:
            post(out, slice(c0 * Mg, c1 * Mg))

    # one thread: split over the pool this path measured slower (96x112x112 stride 2 in MobileNetV2:
    # 2.0 ms alone, 2.5-2.9 ms over two workers next to OpenBLAS's spinning threads)
    _blocks(block, C, cb, 0)


# Winograd F(2x2, 3x3) (Lavin & Gray, 2015) for ungrouped stride-1 3x3 convs with many channels: each
# 2x2 block of outputs is A^T [(G w G^T) * (B^T d B)] A over the 4x4 input tile d, so the multiply-adds
# become 16 GEMMs of (M, C) by (C, tiles), 4 multiply-adds per output and channel instead of 9. The
# transforms of the input and of the products are ~40 passes over numpy arrays a quarter of the image's
# size, cheap next to the GEMMs only with many channels on a large enough image. Measured on this
# machine (2 threads, one conv + Relu, us, im2col path / this one): 256x28x28 -> 256: 4215 / 3751;
# 256x56x56: 17314 / 14839; 512x28x28: 15247 / 12356; 256x28x28 -> 512: 7321 / 6624; inside light
# VGG-19 (ms, 3 convs each) 256x56x56 53.5 / 45.9, 512x28x28 48.5 / 37.2. Not taken: 14x14 (512: 4430 /
# 3689 alone but 19.5 / 18.1 ms for VGG-19's four; 256 inside ResNet-50 and 192 inside Inception-v2:
# no gain), 7x7 (512: 1587 / 2087), 128 channels (28x28: 1463 / 1601; 56x56 -> 256: 7688 / 8245),
# large images with few channels (64x224x224: 26645 / 46169). Errors stay at the im2col path's level
# (~7e-7 relative in float32).
_WINOGRAD_MIN_CHANNELS = 256
_WINOGRAD_MIN_SIDE = 28
_WINOGRAD_BLOCK_VALUES = 1 << 18
_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
_WINOGRAD_A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def _winograd_pays(geo: _ConvGeometry) -> bool:
    """Whether the conv is one F(2x2, 3x3) serves (pads of 0 or 1) and one where it measured faster."""
    return (geo.kind == "im2col" and geo.n == 2 and geo.g == 1 and geo.kernel == [3, 3]
            and geo.strides == [1, 1] and geo.dilations == [1, 1]
            and all(p in (0, 1) for p in geo.begin + geo.end)
            and min(geo.C, geo.M) >= _WINOGRAD_MIN_CHANNELS and min(geo.osp) >= _WINOGRAD_MIN_SIDE)


class _Winograd:
    """Tiling of one input shape for F(2x2, 3x3).

    Output tile (a, b) reads rows 2a..2a+3 and columns 2b..2b+3 of the zero-padded image. That image is
    kept as four parity planes, plane (py, px) holding its pixels (2a+py, 2b+px) as a (C, R, Q) array
    (R, Q = tiles + 1): every tile reads each plane at (a, b) or one row / column further, so each
    transform step is one numpy call over whole flattened planes, shifted by Q or by 1. Those shifts
    also make values at the planes' last row and column (and past the last channel, into ``slack``):
    they land in tile positions that are dropped at the end."""

    def __init__(self, geo: _ConvGeometry) -> None:
        (ho, wo), (h, w) = geo.osp, geo.in_sp
        (top, left) = geo.begin
        self.th, self.tw = -(-ho // 2), -(-wo // 2)
        self.R, self.Q = self.th + 1, self.tw + 1
        self.F = self.R * self.Q
        self.slack = self.Q + 1
        # (plane rows, image rows) and (plane columns, image columns) each parity plane copies
        self.fills = {}
        for py in range(2):
            for px in range(2):
                rows = self._span(py, top, h, self.R)
                cols = self._span(px, left, w, self.Q)
                self.fills[py, px] = (rows, cols)
        self.exact = (2 * self.th, 2 * self.tw) == (ho, wo)
        self.layout = (self.R, self.Q, top, left, h, w)  # what the planes' zero borders depend on
        # channels per block of the input transform: its planes, rows and output rows (28 values per
        # plane position and channel) within ~1 MB
        self.block = max(1, min(geo.C, _WINOGRAD_BLOCK_VALUES // (28 * self.F)))

    @staticmethod
    def _span(parity: int, pad: int, size: int, planes: int) -> tuple[slice, slice]:
        """Plane indices i with padded position 2i + parity = image position + pad inside the image."""
        first = max(0, -(-(pad - parity) // 2))
        start = 2 * first + parity - pad
        count = max(0, min(planes - first, -(-(size - start) // 2)))
        return slice(first, first + count), slice(start, start + 2 * count - 1 if count else start, 2)

    def weights(self, wts: "_ConvWeights", geo: _ConvGeometry) -> np.ndarray:
        """(16, M, C+1) transformed weights G w G^T per tile position, the bias in the last column of
        position (1, 1): A^T adds that position to all four outputs once each."""
        u = wts.bands.get("winograd")
        if u is None:
            M, C = geo.M, geo.C
            # G w G^T of every filter at once: kron(G, G) (16, 9) @ the filters' taps (9, M*C), one
            # GEMM in the weights' dtype (G's entries are 0, +-1/2 and 1: within an ulp of a float64
            # transform). The einsum over (i, k, j, l) in float64 took 60 ms of a 512x512 conv's first
            # run, this 5.
            dt = wts.gemm.dtype
            gw = np.kron(_WINOGRAD_G, _WINOGRAD_G).astype(dt) @ wts.gemm[0].reshape(M * C, 9).T
            u = np.empty((16, M, C + 1), dtype=dt)
            u[:, :, :C] = gw.reshape(16, M, C)
            u[:, :, C] = 0
            if wts.bias is not None:
                u[5, :, C] = wts.bias
            u.flags.writeable = False
            wts.bands["winograd"] = u
        return u


def _conv_winograd(geo: _ConvGeometry, wg: _Winograd, x: np.ndarray, wts: "_ConvWeights", y: np.ndarray,
                   cdt: np.dtype) -> None:
    """y (M, Ho, Wo) = conv of one image x (C, H, W), bias added (see _Winograd)."""
    C, M, R, Q, F, slack = geo.C, geo.M, wg.R, wg.Q, wg.F, wg.slack

    def bias_row(buf: np.ndarray) -> None:
        buf[:, C] = 0
        buf[5, C] = 1  # meets the bias column of the weights

    # the parts of the buffers the transforms never write (borders, slack, the bias row) are written
    # when a buffer's last user had another layout: once per run for all the channel blocks but the last
    v = thread_scratch_kept(("winograd_v", cdt.str), (16, C + 1, F), cdt, (C, F), bias_row)
    cb = wg.block
    for c0 in range(0, C, cb):  # a block of channels at a time, its planes and rows in cache
        c1 = min(C, c0 + cb)
        n = (c1 - c0) * F

        def plane_borders(buf: np.ndarray, channels: int = c1 - c0, n: int = n) -> None:
            for (py, px), (rows, cols) in wg.fills.items():
                _zero_border(buf[py, px, :n].reshape(channels, R, Q).transpose(1, 2, 0), rows[0], cols[0])
                buf[py, px, n:] = 0

        planes = thread_scratch_kept(("winograd_planes", cdt.str), (2, 2, n + slack), cdt, (wg.layout, n),
                                     plane_borders)
        for (py, px), (rows, cols) in wg.fills.items():
            planes[py, px, :n].reshape(c1 - c0, R, Q)[:, rows[0], cols[0]] = x[c0:c1, rows[1], cols[1]]
        # B^T d B with B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], rows first:
        # u[i][px] combines plane rows a and a+1 (a shift of Q), then v[i][j] columns b and b+1
        u = thread_scratch_kept(("winograd_rows", cdt.str), (4, 2, n + 1), cdt, (n,), _zero_last_column)
        for px in range(2):
            e0, e1 = planes[0, px, :n], planes[0, px, Q:Q + n]
            o0, o1 = planes[1, px, :n], planes[1, px, Q:Q + n]
            np.subtract(e0, e1, out=u[0, px, :n])
            np.add(o0, e1, out=u[1, px, :n])
            np.subtract(e1, o0, out=u[2, px, :n])
            np.subtract(o0, o1, out=u[3, px, :n])
        v4 = v[:, c0:c1].reshape(4, 4, n)
        for i in range(4):
            e0, e1 = u[i, 0, :n], u[i, 0, 1:n + 1]
            o0, o1 = u[i, 1, :n], u[i, 1, 1:n + 1]
            np.subtract(e0, e1, out=v4[i, 0])
            np.add(o0, e1, out=v4[i, 1])
            np.subtract(e1, o0, out=v4[i, 2])
            np.subtract(o0, o1, out=v4[i, 3])
    products = thread_scratch_flat(("winograd_products", cdt.str), (16, M, F), cdt)
    np.matmul(wg.weights(wts, geo), v, out=products)
    # A^T m A over all 16 positions at once: one (4, 16) @ (16, M*F) GEMM
    outputs = thread_scratch_flat(("winograd_outputs", cdt.str), (4, M * F), cdt)
    np.matmul(_winograd_output_transform(cdt), products.reshape(16, M * F), out=outputs)
    tiles = outputs.reshape(2, 2, M, R, Q)[:, :, :, :wg.th, :wg.tw].transpose(2, 3, 0, 4, 1)
    if wg.exact:
        y.reshape(M, wg.th, 2, wg.tw, 2)[...] = tiles
    else:
        ho, wo = geo.osp
        y[...] = tiles.reshape(M, 2 * wg.th, 2 * wg.tw)[:, :ho, :wo]


def _zero_last_column(buf: np.ndarray) -> None:
    buf[..., -1] = 0


_WINOGRAD_OUTPUT: dict[str, np.ndarray] = {}


def _winograd_output_transform(cdt: np.dtype) -> np.ndarray:
    """kron(A^T, A^T): output (i, j) of a tile from its 16 products."""
    t = _WINOGRAD_OUTPUT.get(cdt.str)
    if t is None:
        t = np.kron(_WINOGRAD_A_T, _WINOGRAD_A_T).astype(cdt)
        t.flags.writeable = False
        _WINOGRAD_OUTPUT[cdt.str] = t
    return t


def _blocks(fn: Callable[[slice], None], length: int, block: int, work: int) -> None:
    """fn over [0, length) in blocks of ``block``, the blocks shared out over the intra-op pool when
    there are several and ``work`` (multiply-adds) is worth a hand-off."""
    starts = list(range(0, length, block))
    parts = min(threads.current_num_threads(), len(starts))

    def run_blocks(sl: slice) -> None:
        for i in range(sl.start, sl.stop):
            s = starts[i]
            fn(slice(s, min(s + block, length)))

    if parts <= 1 or work < threads.ELEMENTWISE_MIN_SIZE:
        run_blocks(slice(0, len(starts)))
    else:
        threads.parallel_for(run_blocks, len(starts), parts)


class _ConvWeights:
    """A weight laid out for the kernel path: (g, Mg, Cg*K) (+ a bias column), or (C, Mg*K) depthwise."""

    def __init__(self, W: np.ndarray, B: np.ndarray | None, group: int, cdt: np.dtype) -> None:
        M, Cg = W.shape[:2]
        K = math.prod(W.shape[2:])
        Mg = M // group
        w = np.asarray(W).astype(cdt, copy=False)
        self.bias = None if B is None else np.ascontiguousarray(B, dtype=cdt)
        self.K = K
        w3 = w.reshape(group, Mg, Cg * K)
        # The bias as an extra weight column, so the GEMM against columns ending in a ones row adds
        # it: im2col paths build such columns anyway; an ungrouped 1x1 conv copies its input for it
        # when that input is at most half the output (an expansion), cheaper than a pass over the
        # output. A grouped 1x1 conv always does: its bias, one value per row of the output's
        # (channels, pixels) matrix, broadcasts along short rows, which numpy adds at half the speed
        # of a plain pass (ShuffleNet's 272x14x14 in 4 groups, GEMM, bias, residual and ReLU: 83 us, 74 with
        # the bias as columns; the model 9.34 -> 9.03 ms).
        # ``gemm`` is then a view of the same memory, without the column.
        self.gemm_bias = None
        if self.bias is not None and (K > 1 or (group == 1 and 2 * Cg <= Mg) or (group > 1 and Cg > 1)):
            self.gemm_bias = np.concatenate([w3, self.bias.reshape(group, Mg, 1)], axis=2)
            self.gemm = self.gemm_bias[:, :, :Cg * K]
        else:
            self.gemm = np.ascontiguousarray(w3)
        self.depthwise = self.gemm.reshape(group * Mg * K) if Cg == 1 else None
        self.bands: dict[tuple, np.ndarray] = {}  # depthwise weights re-laid out (banded, channels-last), by tiling
        for a in (self.gemm, self.gemm_bias, self.bias):
            if a is not None:
                a.flags.writeable = False
        self._tap_stacked: np.ndarray | None = None
        self._bias_row: RowVector | None = None
        self._finite: bool | None = None

    @property
    def finite(self) -> bool:
        """Whether every weight and bias value is finite (0 * w is then 0), found on first use."""
        if self._finite is None:
            self._finite = bool(np.isfinite(self.gemm).all()) and (self.bias is None or bool(np.isfinite(self.bias).all()))
        return self._finite

    def bias_row(self) -> RowVector:
        """The bias as a row vector for channels-last outputs (rows of pixels), made on first use."""
        if self._bias_row is None:
            self._bias_row = RowVector(self.bias)
        return self._bias_row

    def tap_stacked(self) -> np.ndarray:
        """(K*M, C) tap-major weight of an ungrouped conv, made on first use (shifted and tap-GEMM paths)."""
        if self._tap_stacked is None:
            M, CK = self.gemm.shape[1:]
            K = self.K
            stacked = self.gemm[0].reshape(M, CK // K, K).transpose(2, 0, 1).reshape(K * M, CK // K)
            self._tap_stacked = np.ascontiguousarray(stacked)
            self._tap_stacked.flags.writeable = False
        return self._tap_stacked


def _epilogue(z_block: Callable[[slice, np.ndarray], np.ndarray] | None,
              activation: Callable[[np.ndarray], Any] | None) -> Epilogue:
    """FusedConv's epilogue on one output block: + the matching block of Z, then the activation."""
    def post(o: np.ndarray, sl: slice) -> None:
        if z_block is not None:
            o += z_block(sl, o)
        if activation is not None:
            activation(o)

    return post


def _conv_run(op_name: str, geo: _ConvGeometry, X: np.ndarray, wts: _ConvWeights,
              activation: Callable[[np.ndarray], Any] | None = None, Z: np.ndarray | None = None,
              x_channels_last: bool = False, channels_last_out: bool = False,
              border: tuple[tuple, tuple] | None = None, shuffle: int = 0,
              into: np.ndarray | None = None, z_in_place: bool = False) -> np.ndarray:
    """Conv of X with prepared weights. ``Z`` (same shape as the output) is added and then
    ``activation`` applied in place, on each GEMM output block while it is still in cache where the
    path allows it (FusedConv's semantics). ``x_channels_last``: X is a (N, C, H, W) view of
    (N, H, W, C) memory (_is_channels_last). With ``channels_last_out`` (a 2-D 1x1, tiled im2col or
    channels-last depthwise conv without ``Z``) the result is such a view too; with ``border`` as
    well (a 1x1 conv), the view of the interior of a zero-bordered (N, Hp, Wp, C) buffer.

    ``shuffle`` (the conv's groups, of a grouped 1x1 conv: ``conv_kernel``'s ``shuffle_groups``): the
    output's channels come out shuffled in those groups (channel k * M/g + j at j * g + k, ShuffleNet's
    Reshape -> Transpose -> Reshape), each group's GEMM rows written there.

    ``into``: a C-contiguous array of the output's shape and compute dtype (a channel-first output)
    that the conv writes its result into and returns, instead of a fresh one (runtime.concat_into).

    ``z_in_place``: Z is the result's array (a C-contiguous array of the output's shape and compute
    dtype that the caller may overwrite, where ``geo.adds_into_z``): each GEMM adds its products
    into it (one BLAS call, blas.accumulate) instead of writing them and adding Z after."""
    if shuffle and not (geo.kind == "1x1" and geo.g == shuffle and not channels_last_out):
        raise ValueError(f"{op_name}: only a channel-first grouped 1x1 conv writes a channel shuffle of its own groups")
    cdt = compute_dtype(X.dtype)
    x = X if X.dtype == cdt else X.astype(cdt)
    N, M, g, Mg = geo.N, geo.M, geo.g, geo.Mg
    if channels_last_out and border is not None:
        (top, left), (_, right) = border
        ho, wo = geo.osp
        bordered = _bordered_image(geo, border, cdt)
        y = bordered[:, top:top + ho, left:left + wo].transpose(0, 3, 1, 2)
    elif channels_last_out:
        y_last = np.empty((N,) + geo.osp + (M,), dtype=cdt)
        y = y_last.transpose(0, 3, 1, 2)
    elif z_in_place:
        y = Z
    elif into is not None:
        if into.shape != geo.out_shape or into.dtype != cdt or not into.flags.c_contiguous:
            raise ValueError(f"{op_name}: cannot write a {into.dtype} array of shape {into.shape} as its output")
        y = into
    else:
        y = np.empty(geo.out_shape, dtype=cdt)
    # (a bordered image's interior is no (M, P) matrix; its 1x1 conv writes it by image rows)
    y3 = y.reshape(N, g, Mg, geo.P) if border is None else None
    # where the GEMMs' rows go (group k's row j): with the shuffle, g rows apart (BLAS takes the row
    # stride); the residual is added there, before the shuffle as in the unfused graph
    rows3 = y.reshape(N, Mg, g, geo.P).transpose(0, 2, 1, 3) if shuffle else y3
    bias_col = wts.bias.reshape(M, 1) if wts.bias is not None else None
    z3 = None
    if Z is not None and not z_in_place:
        if tuple(Z.shape) != tuple(y.shape):
            raise ValueError(f"{op_name}: input 'Z' has shape {tuple(Z.shape)}, expected {tuple(y.shape)}")
        z3 = Z.reshape(N, g, Mg, geo.P)
    fused = activation is not None or z3 is not None
    for i in range(N):
        post = None
        if fused and geo.kind == "depthwise":  # blocks of output channels
            post = _epilogue(None if Z is None else lambda sl, o, _z=Z[i]: _z[sl].reshape(o.shape), activation)
        elif fused and g == 1:  # blocks of output columns
            post = _epilogue(None if z3 is None else lambda sl, o, _z=z3[i, 0]: _z[:, sl], activation)

        if geo.kind == "1x1":
            xi = x[i]
            if any(s != 1 for s in geo.strides):
                xi = xi[(slice(None),) + tuple(slice(None, None, s) for s in geo.strides)]
            # a strided 1x1 conv's input view is channels-last no more
            xi_last = x_channels_last and xi.shape == x.shape[1:]
            if border is not None:
                # whole rows of the bordered image: the input's zero border columns make zeros there
                # (_output_layout: no bias outside the GEMM, an activation that keeps zeros)
                a = _with_ones_column(xi.transpose(1, 2, 0), cdt, left, right)
                if wts.gemm_bias is None:
                    a, w_t = a[:, :geo.C], wts.gemm[0].T
                else:
                    w_t = wts.gemm_bias[0].T
                _gemm_rows_into(a, w_t, bordered[i, top:top + geo.osp[0]].reshape(-1, M), None, activation)
                continue
            if g == 1 and (channels_last_out or xi_last):
                # a channels-last image is the (P, C) matrix transposed: BLAS reads either as it lies
                pixels_by_channel = (xi.transpose(1, 2, 0).reshape(geo.P, geo.C) if xi_last
                                     else np.ascontiguousarray(xi).reshape(geo.C, geo.P).T)
                if channels_last_out:
                    if wts.gemm_bias is not None:
                        # an expansion: a ones column on the (narrower) input adds the bias inside the GEMM
                        a, w_t, bias_row = _with_ones_column(pixels_by_channel[None], cdt), wts.gemm_bias[0].T, None
                    else:
                        a, w_t = pixels_by_channel, wts.gemm[0].T
                        bias_row = None if wts.bias is None else wts.bias_row()
                    _gemm_rows_into(a, w_t, y_last[i].reshape(geo.P, M), bias_row, activation)
                    continue
                _gemm_into(wts.gemm[0], pixels_by_channel.T, y3[i, 0], bias_col, post, z_in_place)
            elif g == 1 and wts.gemm_bias is not None:
                _gemm_into(wts.gemm_bias[0], _with_ones_row(xi, cdt), y3[i, 0], None, post, z_in_place)
            elif g == 1:
                _gemm_into(wts.gemm[0], np.ascontiguousarray(xi).reshape(geo.Cg, geo.P), y3[i, 0], bias_col, post,
                           z_in_place)
            elif wts.gemm_bias is not None:
                np.matmul(wts.gemm_bias, _with_ones_row(xi, cdt, g), out=rows3[i])
            else:
                np.matmul(wts.gemm, np.ascontiguousarray(xi).reshape(g, geo.Cg, geo.P), out=rows3[i])
                if bias_col is not None:
                    rows3[i] += wts.bias.reshape(g, Mg, 1)
        elif geo.kind == "depthwise":
            cl = geo.channels_last
            if channels_last_out or (cl is not None and cl.takes(x_channels_last)):
                if channels_last_out:
                    o = y_last[i]
                else:
                    o = thread_scratch_flat(("dwcl_out", cdt.str), geo.osp + (M,), cdt)
                _depthwise_channels_last(geo, cl, x[i], wts, o, cdt)
                if activation is not None and Z is None:
                    activation(o)  # on the contiguous channels-last block, before any transpose
                if channels_last_out:
                    continue
                _to_channels_first(o, y[i])
                if Z is not None:
                    post(y[i], slice(0, M))  # + Z, then the activation
            elif geo.banded is not None:
                _depthwise_banded(geo, geo.banded, x[i], wts, y[i], cdt, post)
            else:
                _depthwise(geo, x[i], wts.depthwise, wts.bias, y[i], cdt, post)
        elif geo.gather is not None:
            _conv_gather(geo, x[i], wts, y3[i, 0], bias_col, post, z_in_place)
        elif geo.winograd is not None and not channels_last_out:
            _conv_winograd(geo, geo.winograd, x[i], wts, y[i], cdt)
            if post is not None:
                post(y3[i, 0], slice(0, geo.P))
        elif geo.shifted:
            _conv_shifted(geo, x[i], wts, y3[i, 0], bias_col, post, cdt)
        elif geo.tap_gemms and not channels_last_out:
            _conv_tap_gemms(geo, x[i], wts, y3[i, 0], bias_col, post, cdt)
        elif g == 1 and geo.padded_ok:
            if channels_last_out:
                _conv_tiled(geo, x[i], wts, None, bias_col, None, cdt, y_last[i].reshape(geo.P, M), activation)
                continue
            _conv_tiled(geo, x[i], wts, y3[i, 0], bias_col, post, cdt, accumulate=z_in_place)
        else:
            with_ones = wts.gemm_bias is not None
            cols = _im2col(geo, x[i], cdt, with_ones)
            w = wts.gemm_bias if with_ones else wts.gemm
            if g == 1:
                _gemm_into(w[0], cols[0], y3[i, 0], None if with_ones else bias_col, post, z_in_place)
            else:
                np.matmul(w, cols, out=y3[i])
                if bias_col is not None and not with_ones:
                    y3[i] += wts.bias.reshape(g, Mg, 1)
        if fused and post is None:
            if z3 is not None:
                rows3[i] += z3[i]
            if activation is not None:
                activation(y3[i])
    return y if y.dtype == X.dtype else y.astype(X.dtype)


def _is_channels_last(x: np.ndarray) -> bool:
    """Whether the (C, H, W) image x is a transposed view of (H, W, C) memory whose pixels are
    contiguous runs of channels and whose rows are one after the other, or further apart (the
    interior of a zero-bordered image, _bordered_image). A one-pixel image, both layouts at once,
    counts as channel-first."""
    if x.ndim != 3 or x.shape[0] <= 1 or x.shape[1] * x.shape[2] <= 1:
        return False
    c, h, w = x.shape
    pixel = c * x.itemsize
    return x.strides[0] == x.itemsize and (w == 1 or x.strides[2] == pixel) and (h == 1 or x.strides[1] >= w * pixel)


def _check_bias(op_name: str, B: np.ndarray | None, M: int) -> None:
    if B is not None and tuple(B.shape) != (M,):
        raise ValueError(f"{op_name}: input 'B' has shape {tuple(B.shape)}, expected ({M},)")


def conv_kernel(ctx: KernelContext, activation: Callable[[np.ndarray], Any] | None = None):
    """A prepared Conv kernel ``run(X, W, B=None, Z=None)`` for ``ctx``'s node (Conv attributes;
    other attributes, such as FusedConv's activation ones, are ignored).

    ``activation`` (an in-place function on a float array, returning it) is applied to the output,
    after the bias and the optional residual ``Z`` (same shape as the output), on each GEMM output
    block while it is still in cache: com.microsoft FusedConv is ``conv_kernel(ctx, act)``.

    Where Z dies at this node (the plan's ``inplace`` donation) and the conv is one GEMM per image,
    the GEMM adds its products into Z's array and returns it (``z_dies``; _conv_run's z_in_place):
    the residual costs no pass of its own."""
    attrs = dict(ctx.attrs)
    op_name = ctx.op_type or "Conv"
    consts = list(ctx.const_inputs) + [None] * 3
    W_const, B_const = consts[1], consts[2]
    group = int(attrs.get("group", 1) or 1)
    geometries: dict[tuple, _ConvGeometry] = {}
    prepared: dict[str, _ConvWeights] = {}  # by compute dtype, for constant W (and B)
    readers = _channels_last_readers(ctx)
    # by (X shape, W shape, X strides, Z given): (X is channels-last, the output goes channels-last,
    # the zero border of its image or None)
    layouts: dict[tuple, tuple[bool, bool, tuple[tuple, tuple] | None]] = {}
    # by (X shape, dtype): the prepared run of _small_conv, or None where the conv is not small (decided once)
    small: dict[tuple, Callable[[np.ndarray], np.ndarray] | None] = {}

    def geometry(key: tuple[tuple, tuple]) -> _ConvGeometry:  # by (X shape, W shape)
        geo = geometries.get(key)
        if geo is None:
            geo = geometries[key] = _ConvGeometry(op_name, *key, attrs)
        return geo

    def conv(X, W, B=None, Z=None, *, shuffle: int = 0, into: np.ndarray | None = None, z_dies: bool = False):
        if (small and W is W_const and B is B_const and Z is None and not shuffle and into is None
                and type(X) is np.ndarray):
            run_small = small.get((X.shape, X.dtype))
            if run_small is not None:
                return run_small(X)
        check_float(op_name, "X", X)
        check_float(op_name, "W", W)
        key = (X.shape, W.shape)
        geo = geometry(key)
        _check_bias(op_name, B, geo.M)
        cdt = compute_dtype(X.dtype)
        if W is W_const and (B is None or B is B_const):
            wts = prepared.get(cdt.str)
            if wts is None:
                wts = prepared[cdt.str] = _ConvWeights(W, B, group, cdt)
        else:
            wts = _ConvWeights(W, B, group, cdt)
        layout = layouts.get((key, X.strides, Z is None))
        if layout is None:
            x_last = geo.n == 2 and geo.N > 0 and _is_channels_last(X[0])
            out_last, border = ((False, None) if readers is None or Z is not None or geo.n != 2 or geo.N == 0
                                else _output_layout(geo, x_last, readers, wts, activation))
            layout = layouts[(key, X.strides, Z is None)] = (x_last, out_last, border)
        x_last, channels_last_out, border = layout
        if border is not None and wts is not prepared.get(cdt.str):
            border = None  # weights given at run time: their finiteness was checked for another
        if (W is W_const and B is B_const and Z is None and not x_last and not channels_last_out
                and (X.shape, X.dtype) not in small and len(small) < 8):
            small[(X.shape, X.dtype)] = _small_conv(geo, wts, activation, X.dtype)
        if into is None:
            z_in_place = (z_dies and not shuffle and type(Z) is np.ndarray and Z.dtype == cdt == X.dtype
                          and Z.flags.c_contiguous and Z.flags.writeable and geo.adds_into_z
                          and Z.shape == geo.out_shape)
            return _conv_run(op_name, geo, X, wts, activation, Z, x_last, channels_last_out, border, shuffle,
                             z_in_place=z_in_place)
        # ``into`` is channel-first whatever layout the readers would take; a result cast back to
        # X's dtype is made, then copied in
        if X.dtype != cdt:
            into[...] = _conv_run(op_name, geo, X, wts, activation, Z, x_last, False, None, shuffle)
            return into
        return _conv_run(op_name, geo, X, wts, activation, Z, x_last, False, None, shuffle, into)

    def output_shape(X: np.ndarray, W: np.ndarray) -> tuple[int, ...]:
        """The shape of ``conv(X, W, ...)``'s result (ValueError where X and W do not make a conv)."""
        geo = geometry((X.shape, W.shape))
        return geo.out_shape

    # what runtime.concat_into asks of a producer: ``into=`` (a C-contiguous array of the output's shape
    # and X's dtype, written and returned) and ``output_shape``
    conv.output_shape = output_shape  # type: ignore[attr-defined]
    conv.writes_into = True  # type: ignore[attr-defined]
    # only ungrouped convs take Z's array as their GEMMs' output (geo.adds_into_z); without the single
    # BLAS call, adding into Z would be the product and the add it saves
    if group == 1 and blas.accumulates():
        conv.inplace = {3: lambda X, W, B=None, Z=None: conv(X, W, B, Z, z_dies=True)}  # type: ignore[attr-defined]

    # the channel shuffle this conv writes itself (runtime.channel_shuffle): that of its own groups, for
    # a 2-D grouped 1x1 conv of stride 1 and no padding (its GEMM's rows); 0: none
    w_shape = None if ctx.node is None else _static_weight_shape(ctx.node)
    pointwise = w_shape is not None and w_shape[2:] == (1, 1) and _unit_stride_unpadded(attrs)
    conv.shuffle_groups = group if group > 1 and pointwise else 0  # type: ignore[attr-defined]
    return conv


@dataclass(frozen=True)
class _ChannelsLastReaders:
    """The readers of a conv's output, when every one of them takes a channels-last image well:
    ``depthwise`` (op type, weight shape, attributes) of the depthwise convs among them, and
    ``transposed``, whether one is a Transpose to (N, H, W, C), which hands on a C-contiguous array
    from a channels-last image instead of copying a channel-first one (ConvNeXt's conv -> permute
    -> LayerNorm)."""

    depthwise: list[tuple[str, tuple, dict]]
    transposed: bool
    pointwise: bool = False

    def gain(self) -> bool:
        """Whether some reader is faster on a channels-last image (a pointwise conv only copes)."""
        return bool(self.depthwise) or self.transposed


def _static_weight_shape(node: Any) -> tuple[int, ...] | None:
    """The static 4-D shape of a Conv node's weight (its input 1), or None."""
    w = node.inputs[1] if len(node.inputs) > 1 else None
    shape = None if w is None or w.shape is None else tuple(w.shape)
    return shape if shape is not None and len(shape) == 4 and all(isinstance(d, int) for d in shape) else None


def _unit_stride_unpadded(attrs: dict) -> bool:
    """Whether Conv attributes say stride 1 and no padding: a 1x1 kernel is then a GEMM over channels."""
    return (all(int(v) == 1 for v in attrs.get("strides") or ()) and not any(attrs.get("pads") or ())
            and (attrs.get("auto_pad") or "NOTSET") in ("NOTSET", "VALID"))


def _is_transpose_to_channels_last(node: Any) -> bool:
    perm = node.attributes.get("perm") if node.op_type == "Transpose" else None
    return normalize_domain(node.domain) == "" and perm is not None and list(perm.value) == [0, 2, 3, 1]


def _channels_last_readers(ctx: KernelContext) -> _ChannelsLastReaders | None:
    """The readers of this conv's output when every reader takes a channels-last image well: a 2-D
    Conv/FusedConv reading it as X that is pointwise (1x1, ungrouped, stride 1, unpadded: a GEMM
    with a transposed operand) or depthwise (whose channels-last path then skips its transpose in),
    or a Transpose to (N, H, W, C). None when any reader is something else, or the graph hands the
    output to the caller, who gets C-contiguous arrays."""
    node = ctx.node
    if node is None or len(node.outputs) != 1 or not ctx.fetched_outputs or ctx.fetched_outputs[0]:
        return None
    uses = list(node.outputs[0].uses())
    if not uses:
        return None
    depthwise = []
    transposed = pointwise = False
    for use in uses:
        reader = use.node
        if _is_transpose_to_channels_last(reader):
            transposed = True
            continue
        if use.idx != 0 or (reader.op_type, normalize_domain(reader.domain)) not in (("Conv", ""),
                                                                                    ("FusedConv", "com.microsoft")):
            return None
        w_shape = _static_weight_shape(reader)
        if w_shape is None:
            return None
        attrs = {name: attr.value for name, attr in reader.attributes.items()}
        group = int(attrs.get("group", 1) or 1)
        if group == 1 and w_shape[2:] == (1, 1) and _unit_stride_unpadded(attrs):
            pointwise = True
            continue
        if group > 1 and w_shape[0] == group and w_shape[1] == 1:
            depthwise.append((reader.op_type, w_shape, attrs))
            continue
        return None
    return _ChannelsLastReaders(depthwise, transposed, pointwise)


def _output_layout(geo: _ConvGeometry, x_channels_last: bool, readers: _ChannelsLastReaders, wts: _ConvWeights,
                   activation: Callable[[np.ndarray], Any] | None) -> tuple[bool, tuple[tuple, tuple] | None]:
    """(whether the output goes channels-last (_output_channels_last), the zero border its image
    gets as (begin pads, end pads), or None).

    A 1x1 conv whose readers are all depthwise convs with one padding writes its channels-last
    output inside a zero-bordered buffer of that padding, and each reader's channels-last path
    reads the buffer as its padded image instead of copying the image into one (MobileNetV2's
    expand -> depthwise blocks). The conv's GEMM writes whole rows of the bordered image, from an
    input widened by zero pixels, which its input copy for the bias column makes anyway; so its
    bias must be inside the GEMM (a weight column, or no bias), its weights finite (0 * inf is NaN)
    and its activation must map 0 to 0 (``keeps_zero``)."""
    depthwise = _reader_geometries(geo, readers)
    if depthwise is None or not _output_channels_last(geo, x_channels_last, readers, depthwise):
        return False, None
    bias_in_gemm = wts.bias is None or wts.gemm_bias is not None
    keeps_zero = activation is None or getattr(activation, "keeps_zero", False)
    if (geo.kind != "1x1" or readers.pointwise or readers.transposed or not depthwise
            or not bias_in_gemm or not keeps_zero or not wts.finite):
        return True, None
    borders = {(tuple(reader.begin), tuple(reader.end)) for reader in depthwise}
    if len(borders) != 1:
        return True, None
    border = borders.pop()
    if min(border[0] + border[1]) < 0 or not any(border[0] + border[1]):
        return True, None
    return True, border


def _reader_geometries(geo: _ConvGeometry, readers: _ChannelsLastReaders) -> list[_ConvGeometry] | None:
    """The geometries of the depthwise readers of this conv's output, or None when one of them would
    not accept it (that reader reports its own error when it runs)."""
    try:
        return [_ConvGeometry(op_name, geo.out_shape, w_shape, attrs) for op_name, w_shape, attrs in readers.depthwise]
    except ValueError:
        return None


def _output_channels_last(geo: _ConvGeometry, x_channels_last: bool, readers: _ChannelsLastReaders,
                          depthwise: list[_ConvGeometry]) -> bool:
    """Whether this conv (geometry ``geo``, input layout ``x_channels_last``) hands its output on
    channels-last: it makes that layout at no cost (an ungrouped 1x1 or tiled im2col conv, as the
    GEMM's transposed form, when some reader gains from it; a depthwise conv on its channels-last
    path, where that path is the faster one for this input or a reader transposes the output to
    (N, H, W, C) anyway), and each depthwise reader's channels-last path (``depthwise``: their
    geometries, _reader_geometries) is the faster one for a channels-last input of that shape.

    The transposing reader tips a depthwise conv that would otherwise take its banded path (measured
    in ConvNeXt-tiny, whose 18 7x7 depthwise convs are read so: 132-136 -> 124-125 ms, two sessions
    interleaved in one process; alone the banded path is as fast or up to 8% faster, but inside the
    model its gathered columns come from memory, and each LayerNormalization after the permute reads
    a strided image: 0.95 against 0.53 ms at 56x56x96)."""
    if geo.kind in ("1x1", "im2col"):
        # the plain and the tiled im2col GEMMs have a transposed form; the other paths do not (a
        # Winograd conv asked for a channels-last output takes the tiled path: _conv_run)
        tiled = geo.kind == "im2col" and geo.gather is None and not geo.shifted and geo.padded_ok
        if geo.g != 1 or not readers.gain() or (geo.kind == "im2col" and not tiled):
            return False
    elif geo.kind != "depthwise" or geo.channels_last is None or not (
            readers.transposed or geo.channels_last.takes(x_channels_last)):
        return False
    return all(reader.channels_last is not None and reader.channels_last.from_channels_last for reader in depthwise)


@op_factory("Conv", 1, 11, 22)
def conv_factory(ctx: KernelContext):
    return conv_kernel(ctx)


# ---------------------------------------------------------------------------------------------
# ConvTranspose


def _conv_transpose_core(X, W, B, attrs, wprep=None):
    op_name = "ConvTranspose"
    check_float(op_name, "X", X)
    if X.ndim < 3:
        raise ValueError(f"{op_name}: input 'X' must have rank >= 3 (N, C, spatial...), got shape {X.shape}")
    if W.ndim != X.ndim:
        raise ValueError(f"{op_name}: input 'W' has rank {W.ndim}, expected {X.ndim} (same as X {X.shape})")
    n = X.ndim - 2
    group = int(attrs.get("group", 1) or 1)
    N, C = X.shape[:2]
    if W.shape[0] != C:
        raise ValueError(f"{op_name}: input 'W' {W.shape} must have {C} input channels (X is {X.shape})")
    if C % group:
        raise ValueError(f"{op_name}: {C} input channels are not divisible by group={group}")
    Mg = W.shape[1]
    M = Mg * group
    g, Cg = group, C // group
    kernel = list(W.shape[2:])
    ks = attrs.get("kernel_shape")
    if ks and [int(k) for k in ks] != kernel:
        raise ValueError(f"{op_name}: attribute kernel_shape={list(ks)} does not match 'W' shape {W.shape}")
    in_sp = list(X.shape[2:])
    strides = spatial_list(attrs.get("strides"), n, 1, "strides", op_name)
    dilations = spatial_list(attrs.get("dilations"), n, 1, "dilations", op_name)
    out_pad = spatial_list(attrs.get("output_padding"), n, 0, "output_padding", op_name)
    dk = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    full = [s * (i - 1) + o + e for s, i, o, e in zip(strides, in_sp, out_pad, dk)]
    auto_pad = attrs.get("auto_pad", "NOTSET")
    output_shape = attrs.get("output_shape")
    if output_shape:
        output_shape = [int(v) for v in output_shape]
        if len(output_shape) == n + 2:
            output_shape = output_shape[2:]
        if len(output_shape) != n:
            raise ValueError(f"{op_name}: attribute output_shape={output_shape} must have {n} spatial values")
    if output_shape or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if not output_shape:
            output_shape = [i * s for i, s in zip(in_sp, strides)]
        begin = []
        for f, o in zip(full, output_shape):
            total = f - o
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        out_sp = output_shape
    else:
        pads = attrs.get("pads")
        if auto_pad == "VALID" or not pads:
            pads = [0] * (2 * n)
        if len(pads) != 2 * n:
            raise ValueError(f"{op_name}: attribute 'pads' has {len(pads)} values, expected {2 * n}")
        begin = [int(p) for p in pads[:n]]
        out_sp = [f - b - int(e) for f, b, e in zip(full, begin, pads[n:])]
        if any(o <= 0 for o in out_sp):
            raise ValueError(f"{op_name}: pads {list(pads)} leave a non-positive output shape {out_sp}")
    if B is not None and B.shape != (M,):
        raise ValueError(f"{op_name}: input 'B' has shape {B.shape}, expected ({M},)")

    cdt = compute_dtype(X.dtype)
    x = X if X.dtype == cdt else X.astype(cdt)
    P = math.prod(in_sp)
    wt = wprep if wprep is not None else _conv_transpose_weight(W, g, cdt)
    cols = np.matmul(wt, x.reshape(N, g, Cg, P))  # (N, g, Mg*K, P)
    cols = cols.reshape((N, M) + tuple(kernel) + tuple(in_sp))
    if (kernel == strides and all(d == 1 for d in dilations) and not any(begin)
            and out_sp == full == [i * k for i, k in zip(in_sp, kernel)]):
        # the taps tile the output without overlap (2x2 stride 2 upsampling): each output element is
        # one GEMM value, copied (bias added on the way) tap by tap into the strided positions it
        # owns; no zero-filled buffer, no accumulation (one transposing copy was 2.5x slower: its
        # inner loop ran over the kernel's few columns)
        y = np.empty((N, M) + tuple(out_sp), dtype=cdt)
        tiles = y.reshape((N, M) + tuple(v for i, k in zip(in_sp, kernel) for v in (i, k)))
        bias = None if B is None else B.astype(cdt, copy=False).reshape((M,) + (1,) * n)
        for tap in itertools.product(*(range(k) for k in kernel)):
            dst = tiles[(slice(None), slice(None)) + tuple(v for t in tap for v in (slice(None), t))]
            src = cols[(slice(None), slice(None)) + tap]
            if bias is None:
                np.copyto(dst, src)
            else:
                np.add(src, bias, out=dst)
        return y if y.dtype == X.dtype else y.astype(X.dtype)
    # Buffer covering both the full result and the requested window [begin, begin + out).
    lo = [min(0, b) for b in begin]
    hi = [max(f, b + o) for f, b, o in zip(full, begin, out_sp)]
    buf = scatter_taps(cols, kernel, in_sp, strides, dilations, [h - l for h, l in zip(hi, lo)], [-l for l in lo])
    sl = (slice(None), slice(None)) + tuple(slice(b - l, b - l + o) for b, l, o in zip(begin, lo, out_sp))
    y = buf[sl]
    if B is not None:
        y = y + B.astype(cdt, copy=False).reshape((M,) + (1,) * n)
    return np.ascontiguousarray(y, dtype=X.dtype)


def _conv_transpose_weight(W, g, cdt):
    C, Mg = W.shape[:2]
    K = math.prod(W.shape[2:])
    w = _as_weight_dtype(W, cdt).reshape(g, C // g, Mg * K)
    return np.ascontiguousarray(w.transpose(0, 2, 1))


@op_factory("ConvTranspose", 1, 11, 22)
def conv_transpose_factory(ctx: KernelContext):
    attrs = dict(ctx.attrs)
    W_const = ctx.const_inputs[1] if len(ctx.const_inputs) > 1 else None
    x_dtype = (ctx.input_dtypes or [None])[0]
    prep = None
    group = int(attrs.get("group", 1) or 1)
    if W_const is not None and W_const.ndim >= 3 and W_const.shape[0] % group == 0:
        cdt = compute_dtype(x_dtype if x_dtype is not None else W_const.dtype)
        prep = (_conv_transpose_weight(W_const, group, cdt), cdt)

    def conv_transpose(X, W, B=None):
        wprep = prep[0] if prep is not None and W is W_const and prep[1] == compute_dtype(X.dtype) else None
        return _conv_transpose_core(X, W, B, attrs, wprep)

    return conv_transpose


# ---------------------------------------------------------------------------------------------
# Col2Im


@op("Col2Im", 18)
def col2im(input, image_shape, block_shape, *, dilations=None, pads=None, strides=None):  # noqa: A002
    op_name = "Col2Im"
    image = [int(v) for v in np.asarray(image_shape).reshape(-1)]
    block = [int(v) for v in np.asarray(block_shape).reshape(-1)]
    n = len(image)
    if len(block) != n:
        raise ValueError(f"{op_name}: 'block_shape' has {len(block)} values but 'image_shape' has {n}")
    if input.ndim != 3:
        raise ValueError(f"{op_name}: input 'input' must have rank 3 (N, C*prod(block), L), got shape {input.shape}")
    strides = spatial_list(strides, n, 1, "strides", op_name)
    dilations = spatial_list(dilations, n, 1, "dilations", op_name)
    begin, end = resolve_pads(op_name, "NOTSET", image, block, strides, dilations, pads)
    K = math.prod(block)
    N, CK, L = input.shape
    if CK % K:
        raise ValueError(f"{op_name}: input dim 1 ({CK}) is not a multiple of prod(block_shape)={K}")
    padded = [i + b + e for i, b, e in zip(image, begin, end)]
    out_sp = [(p - ((k - 1) * d + 1)) // s + 1 for p, k, d, s in zip(padded, block, dilations, strides)]
    if math.prod(out_sp) != L:
        raise ValueError(f"{op_name}: input has L={L} blocks, expected {math.prod(out_sp)} for the given shapes")
    C = CK // K
    cdt = input.dtype if input.dtype.kind == "f" and input.dtype.itemsize >= 4 else np.dtype(np.float32)
    cols = input.astype(cdt, copy=False).reshape((N, C) + tuple(block) + tuple(out_sp))
    buf = scatter_taps(cols, block, out_sp, strides, dilations, padded)
    sl = (slice(None), slice(None)) + tuple(slice(b, b + i) for b, i in zip(begin, image))
    return np.ascontiguousarray(buf[sl], dtype=input.dtype)


# ---------------------------------------------------------------------------------------------
# DeformConv


def _deform_conv(X, W, offset, B=None, mask=None, *, dilations=None, group=1, kernel_shape=None,
                 offset_group=1, pads=None, strides=None):
    op_name = "DeformConv"
    check_float(op_name, "X", X)
    if X.ndim < 3 or W.ndim != X.ndim:
        raise ValueError(f"{op_name}: 'X' {X.shape} and 'W' {W.shape} must have the same rank >= 3")
    n = X.ndim - 2
    N, C = X.shape[:2]
    in_sp = list(X.shape[2:])
    M, Cg = W.shape[:2]
    kernel = list(W.shape[2:])
    if Cg * group != C or M % group:
        raise ValueError(f"{op_name}: 'X' {X.shape}, 'W' {W.shape} and group={group} are inconsistent")
    if C % offset_group:
        raise ValueError(f"{op_name}: {C} channels are not divisible by offset_group={offset_group}")
    strides = spatial_list(strides, n, 1, "strides", op_name)
    dilations = spatial_list(dilations, n, 1, "dilations", op_name)
    begin, end = resolve_pads(op_name, "NOTSET", in_sp, kernel, strides, dilations, pads)
    out_sp = [(i + b + e - ((k - 1) * d + 1)) // s + 1
              for i, b, e, k, d, s in zip(in_sp, begin, end, kernel, dilations, strides)]
    K = math.prod(kernel)
    P = math.prod(out_sp)
    og = offset_group
    exp_off = (N, og * n * K) + tuple(out_sp)
    if tuple(offset.shape) != exp_off:
        raise ValueError(f"{op_name}: input 'offset' has shape {offset.shape}, expected {exp_off}")
    cdt = compute_dtype(X.dtype)
    x = X.astype(cdt, copy=False).reshape(N, og, C // og, -1)
    off = offset.astype(cdt, copy=False).reshape(N, og, K, n, P)
    # base sampling positions per spatial axis: (K, P)
    kidx = np.indices(kernel).reshape(n, K)
    oidx = np.indices(out_sp).reshape(n, P)
    pos = [(oidx[i] * strides[i] - begin[i])[None, :] + (kidx[i] * dilations[i])[:, None] for i in range(n)]
    coords = [pos[i][None, None] + off[:, :, :, i] for i in range(n)]  # each (N, og, K, P)
    floor = [np.floor(c) for c in coords]
    frac = [c - f for c, f in zip(coords, floor)]
    floor = [f.astype(np.int64) for f in floor]
    flat_strides = [math.prod(in_sp[i + 1:]) for i in range(n)]
    cols = np.zeros((N, og, C // og, K, P), dtype=cdt)
    for corner in itertools.product((0, 1), repeat=n):
        wgt = np.ones_like(coords[0])
        flat = np.zeros(coords[0].shape, dtype=np.int64)
        valid = np.ones(coords[0].shape, dtype=bool)
        for i, c in enumerate(corner):
            idx = floor[i] + c
            wgt = wgt * (frac[i] if c else 1 - frac[i])
            valid &= (idx >= 0) & (idx < in_sp[i])
            flat += np.clip(idx, 0, in_sp[i] - 1) * flat_strides[i]
        wgt = np.where(valid, wgt, 0).astype(cdt)
        g_idx = flat.reshape(N, og, 1, K * P)
        vals = np.take_along_axis(x, np.broadcast_to(g_idx, (N, og, C // og, K * P)), axis=3)
        cols += vals.reshape(N, og, C // og, K, P) * wgt[:, :, None]
    if mask is not None:
        exp_mask = (N, og * K) + tuple(out_sp)
        if tuple(mask.shape) != exp_mask:
            raise ValueError(f"{op_name}: input 'mask' has shape {mask.shape}, expected {exp_mask}")
        cols *= mask.astype(cdt, copy=False).reshape(N, og, 1, K, P)
    cols = cols.reshape(N, group, Cg * K, P)
    y = np.matmul(W.astype(cdt, copy=False).reshape(group, M // group, Cg * K), cols).reshape((N, M) + tuple(out_sp))
    if B is not None:
        y += B.astype(cdt, copy=False).reshape((M,) + (1,) * n)
    return y.astype(X.dtype, copy=False)


op("DeformConv", 19, 22)(_deform_conv)


# ---------------------------------------------------------------------------------------------
# CausalConvWithState


@op("CausalConvWithState", 27)
def causal_conv_with_state(input, weight, bias=None, past_state=None, *, activation="none"):  # noqa: A002
    op_name = "CausalConvWithState"
    check_float(op_name, "input", input)
    if activation not in ("none", "silu", "swish"):
        raise ValueError(f"{op_name}: unsupported activation '{activation}' (expected none, silu or swish)")
    if input.ndim != 3:
        raise ValueError(f"{op_name}: input 'input' must have rank 3 (batch, channels, length), got {input.shape}")
    Bsz, C, L = input.shape
    if weight.ndim != 3 or weight.shape[0] != C or weight.shape[1] != 1:
        raise ValueError(f"{op_name}: input 'weight' must have shape ({C}, 1, k), got {weight.shape}")
    k = weight.shape[2]
    if past_state is None:
        past = np.zeros((Bsz, C, k - 1), dtype=input.dtype)
    else:
        if past_state.shape != (Bsz, C, k - 1):
            raise ValueError(f"{op_name}: input 'past_state' has shape {past_state.shape}, expected {(Bsz, C, k - 1)}")
        past = past_state.astype(input.dtype, copy=False)
    padded = np.concatenate([past, input], axis=2)
    cdt = compute_dtype(input.dtype)
    xp = padded.astype(cdt, copy=False)
    w = weight.astype(cdt, copy=False)[:, 0, :]
    y = np.zeros((Bsz, C, L), dtype=cdt)
    for j in range(k):
        y += xp[:, :, j:j + L] * w[None, :, j, None]
    if bias is not None:
        if bias.shape != (C,):
            raise ValueError(f"{op_name}: input 'bias' has shape {bias.shape}, expected ({C},)")
        y += bias.astype(cdt, copy=False)[None, :, None]
    if activation != "none":
        y = y.astype(input.dtype).astype(np.float32)
        y = y / (1.0 + np.exp(-y))
    present = np.ascontiguousarray(padded[:, :, padded.shape[2] - (k - 1):])
    return y.astype(input.dtype, copy=False), present
