"""Helpers shared by kernels of several families."""

from __future__ import annotations


def normalize_axis(axis: int, rank: int, op_name: str = "", what: str = "axis") -> int:
    """A non-negative axis for ``rank``; out-of-range axes raise a ValueError naming the op.

    ``what`` names the value in the message (an attribute, or an entry of an axes input).
    """
    if not -rank <= axis < rank:
        raise ValueError(f"{op_name}: {what} {axis} is out of range for an input of rank {rank} "
                         f"(expected {-rank} <= {what} < {rank})")
    return axis + rank if axis < 0 else axis
