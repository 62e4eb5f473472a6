"""A grouped 1x1 conv followed by a channel shuffle writes the shuffled channels itself (a
planning-time fusion).

ShuffleNet mixes the channel groups of its grouped convs with Reshape (N, g, C/g, H, W) ->
Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W) after a grouped 1x1 conv: channel k * C/g + j
moves to j * g + k, a copy of the whole value. The conv's GEMM writes each group's rows anyway, and
a destination whose rows lie g apart is as good for BLAS as a contiguous one, so the conv can write
them where the shuffle puts them (``conv_kernel``'s ``shuffle``, for a shuffle of the conv's own groups,
as ShuffleNet's are). The planner replaces the four
steps with one at the position of the last: the shape inputs may be computed after the conv.

The shapes are checked on every run (once per shape, by running the Reshape and Transpose kernels on
a stand-in of the conv's output with all strides 0, which costs no copy): where the Reshapes are not
such a shuffle, the four kernels run one after the other, so the fusion never changes a result or
an error. The graph itself is not changed (a saved optimized model keeps its Reshapes and Transpose).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from onnxrt.runtime.step_readers import run_step, step_readers

_SWAP = [0, 2, 1, 3, 4]


class ShuffledConv:
    """The kernel of the fused step: ``run(*conv_inputs, split_shape, merge_shape)``. ``steps``: the
    conv, Reshape, Transpose and Reshape steps it replaces; ``wrap_error(step, error)`` names the
    node at fault when they run one after the other."""

    def __init__(self, steps: tuple[Any, Any, Any, Any],
                 wrap_error: Callable[[Any, BaseException], BaseException]) -> None:
        self.steps = steps
        self.n = len(steps[0].inputs)
        self.wrap_error = wrap_error
        self._groups: dict[tuple, int] = {}  # (conv output shape, the two shape inputs) -> g, 0: no shuffle

    def __call__(self, *args: Any) -> Any:
        conv_args, split_shape, merge_shape = args[:self.n], args[self.n], args[self.n + 1]
        X, W = conv_args[0], conv_args[1]
        if (type(X) is np.ndarray and type(W) is np.ndarray and X.ndim == 4 and W.ndim == 4
                and type(split_shape) is np.ndarray and type(merge_shape) is np.ndarray):
            out_shape = (X.shape[0], W.shape[0]) + X.shape[2:]  # a 1x1 stride-1 unpadded conv (fusable())
            key = (out_shape, split_shape.tobytes(), merge_shape.tobytes())
            groups = self._groups.get(key)
            if groups is None:
                groups = self._groups[key] = self._shuffle_groups(out_shape, split_shape, merge_shape)
            if groups:  # (other groups than the conv's: the four kernels below)
                return self._run(self.steps[0], *conv_args, shuffle=groups)
        conv, split, swap, merge = self.steps
        y = self._run(conv, *conv_args)
        return self._run(merge, self._run(swap, self._run(split, y, split_shape)), merge_shape)

    def _run(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        return run_step(step, self.wrap_error, *args, **kwargs)

    def _shuffle_groups(self, out_shape: tuple, split_shape: np.ndarray, merge_shape: np.ndarray) -> int:
        """g when the Reshapes and the Transpose make a channel shuffle of g groups of an output of
        ``out_shape``, g being the conv's own groups, else 0 (errors included: the plain kernels then
        raise them)."""
        stand_in = np.broadcast_to(np.zeros((), np.float32), out_shape)  # all strides 0: reshapes are views
        _, split_step, swap_step, merge_step = self.steps
        try:
            split = split_step.kernel(stand_in, split_shape)
            merged = merge_step.kernel(swap_step.kernel(split), merge_shape)
        except Exception:  # noqa: BLE001 - the unfused kernels report it
            return 0
        n, c = out_shape[:2]
        if split.ndim != 5 or merged.shape != out_shape or split.shape[0] != n or split.shape[3:] != out_shape[2:]:
            return 0
        groups = split.shape[1]
        return groups if groups * split.shape[2] == c and groups == self.steps[0].kernel.shuffle_groups else 0


def fusable(step: Any) -> bool:
    """Whether ``step``'s kernel writes a channel shuffle of its conv's groups (``conv_kernel``'s
    ``shuffle_groups``: a 2-D grouped 1x1 conv, stride 1 and unpadded)."""
    return getattr(step.kernel, "shuffle_groups", 0) > 1 and len(step.outputs) == 1


def fuse(steps: list, keep: set[int], wrap_error: Callable[[Any, BaseException], BaseException]) -> list:
    """``steps`` with every grouped 1x1 conv -> Reshape -> Transpose (0, 2, 1, 3, 4) -> Reshape, each
    value read by the next step alone and none in ``keep`` (graph outputs, fetched values), replaced
    by one :class:`ShuffledConv` step at the position of the last Reshape."""
    readers = step_readers(steps)

    def only_reader(i: int, op_type: str) -> int | None:
        out = steps[i].outputs[0] if len(steps[i].outputs) == 1 else None
        after = readers.get(out, []) if out is not None and out not in keep else []
        if len(after) != 1 or steps[after[0]].op_type != op_type or steps[after[0]].inputs[0] != out:
            return None
        j = after[0]
        return j if steps[j].node.domain in ("", "ai.onnx") and steps[j].inputs.count(out) == 1 else None

    replaced: dict[int, Any] = {}
    taken: set[int] = set()
    for i, step in enumerate(steps):
        if not fusable(step):
            continue
        split = only_reader(i, "Reshape")
        swap = None if split is None else only_reader(split, "Transpose")
        merge = None if swap is None else only_reader(swap, "Reshape")
        if merge is None or len(steps[split].inputs) != 2 or len(steps[merge].inputs) != 2:
            continue
        perm = steps[swap].node.attributes.get("perm")
        if perm is None or list(perm.value) != _SWAP:
            continue
        last = steps[merge]
        kernel = ShuffledConv((step, steps[split], steps[swap], last), wrap_error)
        replaced[merge] = dataclasses.replace(
            step, kernel=kernel, inputs=tuple(step.inputs) + (steps[split].inputs[1], last.inputs[1]),
            outputs=last.outputs, release=(), name=f"{step.name}_shuffled" if step.name else "ShuffledConv")
        taken.update((i, split, swap))
    return [replaced.get(i, step) for i, step in enumerate(steps) if i not in taken]
