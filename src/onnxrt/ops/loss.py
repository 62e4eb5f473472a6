"""NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss."""

from __future__ import annotations

import numpy as np

from onnxrt.ops.registry import KernelContext, op_factory
from onnxrt.ops.softmax import compute_dtype, softmax_along

_REDUCTIONS = ("none", "sum", "mean")


def _check_inputs(op_name: str, x, target, weight, x_name: str, t_name: str, w_name: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype.kind in "biuOUS":
        raise TypeError(f"{op_name}: input '{x_name}' must be a float tensor, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 2:
        raise ValueError(f"{op_name}: input '{x_name}' must be (N, C) or (N, C, d1, ...), got shape {x.shape}")
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "iu":
        raise TypeError(f"{op_name}: input '{t_name}' must be an int32/int64 tensor, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}")
    want = (x.shape[0],) + x.shape[2:]
    if target.shape != want:
        raise ValueError(f"{op_name}: input '{t_name}' must have shape {want} for '{x_name}' of shape "
                         f"{x.shape}, got {target.shape}")
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != x.shape[1]):
        raise ValueError(f"{op_name}: input '{w_name}' must have shape ({x.shape[1]},), got {weight.shape}")


def nll(log_p: np.ndarray, target: np.ndarray, weight, ignore_index, reduction: str,
        op_name: str, t_name: str) -> np.ndarray:
    """The loss in log_p's dtype; log_p is (N, C, ...) in its compute dtype."""
    C = log_p.shape[1]
    t = target.astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = t != ignore_index
        safe = np.where(keep, t, 0)
    else:
        keep = None
        safe = t
    bad = (safe < 0) | (safe >= C)
    if bad.any():
        v = int(safe[bad].reshape(-1)[0])
        raise ValueError(f"{op_name}: input '{t_name}' holds class {v}, expected a value in [0, {C})"
                         + (f" or ignore_index {ignore_index}" if ignore_index is not None else ""))
    picked = np.take_along_axis(log_p, np.expand_dims(safe, 1), axis=1)[:, 0]
    loss = np.negative(picked, out=picked)
    w = None
    if weight is not None:
        w = weight.astype(log_p.dtype, copy=False)[safe]
        if keep is not None:
            w *= keep
        loss *= w
    elif keep is not None:
        w = keep.astype(log_p.dtype)
        loss *= w
    if reduction == "none":
        return loss
    total = np.asarray(np.sum(loss, dtype=log_p.dtype))
    if reduction == "sum":
        return total
    denom = np.sum(w, dtype=log_p.dtype) if w is not None else log_p.dtype.type(loss.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / denom, dtype=log_p.dtype)


def _settings(ctx: KernelContext):
    reduction = str(ctx.attrs.get("reduction", "mean"))
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{ctx.op_type}: attribute 'reduction' must be one of {_REDUCTIONS}, got '{reduction}'")
    ii = ctx.attrs.get("ignore_index")
    return reduction, (int(ii) if ii is not None else None)


@op_factory("NegativeLogLikelihoodLoss", 12)
def negative_log_likelihood_loss(ctx: KernelContext):
    reduction, ignore_index = _settings(ctx)

    def run(input, target, weight=None):  # noqa: A002 - ONNX input name
        _check_inputs("NegativeLogLikelihoodLoss", input, target, weight, "input", "target", "weight")
        cdt = compute_dtype(input.dtype)
        x = input.astype(cdt, copy=False)
        loss = nll(x, target, weight, ignore_index, reduction, "NegativeLogLikelihoodLoss", "target")
        return np.asarray(loss).astype(input.dtype, copy=False)

    return run


@op_factory("SoftmaxCrossEntropyLoss", 12)
def softmax_cross_entropy_loss(ctx: KernelContext):
    reduction, ignore_index = _settings(ctx)
    want_log_prob = ctx.num_outputs > 1

    def run(scores, labels, weights=None):
        _check_inputs("SoftmaxCrossEntropyLoss", scores, labels, weights, "scores", "labels", "weights")
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            log_p = softmax_along(scores, (1,), log=True, cdt=compute_dtype(scores.dtype))
        loss = nll(log_p, labels, weights, ignore_index, reduction, "SoftmaxCrossEntropyLoss", "labels")
        loss = np.asarray(loss).astype(scores.dtype, copy=False)
        if want_log_prob:
            return loss, log_p.astype(scores.dtype, copy=False)
        return loss

    return run
