"""ai.onnx.preview.training optimizers: Adagrad, Adam, Momentum (one update step each)."""

from __future__ import annotations

import numpy as np

from onnxrt.errors import InvalidArgument, InvalidGraph
from onnxrt.ops.registry import KernelContext, op_factory

TRAINING = "ai.onnx.preview.training"


def _scalar(value, op_name: str, input_name: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise InvalidArgument(f"{op_name}: input '{input_name}' must be a scalar, got shape {list(arr.shape)}")
    return arr.reshape(-1)[0].item()


def _groups(op_name: str, tensors: tuple, n_groups: int) -> list[tuple[np.ndarray, ...]]:
    """Split the variadic inputs [X_1..X_n, G_1..G_n, ...] into per-tensor tuples."""
    if len(tensors) == 0 or len(tensors) % n_groups:
        raise InvalidArgument(
            f"{op_name}: expected a multiple of {n_groups} optimized-tensor inputs after R and T, got {len(tensors)}")
    n = len(tensors) // n_groups
    out = []
    for i in range(n):
        group = tuple(np.asarray(tensors[i + k * n]) for k in range(n_groups))
        x = group[0]
        if x.dtype.kind != "f":
            raise TypeError(f"{op_name}: optimized tensor {i} must be float or double, got {x.dtype}")
        for k, t in enumerate(group[1:], 1):
            if t.shape != x.shape:
                raise InvalidArgument(
                    f"{op_name}: input {2 + i + k * n} has shape {list(t.shape)}, expected {list(x.shape)} "
                    f"like optimized tensor {i}")
        out.append(group)
    return out


@op_factory("Adagrad", 1, domain=TRAINING)
def adagrad(ctx: KernelContext):
    norm = float(ctx.attrs.get("norm_coefficient", 0.0))
    decay = float(ctx.attrs.get("decay_factor", 0.0))
    eps = float(ctx.attrs.get("epsilon", 1e-6))

    def run(R, T, *tensors):
        r = _scalar(R, "Adagrad", "R") / (1.0 + _scalar(T, "Adagrad", "T") * decay)
        xs, hs = [], []
        for X, G, H in _groups("Adagrad", tensors, 3):
            dt = X.dtype
            x = X.astype(np.float64)
            g = norm * x + G.astype(np.float64)
            h = H.astype(np.float64) + g * g
            xs.append((x - r * g / (np.sqrt(h) + eps)).astype(dt))
            hs.append(h.astype(H.dtype))
        return tuple(xs + hs)

    return run


@op_factory("Adam", 1, domain=TRAINING)
def adam(ctx: KernelContext):
    a = ctx.attrs
    alpha = float(a.get("alpha", 0.9))
    beta = float(a.get("beta", 0.999))
    norm = float(a.get("norm_coefficient", 0.0))
    norm_post = float(a.get("norm_coefficient_post", 0.0))
    eps = float(a.get("epsilon", 1e-6))

    def run(R, T, *tensors):
        r = _scalar(R, "Adam", "R")
        t = _scalar(T, "Adam", "T")
        if t > 0:
            r = r * np.sqrt(1.0 - beta ** t) / (1.0 - alpha ** t)
        xs, vs, hs = [], [], []
        for X, G, V, H in _groups("Adam", tensors, 4):
            x = X.astype(np.float64)
            g = norm * x + G.astype(np.float64)
            v = alpha * V.astype(np.float64) + (1.0 - alpha) * g
            h = beta * H.astype(np.float64) + (1.0 - beta) * g * g
            x_new = x - r * v / (np.sqrt(h) + eps)
            xs.append(((1.0 - norm_post) * x_new).astype(X.dtype))
            vs.append(v.astype(V.dtype))
            hs.append(h.astype(H.dtype))
        return tuple(xs + vs + hs)

    return run


@op_factory("Momentum", 1, domain=TRAINING)
def momentum(ctx: KernelContext):
    a = ctx.attrs
    where = ctx.describe()
    for name in ("alpha", "beta", "mode", "norm_coefficient"):
        if a.get(name) is None:
            raise InvalidGraph(f"{where}: attribute '{name}' is required")
    alpha = float(a["alpha"])
    beta = float(a["beta"])
    norm = float(a["norm_coefficient"])
    mode = a["mode"]
    if mode not in ("standard", "nesterov"):
        raise InvalidGraph(f"{where}: mode must be 'standard' or 'nesterov', got '{mode}'")
    nesterov = mode == "nesterov"

    def run(R, T, *tensors):
        r = _scalar(R, "Momentum", "R")
        b = beta if _scalar(T, "Momentum", "T") > 0 else 1.0
        xs, vs = [], []
        for X, G, V in _groups("Momentum", tensors, 3):
            x = X.astype(np.float64)
            g = norm * x + G.astype(np.float64)
            v = alpha * V.astype(np.float64) + b * g
            step = g + alpha * v if nesterov else v
            xs.append((x - r * step).astype(X.dtype))
            vs.append(v.astype(V.dtype))
        return tuple(xs + vs)

    return run
