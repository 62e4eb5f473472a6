"""Shape and tensor-manipulation kernels.

Reshape, Transpose, Concat, Split, Slice, Squeeze, Unsqueeze, Flatten, Expand, Tile, Pad,
CenterCropPad, Shape, Size, ConstantOfShape, Range, EyeLike, OneHot, DepthToSpace, SpaceToDepth,
Trilu, ReverseSequence, Compress, NonZero, Unique, TopK, ArgMax, ArgMin, CumSum, CumProd, Dropout.

Data-movement kernels work on any dtype (strings are object arrays) and return numpy views where
numpy can (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Slice, Split). Shape-like inputs are read
on the host every run with ``tolist()`` (the cheapest way to get Python ints out of a tiny array).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import numpy as np
import onnx

from onnxrt.ops._random import generator
from onnxrt.ops._common import normalize_axis
from onnxrt.ops.registry import KernelContext, op, op_factory

_INT64 = np.dtype(np.int64)


# -- helpers ------------------------------------------------------------------------------------


def _ints(value: Any, op_name: str, name: str) -> list[int]:
    """A 1-D (or scalar) integer tensor input as a list of Python ints."""
    if value is None:
        raise ValueError(f"{op_name}: input '{name}' is required")
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    if value.dtype.kind not in "iu":
        raise TypeError(f"{op_name}: input '{name}' must be an integer tensor, got {value.dtype}")
    if value.ndim > 1:
        raise ValueError(f"{op_name}: input '{name}' must be 1-D, got shape {value.shape}")
    out = value.tolist()
    return out if type(out) is list else [out]


def _scalar(value: Any, op_name: str, name: str) -> Any:
    """A scalar (or 1-element) tensor input as a Python number."""
    if type(value) is np.ndarray and value.ndim == 0 and value.dtype.kind in "iufb":
        return value.item()
    a = np.asarray(value)
    if a.size != 1:
        raise ValueError(f"{op_name}: input '{name}' must be a scalar (or have one element), got shape {a.shape}")
    return a.reshape(-1)[0].item() if a.dtype.kind != "V" else float(a.reshape(-1)[0].astype(np.float32))


def _is_ml_float(dtype: np.dtype) -> bool:
    return dtype.kind == "V" and "int" not in dtype.name


def _np_dtype(onnx_type: int, op_name: str) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(onnx_type)))
    except Exception as e:  # pragma: no cover - message path
        raise ValueError(f"{op_name}: unsupported dtype attribute {onnx_type}") from e


def _zero_of(dtype: np.dtype) -> Any:
    return "" if dtype == object else np.zeros((), dtype=dtype)


# -- Reshape, Flatten, Squeeze, Unsqueeze, Transpose -----------------------------------------------


def _reshape(data: np.ndarray, dims: list[int], allowzero: int) -> np.ndarray:
    shape = data.shape
    if not allowzero and 0 in dims:
        for i, d in enumerate(dims):
            if d == 0:
                if i >= len(shape):
                    raise ValueError(f"Reshape: shape {dims} copies dimension {i} (value 0) but the input has "
                                     f"rank {len(shape)}")
                dims[i] = shape[i]
    try:
        return data.reshape(dims)
    except ValueError:
        n_neg = sum(1 for d in dims if d == -1)
        bad = [d for d in dims if d < -1]
        if bad or n_neg > 1:
            raise ValueError(f"Reshape: invalid requested shape {dims}: at most one -1 and no other negative "
                             f"values are allowed") from None
        raise ValueError(f"Reshape: the input of shape {shape} ({data.size} elements) cannot be reshaped to "
                         f"{dims}") from None


@op("Reshape", 1)
def reshape_1(data, *, shape=None):
    if shape is None:
        raise ValueError("Reshape: attribute 'shape' is required at opset < 5")
    return _reshape(data, list(shape), 0)


@op("Reshape", 5, 14)
def reshape(data, shape, *, allowzero=0):
    if type(shape) is not np.ndarray or shape.dtype != _INT64 or shape.ndim != 1:
        dims = _ints(shape, "Reshape", "shape")
    else:
        dims = shape.tolist()
    return _reshape(data, dims, allowzero)


@op("Flatten", 1, 11)
def flatten(input, *, axis=1):  # noqa: A002
    shape = input.shape
    r = len(shape)
    if not -r <= axis <= r:
        raise ValueError(f"Flatten: axis {axis} is out of range for an input of rank {r} (expected {-r}..{r})")
    if axis < 0:
        axis += r
    return input.reshape(math.prod(shape[:axis]), math.prod(shape[axis:]))


def _squeeze(data: np.ndarray, axes: list[int] | None) -> np.ndarray:
    return data.reshape(_squeeze_shape(data.shape, axes))


def _squeeze_shape(shape: tuple, axes: list[int] | None) -> tuple:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    r = len(shape)
    norm = set()
    for a in axes:
        a = normalize_axis(a, r, "Squeeze", "axes entry")
        if shape[a] != 1:
            raise ValueError(f"Squeeze: cannot squeeze axis {a}: its dimension is {shape[a]}, expected 1 "
                             f"(input shape {shape})")
        norm.add(a)
    return tuple(d for i, d in enumerate(shape) if i not in norm)


@op("Squeeze", 1, 11)
def squeeze_1(data, *, axes=None):
    return _squeeze(data, axes)


def squeeze(data, axes=None):
    return _squeeze(data, None if axes is None else _ints(axes, "Squeeze", "axes"))


def _const_axes_kernel(ctx: KernelContext, generic: Callable[..., np.ndarray],
                       shape_for: Callable[[tuple, list[int]], Any]) -> Callable[..., np.ndarray]:
    """Squeeze / Unsqueeze with constant axes: a reshape to a shape derived once per input shape;
    ``generic(data, axes)`` for any other axes."""
    consts = _const_or_absent(ctx, 1, 2)
    if consts is None or consts[0] is None:
        return generic
    c_axes = consts[0]
    axes_l = c_axes.reshape(-1).tolist()
    shape_of = _shape_cached(lambda shape: tuple(shape_for(shape, axes_l)))

    def run(data, axes=None):
        if axes is c_axes:
            return data.reshape(shape_of(data.shape))
        return generic(data, axes)

    return run


@op_factory("Squeeze", 13)
def squeeze_factory(ctx: KernelContext):
    return _const_axes_kernel(ctx, squeeze, _squeeze_shape)


def _unsqueeze(data: np.ndarray, axes: list[int]) -> np.ndarray:
    return data.reshape(_unsqueeze_shape(data.shape, axes))


def _unsqueeze_shape(shape: tuple, axes: list[int]) -> list[int]:
    out_rank = len(shape) + len(axes)
    norm = sorted(normalize_axis(a, out_rank, "Unsqueeze", "axes entry") for a in axes)
    if len(set(norm)) != len(norm):
        raise ValueError(f"Unsqueeze: axes {axes} contain duplicates")
    new = list(shape)
    for a in norm:
        new.insert(a, 1)
    return new


@op("Unsqueeze", 1, 11)
def unsqueeze_1(data, *, axes):
    return _unsqueeze(data, axes)


def unsqueeze(data, axes):
    return _unsqueeze(data, _ints(axes, "Unsqueeze", "axes"))


@op_factory("Unsqueeze", 13)
def unsqueeze_factory(ctx: KernelContext):
    return _const_axes_kernel(ctx, unsqueeze, _unsqueeze_shape)


@op_factory("Transpose", 1)
def transpose(ctx: KernelContext):
    perm = ctx.attrs.get("perm")
    if perm is None:
        def run_default(data):
            return data.transpose()
        return run_default
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(len(perm))):
        raise ValueError(f"Transpose: perm {list(perm)} is not a permutation of 0..{len(perm) - 1}")

    def run(data):
        if data.ndim != len(perm):
            raise ValueError(f"Transpose: perm {list(perm)} has {len(perm)} entries but the input has rank "
                             f"{data.ndim} (shape {data.shape})")
        return data.transpose(perm)

    return run


# -- Concat, Split ----------------------------------------------------------------------------


@op_factory("Concat", 1, 4)
def concat(ctx: KernelContext):
    axis = ctx.attrs.get("axis", 1)  # opset 1: optional, default 1

    def run(*inputs):
        if not inputs:
            raise ValueError("Concat: at least one input is required")
        first = inputs[0]
        r = first.ndim
        if not -r <= axis < r:
            raise ValueError(f"Concat: axis {axis} is out of range for inputs of rank {r}")
        try:
            return np.concatenate(inputs, axis=axis, dtype=first.dtype, casting="no")
        except (ValueError, TypeError):
            for i, x in enumerate(inputs):
                if x.dtype != first.dtype:
                    raise TypeError(f"Concat: input {i} has dtype {x.dtype}, expected {first.dtype} "
                                    f"(the dtype of input 0)") from None
                a = axis + r if axis < 0 else axis
                if x.ndim != r or x.shape[:a] != first.shape[:a] or x.shape[a + 1:] != first.shape[a + 1:]:
                    raise ValueError(f"Concat: input {i} has shape {x.shape}, incompatible with input 0 of shape "
                                     f"{first.shape} for concatenation on axis {axis}") from None
            raise

    return run


def _split_by_sizes(x: np.ndarray, axis: int, sizes: list[int]) -> tuple:
    dim = x.shape[axis]
    if any(s < 0 for s in sizes) or sum(sizes) != dim:
        raise ValueError(f"Split: split sizes {sizes} must be non-negative and sum to the size of axis {axis} "
                         f"({dim}); input shape {x.shape}")
    pre = (slice(None),) * axis
    out = []
    start = 0
    for s in sizes:
        out.append(x[pre + (slice(start, start + s),)])
        start += s
    return tuple(out)


def _equal_sizes(dim: int, n: int, axis: int) -> list[int]:
    if n <= 0 or dim % n:
        raise ValueError(f"Split: axis {axis} of size {dim} cannot be split into {n} equal parts")
    return [dim // n] * n


@op_factory("Split", 1, 2, 11, 13, 18)
def split(ctx: KernelContext):
    axis_attr = ctx.attrs.get("axis", 0)
    n_out = ctx.num_outputs
    attr_split = ctx.attrs.get("split") if ctx.since_version < 13 else None
    num_outputs = ctx.attrs.get("num_outputs") if ctx.since_version >= 18 else None
    if num_outputs is not None and num_outputs != n_out:
        raise ValueError(f"Split: attribute num_outputs={num_outputs} but the node has {n_out} outputs")
    takes_input = ctx.since_version == 1 or ctx.since_version >= 13

    def run(input, split=None):  # noqa: A002
        axis = normalize_axis(axis_attr, input.ndim, "Split")
        dim = input.shape[axis]
        if takes_input and split is not None:
            sizes = _ints(split, "Split", "split")
            if len(sizes) != n_out:
                raise ValueError(f"Split: input 'split' has {len(sizes)} entries but the node has {n_out} outputs")
        elif attr_split is not None:
            sizes = list(attr_split)
            if len(sizes) != n_out:
                raise ValueError(f"Split: attribute 'split' has {len(sizes)} entries but the node has {n_out} outputs")
        elif num_outputs is not None:
            chunk = -(-dim // num_outputs)
            sizes = [min(chunk, max(dim - i * chunk, 0)) for i in range(num_outputs)]
        else:
            sizes = _equal_sizes(dim, n_out, axis)
        return _split_by_sizes(input, axis, sizes)

    if not takes_input:
        def run_attr(input):  # noqa: A002
            return run(input)
        return run_attr
    return run


# -- Slice ------------------------------------------------------------------------------------


def _slice(data: np.ndarray, starts: list[int], ends: list[int], axes: list[int] | None,
           steps: list[int] | None) -> np.ndarray:
    return data[_slice_index(data.shape, starts, ends, axes, steps)]


def _slice_index(shape: tuple, starts: list[int], ends: list[int], axes: list[int] | None,
                 steps: list[int] | None) -> tuple:
    """The basic-indexing tuple Slice applies to an input of ``shape`` (all checks done here)."""
    r = len(shape)
    n = len(starts)
    if len(ends) != n:
        raise ValueError(f"Slice: 'starts' has {n} entries but 'ends' has {len(ends)}")
    if axes is None:
        axes = list(range(n))
    elif len(axes) != n:
        raise ValueError(f"Slice: 'axes' has {len(axes)} entries, expected {n} (the length of 'starts')")
    if steps is None:
        steps = [1] * n
    elif len(steps) != n:
        raise ValueError(f"Slice: 'steps' has {len(steps)} entries, expected {n} (the length of 'starts')")
    index = [slice(None)] * r
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = normalize_axis(a, r, "Slice", "axes entry")
        if a in seen:
            raise ValueError(f"Slice: axis {a} appears more than once in 'axes' {axes}")
        seen.add(a)
        if st == 0:
            raise ValueError(f"Slice: 'steps' must not contain 0 (axis {a})")
        dim = shape[a]
        if s < 0:
            s += dim
        if e < 0:
            e += dim
        if st > 0:
            s = 0 if s < 0 else (dim if s > dim else s)
            e = 0 if e < 0 else (dim if e > dim else e)
            index[a] = slice(s, e, st)
        else:
            s = 0 if s < 0 else (dim - 1 if s > dim - 1 else s)
            e = -1 if e < -1 else (dim - 1 if e > dim - 1 else e)
            index[a] = slice(s, None if e < 0 else e, st) if dim > 0 else slice(0, 0)
    return tuple(index)


@op("Slice", 1)
def slice_1(data, *, starts, ends, axes=None):
    return _slice(data, list(starts), list(ends), None if axes is None else list(axes), None)


def slice_(data, starts, ends, axes=None, steps=None):
    return _slice(
        data,
        _ints(starts, "Slice", "starts"),
        _ints(ends, "Slice", "ends"),
        None if axes is None else _ints(axes, "Slice", "axes"),
        None if steps is None else _ints(steps, "Slice", "steps"),
    )


_SHAPE_CACHE_MAX = 64  # distinct input shapes remembered per node by the constant-input fast paths


def _const_or_absent(ctx: KernelContext, first: int, last: int) -> list | None:
    """ctx.const_inputs[first:last] where each is a constant or an omitted input, else None.

    Omitted inputs read as None. A constant that is not a 1-D (or scalar) integer tensor also gives
    None: the generic path then raises the usual error at run time.
    """
    consts = list(ctx.const_inputs) + [None] * (last - len(ctx.const_inputs))
    names = list(ctx.input_names) + [""] * (last - len(ctx.input_names))
    out = []
    for i in range(first, last):
        c = consts[i]
        if c is None:
            if i < ctx.num_inputs and names[i]:
                return None  # a runtime value
            out.append(None)
            continue
        if type(c) is not np.ndarray or c.dtype.kind not in "iu" or c.ndim > 1:
            return None
        out.append(c)
    return out


def _shape_cached(compute):
    """Memoise ``compute(shape)`` per input shape (bounded); exceptions are not cached."""
    cache: dict = {}

    def get(shape):
        r = cache.get(shape)
        if r is None:
            r = compute(shape)
            if len(cache) < _SHAPE_CACHE_MAX:
                cache[shape] = r
        return r

    return get


@op_factory("Slice", 10)
def slice_factory(ctx: KernelContext):
    consts = _const_or_absent(ctx, 1, 5)
    if consts is None or consts[0] is None or consts[1] is None:
        return slice_
    c_starts, c_ends, c_axes, c_steps = consts
    starts_l, ends_l = c_starts.reshape(-1).tolist(), c_ends.reshape(-1).tolist()
    axes_l = None if c_axes is None else c_axes.reshape(-1).tolist()
    steps_l = None if c_steps is None else c_steps.reshape(-1).tolist()
    index_of = _shape_cached(lambda shape: _slice_index(shape, starts_l, ends_l, axes_l, steps_l))

    def run(data, starts, ends, axes=None, steps=None):
        if starts is c_starts and ends is c_ends and axes is c_axes and steps is c_steps:
            return data[index_of(data.shape)]
        return slice_(data, starts, ends, axes, steps)

    return run


# -- Expand, Tile ------------------------------------------------------------------------------


@op("Expand", 8)
def expand(input, shape):  # noqa: A002
    dims = _ints(shape, "Expand", "shape")
    try:
        out_shape = np.broadcast_shapes(input.shape, tuple(dims))
    except ValueError:
        raise ValueError(f"Expand: input of shape {input.shape} cannot be broadcast with shape {dims}") from None
    if out_shape == input.shape:
        return input
    out = np.empty(out_shape, dtype=input.dtype)
    out[...] = input
    return out


@op("Tile", 6)
def tile(input, repeats):  # noqa: A002
    reps = _ints(repeats, "Tile", "repeats")
    if len(reps) != input.ndim:
        raise ValueError(f"Tile: 'repeats' has {len(reps)} entries, expected {input.ndim} (the input rank)")
    if any(r < 0 for r in reps):
        raise ValueError(f"Tile: 'repeats' must be non-negative, got {reps}")
    return np.tile(input, reps)


@op("Tile", 1)
def tile_1(input, tiles, axis):  # noqa: A002
    t = int(_scalar(tiles, "Tile", "tiles"))
    a = normalize_axis(int(_scalar(axis, "Tile", "axis")), input.ndim, "Tile")
    reps = [1] * input.ndim
    reps[a] = t
    return np.tile(input, reps)


# -- Pad, CenterCropPad --------------------------------------------------------------------------


class _PadPlan(NamedTuple):
    """How to pad one input shape: worked out once per (shape, pads, mode, axes), applied per run."""

    crop: tuple | None  # negative pads: the index that crops the input first
    out_shape: tuple[int, ...] | None  # None: nothing left to pad, the (cropped) input is the output
    center: tuple  # where the input goes in the output
    borders: tuple | None  # (border index, source index) copies inside the output; None: np.pad does it
    np_pad_width: tuple  # the (begin, end) pairs for np.pad, when ``borders`` is None


@functools.lru_cache(maxsize=512)
def _pad_plan(shape: tuple[int, ...], pads: tuple[int, ...], mode: str, axes: tuple[int, ...] | None) -> _PadPlan:
    r = len(shape)
    if axes is None:
        if len(pads) != 2 * r:
            raise ValueError(f"Pad: 'pads' has {len(pads)} entries, expected {2 * r} (2 x input rank)")
        begins, ends = list(pads[:r]), list(pads[r:])
    else:
        n = len(axes)
        if len(pads) != 2 * n:
            raise ValueError(f"Pad: 'pads' has {len(pads)} entries, expected {2 * n} (2 x number of axes)")
        begins, ends = [0] * r, [0] * r
        for i, a in enumerate(axes):
            a = normalize_axis(a, r, "Pad", "axes entry")
            begins[a], ends[a] = pads[i], pads[n + i]
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ValueError(f"Pad: unsupported mode '{mode}' (expected constant, reflect, edge or wrap)")
    crop = None
    if any(p < 0 for p in begins) or any(p < 0 for p in ends):  # negative pads crop first
        index, cropped = [], []
        for i in range(r):
            b, e, dim = begins[i], ends[i], shape[i]
            s = -b if b < 0 else 0
            t = dim + e if e < 0 else dim
            if t < s:
                raise ValueError(f"Pad: negative pads {b}, {e} remove more than the {dim} elements of axis {i}")
            index.append(slice(s, t))
            cropped.append(t - s)
        crop, shape = tuple(index), tuple(cropped)
        begins = [max(p, 0) for p in begins]
        ends = [max(p, 0) for p in ends]
    if not any(begins) and not any(ends):
        return _PadPlan(crop, None, (), None, ())
    out_shape = tuple(d + b + e for d, b, e in zip(shape, begins, ends))
    center = tuple(slice(b, b + d) for b, d in zip(begins, shape))
    width = tuple(zip(begins, ends))
    if mode == "constant":
        return _PadPlan(crop, out_shape, center, (), width)
    axis_modes = []
    for i, (d, b, e) in enumerate(zip(shape, begins, ends)):
        if (b or e) and d == 0:
            raise ValueError(f"Pad: mode '{mode}' cannot pad axis {i} of size 0")
        # reflecting a single element repeats it
        axis_modes.append("edge" if mode == "reflect" and d == 1 else mode)
    # np.pad handles borders wider than one mirror image (reflect: pads < dim) or one copy (wrap:
    # pads <= dim): it reflects repeatedly (and repeats a length-1 axis as onnxruntime does)
    if any((m == "reflect" and (b >= d or e >= d)) or (m == "wrap" and (b > d or e > d))
           for m, d, b, e in zip(axis_modes, shape, begins, ends)):
        return _PadPlan(crop, out_shape, center, None, width)
    return _PadPlan(crop, out_shape, center, _border_copies(shape, begins, ends, axis_modes), width)


def _border_copies(shape: tuple, begins: list[int], ends: list[int], axis_modes: list[str]) -> tuple:
    """reflect / edge / wrap borders as slice copies inside the output (np.pad costs ~40 us of
    Python per call).

    Axis by axis each border is copied from the output itself, over the whole extent of the other
    axes: borders of later axes read garbage at first and are overwritten when their own axis comes."""
    r = len(shape)
    copies = []
    for i, (d, b, e, mode) in enumerate(zip(shape, begins, ends, axis_modes)):
        def at(sl: slice, _i: int = i) -> tuple:
            return (slice(None),) * _i + (sl,) + (slice(None),) * (r - _i - 1)

        lo, hi = b, b + d  # the input's extent along axis i
        if mode == "reflect":  # the border mirrors the input without repeating its edge element
            left, right = slice(2 * b, b, -1), slice(hi - 2, hi - 2 - e if hi - 2 - e >= 0 else None, -1)
        elif mode == "edge":
            left, right = slice(lo, lo + 1), slice(hi - 1, hi)
        else:  # wrap: the far end of the input comes around
            left, right = slice(hi - b, hi), slice(lo, lo + e)
        if b:
            copies.append((at(slice(0, b)), at(left)))
        if e:
            copies.append((at(slice(hi, hi + e)), at(right)))
    return tuple(copies)


def _pad(data: np.ndarray, pads: list[int], mode: str, value: Any, axes: list[int] | None) -> np.ndarray:
    plan = _pad_plan(data.shape, tuple(pads), mode, None if axes is None else tuple(axes))
    if plan.crop is not None:
        data = data[plan.crop]
    if plan.out_shape is None:
        return data
    if mode == "constant":
        out = np.full(plan.out_shape, _zero_of(data.dtype) if value is None else value, dtype=data.dtype)
        out[plan.center] = data
        return out
    if plan.borders is None:
        if _is_ml_float(data.dtype) or data.dtype.kind == "V":
            return np.pad(data.view(np.uint8 if data.dtype.itemsize == 1 else np.uint16),
                          plan.np_pad_width, mode=mode).view(data.dtype)
        return np.pad(data, plan.np_pad_width, mode=mode)
    out = np.empty(plan.out_shape, dtype=data.dtype)
    out[plan.center] = data
    for border, source in plan.borders:
        out[border] = out[source]
    return out


def _pad_value_attr(dtype: np.dtype, value: float) -> Any:
    if dtype == object:
        return ""
    return np.asarray(value).astype(dtype)


@op("Pad", 1)
def pad_1(data, *, paddings, mode="constant", value=0.0):
    return _pad(data, list(paddings), mode, _pad_value_attr(data.dtype, value), None)


@op("Pad", 2)
def pad_2(data, *, pads, mode="constant", value=0.0):
    return _pad(data, list(pads), mode, _pad_value_attr(data.dtype, value), None)


@op("Pad", 11)
def pad(data, pads, constant_value=None, axes=None, *, mode="constant"):
    value = None
    if constant_value is not None:
        cv = np.asarray(constant_value)
        if cv.size != 1:
            if cv.size == 0:
                cv = None
            else:
                raise ValueError(f"Pad: 'constant_value' must be a scalar, got shape {cv.shape}")
        if cv is not None:
            value = cv.reshape(())
    return _pad(data, _ints(pads, "Pad", "pads"), mode, value,
                None if axes is None else _ints(axes, "Pad", "axes"))


@op("CenterCropPad", 18)
def center_crop_pad(input_data, shape, *, axes=None):
    r = input_data.ndim
    target = _ints(shape, "CenterCropPad", "shape")
    if axes is None:
        axes = list(range(r))
    if len(axes) != len(target):
        raise ValueError(f"CenterCropPad: 'shape' has {len(target)} entries, expected {len(axes)} (one per axis)")
    out_shape = list(input_data.shape)
    src = [slice(None)] * r
    dst = [slice(None)] * r
    for a, t in zip(axes, target):
        a = normalize_axis(a, r, "CenterCropPad", "axes entry")
        if t < 0:
            raise ValueError(f"CenterCropPad: target size {t} for axis {a} is negative")
        dim = input_data.shape[a]
        out_shape[a] = t
        if dim > t:
            s = (dim - t) // 2
            src[a] = slice(s, s + t)
        elif dim < t:
            s = (t - dim) // 2
            dst[a] = slice(s, s + dim)
    out = np.zeros(out_shape, dtype=input_data.dtype) if input_data.dtype != object else \
        np.full(out_shape, "", dtype=object)
    out[tuple(dst)] = input_data[tuple(src)]
    return out


# -- Shape, Size, ConstantOfShape, Range, EyeLike, OneHot ---------------------------------------------


@op_factory("Shape", 1, 15)
def shape(ctx: KernelContext):
    start = ctx.attrs.get("start", 0) if ctx.since_version >= 15 else 0
    end = ctx.attrs.get("end") if ctx.since_version >= 15 else None
    if start == 0 and end is None:
        def run_full(data):
            return np.array(data.shape, dtype=np.int64)
        return run_full
    sl = slice(start, end)

    def run(data):
        return np.array(data.shape[sl], dtype=np.int64)

    return run


@op("Size", 1)
def size(data):
    return np.array(data.size, dtype=np.int64)


def constant_fill(value: np.ndarray | None) -> np.ndarray:
    """ConstantOfShape's 0-d fill from its 'value' attribute (float32 zero without one)."""
    if value is None:
        return np.zeros((), dtype=np.float32)
    value = np.asarray(value)
    if value.size != 1:
        raise ValueError(f"ConstantOfShape: attribute 'value' must have one element, got shape {value.shape}")
    return value.reshape(())


