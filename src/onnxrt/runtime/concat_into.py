"""Convs whose outputs are concatenated write into the concatenation (a planning-time fusion).

SqueezeNet's fire modules and Inception's blocks concatenate the outputs of parallel convs along
the channels: each conv writes its output, and the Concat copies them all again into a new array
(SqueezeNet's eight: ~0.4 ms of a 9 ms run). With batch 1 a block of channels of a channel-first
array is itself a C-contiguous array, so each conv can write straight into its part of the
concatenation (``conv_kernel``'s ``into``). The planner replaces such a Concat and the convs that
feed it (each value read by the Concat alone) with one step at the Concat's position, which runs
the convs in the order they had, each into its part, and copies the Concat's other inputs.

Where a run's shapes do not allow it (a batch above 1, a dtype or shape the Concat would refuse, a
conv that would raise), the convs and the Concat run as before, so the fusion never changes a result
or an error. Concats that extend one another (DenseNet: runtime.concat_chains) are left alone. The
graph is not changed (a saved optimized model keeps its Concats).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from onnxrt.runtime.step_readers import run_step, step_readers


# Layouts a ConcatInto keeps (one per set of input shapes; a model fed many shapes decides the rest per run)
_MAX_LAYOUTS = 16


class ConcatInto:
    """The kernel of the fused step: its arguments are, Concat input by Concat input, either the
    producer's own inputs (``parts[i]`` a step) or the value itself (``parts[i]`` None)."""

    def __init__(self, concat: Any, parts: list[Any], order: list[int],
                 wrap_error: Callable[[Any, BaseException], BaseException]) -> None:
        self.concat = concat
        self.parts = parts
        self.order = order  # the producers' positions among ``parts``, in the order they ran in the plan
        self.wrap_error = wrap_error
        attr = concat.node.attributes.get("axis")
        self.axis = None if attr is None else int(attr.value)  # the Concat kernel reports a missing axis
        # by the parts' shapes and dtypes: what _blocks decided
        self._layouts: dict[tuple, tuple] = {}
        # each part's first argument among the step's inputs
        self.starts = []
        position = 0
        for producer in parts:
            self.starts.append(position)
            position += 1 if producer is None else len(producer.inputs)

    def __call__(self, *args: Any) -> Any:
        parts = [args[s:s + (1 if p is None else len(p.inputs))] for s, p in zip(self.starts, self.parts)]
        buffer, dests = self._layout(parts)
        if buffer is None:
            values = [self._run(p, *a) if p is not None else a[0] for p, a in zip(self.parts, parts)]
            return self._run(self.concat, *values)
        for i in self.order:
            self._run(self.parts[i], *parts[i], into=dests[i])
        for i, producer in enumerate(self.parts):
            if producer is None:
                dests[i][...] = parts[i][0]
        return buffer

    def _layout(self, parts: list[tuple]) -> tuple[np.ndarray | None, list[np.ndarray]]:
        """The concatenation's buffer and each part's C-contiguous block of it, or (None, []) where
        this run takes the plain path; decided once per shapes and dtypes (_blocks)."""
        key = []
        for producer, a in zip(self.parts, parts):
            x = a[0]
            if type(x) is not np.ndarray:
                return None, []
            if producer is None:
                key.append((x.shape, x.dtype))
            elif len(a) < 2 or type(a[1]) is not np.ndarray:
                return None, []
            else:
                key.append((x.shape, x.dtype, a[1].shape))
        key = tuple(key)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._blocks(parts)
            if len(self._layouts) < _MAX_LAYOUTS:
                self._layouts[key] = layout
        if not layout:
            return None, []
        shape, dtype, blocks = layout
        buffer = np.empty(shape, dtype=dtype)
        return buffer, [buffer[b] for b in blocks]

    def _blocks(self, parts: list[tuple]) -> tuple[tuple, np.dtype, list[tuple]] | tuple[()]:
        """(the concatenation's shape, its dtype, each part's index into it), or () where these
        shapes and dtypes take the plain path."""
        shapes, dtypes = [], set()
        for producer, a in zip(self.parts, parts):
            if producer is None:
                shapes.append(a[0].shape)
            else:
                try:
                    shapes.append(producer.kernel.output_shape(a[0], a[1]))
                except ValueError:
                    return ()  # the conv's own run raises it, named
            dtypes.add(a[0].dtype)
        rank = len(shapes[0])
        axis = self.axis
        if axis is None or len(dtypes) != 1 or not -rank <= axis < rank:
            return ()
        axis %= rank
        lead, rest = shapes[0][:axis], shapes[0][axis + 1:]
        if math.prod(lead) != 1 or any(len(s) != rank or s[:axis] != lead or s[axis + 1:] != rest for s in shapes):
            return ()
        blocks, position = [], 0
        before = (slice(None),) * axis
        for s in shapes:
            blocks.append(before + (slice(position, position + s[axis]),))
            position += s[axis]
        return lead + (position,) + rest, dtypes.pop(), blocks

    def _run(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        return run_step(step, self.wrap_error, *args, **kwargs)


def fuse(steps: list, keep: set[int], wrap_error: Callable[[Any, BaseException], BaseException]) -> list:
    """``steps`` with every Concat that reads the output of a producer writing into an array of its
    own (``kernel.writes_into``: a conv), that value read by the Concat alone and not in ``keep``
    (graph outputs, fetched values), replaced by one :class:`ConcatInto` step at the Concat's
    position that runs those producers. A Concat reading or read by another Concat is left alone."""
    readers = step_readers(steps)
    producer_of = {slot: i for i, step in enumerate(steps) for slot in step.outputs}
    concats = {i for i, step in enumerate(steps)
               if step.op_type == "Concat" and step.node.domain in ("", "ai.onnx") and len(step.outputs) == 1}
    replaced: dict[int, Any] = {}
    taken: set[int] = set()
    for c in sorted(concats):
        concat = steps[c]
        out = concat.outputs[0]
        if any(producer_of.get(slot) in concats for slot in concat.inputs) or any(
                j in concats for j in readers.get(out, [])):
            continue
        parts: list[Any] = []
        for slot in concat.inputs:
            i = producer_of.get(slot)
            producer = None if i is None else steps[i]
            if (producer is None or not getattr(producer.kernel, "writes_into", False)
                    or len(producer.outputs) != 1 or slot in keep or readers.get(slot) != [c]
                    or concat.inputs.count(slot) != 1):
                parts.append(None)
            else:
                parts.append(producer)
        producers = [i for i, p in enumerate(parts) if p is not None]
        if not producers:
            continue
        indices = {i: producer_of[concat.inputs[i]] for i in producers}
        order = sorted(producers, key=indices.get)
        inputs: tuple[int, ...] = ()
        for slot, producer in zip(concat.inputs, parts):
            inputs += (slot,) if producer is None else tuple(producer.inputs)
        kernel = ConcatInto(concat, parts, order, wrap_error)
        replaced[c] = dataclasses.replace(concat, kernel=kernel, inputs=inputs, release=(), op_type="ConcatInto",
                                          name=f"{concat.name}_into" if concat.name else "ConcatInto")
        taken.update(indices.values())
    return [replaced.get(i, step) for i, step in enumerate(steps) if i not in taken]
