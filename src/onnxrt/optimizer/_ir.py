"""Small helpers shared by the optimizer passes, on top of onnx_ir's producer/uses tracking.

Conventions every pass follows:

* A pass rewrites ``model.graph``: the main graph, or one subgraph (an If branch, a Loop or Scan body)
  when :func:`onnxrt.optimizer.optimize` hands the pass a :class:`GraphView`. Nodes of other graphs
  are never matched: :func:`single_consumer` and :func:`consumers` only return readers in the value's
  own graph (onnx_ir records reads from nested subgraphs as uses too, so such a value is never seen as
  dead or as read once), and the values a subgraph reads from outside are stand-in inputs while its
  passes run (:func:`isolated`), so walking up from a subgraph's node stops at its border.
* A *constant* is an initializer that is not also a graph input (those can be overridden at run time),
  except in IR version < 4 models, where every initializer is listed as an input and onnxruntime treats
  them as constants all the same; in a subgraph, also the stand-in of an enclosing graph's constant.
* Graph outputs keep their names: when a rewrite replaces a value that is a graph output, the new value
  takes the old name (see :func:`replace_value`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import numpy as np
import onnx_ir as ir

from onnxrt.runtime.values import tensor_to_numpy

MS_DOMAIN = "com.microsoft"
# Value.meta key of a subgraph's stand-in (see isolated) for a constant of an enclosing graph: its array
OUTER_CONSTANT = "onnxrt.outer_constant"
# graph.meta flag: initializers listed as graph inputs are constants (IR version < 4, where every
# initializer had to be listed as an input; onnxruntime does not let them be overridden there)
INITIALIZER_INPUTS_CONSTANT = "onnxrt.initializer_inputs_constant"


def opset(model: ir.Model, domain: str = "") -> int:
    """The model's opset for ``domain`` (0 when not imported)."""
    imports = model.opset_imports
    if domain == "":
        return int(imports.get("", imports.get("ai.onnx", 0)))
    return int(imports.get(domain, 0))


def ensure_domain(model: ir.Model, domain: str, version: int = 1) -> None:
    """Import ``domain`` (needed before emitting a node of it)."""
    if domain not in model.opset_imports:
        model.opset_imports[domain] = version
        model.graph.opset_imports[domain] = version


def is_graph_input(graph: ir.Graph, value: ir.Value) -> bool:
    return value.is_graph_input()


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is a non-overridable initializer or a Constant node's tensor."""
    if value is None:
        return None
    outer = value.meta.get(OUTER_CONSTANT)
    if outer is not None:
        return outer
    if value.is_graph_input() and not (value.graph is not None and value.graph.meta.get(INITIALIZER_INPUTS_CONSTANT)):
        return None
    if value.const_value is not None and value.is_initializer():
        cached = value.meta.get("onnxrt.array")
        if cached is None:
            cached = tensor_to_numpy(value.const_value)
            value.meta["onnxrt.array"] = cached
        return cached
    node = value.producer()
    if node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.graph is not None:
        attr = node.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            return tensor_to_numpy(attr.value)
        for name in ("value_float", "value_int"):
            a = node.attributes.get(name)
            if a is not None:
                return np.array(a.value, dtype=np.float32 if name == "value_float" else np.int64)
        for name in ("value_floats", "value_ints"):
            a = node.attributes.get(name)
            if a is not None:
                return np.array(list(a.value), dtype=np.float32 if name == "value_floats" else np.int64)
    return None


def scalar(value: ir.Value | None) -> float | None:
    """The constant's single element as a Python float (None when not a one-element constant)."""
    arr = const_array(value)
    if arr is None or arr.size != 1 or arr.dtype.kind not in "fiub":
        return None
    return float(arr.reshape(-1)[0])


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape when every dim is a known integer."""
    if value is None or value.shape is None:
        return None
    dims = []
    for d in value.shape:
        if not isinstance(d, int):
            return None
        dims.append(d)
    return tuple(dims)


def same_shape(a: ir.Value, b: ir.Value) -> bool:
    """Whether two values surely have one shape: known ranks, and every dim the same integer or the
    same named symbol (unnamed dims may differ)."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return False
    for da, db in zip(a.shape, b.shape):
        if isinstance(da, int) or isinstance(db, int):
            if da != db:
                return False
        elif da.value is None or da.value != db.value:
            return False
    return True


def rank(value: ir.Value | None) -> int | None:
    if value is None or value.shape is None:
        return None
    return len(value.shape)


def single_consumer(value: ir.Value) -> ir.Node | None:
    """The one node that reads ``value`` once, when that is its only use, it is no graph output and
    the reader is in the value's own graph (not inside an If branch or Loop body that reads it)."""
    if value.is_graph_output():
        return None
    uses = list(value.uses())
    if len(uses) != 1:
        return None
    node = uses[0].node
    return node if node.graph is value.graph else None