def filled(shape: Any, fill: np.ndarray) -> np.ndarray:
    """ConstantOfShape's output: ``fill`` (0-d) over the dims of the 1-D integer tensor ``shape``."""
    dims = _ints(shape, "ConstantOfShape", "input")
    if any(d < 0 for d in dims):
        raise ValueError(f"ConstantOfShape: shape {dims} has negative dimensions")
    return np.full(dims, fill, dtype=fill.dtype)


@op_factory("ConstantOfShape", 9)
def constant_of_shape(ctx: KernelContext):
    fill = constant_fill(ctx.attrs.get("value"))

    def run(input):  # noqa: A002
        return filled(input, fill)

    return run


@op_factory("Range", 11, 27)
def range_(ctx: KernelContext):
    stash = ctx.attrs.get("stash_type", 1) if ctx.since_version >= 27 else None

    def run(start, limit, delta):
        dtype = start.dtype
        s = _scalar(start, "Range", "start")
        lim = _scalar(limit, "Range", "limit")
        d = _scalar(delta, "Range", "delta")
        if d == 0:
            raise ValueError("Range: 'delta' must not be zero")
        if dtype.kind in "iu":
            return np.arange(s, lim, d, dtype=dtype)
        n = max(math.ceil((lim - s) / d), 0)
        # onnxruntime's loop accumulates ``value += delta`` in T; np.add.accumulate is that same
        # sequential sum. float16/bfloat16 accumulate in float32 (stash_type FLOAT, the default) or
        # float64 (stash_type DOUBLE).
        if dtype == np.float16 or _is_ml_float(dtype):
            compute = np.dtype(np.float64 if stash == onnx.TensorProto.DOUBLE else np.float32)
        else:
            compute = dtype
        steps = np.full(n, d, dtype=compute)
        if n:
            steps[0] = s
        out = np.add.accumulate(steps, dtype=compute)
        return out if out.dtype == dtype else out.astype(dtype)

    return run


