"""Which steps read each value slot: the index the planning-time fusions walk a plan's steps by."""

from __future__ import annotations

from typing import Any, Sequence


def step_readers(steps: Sequence[Any]) -> dict[int, list[int]]:
    """For each slot, the indices of the steps that read it, in execution order (a step reading a
    slot twice is listed once)."""
    readers: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        for slot in set(step.inputs):
            readers.setdefault(slot, []).append(i)
    return readers