def consumers(value: ir.Value) -> list[ir.Node]:
    """The nodes of the value's own graph that read it (readers in nested subgraphs left out:
    callers that need every reader compare with ``value.uses()``)."""
    seen: dict[int, ir.Node] = {}
    for use in value.uses():
        if use.node.graph is value.graph:
            seen.setdefault(id(use.node), use.node)
    return list(seen.values())


class GraphView:
    """The model as a pass sees it, with ``graph`` one of its subgraphs: the opset imports and every
    other model attribute are the model's."""

    def __init__(self, model: ir.Model, graph: ir.Graph) -> None:
        self._model = model
        self.graph = graph

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def subgraphs(graph: ir.Graph) -> list[tuple[ir.Node, ir.Graph]]:
    """(node, subgraph) for the GRAPH / GRAPHS attributes of ``graph``'s own nodes (one level down)."""
    found: list[tuple[ir.Node, ir.Graph]] = []
    for node in graph:
        for a in node.attributes.values():
            if a.type == ir.AttributeType.GRAPH:
                found.append((node, a.value))
            elif a.type == ir.AttributeType.GRAPHS:
                found.extend((node, g) for g in a.value)
    return found


@contextlib.contextmanager
def isolated(graph: ir.Graph) -> Iterator[None]:
    """While the block runs, every value ``graph``'s own nodes read from an enclosing graph is a
    stand-in input of ``graph`` (no producer): passes on a subgraph then neither walk into nor
    rewrite the graphs around it. A stand-in for a constant of an enclosing graph keeps its array
    (:func:`const_array` gives it), so a subgraph's chain over an outer weight still folds (silero_vad
    slices and concatenates its LSTM weights inside an If branch). The stand-ins are taken out again
    afterwards; one that a rewrite made an output of ``graph`` comes back through an Identity."""
    stand_ins: dict[ir.Value, ir.Value] = {}
    for node in graph:
        for i, v in enumerate(node.inputs):
            if v is None or v.graph is graph:
                continue
            s = stand_ins.get(v)
            if s is None:
                s = stand_ins[v] = ir.Value(name=v.name, type=v.type, shape=v.shape)
                array = const_array(v)
                if array is not None:
                    s.meta[OUTER_CONSTANT] = array
                graph.inputs.append(s)
            node.replace_input_with(i, s)
    try:
        yield
    finally:
        for outer, s in stand_ins.items():
            for use in list(s.uses()):
                use.node.replace_input_with(use.idx, outer)
            for i, out in enumerate(graph.outputs):
                if out is s:
                    node = ir.Node("", "Identity", [outer], num_outputs=1)
                    graph.append(node)
                    copy_type(outer, node.outputs[0])
                    graph.outputs[i] = node.outputs[0]
            graph.inputs.remove(s)


def is_op(node: ir.Node | None, op_type: str, domain: str = "") -> bool:
    if node is None or node.op_type != op_type:
        return False
    d = "" if node.domain in ("", "ai.onnx") else node.domain
    return d == domain


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    a = node.attributes.get(name)
    if a is None:
        return default
    v = a.value
    if a.type in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return list(v)
    return v


def sort_if_needed(graph: ir.Graph) -> None:
    """Topologically sort ``graph`` unless its nodes already are in order (the usual case: a
    sort also walks every subgraph, tens of ms on a model with many If branches)."""
    seen: set[int] = set()
    for node in graph:
        for value in node.inputs:
            producer = None if value is None else value.producer()
            if producer is not None and producer.graph is graph and id(producer) not in seen:
                graph.sort()
                return
        seen.add(id(node))


def live_nodes(graph: ir.Graph) -> Iterator[ir.Node]:
    """The graph's nodes in their current order, skipping any that a rewrite made while iterating
    has removed since (a pass's loop over a snapshot)."""
    for node in list(graph):
        if node.graph is graph:
            yield node


def add_initializer(graph: ir.Graph, array: np.ndarray, base_name: str, take_over: ir.Value | None = None) -> ir.Value:
    """Register ``array`` as a new initializer with a name no other value in the graph uses.

    With ``take_over`` (a value about to disappear), the initializer takes that value's name instead.
    """
    if take_over is not None and take_over.name and not take_over.is_graph_output():
        name = take_over.name
        take_over.name = unique_name(graph, name + "_replaced")
    else:
        name = unique_name(graph, base_name)
    array = np.asarray(array)
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    # ir.Tensor directly: ir.tensor's protocol checks cost ~30 us a call, thousands of folds a model
    tensor = ir.tensor(array, name=name) if array.dtype.kind in "OUS" else ir.Tensor(array, name=name)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    value.meta["onnxrt.array"] = array
    return value


# graph.meta key of a subgraph: the main graph, whose name registry covers every graph of the model
ROOT_GRAPH = "onnxrt.root_graph"


