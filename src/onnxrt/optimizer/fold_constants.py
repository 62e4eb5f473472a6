"""Constant folding (BASIC).

A node whose inputs are all constants is run once, with onnxrt's own kernels, and its outputs become
initializers. ``Shape``/``Size`` of a value whose shape is fully static (shape inference ran at load)
fold too, so ``Shape -> Gather -> Concat -> Reshape`` chains collapse. Not folded:

* random ops (each run must draw anew) and ops with subgraphs;
* nodes whose output would be large *and* bigger than their inputs (``ConstantOfShape``, ``Expand``,
  ``Tile``, ``Range``...): folding them would only trade a cheap op for a big weight in the file;
* nodes producing a graph output (the output would turn into an initializer, which changes the
  model's interface as onnxruntime reports it);
* nodes of domains other than ai.onnx / ai.onnx.ml / com.microsoft, and nodes whose kernel fails
  (the error then surfaces at run time, where the user expects it).
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from onnxrt.ops import shape as shape_ops
from onnxrt.ops.registry import ML_DOMAIN, read_only_as_weights
from onnxrt.optimizer import _ir
from onnxrt.runtime.values import tensor_to_numpy

# An output at most this many elements may always be folded; above it, only when it is no bigger than
# the node's inputs put together, or when it is a weight (every reader takes it as a parameter input of
# an op that prepares its weights, e.g. Conv's W) and at most WEIGHT_LIMIT_ELEMENTS: a weight made at
# run time by ConstantOfShape would otherwise block every weight-based fusion and weight re-layout.
# Above the limit the node stays in the graph (and in a saved optimized model, which would otherwise carry
# the weight: light VGG-19's 103M-element fc weight is 411 MB); the planner computes it at load and keeps
# the result in memory (``Plan._fold``) rather than making it on every run.
GROWTH_LIMIT_ELEMENTS = 1 << 16
WEIGHT_LIMIT_ELEMENTS = 1 << 26

_NEVER_FOLD = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan", "SequenceMap", "Optional", "OptionalGetElement", "OptionalHasElement",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",  # kept so quantized graphs stay recognisable
})
_FOLDABLE_DOMAINS = frozenset({"", "ai.onnx", ML_DOMAIN, "com.microsoft"})


def fold_constants(model: ir.Model) -> int:
    """Fold the constant parts of ``model.graph``; returns the number of nodes folded."""
    graph = model.graph
    try:
        _ir.sort_if_needed(graph)
    except Exception:
        pass  # a cycle: the planner reports it with a clear message
    opsets = {("" if d == "ai.onnx" else d): v for d, v in model.opset_imports.items()}
    evaluator = None
    folded = 0
    # results of folded nodes; only those a remaining node reads become initializers (at the end), so
    # a chain of folds (Shape -> Gather -> Concat -> ...) makes one initializer, not one per link
    computed: dict[ir.Value, np.ndarray] = {}
    folded_nodes: list[ir.Node] = []
    for node in _ir.live_nodes(graph):
        if _fold_shape(graph, node):
            folded += 1
            continue
        if node.op_type in _NEVER_FOLD or node.domain not in _FOLDABLE_DOMAINS:
            continue
        if node.op_type == "Constant":
            continue  # already a constant; its readers fold through const_array
        if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
            continue
        if any(o.is_graph_output() for o in node.outputs):
            continue
        arrays = []
        constant = True
        for v in node.inputs:
            if v is None:
                arrays.append(None)
                continue
            a = computed.get(v)
            if a is None:
                a = _ir.const_array(v)
            if a is None:
                constant = False
                break
            arrays.append(a)
        if not constant or not node.inputs:
            continue
        if _too_big(node, arrays):
            continue
        results = _fill(node, arrays)
        if results is None:
            if evaluator is None:
                evaluator = _evaluator(opsets)
            results = _evaluate(evaluator, node, arrays)
        if results is None or not all(_storable(r) for r in results):
            continue
        computed.update(zip(node.outputs, results))
        folded_nodes.append(node)
    folded += _replace_folded(graph, folded_nodes, computed)
    if isinstance(model, _ir.GraphView):
        return folded  # a subgraph keeps its Constant nodes: the planner reads them as constants all the same
    return folded + _constants_to_initializers(graph)


def _too_big(node: ir.Node, arrays: list) -> bool:
    in_size = sum(a.size for a in arrays if a is not None)
    for out in node.outputs:
        shape = _ir.static_shape(out)
        if shape is not None:
            n = math.prod(shape)
            weight = n <= WEIGHT_LIMIT_ELEMENTS and read_only_as_weights([out])
            if n > GROWTH_LIMIT_ELEMENTS and n > in_size and not weight:
                return True
        elif node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample"):
            return True  # size unknown before running: do not risk a huge allocation
    return False


def _fill(node: ir.Node, arrays: list) -> list[np.ndarray] | None:
    """A ConstantOfShape's output made with the kernel's own rules but without planning a kernel
    (light models store every weight as one: planning a kernel per fill was half of their folding
    time); None for anything unusual, which goes through the kernel."""
    if node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx") or len(arrays) != 1:
        return None
    value = node.attributes.get("value")
    if len(node.attributes) > 1 or (value is not None and value.type != ir.AttributeType.TENSOR):
        return None
    try:
        fill = shape_ops.constant_fill(None if value is None else tensor_to_numpy(value.value))
        return [shape_ops.filled(arrays[0], fill)]
    except (TypeError, ValueError):
        return None  # the kernel fails the same way: the node is left to fail at run time


def _evaluate(evaluator, node: ir.Node, arrays: list) -> list | None:
    """Run one node with onnxrt's kernels on constant inputs; None when that fails."""
    try:
        results = evaluator.evaluate(node, arrays)
    except Exception:
        return None
    if len(results) < len(node.outputs):
        return None
    out = []
    for r in results[: len(node.outputs)]:
        if not isinstance(r, np.ndarray) and not np.isscalar(r):
            return None  # sequences, maps, optionals stay as they are
        out.append(np.asarray(r))
    return out