@op("EyeLike", 9)
def eye_like(input, *, dtype=None, k=0):  # noqa: A002
    if input.ndim != 2:
        raise ValueError(f"EyeLike: input must be 2-D, got shape {input.shape}")
    out_dtype = input.dtype if dtype is None else _np_dtype(dtype, "EyeLike")
    n, m = input.shape
    out = np.zeros((n, m), dtype=out_dtype)
    if out_dtype == object:
        return out
    i = np.arange(max(0, -k), min(n, m - k))
    if i.size:
        out[i, i + k] = np.ones((), dtype=out_dtype) if out_dtype.kind != "V" else np.float32(1).astype(out_dtype)
    return out


def _one_hot(indices, depth, values, axis: int, allow_negative: bool):
    d = _scalar(depth, "OneHot", "depth")
    d = int(d)
    if d < 1:
        raise ValueError(f"OneHot: 'depth' must be positive, got {d}")
    values = np.asarray(values)
    if values.size != 2:
        raise ValueError(f"OneHot: 'values' must have two elements [off_value, on_value], got shape {values.shape}")
    values = values.reshape(2)
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        idx = idx.astype(np.float64) if _is_ml_float(idx.dtype) or idx.dtype.kind == "f" else idx
        idx = np.trunc(idx).astype(np.int64)
    else:
        idx = idx.astype(np.int64, copy=False)
    if allow_negative:
        idx = np.where(idx < 0, idx + d, idx)
    r = idx.ndim + 1
    axis = normalize_axis(axis, r, "OneHot")
    hot = idx[..., None] == np.arange(d, dtype=np.int64)
    out = np.where(hot, values[1], values[0])
    if axis != r - 1:
        out = np.moveaxis(out, -1, axis)
    return np.ascontiguousarray(out)


