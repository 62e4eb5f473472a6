"""Convert a float32 ONNX model to float16, keeping it valid for every runtime.

Public entry point: :func:`convert_float_to_float16` (also importable as ``onnxrt.float16``).

How it works. Nodes are visited in graph order, keeping for every value the element type(s) under
which it is currently available (``float`` under its own name, ``float16`` perhaps under another
name made by an inserted ``Cast``). For each node we decide which of its inputs it wants in float16,
using the op's schema: a float32 input is converted only when the input's type constraint allows
float16 at the model's opset; inputs with a fixed ``tensor(float)`` type (Resize scales, ...) and
inputs of blocked ops keep float32. A ``Cast`` is inserted wherever a value's available type differs
from the type its consumer wants; constant weights are converted directly (no ``Cast`` node).
Subgraphs of If/Loop/Scan are converted inside, with their interface (inputs/outputs) kept float32
so that the control-flow node's own type rules still hold.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16

#: Ops kept in float32 by default: ai.onnx.ml ops, and ops that onnxruntime has no float16 kernel
#: for or that are numerically fragile in float16 (index-producing ops and ranges).
DEFAULT_OP_BLOCK_LIST: tuple[str, ...] = (
    "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
    "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor",
    "Normalizer", "OneHotEncoder", "RandomUniformLike", "SVMClassifier", "SVMRegressor", "Scaler",
    "TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "ZipMap", "NonMaxSuppression",
    "TopK", "RoiAlign", "Range", "CumSum", "Min", "Max", "Upsample",
)

# Ops whose float output type comes from an attribute rather than from an input.
_DTYPE_ATTRIBUTE_OPS = {"Cast": "to", "EyeLike": "dtype", "RandomNormal": "dtype", "RandomUniform": "dtype",
                        "RandomNormalLike": "dtype", "RandomUniformLike": "dtype", "Multinomial": "dtype",
                        "Bernoulli": "dtype"}
_CONTROL_FLOW = {"If", "Loop", "Scan"}


def _clamp_to_float16(values: np.ndarray, min_positive_val: float, max_finite_val: float) -> np.ndarray:
    """float32 -> float16, with tiny non-zeros raised to +-min_positive_val and large values clipped."""
    v = np.asarray(values, dtype=np.float32).copy()
    magnitude = np.abs(v)
    tiny = (magnitude > 0) & (magnitude < min_positive_val)
    v[tiny] = np.copysign(np.float32(min_positive_val), v[tiny])
    np.clip(v, -max_finite_val, max_finite_val, out=v)  # NaN stays NaN
    return v.astype(np.float16)


def _tensor_to_float16(tensor: TensorProto, min_positive_val: float, max_finite_val: float) -> TensorProto:
    if tensor.data_type != FLOAT:
        return tensor
    converted = numpy_helper.from_array(
        _clamp_to_float16(numpy_helper.to_array(tensor), min_positive_val, max_finite_val), tensor.name)
    if tensor.doc_string:
        converted.doc_string = tensor.doc_string
    return converted


@dataclass
class _Scope:
    """Value availability for one graph; lookups fall through to the enclosing graph."""

    parent: "_Scope | None"
    # value name -> {elem_type: name under which the value exists with that type}
    available: dict[str, dict[int, str]] = field(default_factory=dict)
    # value name -> float32 initializer (converted lazily, on first float16 request)
    float_initializers: dict[str, TensorProto] = field(default_factory=dict)

    def lookup(self, name: str) -> dict[int, str] | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.available:
                return scope.available[name]
            scope = scope.parent
        return None

    def lookup_initializer(self, name: str) -> tuple["_Scope", TensorProto] | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.available:
                tensor = scope.float_initializers.get(name)
                return (scope, tensor) if tensor is not None else None
            scope = scope.parent
        return None


class _Converter:
    def __init__(self, model: onnx.ModelProto, min_positive_val: float, max_finite_val: float,
                 keep_io_types: bool, op_block_list: Iterable[str], node_block_list: Iterable[str]):
        self.model = model
        self.min_positive_val = min_positive_val
        self.max_finite_val = max_finite_val
        self.keep_io_types = keep_io_types
        self.op_block_list = set(op_block_list)
        self.node_block_list = set(node_block_list)
        self.opsets = {imp.domain or "": imp.version for imp in model.opset_import}
        self.taken_names = self._all_names(model.graph)
        self.counter = itertools.count()
        # original element type of every value, all graphs (names are unique enough per model)
        self.elem_type: dict[str, int] = {}
        self.shape_of: dict[str, onnx.TypeProto] = {}
        self._collect_types(model.graph)
        self.final_type: dict[str, int] = {}
        self.new_value_info: dict[int, list[onnx.ValueInfoProto]] = {}
        self.force_block = 0  # > 0 while converting the bodies of a blocked control-flow node

    # ---- bookkeeping -----------------------------------------------------------------------
    @staticmethod
    def _all_names(graph: onnx.GraphProto) -> set[str]:
        names: set[str] = set()
        for g in _iter_graphs(graph):
            names.update(i.name for i in g.input)
            names.update(o.name for o in g.output)
            names.update(t.name for t in g.initializer)
            for n in g.node:
                names.update(n.input)
                names.update(n.output)
                names.add(n.name)
        return names

    def _fresh(self, base: str) -> str:
        while True:
            name = f"{base}_{next(self.counter)}"
            if name not in self.taken_names:
                self.taken_names.add(name)
                return name

    def _collect_types(self, graph: onnx.GraphProto) -> None:
        for g in _iter_graphs(graph):
            for vi in itertools.chain(g.input, g.output, g.value_info):
                if vi.type.HasField("tensor_type"):
                    self.elem_type.setdefault(vi.name, vi.type.tensor_type.elem_type)
                    self.shape_of.setdefault(vi.name, vi.type)
            for t in g.initializer:
                self.elem_type[t.name] = t.data_type
            for n in g.node:
                if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                    for a in n.attribute:
                        if a.name == "value":
                            self.elem_type[n.output[0]] = a.t.data_type
                        elif a.name in ("value_float", "value_floats"):
                            self.elem_type[n.output[0]] = FLOAT

    def _schema(self, node: onnx.NodeProto):
        domain = node.domain or ""
        if domain == "ai.onnx":
            domain = ""
        version = self.opsets.get(domain)
        if version is None:
            return None
        try:
            return onnx.defs.get_schema(node.op_type, version, domain)
        except onnx.defs.SchemaError:
            return None

    # ---- value access ----------------------------------------------------------------------
    def _get(self, scope: _Scope, nodes_out: list, name: str, want: int) -> str:
        """Name of ``name`` with element type ``want``, adding a Cast or a converted weight if needed."""
        versions = scope.lookup(name)
        if not versions:
            return name
        if want in versions:
            return versions[want]
        found = scope.lookup_initializer(name)
        if found is not None and want == FLOAT16:
            owner, tensor = found
            converted = _tensor_to_float16(tensor, self.min_positive_val, self.max_finite_val)
            converted.name = self._fresh(f"{name}_fp16")
            owner.converted_initializers.append(converted)  # type: ignore[attr-defined]
            versions[want] = converted.name
            self.final_type[converted.name] = FLOAT16
            return converted.name
        source = next(iter(versions.values()))
        cast_out = self._fresh(f"{name}_{'fp16' if want == FLOAT16 else 'fp32'}")
        nodes_out.append(helper.make_node("Cast", [source], [cast_out], to=want, name=self._fresh("Cast_fp16_boundary")))
        scope.available.setdefault(name, dict(versions))[want] = cast_out
        self._record(cast_out, name, want)
        return cast_out

    def _record(self, new_name: str, like: str, elem_type: int) -> None:
        self.final_type[new_name] = elem_type
        if like in self.shape_of:
            vi = onnx.ValueInfoProto()
            vi.name = new_name
            vi.type.CopyFrom(self.shape_of[like])
            vi.type.tensor_type.elem_type = elem_type
            self.new_value_info.setdefault(id(self.current_graph), []).append(vi)

    # ---- graphs ----------------------------------------------------------------------------
    def convert_graph(self, graph: onnx.GraphProto, parent: _Scope | None, interface_float16: bool) -> None:
        """Convert ``graph`` in place. ``interface_float16``: inputs/outputs become float16."""
        scope = _Scope(parent)
        scope.converted_initializers = []  # type: ignore[attr-defined]
        previous_graph = getattr(self, "current_graph", None)
        self.current_graph = graph
        input_names = {i.name for i in graph.input}
        for t in graph.initializer:
            if t.data_type == FLOAT and t.name not in input_names:
                scope.float_initializers[t.name] = t
            scope.available[t.name] = {t.data_type: t.name}
        for vi in graph.input:
            elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            if elem == FLOAT and interface_float16:
                vi.type.tensor_type.elem_type = FLOAT16
                elem = FLOAT16
            scope.available[vi.name] = {elem: vi.name}
            self.final_type[vi.name] = elem

        output_wants: dict[str, int] = {}
        for vi in graph.output:
            elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            if elem == FLOAT and interface_float16:
                vi.type.tensor_type.elem_type = FLOAT16
                elem = FLOAT16
            output_wants[vi.name] = elem

        new_nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            self._convert_node(node, scope, new_nodes, output_wants)
        # graph outputs that are plain inputs/initializers, or produced with the other type
        for vi in graph.output:
            want = output_wants[vi.name]
            versions = scope.available.get(vi.name)
            if versions is not None and want not in versions and want in (FLOAT, FLOAT16):
                source = self._get(scope, new_nodes, vi.name, want)
                # a graph input cannot also be renamed: route through an Identity
                if source != vi.name:
                    new_nodes.append(helper.make_node("Identity", [source], [vi.name], name=self._fresh("Identity_fp16_output")))
        del graph.node[:]
        graph.node.extend(new_nodes)

        # drop float32 weights nobody reads any more; give their float16 copy the original name
        used = _names_read(graph)
        used.update(o.name for o in graph.output)
        renames: dict[str, str] = {}
        keep: list[TensorProto] = []
        for t in graph.initializer:
            if t.name in scope.float_initializers and t.name not in used:
                fp16_name = scope.available[t.name].get(FLOAT16)
                if fp16_name is not None:
                    renames[fp16_name] = t.name
                continue
            keep.append(t)
        for t in scope.converted_initializers:  # type: ignore[attr-defined]
            if t.name in renames:
                t.name = renames[t.name]
            keep.append(t)
        del graph.initializer[:]
        graph.initializer.extend(keep)
        if renames:
            _rename_inputs(graph, renames)
            for old, new in renames.items():
                self.final_type[new] = FLOAT16

        # value_info: update element types, add the values we created
        for vi in graph.value_info:
            if vi.name in self.final_type and vi.type.HasField("tensor_type"):
                vi.type.tensor_type.elem_type = self.final_type[vi.name]
        graph.value_info.extend(v for v in self.new_value_info.pop(id(graph), []) if v.name not in renames)
        self.current_graph = previous_graph

    def _convert_node(self, node: onnx.NodeProto, scope: _Scope, out: list, output_wants: dict[str, int]) -> None:
        schema = self._schema(node)
        blocked = (node.op_type in self.op_block_list or node.name in self.node_block_list
                   or schema is None or node.domain not in ("", "ai.onnx") or self.force_block > 0)
        input_wants = [self.elem_type.get(n) if n else None for n in node.input]
        output_types = [self.elem_type.get(n) if n else None for n in node.output]

        if node.op_type in _CONTROL_FLOW and not blocked:
            # interface stays as declared; bodies are converted inside
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    self.convert_graph(attr.g, scope, interface_float16=False)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        self.convert_graph(g, scope, interface_float16=False)
        elif not blocked:
            input_wants, output_types = self._float16_plan(node, schema, input_wants, output_types, scope)
        elif node.op_type in _CONTROL_FLOW:
            # blocked control flow: bodies stay float32, but may read outer values now in float16
            self.force_block += 1
            for attr in node.attribute:
                for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else
                          attr.graphs if attr.type == onnx.AttributeProto.GRAPHS else []):
                    self.convert_graph(g, scope, interface_float16=False)
            self.force_block -= 1

        # inputs
        for i, name in enumerate(node.input):
            want = input_wants[i]
            if name and want in (FLOAT, FLOAT16):
                node.input[i] = self._get(scope, out, name, want)
        # outputs; a graph output wanted with the other float type is produced under a new name and cast
        post_casts: list[onnx.NodeProto] = []
        for i, name in enumerate(node.output):
            if not name:
                continue
            produced = output_types[i]
            wanted_by_graph = output_wants.get(name)
            if wanted_by_graph in (FLOAT, FLOAT16) and produced in (FLOAT, FLOAT16) and produced != wanted_by_graph:
                inner = self._fresh(f"{name}_{'fp16' if produced == FLOAT16 else 'fp32'}")
                node.output[i] = inner
                self._record(inner, name, produced)
                post_casts.append(helper.make_node("Cast", [inner], [name], to=wanted_by_graph,
                                                   name=self._fresh("Cast_fp16_output")))
                scope.available[name] = {produced: inner, wanted_by_graph: name}
                self.final_type[name] = wanted_by_graph
                continue
            scope.available[name] = {produced: name} if produced else {}
            if produced:
                self.final_type[name] = produced
        out.append(node)
        out.extend(post_casts)

    def _float16_plan(self, node, schema, input_wants, output_types, scope):
        """Decide which inputs the node reads as float16 and which outputs it then produces as float16."""
        constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}

        def formal(params, index):
            if index < len(params):
                return params[index]
            last = params[-1] if params else None
            if last is not None and last.option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
                return last
            return None

        def allows_float16(type_str: str) -> bool:
            return "tensor(float16)" in constraints.get(type_str, set()) or type_str == "tensor(float16)"

        converted_vars: set[str] = set()
        for i, name in enumerate(node.input):
            param = formal(schema.inputs, i)
            if name and param is not None and input_wants[i] == FLOAT and allows_float16(param.type_str) \
                    and param.type_str in constraints:
                converted_vars.add(param.type_str)
        input_wants = list(input_wants)
        for i, name in enumerate(node.input):
            param = formal(schema.inputs, i)
            if name and param is not None and param.type_str in converted_vars and input_wants[i] == FLOAT:
                input_wants[i] = FLOAT16

        attr_name = _DTYPE_ATTRIBUTE_OPS.get(node.op_type)
        attr_converted = False
        for attr in node.attribute:
            if attr.name == attr_name and attr.i == FLOAT:
                attr.i = FLOAT16
                attr_converted = True
            elif node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(_tensor_to_float16(attr.t, self.min_positive_val, self.max_finite_val))
                attr_converted = True
            elif node.op_type == "Constant" and attr.name in ("value_float", "value_floats"):
                values = [attr.f] if attr.name == "value_float" else list(attr.floats)
                array = np.array(values, dtype=np.float32)
                if attr.name == "value_float":
                    array = array.reshape(())
                tensor = numpy_helper.from_array(_clamp_to_float16(array, self.min_positive_val, self.max_finite_val))
                node.attribute.remove(attr)
                node.attribute.append(helper.make_attribute("value", tensor))
                attr_converted = True
                break
            elif node.op_type == "ConstantOfShape" and attr.name == "value" and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(_tensor_to_float16(attr.t, self.min_positive_val, self.max_finite_val))
                attr_converted = True

        output_types = list(output_types)
        for i, name in enumerate(node.output):
            param = formal(schema.outputs, i)
            if not name or param is None or output_types[i] != FLOAT:
                continue
            if param.type_str in converted_vars:
                output_types[i] = FLOAT16
            elif attr_converted and param.type_str not in {p.type_str for p in schema.inputs}:
                output_types[i] = FLOAT16
        if node.op_type == "CastLike" and input_wants[1] == FLOAT16:
            output_types[0] = FLOAT16
        return input_wants, output_types


def _iter_graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_graphs(g)


def _names_read(graph: onnx.GraphProto) -> set[str]:
    names: set[str] = set()
    for g in _iter_graphs(graph):
        for n in g.node:
            names.update(n.input)
        if g is not graph:
            names.update(o.name for o in g.output)
    return names


def _rename_inputs(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    for g in _iter_graphs(graph):
        for n in g.node:
            for i, name in enumerate(n.input):
                if name in renames:
                    n.input[i] = renames[name]
        if g is not graph:
            for o in g.output:
                if o.name in renames:
                    o.name = renames[o.name]


def convert_float_to_float16(
    model: onnx.ModelProto | str,
    min_positive_val: float = 1e-7,
    max_finite_val: float = 1e4,
    keep_io_types: bool = False,
    disable_shape_infer: bool = False,
    op_block_list: Iterable[str] | None = None,
    node_block_list: Iterable[str] | None = None,
) -> onnx.ModelProto:
    """Return a float16 copy of ``model`` (a ModelProto or a path).

    ``min_positive_val``/``max_finite_val``: float32 constants are clamped into this magnitude range
    before conversion (zero stays zero). ``keep_io_types``: graph inputs and outputs stay float32, with
    Casts at the boundary. ``op_block_list`` (default :data:`DEFAULT_OP_BLOCK_LIST`) and
    ``node_block_list`` (node names) stay in float32, with Casts around them. ``disable_shape_infer``
    skips onnx shape inference; then only types already recorded in the model are known, and values of
    unknown type are left as they are.
    """
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = onnx.load(model)
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"convert_float_to_float16: expected an onnx.ModelProto or a path, got {type(model).__name__}")
    if not (0 < min_positive_val < max_finite_val):
        raise ValueError(f"convert_float_to_float16: need 0 < min_positive_val < max_finite_val, "
                         f"got {min_positive_val} and {max_finite_val}")
    if max_finite_val > 65504:
        raise ValueError(f"convert_float_to_float16: max_finite_val {max_finite_val} exceeds float16's largest value 65504")
    work = onnx.ModelProto()
    work.CopyFrom(model)
    if not disable_shape_infer:
        try:
            work = onnx.shape_inference.infer_shapes(work)
        except Exception:  # noqa: BLE001  shape inference is a help, not a requirement
            pass
    converter = _Converter(work, min_positive_val, max_finite_val, keep_io_types,
                           DEFAULT_OP_BLOCK_LIST if op_block_list is None else op_block_list,
                           node_block_list or ())
    converter.convert_graph(work.graph, None, interface_float16=not keep_io_types)
    return work


__all__ = ["convert_float_to_float16", "DEFAULT_OP_BLOCK_LIST"]
