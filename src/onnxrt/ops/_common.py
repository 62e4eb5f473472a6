"""Helpers shared by kernels of several families."""

from __future__ import annotations

import threading
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


def thread_scratch_flat(key: tuple, size: int, dtype: np.dtype) -> np.ndarray:
    """A 1-D buffer of at least ``size`` elements owned by the calling thread and shared by every
    call with ``key`` whatever size it asks for (it grows to the largest asked), so kernels of many
    shapes that run one after the other hold one buffer instead of one per shape. The contents are
    whatever the last user left."""
    cache = getattr(_SCRATCH, "bufs", None)
    buf = None if cache is None else cache.get(key)
    if buf is None or buf.size < size:
        if buf is not None:
            del cache[key]
            _SCRATCH.nbytes -= buf.nbytes
        buf = thread_scratch(key, lambda: np.empty(size, dtype=dtype))
    return buf


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
