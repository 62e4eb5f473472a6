"""Gather / scatter kernels: Gather, GatherElements, GatherND, Scatter, ScatterElements, ScatterND,
TensorScatter.

Indices are checked against the data's bounds before numpy sees them, so a bad index is reported
with the op, the input and the offending value rather than as a numpy IndexError. Negative indices
count from the end. Scatter kernels copy ``data`` once and write into the copy (duplicates under
``reduction='none'``: the last update wins, as in onnxruntime's sequential loop).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxrt.ops._common import normalize_axis
from onnxrt.ops.registry import KernelContext, op, op_factory


def _check_indices(indices: Any, op_name: str) -> np.ndarray:
    if type(indices) is not np.ndarray:
        indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op_name}: input 'indices' must be an integer tensor, got {indices.dtype}")
    return indices


def _bounds(indices: np.ndarray, dim: Any, op_name: str, what: str) -> np.ndarray:
    """Normalised (non-negative, int64) indices; ``dim`` is an int or an array broadcasting with them."""
    if indices.size == 0:
        return indices.astype(np.int64, copy=False)
    idx = indices.astype(np.int64, copy=False)
    bad = (idx < -dim) | (idx >= dim)
    if bad.any():
        pos = tuple(int(p) for p in np.argwhere(bad)[0])
        value = int(idx[pos])
        d = dim if np.isscalar(dim) else int(np.broadcast_to(dim, idx.shape)[pos])
        raise ValueError(f"{op_name}: index {value} at position {list(pos)} of input 'indices' is out of range "
                         f"for {what} of size {d} (expected {-d} <= index < {d})")
    return np.where(idx < 0, idx + dim, idx)


# -- Gather -----------------------------------------------------------------------------------


@op_factory("Gather", 1, 11)
def gather(ctx: KernelContext):
    axis_attr = ctx.attrs.get("axis", 0)

    def run(data, indices):
        r = data.ndim
        if not -r <= axis_attr < r:
            raise ValueError(f"Gather: axis {axis_attr} is out of range for input 'data' of rank {r}")
        a = axis_attr + r if axis_attr < 0 else axis_attr
        dim = data.shape[a]
        if type(indices) is not np.ndarray or indices.dtype.kind not in "iu":
            indices = _check_indices(indices, "Gather")
        if indices.ndim == 0:
            i = int(indices)
            if not -dim <= i < dim:
                raise ValueError(f"Gather: index {i} of input 'indices' is out of range for axis {a} of size "
                                 f"{dim} (expected {-dim} <= index < {dim})")
            if a == 0:
                out = data[i]
            else:
                out = data[(slice(None),) * a + (i,)]
            return out if type(out) is np.ndarray else np.array(out, dtype=data.dtype)
        try:
            return np.take(data, indices, axis=a)  # raise mode: negative indices count from the end
        except IndexError:
            _bounds(indices, dim, "Gather", f"axis {a} of input 'data'")
            raise

    return run


def _check_element_indices(op_name: str, data: np.ndarray, indices: np.ndarray, axis: int) -> None:
    """GatherElements / ScatterElements: indices of data's rank, no longer than data off ``axis``."""
    r = data.ndim
    if indices.ndim != r:
        raise ValueError(f"{op_name}: 'indices' has rank {indices.ndim}, expected {r} (the rank of 'data')")
    for d in range(r):
        if d != axis and indices.shape[d] > data.shape[d]:
            raise ValueError(f"{op_name}: 'indices' shape {indices.shape} exceeds 'data' shape {data.shape} "
                             f"on axis {d}")


@op("GatherElements", 11)
def gather_elements(data, indices, *, axis=0):
    indices = _check_indices(indices, "GatherElements")
    r = data.ndim
    a = normalize_axis(axis, r, "GatherElements")
    _check_element_indices("GatherElements", data, indices, a)
    idx = _bounds(indices, data.shape[a], "GatherElements", f"axis {a} of input 'data'")
    src = data[tuple(slice(None) if d == a else slice(0, indices.shape[d]) for d in range(r))]
    return np.take_along_axis(src, idx, axis=a)