@op("OneHot", 9)
def one_hot_9(indices, depth, values, *, axis=-1):
    return _one_hot(indices, depth, values, axis, False)


@op("OneHot", 11)
def one_hot(indices, depth, values, *, axis=-1):
    return _one_hot(indices, depth, values, axis, True)


# -- DepthToSpace, SpaceToDepth, Trilu ------------------------------------------------------------


@op("DepthToSpace", 1, 11)
def depth_to_space(input, *, blocksize, mode="DCR"):  # noqa: A002
    if input.ndim != 4:
        raise ValueError(f"DepthToSpace: input must be 4-D (N, C, H, W), got shape {input.shape}")
    b, c, h, w = input.shape
    bs = blocksize
    if bs <= 0 or c % (bs * bs):
        raise ValueError(f"DepthToSpace: channels {c} must be divisible by blocksize^2 = {bs * bs}")
    cc = c // (bs * bs)
    if mode == "DCR":
        t = input.reshape(b, bs, bs, cc, h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        t = input.reshape(b, cc, bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise ValueError(f"DepthToSpace: unsupported mode '{mode}' (expected DCR or CRD)")
    return t.reshape(b, cc, h * bs, w * bs)


@op("SpaceToDepth", 1)
def space_to_depth(input, *, blocksize, mode="DCR"):  # noqa: A002
    if input.ndim != 4:
        raise ValueError(f"SpaceToDepth: input must be 4-D (N, C, H, W), got shape {input.shape}")
    b, c, h, w = input.shape
    bs = blocksize
    if bs <= 0 or h % bs or w % bs:
        raise ValueError(f"SpaceToDepth: height {h} and width {w} must be divisible by blocksize {bs}")
    t = input.reshape(b, c, h // bs, bs, w // bs, bs)
    if mode == "DCR":
        t = t.transpose(0, 3, 5, 1, 2, 4)
    elif mode == "CRD":
        t = t.transpose(0, 1, 3, 5, 2, 4)
    else:
        raise ValueError(f"SpaceToDepth: unsupported mode '{mode}' (expected DCR or CRD)")
    return t.reshape(b, c * bs * bs, h // bs, w // bs)


@op("Trilu", 14)
def trilu(input, k=None, *, upper=1):  # noqa: A002
    if input.ndim < 2:
        raise ValueError(f"Trilu: input must have rank >= 2, got shape {input.shape}")
    kk = 0 if k is None else int(_scalar(k, "Trilu", "k"))
    n, m = input.shape[-2:]
    rows = np.arange(n)[:, None]
    cols = np.arange(m)[None, :]
    keep = (cols - rows >= kk) if upper else (cols - rows <= kk)
    return np.where(keep, input, _zero_of(input.dtype))


# -- ReverseSequence, Compress, NonZero, Unique --------------------------------------------------------


@op("ReverseSequence", 10)
def reverse_sequence(input, sequence_lens, *, batch_axis=1, time_axis=0):  # noqa: A002
    r = input.ndim
    if r < 2:
        raise ValueError(f"ReverseSequence: input must have rank >= 2, got shape {input.shape}")
    b_ax = normalize_axis(batch_axis, r, "ReverseSequence", "batch_axis")
    t_ax = normalize_axis(time_axis, r, "ReverseSequence", "time_axis")
    if b_ax == t_ax:
        raise ValueError("ReverseSequence: batch_axis and time_axis must differ")
    lens = np.asarray(sequence_lens).astype(np.int64).reshape(-1)
    nb, nt = input.shape[b_ax], input.shape[t_ax]
    if lens.shape[0] != nb:
        raise ValueError(f"ReverseSequence: 'sequence_lens' has {lens.shape[0]} entries, expected {nb} "
                         f"(the batch dimension)")
    if lens.size and (lens.min() < 0 or lens.max() > nt):
        raise ValueError(f"ReverseSequence: 'sequence_lens' values must be in [0, {nt}], got {lens.tolist()}")
    t = np.arange(nt)[None, :]
    src_t = np.where(t < lens[:, None], lens[:, None] - 1 - t, t)  # (batch, time)
    index: list[Any] = []
    for ax in range(r):
        shp = [1] * r
        if ax == b_ax:
            shp[ax] = nb
            index.append(np.arange(nb).reshape(shp))
        elif ax == t_ax:
            sh2 = [1] * r
            sh2[b_ax], sh2[t_ax] = nb, nt
            tmp = src_t if b_ax < t_ax else src_t.T
            index.append(tmp.reshape(sh2))
        else:
            shp[ax] = input.shape[ax]
            index.append(np.arange(input.shape[ax]).reshape(shp))
    return input[tuple(index)]


@op("Compress", 9, 11)
def compress(input, condition, *, axis=None):  # noqa: A002
    cond = np.asarray(condition)
    if cond.ndim != 1:
        raise ValueError(f"Compress: 'condition' must be 1-D, got shape {cond.shape}")
    cond = cond.astype(bool, copy=False)
    if axis is None:
        data = input.reshape(-1)
        a = 0
    else:
        a = normalize_axis(axis, input.ndim, "Compress")
        data = input
    dim = data.shape[a]
    if cond.shape[0] > dim:
        if cond[dim:].any():
            raise ValueError(f"Compress: 'condition' has {cond.shape[0]} entries, more than the {dim} elements "
                             f"of axis {a}")
        cond = cond[:dim]
    idx = np.flatnonzero(cond)
    return np.take(data, idx, axis=a)


@op("NonZero", 9)
def non_zero(X):
    if X.ndim == 0:  # onnxruntime treats a scalar as a 1-element vector
        return np.zeros((1, 1 if bool(X) else 0), dtype=np.int64)
    x = X.astype(np.float32) if X.dtype.kind == "V" else X
    nz = np.nonzero(x)
    if not nz:
        return np.zeros((0, 0), dtype=np.int64)
    return np.array(nz, dtype=np.int64).reshape(len(nz), -1)


@op("Unique", 11)
def unique(X, *, axis=None, sorted=1):  # noqa: A002
    x = X
    ml = _is_ml_float(x.dtype)
    if ml:
        x = x.astype(np.float32)
    if axis is None:
        y, first, inverse, counts = np.unique(x.reshape(-1), return_index=True, return_inverse=True,
                                              return_counts=True)
    else:
        a = normalize_axis(axis, x.ndim, "Unique")
        y, first, inverse, counts = np.unique(x, return_index=True, return_inverse=True, return_counts=True,
                                              axis=a)
    inverse = inverse.reshape(-1)
    if not sorted:
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        y = np.take(y, order, axis=0 if axis is None else a)
        first = first[order]
        counts = counts[order]
        inverse = rank[inverse]
    if ml:
        y = y.astype(X.dtype)
    return (y, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64))


# -- TopK, ArgMax, ArgMin ---------------------------------------------------------------------


def _topk(X: np.ndarray, k: int, axis: int, largest: int) -> tuple:
    a = normalize_axis(axis, X.ndim, "TopK")
    n = X.shape[a]
    if k < 0 or k > n:
        raise ValueError(f"TopK: k={k} is out of range for axis {a} of size {n} (input shape {X.shape})")
    x = X.astype(np.float32) if X.dtype.kind == "V" else X
    if 0 < k and k * 4 < n and n >= 64 and x.dtype != object and not (x.dtype.kind == "f" and np.isnan(x).any()):
        idx = _topk_partial(x, k, a, largest)
    elif largest:
        flipped = np.flip(x, axis=a)
        order = np.argsort(flipped, axis=a, kind="stable")
        idx = (n - 1) - np.flip(order, axis=a)
    else:
        idx = np.argsort(x, axis=a, kind="stable")
    if k != n:
        idx = idx[(slice(None),) * a + (slice(0, k),)]
    values = np.take_along_axis(X, idx, axis=a)
    return values, idx.astype(np.int64, copy=False)


def _topk_partial(x: np.ndarray, k: int, a: int, largest: int) -> np.ndarray:
    """TopK indices for k much smaller than n: partition to the k-th value, keep everything strictly
    better plus the lowest-index ties, then sort only those k (stable: ties keep index order)."""
    n = x.shape[a]
    xm = np.moveaxis(x, a, -1)
    lead = xm.shape[:-1]
    xm = xm.reshape(-1, n)
    if largest:
        kth = np.partition(xm, n - k, axis=1)[:, n - k, None]
        better = xm > kth
    else:
        kth = np.partition(xm, k - 1, axis=1)[:, k - 1, None]
        better = xm < kth
    tie = xm == kth
    need = k - better.sum(axis=1, keepdims=True)
    if np.array_equal(tie.sum(axis=1, keepdims=True), need):  # usual case: no surplus ties
        keep = better | tie
    else:
        keep = better | (tie & (np.cumsum(tie, axis=1) <= need))
    cols = np.nonzero(keep)[1].reshape(-1, k)  # ascending original index within each row
    vals = np.take_along_axis(xm, cols, axis=1)
    if largest:
        order = (k - 1) - np.argsort(vals[:, ::-1], axis=1, kind="stable")[:, ::-1]
    else:
        order = np.argsort(vals, axis=1, kind="stable")
    idx = np.take_along_axis(cols, order, axis=1).reshape(lead + (k,))
    return np.moveaxis(idx, -1, a)


@op("TopK", 1)
def top_k_1(X, *, k, axis=-1):
    return _topk(X, k, axis, 1)


@op("TopK", 10)
def top_k_10(X, K, *, axis=-1):
    return _topk(X, int(_scalar(K, "TopK", "K")), axis, 1)


@op("TopK", 11)
def top_k(X, K, *, axis=-1, largest=1, sorted=1):  # noqa: A002
    return _topk(X, int(_scalar(K, "TopK", "K")), axis, largest)


def _arg(fn, name: str, data: np.ndarray, axis: int, keepdims: int, select_last_index: int) -> np.ndarray:
    a = normalize_axis(axis, data.ndim, name)
    n = data.shape[a]
    if n == 0:
        raise ValueError(f"{name}: cannot reduce over axis {a} of size 0 (input shape {data.shape})")
    x = data.astype(np.float32) if data.dtype.kind == "V" else data
    if select_last_index:
        out = (n - 1) - fn(np.flip(x, axis=a), axis=a, keepdims=bool(keepdims))
    else:
        out = fn(x, axis=a, keepdims=bool(keepdims))
    return np.asarray(out, dtype=np.int64)


@op("ArgMax", 1, 11, 12)
def arg_max(data, *, axis=0, keepdims=1, select_last_index=0):
    return _arg(np.argmax, "ArgMax", data, axis, keepdims, select_last_index)


@op("ArgMin", 1, 11, 12)
def arg_min(data, *, axis=0, keepdims=1, select_last_index=0):
    return _arg(np.argmin, "ArgMin", data, axis, keepdims, select_last_index)


# -- CumSum, CumProd ---------------------------------------------------------------------------


def _cumulative(fn, ident: int, name: str, x: np.ndarray, axis: Any, exclusive: int, reverse: int) -> np.ndarray:
    ax = np.asarray(axis)
    if ax.size != 1 or ax.dtype.kind not in "iu":
        raise ValueError(f"{name}: 'axis' must be an integer scalar, got dtype {ax.dtype} shape {ax.shape}")
    a = normalize_axis(int(ax.reshape(-1)[0]), x.ndim, name)
    work = x.astype(np.float32) if x.dtype.kind == "V" else x
    if reverse:
        work = np.flip(work, axis=a)
    out = fn(work, axis=a, dtype=work.dtype)
    if exclusive:
        shifted = np.empty_like(out)
        pre = (slice(None),) * a
        shifted[pre + (slice(0, 1),)] = ident
        shifted[pre + (slice(1, None),)] = out[pre + (slice(0, -1),)]
        out = shifted
    if reverse:
        out = np.flip(out, axis=a)
    if out.dtype != x.dtype:
        out = out.astype(x.dtype)
    return np.ascontiguousarray(out)


@op("CumSum", 11)
def cum_sum(x, axis, *, exclusive=0, reverse=0):
    return _cumulative(np.cumsum, 0, "CumSum", x, axis, exclusive, reverse)


@op("CumProd", 26)
def cum_prod(x, axis, *, exclusive=0, reverse=0):
    return _cumulative(np.cumprod, 1, "CumProd", x, axis, exclusive, reverse)


# -- Dropout -----------------------------------------------------------------------------------


@op_factory("Dropout", 1, 6, 7, 10)
def dropout_old(ctx: KernelContext):
    """Before opset 12 the runtime treats Dropout as inference: identity, mask of ones."""
    bool_mask = ctx.since_version >= 10
    want_mask = ctx.num_outputs > 1

    def run(data):
        if not want_mask:
            return data
        return data, np.ones(data.shape, dtype=bool if bool_mask else data.dtype)

    return run


@op_factory("Dropout", 12)
def dropout(ctx: KernelContext):
    seed = ctx.attrs.get("seed")
    want_mask = ctx.num_outputs > 1

    def run(data, ratio=None, training_mode=None):
        training = training_mode is not None and bool(np.asarray(training_mode).reshape(-1)[0])
        r = 0.5 if ratio is None else float(_scalar(ratio, "Dropout", "ratio"))
        if not training or r == 0:
            if want_mask:
                return data, np.ones(data.shape, dtype=bool)
            return data
        if not 0 <= r < 1:
            raise ValueError(f"Dropout: 'ratio' must be in [0, 1), got {r}")
        if seed is not None:
            u = np.random.RandomState(int(seed)).uniform(0.0, 1.0, data.shape)
        else:
            u = generator().uniform(0.0, 1.0, data.shape)
        mask = u >= r
        work = data.astype(np.float32) if data.dtype.kind == "V" else data
        scale = work.dtype.type(1.0 / (1.0 - r))
        out = np.where(mask, work * scale, work.dtype.type(0)).astype(data.dtype, copy=False)
        return (out, mask) if want_mask else out

    return run
