"""Values derived from shapes alone, computed once per input shape (a planning-time wrapper).

Graphs exported with symbolic dims recompute the same small integer tensors on every run:
Shape -> Gather -> Unsqueeze -> Concat feeding a Reshape, Shape -> Gather -> Equal feeding an If
(silero_vad runs 20 such steps a run). When a run sees the shapes the last run saw, those values
are the same too, so the planner wraps the steps that make them:

* a Shape or Size step returns the array it made last time when its input has the same shape;
* a deterministic step whose inputs are all constants or such values returns its last result when
  it is handed the very same input objects (which the wrapped steps before it returned).

A result is kept only when it is small (shape vectors, scalars), and kept read-only: a caller who
fetches it gets a copy (the session copies read-only outputs) and the in-place variants' reference
check refuses an array held here. Each wrapper keeps only its last inputs and result, so a model
run at alternating shapes recomputes, as it did before.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

# The op types whose output depends on nothing but their inputs and attributes, among those that
# make up shape computations.
DERIVED_OPS = frozenset({
    "Gather", "Equal", "Squeeze", "Unsqueeze", "Concat", "Cast", "Slice", "Reshape", "Identity",
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Max", "Min", "Floor", "Ceil",
    "Not", "And", "Or", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Where",
    "ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "Range", "ConstantOfShape",
})
SHAPE_OPS = frozenset({"Shape", "Size"})
# Results with more elements than this are not held between runs (their steps recompute).
MAX_KEPT_ELEMENTS = 256


class ShapeMemo:
    """A step's kernel that returns its last result for the same inputs: compared by shape for a
    Shape/Size step (``by_shape``), by identity otherwise."""

    __slots__ = ("kernel", "by_shape", "last")

    def __init__(self, kernel: Callable[..., Any], by_shape: bool) -> None:
        self.kernel = kernel
        self.by_shape = by_shape
        self.last: tuple[Any, Any] | None = None  # (key, result), replaced as one object

    def __call__(self, *args: Any) -> Any:
        last = self.last
        if self.by_shape:
            x = args[0] if args else None
            key = x.shape if type(x) is np.ndarray and len(args) == 1 else None
            if last is not None and key is not None and last[0] == key:
                return last[1]
        else:
            key = args
            if last is not None and len(args) == len(last[0]) and all(a is b for a, b in zip(args, last[0])):
                return last[1]
        result = self.kernel(*args)
        # identity keys hold their inputs: only small ones (a large input is made anew each run anyway)
        if key is not None and (self.by_shape or all(a is None or _small(a) for a in args)) and _keep(result):
            self.last = (key, result)
        return result


def _small(value: Any) -> bool:
    """A small array, or a numpy scalar (what a ufunc makes of 0-d inputs; immutable)."""
    if type(value) is np.ndarray:
        return value.size <= MAX_KEPT_ELEMENTS and value.dtype != object
    return isinstance(value, np.generic) and not isinstance(value, np.object_)


def _keep(result: Any) -> bool:
    """Whether ``result`` (an array or a tuple of them) is small enough to hold; made read-only."""
    arrays = result if type(result) is tuple else (result,)
    if not all(_small(a) for a in arrays):
        return False
    for a in arrays:
        if type(a) is np.ndarray:
            a.flags.writeable = False
    return True


def wrap(steps: Sequence[Any], constant_slots: frozenset[int], absent_slot: int) -> None:
    """Wrap, in place, the steps of ``steps`` (in execution order) that compute values from shapes
    and constants alone."""
    derived: set[int] = set()
    for step in steps:
        node = step.node
        if step.subplans or node.domain not in ("", "ai.onnx"):
            continue
        if step.op_type in SHAPE_OPS:
            by_shape = True
        elif step.op_type in DERIVED_OPS and all(
                s in derived or s in constant_slots or s == absent_slot for s in step.inputs):
            if all(s in constant_slots or s == absent_slot for s in step.inputs):
                continue  # constants only: folded at planning time, or left alone when too large
            by_shape = False
        else:
            continue
        step.kernel = ShapeMemo(step.kernel, by_shape)
        derived.update(step.outputs)