def _nd_linear(data_shape: tuple, idx: np.ndarray, op_name: str) -> np.ndarray:
    """Row-major linear offsets into ``data_shape[:m]`` for index tuples ``idx[..., m]`` (bounds checked)."""
    m = idx.shape[-1]
    dims = np.asarray(data_shape[:m], dtype=np.int64)
    idx = _bounds(idx, dims, op_name, "the indexed dimension of input 'data'")
    strides = np.ones(m, dtype=np.int64)
    if m > 1:
        strides[:-1] = np.cumprod(dims[::-1])[::-1][1:]
    return idx @ strides if m else np.zeros(idx.shape[:-1], dtype=np.int64)


@op("GatherND", 11, 12)
def gather_nd(data, indices, *, batch_dims=0):
    indices = _check_indices(indices, "GatherND")
    b = batch_dims
    q = indices.ndim
    if q < 1:
        raise ValueError("GatherND: 'indices' must have rank >= 1")
    m = indices.shape[-1]
    if b < 0 or b >= min(data.ndim, q):
        raise ValueError(f"GatherND: batch_dims={b} must be smaller than the ranks of 'data' ({data.ndim}) "
                         f"and 'indices' ({q})")
    if data.shape[:b] != indices.shape[:b]:
        raise ValueError(f"GatherND: the first {b} (batch) dimensions of 'data' {data.shape} and 'indices' "
                         f"{indices.shape} differ")
    if m > data.ndim - b:
        raise ValueError(f"GatherND: last dimension of 'indices' ({m}) exceeds rank of 'data' minus batch_dims "
                         f"({data.ndim - b})")
    batch = int(np.prod(data.shape[:b], dtype=np.int64))
    inner = data.shape[b:]
    rest = inner[m:]
    out_shape = indices.shape[:-1] + rest
    lin = _nd_linear(inner, indices.reshape(batch, -1, m), "GatherND")  # (batch, n)
    flat = data.reshape((batch, int(np.prod(inner[:m], dtype=np.int64))) + rest)
    out = flat[np.arange(batch)[:, None], lin]
    return out.reshape(out_shape)


# -- ScatterElements / Scatter -----------------------------------------------------------------------

_REDUCERS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _reducer(reduction: str, op_name: str):
    if reduction == "none":
        return None
    fn = _REDUCERS.get(reduction)
    if fn is None:
        raise ValueError(f"{op_name}: unsupported reduction '{reduction}' (expected none, add, mul, max or min)")
    return fn


def _apply(out: np.ndarray, index: Any, updates: np.ndarray, fn) -> None:
    if fn is None:
        out[index] = updates
    elif out.dtype.kind == "V":  # ml_dtypes floats: reduce through float32
        work = out.astype(np.float32)
        fn.at(work, index, updates.astype(np.float32))
        out[...] = work.astype(out.dtype)
    elif out.dtype == np.bool_ and fn in (np.add, np.multiply):
        (np.logical_or if fn is np.add else np.logical_and).at(out, index, updates)
    else:
        fn.at(out, index, updates)


def _scatter_elements(op_name: str, data, indices, updates, axis: int, fn) -> np.ndarray:
    indices = _check_indices(indices, op_name)
    r = data.ndim
    a = normalize_axis(axis, r, op_name)
    if indices.shape != updates.shape:
        raise ValueError(f"{op_name}: 'indices' shape {indices.shape} and 'updates' shape {updates.shape} differ")
    _check_element_indices(op_name, data, indices, a)
    if updates.dtype != data.dtype:
        raise TypeError(f"{op_name}: 'updates' dtype {updates.dtype} differs from 'data' dtype {data.dtype}")
    idx = _bounds(indices, data.shape[a], op_name, f"axis {a} of input 'data'")
    out = data.copy()
    if idx.size == 0:
        return out
    grid = list(np.ogrid[tuple(slice(0, s) for s in indices.shape)])
    grid[a] = idx
    _apply(out, tuple(grid), updates, fn)
    return out


@op("Scatter", 9, 11)
def scatter(data, indices, updates, *, axis=0):
    return _scatter_elements("Scatter", data, indices, updates, axis, None)


