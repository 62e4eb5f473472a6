"""What the planning-time fusions share: which steps read each value slot (the index they walk a
plan's steps by), and how a fused step runs one of the steps it replaced."""

from __future__ import annotations

from typing import Any, Callable, Sequence


def step_readers(steps: Sequence[Any]) -> dict[int, list[int]]:
    """For each slot, the indices of the steps that read it, in execution order (a step reading a
    slot twice is listed once)."""
    readers: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        for slot in set(step.inputs):
            readers.setdefault(slot, []).append(i)
    return readers


def run_step(step: Any, wrap_error: Callable[[Any, BaseException], BaseException], *args: Any, **kwargs: Any) -> Any:
    """``step.kernel(*args, **kwargs)`` from inside a fused step: a failure is reported as ``step``'s
    (``wrap_error``: the plan's naming of the node at fault), as when it runs alone."""
    try:
        return step.kernel(*args, **kwargs)
    except Exception as e:
        failure = wrap_error(step, e)
        if failure is e:
            raise
        raise failure from e
