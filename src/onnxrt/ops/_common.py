"""Helpers shared by kernels of several families."""

from __future__ import annotations

from typing import Any

import numpy as np


def normalize_axis(axis: int, rank: int, op_name: str = "") -> int:
    """A non-negative axis for ``rank``; out-of-range axes raise a ValueError naming the op."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"{op_name}: axis {axis} is out of range for a tensor of rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes, rank: int, op_name: str = "") -> tuple[int, ...]:
    return tuple(normalize_axis(int(a), rank, op_name) for a in axes)


def to_int_list(value: Any) -> list[int]:
    """A shape-like input (1-D int tensor, read on the host) as a list of Python ints."""
    return [int(v) for v in np.asarray(value).reshape(-1)]