@op_factory("ScatterElements", 11, 16, 18)
def scatter_elements(ctx: KernelContext):
    axis = ctx.attrs.get("axis", 0)
    fn = _reducer(ctx.attrs.get("reduction", "none"), "ScatterElements")

    def run(data, indices, updates):
        return _scatter_elements("ScatterElements", data, indices, updates, axis, fn)

    return run


@op_factory("ScatterND", 11, 16, 18)
def scatter_nd(ctx: KernelContext):
    fn = _reducer(ctx.attrs.get("reduction", "none"), "ScatterND")

    def run(data, indices, updates):
        indices = _check_indices(indices, "ScatterND")
        if indices.ndim < 1:
            raise ValueError("ScatterND: 'indices' must have rank >= 1")
        k = indices.shape[-1]
        if k > data.ndim:
            raise ValueError(f"ScatterND: last dimension of 'indices' ({k}) exceeds the rank of 'data' ({data.ndim})")
        expected = indices.shape[:-1] + data.shape[k:]
        if updates.shape != expected:
            raise ValueError(f"ScatterND: 'updates' has shape {updates.shape}, expected {expected} "
                             f"(indices.shape[:-1] + data.shape[{k}:])")
        if updates.dtype != data.dtype:
            raise TypeError(f"ScatterND: 'updates' dtype {updates.dtype} differs from 'data' dtype {data.dtype}")
        lin = _nd_linear(data.shape, indices.reshape(-1, k), "ScatterND")
        out = data.copy()
        flat = out.reshape((int(np.prod(data.shape[:k], dtype=np.int64)),) + data.shape[k:])
        _apply(flat, lin, updates.reshape((lin.shape[0],) + data.shape[k:]), fn)
        return out

    return run


# -- TensorScatter ------------------------------------------------------------------------------


@op("TensorScatter", 24)
def tensor_scatter(past_cache, update, write_indices=None, *, axis=-2, mode="linear"):
    r = past_cache.ndim
    a = normalize_axis(axis, r, "TensorScatter")
    if a == 0:
        raise ValueError("TensorScatter: axis must not be the batch axis 0")
    if update.ndim != r or update.shape[:a] != past_cache.shape[:a] or update.shape[a + 1:] != past_cache.shape[a + 1:]:
        raise ValueError(f"TensorScatter: 'update' shape {update.shape} must equal 'past_cache' shape "
                         f"{past_cache.shape} except on axis {a}")
    if update.dtype != past_cache.dtype:
        raise TypeError(f"TensorScatter: 'update' dtype {update.dtype} differs from 'past_cache' dtype "
                        f"{past_cache.dtype}")
    if mode not in ("linear", "circular"):
        raise ValueError(f"TensorScatter: unsupported mode '{mode}' (expected linear or circular)")
    batch, max_len, seq = past_cache.shape[0], past_cache.shape[a], update.shape[a]
    if seq > max_len:
        raise ValueError(f"TensorScatter: update sequence length {seq} exceeds the cache length {max_len}")
    if write_indices is None:
        start = np.zeros(batch, dtype=np.int64)
    else:
        start = np.asarray(write_indices).astype(np.int64).reshape(-1)
        if start.shape[0] != batch:
            raise ValueError(f"TensorScatter: 'write_indices' has {start.shape[0]} entries, expected {batch}")
        if (start < 0).any():
            raise ValueError(f"TensorScatter: 'write_indices' must be non-negative, got {start.tolist()}")
    pos = start[:, None] + np.arange(seq, dtype=np.int64)[None, :]
    if mode == "circular":
        pos %= max_len
    elif seq and int(pos[:, -1].max()) >= max_len:
        raise ValueError(f"TensorScatter: write_indices {start.tolist()} + sequence length {seq} exceed the cache "
                         f"length {max_len} in linear mode")
    out = past_cache.copy()
    if seq == 0:
        return out
    out_m = np.moveaxis(out, a, 1)
    upd_m = np.moveaxis(update, a, 1)
    out_m[np.arange(batch)[:, None], pos] = upd_m
    return out