def unique_name(graph: ir.Graph, base: str) -> str:
    """A name no value or node of the model uses yet (subgraphs included: a new name in an If branch
    must not shadow a name of the graphs around it)."""
    root = graph.meta.get(ROOT_GRAPH, graph)
    used = root.meta.get("onnxrt.used_names")
    if used is None:
        used = set()
        for g in [root, *root.subgraphs()]:
            used.update(v.name for v in g.inputs)
            used.update(g.initializers)
            for node in g:
                used.update(o.name for o in node.outputs if o.name)
                if node.name:
                    used.add(node.name)
        root.meta["onnxrt.used_names"] = used
    name = base
    i = 0
    while name in used or name in graph.initializers:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


def forget_names(graph: ir.Graph) -> None:
    """Drop the cached set of used names (call when a pass renamed values behind unique_name's back)."""
    graph.meta.get(ROOT_GRAPH, graph).meta.pop("onnxrt.used_names", None)


def new_node(
    graph: ir.Graph,
    domain: str,
    op_type: str,
    inputs: Iterable[ir.Value | None],
    attributes: dict[str, Any] | None = None,
    num_outputs: int = 1,
    name_hint: str = "",
    before: ir.Node | None = None,
) -> ir.Node:
    """Make a node, give it and its outputs fresh names, and insert it before ``before`` (or append)."""
    attrs = [_make_attr(k, v) for k, v in (attributes or {}).items() if v is not None]
    base = name_hint or op_type
    inputs = list(inputs)
    while inputs and inputs[-1] is None:  # trailing omitted optional inputs are simply left off
        inputs.pop()
    node = ir.Node(domain, op_type, inputs, attrs, num_outputs=num_outputs, name=unique_name(graph, base))
    for i, out in enumerate(node.outputs):
        out.name = unique_name(graph, f"{node.name}_out{i}" if num_outputs > 1 else f"{node.name}_out")
    if before is not None:
        graph.insert_before(before, node)
    else:
        graph.append(node)
    return node


def _make_attr(name: str, value: Any) -> ir.Attr:
    if isinstance(value, ir.Attr):
        return value
    if isinstance(value, bool):
        return ir.AttrInt64(name, int(value))
    if isinstance(value, (int, np.integer)):
        return ir.AttrInt64(name, int(value))
    if isinstance(value, (float, np.floating)):
        return ir.AttrFloat32(name, float(value))
    if isinstance(value, str):
        return ir.AttrString(name, value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, np.integer)) for v in value):
            return ir.AttrInt64s(name, [int(v) for v in value])
        return ir.AttrFloat32s(name, [float(v) for v in value])
    raise TypeError(f"cannot make attribute '{name}' from {type(value).__name__}")


def copy_type(src: ir.Value, dst: ir.Value) -> None:
    dst.type = src.type
    dst.shape = src.shape


def replace_value(graph: ir.Graph, old: ir.Value, new: ir.Value) -> bool:
    """Make every reader of ``old`` read ``new``; a graph output keeps its name.

    Returns False (changing nothing) when ``old`` is a graph output and ``new`` cannot take its name
    (``new`` is a graph input, an initializer or already an output).
    """
    if old is new:
        return True
    if old.is_graph_output():
        if new.is_graph_input() or new.is_initializer() or new.is_graph_output():
            return False
        name = old.name
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        old.name = None
        new.name = name
        if new.type is None:
            new.type = old.type
        if new.shape is None:
            new.shape = old.shape
        return True
    old.replace_all_uses_with(new)
    return True


def remove_nodes(graph: ir.Graph, nodes: Iterable[ir.Node]) -> None:
    """Remove nodes whose outputs nobody reads any more (others are kept)."""
    for node in nodes:
        if node.graph is graph and not any(o.uses() or o.is_graph_output() for o in node.outputs):
            graph.remove(node, safe=True)


def remove_unused_nodes(graph: ir.Graph, nodes: Iterable[ir.Node]) -> None:
    """Remove the given nodes and then any producers upstream that became unused (in that order)."""
    pending = list(nodes)
    while pending:
        node = pending.pop()
        if node.graph is not graph or any(o.uses() or o.is_graph_output() for o in node.outputs):
            continue
        inputs = [v for v in node.inputs if v is not None]
        graph.remove(node, safe=True)
        for v in inputs:
            p = v.producer()
            if p is not None and p.graph is graph:
                pending.append(p)


def float_close(a: float | None, b: float, rel: float = 1e-3) -> bool:
    return a is not None and abs(a - b) <= rel * abs(b)


def dtype_of(value: ir.Value | None) -> ir.DataType | None:
    if value is None or value.type is None:
        return None
    try:
        return value.dtype
    except Exception:
        return None


FLOAT_TYPES = (ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16)


def drop_unused_initializers(graph: ir.Graph, values: list[ir.Value]) -> None:
    """Delete those of ``values`` that are initializers nobody reads any more."""
    for value in values:
        if value.is_initializer() and not value.uses() and not value.is_graph_input() and not value.is_graph_output():
            if graph.initializers.get(value.name) is value:
                del graph.initializers[value.name]
