"""Dead-node removal and no-op elimination (BASIC).

No-ops removed (their output is replaced by their input):

* ``Identity``; ``Dropout`` in inference (no ``training_mode`` or a constant false one; mask unused);
* ``Cast`` to the type the input already has;
* ``Reshape``/``Expand``/``Squeeze``/``Unsqueeze``/``Flatten`` whose static output shape equals the static
  input shape;
* ``Transpose`` with the identity permutation; ``Pad`` with all-zero pads; ``Slice`` that takes every
  element (starts 0, ends past the end, steps 1); ``Tile`` with all repeats 1; ``Concat``/``Sum``/``Max``/
  ``Min``/``Mean`` of a single input.

A no-op whose output is a graph output is kept when its input cannot take the output's name (the input
is a graph input, an initializer or another output).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir

_INT64_MAX = np.iinfo(np.int64).max


def eliminate_noops(model: ir.Model) -> int:
    graph = model.graph
    removed = 0
    for node in _ir.live_nodes(graph):
        if node.domain not in ("", "ai.onnx"):
            continue
        if not _is_noop(node):
            continue
        src, out = node.inputs[0], node.outputs[0]
        if src is None:
            continue
        if not _ir.replace_value(graph, out, src):
            continue
        if not any(o.uses() or o.is_graph_output() for o in node.outputs):
            graph.remove(node, safe=True)
            removed += 1
    return removed


def remove_dead_nodes(model: ir.Model) -> int:
    """Remove nodes none of whose outputs is read or is a graph output, and unread initializers."""
    graph = model.graph
    removed = 0
    for node in reversed(list(graph)):
        if any(o.uses() or o.is_graph_output() for o in node.outputs):
            continue
        graph.remove(node, safe=True)
        removed += 1
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_input() and not value.is_graph_output():
            del graph.initializers[name]
    return removed


def _is_noop(node: ir.Node) -> bool:
    op = node.op_type
    if not node.inputs or node.inputs[0] is None or not node.outputs:
        return False
    x, y = node.inputs[0], node.outputs[0]
    if op == "Identity":
        return True
    if op == "Dropout":
        if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            return False
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            mode = _ir.const_array(node.inputs[2])
            return mode is not None and not bool(mode)
        return True
    if len(node.outputs) != 1:
        return False
    if op == "Cast":
        to = _ir.attr(node, "to")
        dt = _ir.dtype_of(x)
        return dt is not None and isinstance(to, int) and int(dt) == to  # Cast-1 names the type as a string
    if op in ("Reshape", "Expand", "Squeeze", "Unsqueeze", "Flatten"):
        sx, sy = _ir.static_shape(x), _ir.static_shape(y)
        return sx is not None and sx == sy
    if op == "Transpose":
        perm = _ir.attr(node, "perm")
        r = _ir.rank(x)
        if perm is None:
            return r is not None and r <= 1
        return list(perm) == list(range(len(perm)))
    if op == "Pad":
        pads = _ir.attr(node, "pads") if len(node.inputs) < 2 else _ir.const_array(node.inputs[1])
        return pads is not None and not np.any(np.asarray(pads))
    if op == "Tile":
        reps = _ir.const_array(node.inputs[1]) if len(node.inputs) > 1 else None
        return reps is not None and bool(np.all(reps == 1))
    if op == "Slice":
        return _slice_takes_all(node)
    if op in ("Concat", "Sum", "Max", "Min", "Mean"):
        return len(node.inputs) == 1
    return False


def _slice_takes_all(node: ir.Node) -> bool:
    if len(node.inputs) < 3:
        return False  # Slice-1 (attributes): rare, not worth a second code path
    shape = _ir.static_shape(node.inputs[0])
    starts = _ir.const_array(node.inputs[1])
    ends = _ir.const_array(node.inputs[2])
    if starts is None or ends is None:
        return False
    n = starts.size
    axes = _ir.const_array(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else np.arange(n)
    steps = _ir.const_array(node.inputs[4]) if len(node.inputs) > 4 and node.inputs[4] is not None else np.ones(n)
    if axes is None or steps is None:
        return False
    for start, end, axis, step in zip(starts.reshape(-1), ends.reshape(-1), axes.reshape(-1), steps.reshape(-1)):
        if int(step) != 1 or int(start) != 0:
            return False
        if int(end) >= _INT64_MAX // 2:
            continue
        if shape is None or int(end) < 0:
            return False
        if int(end) < shape[int(axis)]:
            return False
    return True
