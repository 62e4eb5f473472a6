"""Helpers shared by kernels of several families."""

from __future__ import annotations

import math
import threading
import weakref
from typing import Callable

import numpy as np

_SCRATCH = threading.local()
_SCRATCH_LIMIT_BYTES = 512 << 20  # per thread; past it the cache starts over


def thread_scratch(key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
    """A buffer for ``key`` owned by the calling thread, made by ``make`` the first time and reused
    by every later call with the same key (so a session run from several threads at once never
    shares one). Keys start with a string naming the user (``"im2col"``, ``"int8_weight"``, ...).
    """
    cache = getattr(_SCRATCH, "bufs", None)
    if cache is None:
        cache = _SCRATCH.bufs = {}
        _SCRATCH.nbytes = 0
    buf = cache.get(key)
    if buf is None:
        buf = make()
        if _SCRATCH.nbytes + buf.nbytes > _SCRATCH_LIMIT_BYTES:
            cache.clear()
            _SCRATCH.nbytes = 0
        cache[key] = buf
        _SCRATCH.nbytes += buf.nbytes
    return buf


def thread_scratch_flat(key: tuple, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of ``shape``, the front of a flat buffer owned by the calling thread and
    shared by every call with ``key`` whatever shape it asks for (the buffer grows to the largest
    asked), so kernels of many shapes that run one after the other hold one buffer instead of one
    per shape. The contents are whatever the last user left."""
    size = math.prod(shape)
    cache = getattr(_SCRATCH, "bufs", None)
    buf = None if cache is None else cache.get(key)
    if buf is None or buf.size < size:
        if buf is not None:
            del cache[key]
            _SCRATCH.nbytes -= buf.nbytes
        buf = thread_scratch(key, lambda: np.empty(size, dtype=dtype))
    return buf[:size].reshape(shape)


def thread_scratch_kept(key: tuple, shape: tuple[int, ...], dtype: np.dtype, layout: tuple,
                        prepare: Callable[[np.ndarray], None]) -> np.ndarray:
    """thread_scratch_flat's array, on which ``prepare`` (writing a part of it that its callers
    never write, such as a zero border around the image they copy in) has run: only when the last
    call for ``key`` asked for another ``layout`` (a hashable description of what ``prepare``
    writes) or another buffer. Consecutive depthwise convs of one shape then zero their padding once.
    Every user of ``key`` must ask through here: a buffer written past this record looks prepared."""
    buf = thread_scratch_flat(key, shape, dtype)
    kept = getattr(_SCRATCH, "kept", None)
    if kept is None:
        kept = _SCRATCH.kept = {}
    last = kept.get(key)
    # the flat buffer itself (a view's base, weakly held) is compared: a grown buffer is a new one
    if last is None or last[0]() is not buf.base or last[1] != layout:
        prepare(buf)
        kept[key] = (weakref.ref(buf.base), layout)
    return buf


def strided_view(a: np.ndarray, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of the C-contiguous ``a``'s memory, starting ``offset`` bytes past its first
    element, of ``shape`` and byte ``strides`` (bounds checked against ``a``): what
    ``np.lib.stride_tricks.as_strided`` makes, built directly (0.3 us against its 2.7, which goes
    through ``__array_interface__``; kernels on small images make several per call)."""
    view = np.ndarray(shape, a.dtype, a, offset, strides)
    view.flags.writeable = False
    return view


# Columns per band of contiguous_copy (measured on a 4096 x 25088 float32 transpose in a fresh process:
# 64 -> 436 ms, 128 -> 287, 256 -> 278, 512 -> 804; np.ascontiguousarray 1424; 256 x 256 tiles 1248).
_COPY_BAND = 256


def contiguous_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of the 2-D ``a`` (a transposed weight, say), made a band of columns at a
    time when ``a`` is large: for a transpose, each band reads whole contiguous rows of the source,
    where np.ascontiguousarray walks it against the cache and the TLB. Returns ``a`` itself when it
    is already C-contiguous."""
    if a.flags.c_contiguous:
        return a
    if a.ndim != 2 or a.size < _COPY_BAND * _COPY_BAND:
        return np.ascontiguousarray(a)
    out = np.empty(a.shape, dtype=a.dtype)
    for c in range(0, a.shape[1], _COPY_BAND):
        out[:, c:c + _COPY_BAND] = a[:, c:c + _COPY_BAND]
    return out


# numpy 2.4 runs maximum's vectorized loop only where both operands are arrays along the inner loop:
# with a scalar 0 it takes a plain loop 2-2.5x slower (98K float32 values: 21 against 9 us), and so
# does a broadcast row shorter than ~8K values inside a contiguous array (the iterator buffers it).
# So max(x, 0) reads a cached row of zeros 16K long, the array cut into rows of that length.
_ZERO_ROW = 1 << 14
_ZEROS: dict[np.dtype, np.ndarray] = {}


def _zeros(dtype: np.dtype) -> np.ndarray:
    z = _ZEROS.get(dtype)
    if z is None:
        z = np.zeros(_ZERO_ROW, dtype=dtype)
        z.flags.writeable = False
        _ZEROS[dtype] = z
    return z


def relu_into(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0) (NaN stays NaN) into ``out`` (``x`` itself for in place; a new array when None)."""
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype)
    if x.size <= 1024:  # one call: the slower scalar loop does not show at this size, the slicing would
        return np.maximum(x, 0, out=out)
    zeros = _zeros(x.dtype)
    if x.flags.c_contiguous and out.flags.c_contiguous:
        xf, of = x.reshape(-1), out.reshape(-1)
        whole = x.size - x.size % _ZERO_ROW
        if whole:
            np.maximum(xf[:whole].reshape(-1, _ZERO_ROW), zeros, out=of[:whole].reshape(-1, _ZERO_ROW))
        np.maximum(xf[whole:], zeros[:x.size - whole], out=of[whole:])
    elif (x.ndim and x.shape[-1] <= _ZERO_ROW and x.strides[-1] == x.itemsize
          and out.strides[-1] == out.itemsize):
        # rows of a block of columns (a GEMM epilogue's), each contiguous: the zero row broadcasts
        np.maximum(x, zeros[:x.shape[-1]], out=out)
    else:
        np.maximum(x, x.dtype.type(0), out=out)
    return out


