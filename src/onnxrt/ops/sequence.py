"""Sequences and optionals.

A sequence value is a Python ``list`` of numpy arrays (kernels never mutate a list they
receive: they build a new one); an empty optional is ``None`` and a non-empty optional is
its value itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxrt.errors import Fail
from onnxrt.ops.controlflow import captured_getter
from onnxrt.ops.registry import KernelContext, op, op_factory


def _check_seq(value: Any, op_name: str, name: str = "input_sequence") -> list:
    if not isinstance(value, list):
        raise TypeError(f"{op_name}: input '{name}' must be a sequence, got {type(value).__name__}")
    return value


def _check_tensor(value: Any, op_name: str, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{op_name}: input '{name}' must be a tensor, got {type(value).__name__}")
    return value


def _position(value: Any, length: int, op_name: str, allow_end: bool) -> int:
    pos = _check_tensor(value, op_name, "position")
    if pos.size != 1 or pos.dtype.kind not in "iu":
        raise ValueError(
            f"{op_name}: input 'position' must be an int32/int64 scalar, got {pos.dtype}{list(pos.shape)}"
        )
    p = int(pos.reshape(-1)[0])
    hi = length if allow_end else length - 1
    if not -length <= p <= hi:
        raise ValueError(f"{op_name}: position {p} is out of range [{-length}, {hi}] for a sequence of length {length}")
    return p + length if p < 0 else p


def _same_dtype(op_name: str, what: str, expected: np.dtype, actual: np.dtype) -> None:
    if expected != actual:
        raise TypeError(f"{op_name}: {what} has dtype {actual}, expected {expected} (the sequence's element type)")


@op("SequenceEmpty", 11)
def sequence_empty(*, dtype: int = 1) -> list:
    return []


@op("SequenceConstruct", 11)
def sequence_construct(*inputs) -> list:
    if not inputs:
        raise ValueError("SequenceConstruct: at least one input is required")
    for i, x in enumerate(inputs):
        _check_tensor(x, "SequenceConstruct", f"inputs[{i}]")
        _same_dtype("SequenceConstruct", f"input {i}", inputs[0].dtype, x.dtype)
    return list(inputs)


@op("SequenceInsert", 11)
def sequence_insert(input_sequence, tensor, position=None) -> list:
    seq = _check_seq(input_sequence, "SequenceInsert")
    _check_tensor(tensor, "SequenceInsert", "tensor")
    if seq:
        _same_dtype("SequenceInsert", "input 'tensor'", seq[0].dtype, tensor.dtype)
    out = list(seq)
    if position is None:
        out.append(tensor)
    else:
        out.insert(_position(position, len(seq), "SequenceInsert", allow_end=True), tensor)
    return out


@op("SequenceAt", 11)
def sequence_at(input_sequence, position) -> np.ndarray:
    seq = _check_seq(input_sequence, "SequenceAt")
    return seq[_position(position, len(seq), "SequenceAt", allow_end=False)]


@op("SequenceErase", 11)
def sequence_erase(input_sequence, position=None) -> list:
    seq = _check_seq(input_sequence, "SequenceErase")
    if not seq:
        raise ValueError("SequenceErase: cannot erase from an empty sequence")
    out = list(seq)
    if position is None:
        out.pop()
    else:
        del out[_position(position, len(seq), "SequenceErase", allow_end=False)]
    return out


@op("SequenceLength", 11)
def sequence_length(input_sequence) -> np.ndarray:
    return np.array(len(_check_seq(input_sequence, "SequenceLength")), dtype=np.int64)


@op("SplitToSequence", 11)
def split_to_sequence(input, split=None, *, axis: int = 0, keepdims: int = 1) -> list:  # noqa: A002
    x = _check_tensor(input, "SplitToSequence", "input")
    r = x.ndim
    if not -r <= axis < r:
        raise ValueError(f"SplitToSequence: axis {axis} is out of range for input of rank {r}")
    axis = axis + r if axis < 0 else axis
    dim = x.shape[axis]
    if split is None:
        pieces = np.split(x, dim, axis=axis) if dim else []
        if not keepdims:
            pieces = [p.squeeze(axis) for p in pieces]
        return pieces
    s = _check_tensor(split, "SplitToSequence", "split")
    if s.dtype.kind not in "iu":
        raise TypeError(f"SplitToSequence: input 'split' must be int32/int64, got {s.dtype}")
    if s.ndim == 0:
        size = int(s)
        if size <= 0:
            raise ValueError(f"SplitToSequence: scalar 'split' must be positive, got {size}")
        cuts = list(range(size, dim, size))
    elif s.ndim == 1:
        sizes = [int(v) for v in s]
        if any(v < 0 for v in sizes) or sum(sizes) != dim:
            raise ValueError(
                f"SplitToSequence: 'split' {sizes} must be non-negative and sum to the size of axis {axis} ({dim})"
            )
        cuts = list(np.cumsum(sizes)[:-1]) if sizes else []
        if not sizes:
            return []
    else:
        raise ValueError(f"SplitToSequence: 'split' must be a scalar or a 1-D tensor, got shape {list(s.shape)}")
    return np.split(x, cuts, axis=axis)


@op("ConcatFromSequence", 11)
def concat_from_sequence(input_sequence, *, axis: int, new_axis: int = 0) -> np.ndarray:
    seq = _check_seq(input_sequence, "ConcatFromSequence")
    if not seq:
        raise ValueError("ConcatFromSequence: input_sequence is empty")
    first = seq[0]
    r = first.ndim
    lo, hi = (-r - 1, r) if new_axis else (-r, r - 1)
    if not lo <= axis <= hi:
        raise ValueError(f"ConcatFromSequence: axis {axis} is out of range [{lo}, {hi}] for elements of rank {r}")
    for i, t in enumerate(seq):
        _same_dtype("ConcatFromSequence", f"element {i}", first.dtype, t.dtype)
        if t.ndim != r:
            raise ValueError(f"ConcatFromSequence: element {i} has rank {t.ndim}, expected {r}")
    try:
        return np.stack(seq, axis=axis) if new_axis else np.concatenate(seq, axis=axis)
    except ValueError as e:
        shapes = [list(t.shape) for t in seq]
        raise ValueError(f"ConcatFromSequence: element shapes {shapes} cannot be joined on axis {axis}: {e}") from None


@op_factory("SequenceMap", 17)
def sequence_map(ctx: KernelContext):
    body = ctx.attrs.get("body")
    if body is None:
        raise Fail(f"{ctx.describe()}: attribute 'body' is required.")
    n_in = ctx.num_inputs
    if len(body.input_names) != n_in:
        raise Fail(f"{ctx.describe()}: the body takes {len(body.input_names)} inputs, the node has {n_in}.")
    n_out = len(body.output_names)
    body_run = body.run
    get_cap = captured_getter(ctx, body)

    def run_sequence_map(*args):
        regular = args[:n_in]
        cap = get_cap(args)
        first = _check_seq(regular[0], "SequenceMap")
        n = len(first)
        is_seq = [isinstance(v, list) for v in regular]
        for j, v in enumerate(regular):
            if is_seq[j] and len(v) != n:
                raise ValueError(
                    f"SequenceMap: sequence input {j} has {len(v)} elements, expected {n} (the first input's length)"
                )
        results: list[list] = [[] for _ in range(n_out)]
        for i in range(n):
            feeds = [v[i] if is_seq[j] else v for j, v in enumerate(regular)]
            outs = body_run(feeds, cap)
            for k in range(n_out):
                results[k].append(outs[k])
        return tuple(results)

    return run_sequence_map


# -- optionals ---------------------------------------------------------------------------------


@op("Optional", 15)
def optional(input=None, *, type=None):  # noqa: A002 - ONNX names
    return input


@op("OptionalHasElement", 15)
def optional_has_element(input=None) -> np.ndarray:  # noqa: A002
    return np.array(input is not None)


@op("OptionalGetElement", 15)
def optional_get_element(input=None):  # noqa: A002
    if input is None:
        raise ValueError("OptionalGetElement: input is an empty optional (it holds no element)")
    return input