def _evaluator(opsets: dict[str, int]):
    """A plan of an empty graph: its ``evaluate`` runs single nodes with the model's opsets."""
    from onnxrt.runtime.plan import GraphPlan, PlanConfig

    return GraphPlan(ir.Graph([], [], nodes=[], opset_imports=dict(opsets)), PlanConfig(opsets=opsets))


def _storable(array: np.ndarray) -> bool:
    """Whether an initializer can hold ``array`` (an ONNX element type; strings for object arrays)."""
    if array.dtype.kind == "O":
        return all(isinstance(x, (str, bytes)) for x in array.flat)
    try:
        ir.DataType.from_numpy(array.dtype)
    except Exception:
        return False
    return True


def _replace_folded(graph: ir.Graph, nodes: list[ir.Node], computed: dict[ir.Value, np.ndarray]) -> int:
    """Outputs of the folded ``nodes`` that a remaining node (or a subgraph) reads become
    initializers taking over their names; then the folded nodes go. All or nothing: returns how
    many nodes were folded."""
    if not nodes:
        return 0
    gone = set(nodes)
    replacements: list[tuple[ir.Value, ir.Value]] = []
    renamed: list[tuple[ir.Value, str]] = []
    try:
        for node in nodes:
            for out in node.outputs:
                if any(use.node not in gone for use in out.uses()):
                    renamed.append((out, out.name))
                    new = _ir.add_initializer(graph, computed[out], "folded", take_over=out)
                    new.type = out.type or new.type
                    replacements.append((out, new))
    except Exception:  # leave the graph as it was
        for _, new in replacements:
            graph.initializers.pop(new.name, None)
        for out, name in renamed:
            out.name = name
        _ir.forget_names(graph)
        return 0
    for out, new in replacements:
        out.replace_all_uses_with(new)
    graph.remove(nodes, safe=True)
    return len(nodes)


def _fold_shape(graph: ir.Graph, node: ir.Node) -> bool:
    """Shape / Size of a value with a fully static shape."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in ("Shape", "Size") or not node.inputs:
        return False
    out = node.outputs[0]
    if out.is_graph_output() or not out.uses():
        return False
    shape = _ir.static_shape(node.inputs[0])
    if shape is None:
        return False
    if node.op_type == "Size":
        array = np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    else:
        start = _ir.attr(node, "start", 0)
        end = _ir.attr(node, "end", None)
        dims = list(shape)
        array = np.array(dims[slice(start, end)], dtype=np.int64)
    new = _ir.add_initializer(graph, array, "shape", take_over=out)
    out.replace_all_uses_with(new)
    graph.remove(node, safe=True)
    return True


def _constants_to_initializers(graph: ir.Graph) -> int:
    """Constant nodes of the main graph become initializers (as onnxruntime does); returns how many."""
    converted = 0
    for node in list(graph):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        out = node.outputs[0]
        if out.is_graph_output():
            continue
        array = _ir.const_array(out)
        if array is None:
            continue
        if not out.uses():
            graph.remove(node, safe=True)
            converted += 1
            continue
        try:
            new = _ir.add_initializer(graph, array, "const", take_over=out)
        except Exception:
            continue
        out.replace_all_uses_with(new)
        graph.remove(node, safe=True)
        converted += 1
    return converted