def leaky_relu_into(x: np.ndarray, alpha: float, out: np.ndarray | None = None) -> np.ndarray:
    """x where x >= 0, alpha * x below, into ``out`` (``x`` itself for in place; a new array when
    None). For 0 < alpha <= 1 that is max(x, alpha * x), a SIMD loop (np.where took 14x longer); at
    alpha 0 (0 * inf is NaN) and outside (0, 1] a select."""
    scaled = np.multiply(x, x.dtype.type(alpha))
    if type(scaled) is not np.ndarray:
        scaled = np.asarray(scaled)  # a 0-d x gives a numpy scalar, which cannot be written into
    if 0.0 < alpha <= 1.0:
        return np.maximum(x, scaled, out=scaled if out is None else out)
    if out is None:
        return np.where(x < 0, scaled, x)
    np.copyto(out, scaled, where=x < 0)  # out is x: its values from 0 up stay
    return out


# A row vector added to a C-contiguous (rows, n) array repeats along it; broadcast over short rows,
# numpy adds it one row per inner loop (96-value rows: 2.2x slower than adding a scalar). Tiled to
# ~8K values, a block of rows becomes a few long rows: (4096, 96) + bias 89 -> 39 us, (196, 576) 19 -> 11.
_TILED_ROW = 1 << 13


class RowVector:
    """A vector (n,) to be added to many C-contiguous (rows, n) arrays; holds its tiled copy."""

    def __init__(self, vec: np.ndarray) -> None:
        self.vec = vec
        self.times = max(1, -(-_TILED_ROW // max(1, vec.size)))
        tiled = np.tile(vec, self.times)
        tiled.flags.writeable = False
        self.tiled = tiled

    def add_to(self, y: np.ndarray) -> None:
        """y (rows, n) += the vector, in place (the tiled rows when y is C-contiguous)."""
        if not y.flags.c_contiguous:
            np.add(y, self.vec, out=y)
            return
        whole = y.shape[0] - y.shape[0] % self.times
        if whole:
            block = y[:whole].reshape(-1, self.tiled.size)
            np.add(block, self.tiled, out=block)
        if whole < y.shape[0]:
            np.add(y[whole:], self.vec, out=y[whole:])


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique(a) (sorted distinct values of the flattened array) without importing numpy.ma: the
    plain np.unique asks ``np.ma.is_masked`` first, and that import costs ~20 ms the first time in a
    process (a forest's session creation paid it)."""
    return np.unique(a, return_index=True)[0]


def normalize_axis(axis: int, rank: int, op_name: str = "", what: str = "axis") -> int:
    """A non-negative axis for ``rank``; out-of-range axes raise a ValueError naming the op.

    ``what`` names the value in the message (an attribute, or an entry of an axes input).
    """
    if not -rank <= axis < rank:
        raise ValueError(f"{op_name}: {what} {axis} is out of range for an input of rank {rank} "
                         f"(expected {-rank} <= {what} < {rank})")
    return axis + rank if axis < 0 else axis
