"""Random generators: RandomUniform(Like), RandomNormal(Like), Multinomial, Bernoulli.

A node with a ``seed`` attribute owns a generator seeded once when the session is
built (runs draw successive values from it, as onnxruntime does); a node without one
draws from the shared generator of ``onnxrt.ops._random`` (reseeded by ``set_seed``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxrt.ops import _random
from onnxrt.ops.registry import KernelContext, op_factory
from onnxrt.types import np_dtype

_FLOAT_KINDS = "fV"  # float16/32/64 and the ml_dtypes floats


def _rng_source(ctx: KernelContext) -> Callable[[], np.random.Generator]:
    seed = ctx.attrs.get("seed")
    if seed is not None:
        rng = _random.generator(seed)
        return lambda: rng
    return _random.generator


def _dtype_attr(ctx: KernelContext, default: Any = None) -> np.dtype | None:
    code = ctx.attrs.get("dtype", default)
    if code is None:
        return None
    try:
        return np_dtype(int(code))
    except ValueError:
        raise ValueError(f"{ctx.describe()}: unsupported 'dtype' attribute {code}") from None


def _float_dtype(dtype: np.dtype, op_name: str) -> np.dtype:
    if dtype.kind not in _FLOAT_KINDS or "int" in dtype.name:
        raise TypeError(f"{op_name}: output dtype must be a floating-point type, got {dtype}")
    return dtype


def _shape_attr(ctx: KernelContext) -> tuple[int, ...]:
    shape = ctx.attrs.get("shape")
    if shape is None:
        raise ValueError(f"{ctx.describe()}: attribute 'shape' is required")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"{ctx.describe()}: attribute 'shape' must be non-negative, got {list(shape)}")
    return shape


def _uniform(rng: np.random.Generator, shape, low: float, high: float, dtype: np.dtype) -> np.ndarray:
    return (rng.random(shape) * (high - low) + low).astype(dtype)


def _normal(rng: np.random.Generator, shape, mean: float, scale: float, dtype: np.dtype) -> np.ndarray:
    return rng.normal(mean, scale, shape).astype(dtype)


@op_factory("RandomUniform", 1)
def random_uniform(ctx: KernelContext):
    dtype = _float_dtype(_dtype_attr(ctx, 1), "RandomUniform")
    shape = _shape_attr(ctx)
    low, high = float(ctx.attrs.get("low", 0.0)), float(ctx.attrs.get("high", 1.0))
    rng = _rng_source(ctx)

    def run_random_uniform():
        return _uniform(rng(), shape, low, high, dtype)

    return run_random_uniform


@op_factory("RandomNormal", 1)
def random_normal(ctx: KernelContext):
    dtype = _float_dtype(_dtype_attr(ctx, 1), "RandomNormal")
    shape = _shape_attr(ctx)
    mean, scale = float(ctx.attrs.get("mean", 0.0)), float(ctx.attrs.get("scale", 1.0))
    rng = _rng_source(ctx)

    def run_random_normal():
        return _normal(rng(), shape, mean, scale, dtype)

    return run_random_normal


def _like_dtype(ctx: KernelContext, op_name: str) -> np.dtype | None:
    dtype = _dtype_attr(ctx)
    return None if dtype is None else _float_dtype(dtype, op_name)


def _check_input(x: Any, op_name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op_name}: input 'input' must be a tensor, got {type(x).__name__}")
    return x


@op_factory("RandomUniformLike", 1)
def random_uniform_like(ctx: KernelContext):
    dtype = _like_dtype(ctx, "RandomUniformLike")
    low, high = float(ctx.attrs.get("low", 0.0)), float(ctx.attrs.get("high", 1.0))
    rng = _rng_source(ctx)

    def run_random_uniform_like(input):  # noqa: A002
        x = _check_input(input, "RandomUniformLike")
        dt = dtype if dtype is not None else _float_dtype(x.dtype, "RandomUniformLike")
        return _uniform(rng(), x.shape, low, high, dt)

    return run_random_uniform_like


@op_factory("RandomNormalLike", 1)
def random_normal_like(ctx: KernelContext):
    dtype = _like_dtype(ctx, "RandomNormalLike")
    mean, scale = float(ctx.attrs.get("mean", 0.0)), float(ctx.attrs.get("scale", 1.0))
    rng = _rng_source(ctx)

    def run_random_normal_like(input):  # noqa: A002
        x = _check_input(input, "RandomNormalLike")
        dt = dtype if dtype is not None else _float_dtype(x.dtype, "RandomNormalLike")
        return _normal(rng(), x.shape, mean, scale, dt)

    return run_random_normal_like


@op_factory("Multinomial", 7)
def multinomial(ctx: KernelContext):
    dtype = _dtype_attr(ctx, 6)
    if dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise ValueError(f"{ctx.describe()}: 'dtype' must be int32 or int64, got {dtype}")
    sample_size = int(ctx.attrs.get("sample_size", 1))
    if sample_size < 0:
        raise ValueError(f"{ctx.describe()}: 'sample_size' must be non-negative, got {sample_size}")
    rng = _rng_source(ctx)

    def run_multinomial(input):  # noqa: A002
        x = _check_input(input, "Multinomial")
        if x.ndim != 2:
            raise ValueError(f"Multinomial: input must have shape [batch_size, class_size], got {list(x.shape)}")
        batch, classes = x.shape
        if classes == 0:
            raise ValueError("Multinomial: class_size must be at least 1")
        logits = x.astype(np.float64)
        logits = logits - logits.max(axis=1, keepdims=True)
        cdf = np.cumsum(np.exp(logits), axis=1)
        cdf /= cdf[:, -1:]
        # One searchsorted over all rows: row b's CDF lives in [b, b + 1].
        offsets = np.arange(batch, dtype=np.float64)[:, None]
        u = rng().random((batch, sample_size)) + offsets
        idx = np.searchsorted((cdf + offsets).reshape(-1), u.reshape(-1), side="right").reshape(batch, sample_size)
        idx -= np.arange(batch)[:, None] * classes
        np.clip(idx, 0, classes - 1, out=idx)
        return idx.astype(dtype)

    return run_multinomial


@op_factory("Bernoulli", 15)
def bernoulli(ctx: KernelContext):
    dtype = _dtype_attr(ctx)
    rng = _rng_source(ctx)

    def run_bernoulli(input):  # noqa: A002
        x = _check_input(input, "Bernoulli")
        if x.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"Bernoulli: input must be a floating-point tensor of probabilities, got {x.dtype}")
        out_dtype = dtype if dtype is not None else x.dtype
        return (rng().random(x.shape) < x.astype(np.float64)).astype(out_dtype)

    return run_bernoulli
