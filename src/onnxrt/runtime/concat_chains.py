"""Chains of Concats that grow one value write into one buffer (a planning-time rewrite).

DenseNet concatenates each layer's new features to all the features before them:
``Concat(Concat(Concat(x, f1), f2), f3)``... Run one by one, every Concat copies everything so far,
quadratic in the length of a dense block (light DenseNet-121: 58 Concats, ~3 ms of a 70 ms run).
Here the first Concat of such a chain allocates a buffer with room along the axis for what the
chain's later Concats add, and returns the part it filled, a view; each later Concat copies only
its own new inputs after that part and returns the longer prefix. When every axis before the
concatenation axis has size 1 (batch 1 on the channel axis) a prefix is a C-contiguous array, so
the readers see nothing different; otherwise (and for any input the fast path does not cover)
the Concat runs as it always does.

Why writing past a prefix is safe: a chain's Concat reads its predecessor's result as its first
input, and only it appends to that result's buffer; a Concat appends only when its first input is
the very view its chain last handed out of that buffer (``_Buffers``: nothing has been written
after it), so a view of an earlier prefix never sees its values change. The graph is not
changed (a saved optimized model keeps its Concats); only the steps' kernels are.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from onnxrt.runtime.shape_memo import ShapeMemo
from onnxrt.runtime.step_readers import step_readers


class _Buffers:
    """The buffers a chain made, each with the prefix view it last handed out (by identity, through
    weak references: an entry goes when its buffer is freed)."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[weakref.ref, weakref.ref]] = {}  # id(buffer) -> (buffer, last prefix)
        self._lock = threading.Lock()  # sessions may run from several threads at once

    def record(self, buffer: np.ndarray, prefix: np.ndarray) -> None:
        key = id(buffer)
        with self._lock:
            entry = self._last.get(key)
            ref = entry[0] if entry is not None and entry[0]() is buffer else weakref.ref(buffer, self._forget(key))
            self._last[key] = (ref, weakref.ref(prefix))

    def _forget(self, key: int) -> Callable[[weakref.ref], None]:
        def forget(ref: weakref.ref) -> None:
            with self._lock:
                if self._last.get(key, (None,))[0] is ref:
                    del self._last[key]
        return forget

    def prefix_of(self, x: np.ndarray) -> np.ndarray | None:
        """The buffer whose last prefix ``x`` is (nothing has been written after it), or None."""
        entry = self._last.get(id(x.base))
        if entry is None or entry[1]() is not x:
            return None
        return entry[0]()


class AppendingConcat:
    """The kernel of one Concat of a chain: ``run(*inputs)`` -> the concatenation, a prefix view of
    a buffer with ``room`` more elements along the axis for the chain's later Concats."""

    def __init__(self, kernel: Callable[..., Any], axis: int, room: int, buffers: _Buffers) -> None:
        self.kernel = kernel  # the plain Concat: every case the fast path does not take, and errors
        self.axis = axis
        self.room = room
        self.buffers = buffers

    def __call__(self, *inputs: Any) -> Any:
        first = inputs[0] if inputs else None
        if type(first) is not np.ndarray:
            return self.kernel(*inputs)
        r = first.ndim
        axis = self.axis + r if self.axis < 0 else self.axis
        if not 0 <= axis < r or math.prod(first.shape[:axis]) != 1:
            return self.kernel(*inputs)
        lead, rest = first.shape[:axis], first.shape[axis + 1:]
        for x in inputs[1:]:
            if (type(x) is not np.ndarray or x.dtype != first.dtype or x.ndim != r or x.shape[:axis] != lead
                    or x.shape[axis + 1:] != rest):
                return self.kernel(*inputs)  # its error, or numpy's rules for the odd case
        total = sum(x.shape[axis] for x in inputs)
        buffer = self.buffers.prefix_of(first)
        if buffer is not None and buffer.shape[axis] >= total:
            position, new = first.shape[axis], inputs[1:]
        else:
            buffer = np.empty(lead + (total + self.room,) + rest, dtype=first.dtype)
            position, new = 0, inputs
        pre = (slice(None),) * axis
        for x in new:
            n = x.shape[axis]
            buffer[pre + (slice(position, position + n),)] = x
            position += n
        prefix = buffer[pre + (slice(0, position),)]
        self.buffers.record(buffer, prefix)
        return prefix


def _axis_size(value: Any, axis: int) -> int | None:
    """The static size of ``value`` (an ir.Value) along ``axis``, or None."""
    shape = getattr(value, "shape", None)
    if shape is None or not -len(shape) <= axis < len(shape):
        return None
    dim = shape[axis]
    return dim if isinstance(dim, int) else None


def chain(steps: Sequence[Any], keep: set[int]) -> None:
    """Give, in place, every Concat step of a chain (its result read as the first input of exactly
    one Concat on the same axis) an :class:`AppendingConcat` kernel. ``keep``: slots of values handed
    to the caller (never a view of a chain's buffer). A Concat whose kernel keeps its result between
    runs (shape_memo) is left alone."""
    concats = {}
    for i, step in enumerate(steps):
        node = step.node
        if (step.op_type == "Concat" and node.domain in ("", "ai.onnx") and len(step.outputs) == 1
                and not isinstance(step.kernel, ShapeMemo)):
            concats[i] = int(node.attributes["axis"].value) if "axis" in node.attributes else 1
    readers = step_readers(steps)
    successor: dict[int, int] = {}
    for i, axis in concats.items():
        out = steps[i].outputs[0]
        if out in keep:
            continue
        nxt = [j for j in readers.get(out, []) if concats.get(j) == axis and steps[j].inputs[0] == out]
        if len(nxt) == 1 and steps[nxt[0]].inputs.count(out) == 1:
            successor[i] = nxt[0]
    heads = set(successor) - set(successor.values())
    for head in heads:
        members = [head]
        while members[-1] in successor:
            members.append(successor[members[-1]])
        axis = concats[head]
        # what each member adds along the axis (None: unknown until it runs)
        added = []
        for i in members:
            sizes = [_axis_size(v, axis) for v in steps[i].node.inputs[1:]]
            added.append(None if any(s is None for s in sizes) else sum(sizes))
        buffers = _Buffers()
        for k, i in enumerate(members):
            room = 0
            for a in added[k + 1:]:  # room for the later members, up to one whose size is unknown
                if a is None:
                    break
                room += a
            steps[i].kernel = AppendingConcat(steps[i].kernel, axis, room, buffers)
