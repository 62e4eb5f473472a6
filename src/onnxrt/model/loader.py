"""Turn a path, bytes or ModelProto into a checked ``onnx_ir.Model``.

Loading is where untrusted input first arrives, so every failure here is one of
onnxruntime's exception classes with onnxruntime's wording: a missing file is
``NoSuchFile``, bytes that do not parse are ``InvalidProtobuf``, an external-data
location that leaves the model's folder is refused with ``InvalidGraph``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from onnxrt.errors import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile
from onnxrt.model import weights_aside
from onnxrt.ops.registry import ML_DOMAIN

ModelSource = Union[str, os.PathLike, bytes, bytearray, memoryview, onnx.ModelProto]

MIN_IR_VERSION = 3
MAX_IR_VERSION = onnx.IR_VERSION
MAX_ONNX_OPSET = onnx.defs.onnx_opset_version()
# onnx builds its operator schema registry the first time anything asks it (~10 ms here), which would
# be the first session's shape inference. onnxruntime registers its schemas when it is imported (its
# first session of a one-node model loads in ~3 ms); onnxrt does the same, so a session's load time
# is that session's own work.
onnx.defs.has("Add")


@dataclass
class LoadedModel:
    proto: onnx.ModelProto  # external data not loaded; shape-inferred value_info added
    model: ir.Model
    base_dir: str | None  # folder external data is resolved (and confined) in
    path: str | None
    # Types onnx_ir cannot hold (maps), kept aside by value name for get_inputs()/get_outputs().
    type_overrides: dict[str, onnx.TypeProto] = field(default_factory=dict)


def _has_map(tp: onnx.TypeProto) -> bool:
    which = tp.WhichOneof("value")
    if which == "map_type":
        return True
    if which == "sequence_type":
        return _has_map(tp.sequence_type.elem_type)
    if which == "optional_type":
        return _has_map(tp.optional_type.elem_type)
    return False


def restore_set_aside_types(proto: onnx.ModelProto, overrides: dict[str, onnx.TypeProto]) -> None:
    """Put back, in a model serialized from the IR, the input/output types ``set_aside_map_types`` kept
    aside, so a ZipMap output keeps its seq(map(...)) type and the saved model passes onnx.checker."""
    for value in (*proto.graph.input, *proto.graph.output):
        if value.name in overrides and not value.HasField("type"):
            value.type.CopyFrom(overrides[value.name])


def _copy_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def set_aside_map_types(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, onnx.TypeProto]]:
    """Move map-typed value types out of the graph (onnx_ir does not support map types yet)."""
    graph = proto.graph
    if not any(_has_map(v.type) for v in (*graph.input, *graph.output, *graph.value_info)):
        return proto, {}
    copy = _copy_proto(proto)
    overrides: dict[str, onnx.TypeProto] = {}
    for v in (*copy.graph.input, *copy.graph.output):
        if _has_map(v.type):
            saved = onnx.TypeProto()
            saved.CopyFrom(v.type)
            overrides[v.name] = saved
            v.ClearField("type")
    kept = [v for v in copy.graph.value_info if not _has_map(v.type)]
    del copy.graph.value_info[:]
    copy.graph.value_info.extend(kept)
    return copy, overrides


def read_model_proto(source: ModelSource) -> tuple[onnx.ModelProto, str | None, str | None]:
    """Parse ``source`` without loading external data. Returns (proto, base_dir, path)."""
    if isinstance(source, onnx.ModelProto):
        return source, os.getcwd(), None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        where = "bytes"
        path = None
        base_dir = os.getcwd()
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = path
        if not os.path.isfile(path):
            raise NoSuchFile(f"Load model from {path} failed:Load model {path} failed. File doesn't exist")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise NoSuchFile(f"Load model from {path} failed:{e.strerror}") from None
        base_dir = _folder_of(path)
    else:
        raise TypeError(
            f"Unable to load from type '{type(source).__name__}': expected a path, bytes or onnx.ModelProto"
        )
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise InvalidProtobuf(f"Load model from {where} failed:Protobuf parsing failed.") from None
    if not proto.HasField("graph"):
        if path is None:
            raise InvalidArgument("No graph was found in the protobuf.")
        raise InvalidProtobuf(f"Load model from {where} failed:No graph was found in the protobuf.")
    return proto, base_dir, path


def _folder_of(path: str) -> str:
    """The folder external data is resolved (and confined) in: the model file's own."""
    return str(Path(path).resolve().parent)


def _read_source(source: ModelSource) -> tuple[onnx.ModelProto, str | None, str | None, dict[str, np.ndarray]]:
    """read_model_proto's (proto, base_dir, path), and the values of the initializers a model file's
    proto comes without (see weights_aside: each large weight read into its own array, so the
    file's bytes and protobuf's copy of it are never held next to the arrays)."""
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        path = os.fspath(source)
        # shape inference's own limit: what is set aside is what inference gets stubbed anyway
        found = weights_aside.read(path, _INFERENCE_DATA_LIMIT)
        if found is not None:
            return found[0], _folder_of(path), path, found[1]
    proto, base_dir, path = read_model_proto(source)
    return proto, base_dir, path, {}


def _iter_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _iter_tensors(attr.g)
            for g in attr.graphs:
                yield from _iter_tensors(g)


def all_tensors(proto: onnx.ModelProto):
    yield from _iter_tensors(proto.graph)
    for fn in proto.functions:
        for node in fn.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def check_external_data(proto: onnx.ModelProto, base_dir: str | None) -> bool:
    """Refuse external-data locations that resolve outside the model's folder; True when the model
    has external data at all."""
    root = Path(base_dir or os.getcwd()).resolve()
    found = False
    for tensor in all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location:
            raise InvalidGraph(f"Tensor '{tensor.name}' has external data without a location.")
        candidate = Path(location)
        resolved = (root / candidate).resolve()
        if candidate.is_absolute() or not resolved.is_relative_to(root):
            raise InvalidGraph(
                f"External data location '{location}' of tensor '{tensor.name}' is outside the model's "
                f"folder '{root}'; refusing to read it."
            )
        if not resolved.is_file():
            raise NoSuchFile(f"External data file '{location}' of tensor '{tensor.name}' does not exist in '{root}'.")
        size = resolved.stat().st_size
        offset = int(info.get("offset", 0) or 0)
        length = int(info.get("length", 0) or 0)
        if offset < 0 or length < 0 or offset + length > size:
            raise InvalidGraph(
                f"External data of tensor '{tensor.name}' (offset {offset}, length {length}) lies beyond the "
                f"end of '{location}' ({size} bytes)."
            )
    return found


def check_versions(proto: onnx.ModelProto) -> None:
    if proto.ir_version and proto.ir_version > MAX_IR_VERSION:
        raise Fail(
            f"Unsupported model IR version: {proto.ir_version}, max supported IR version: {MAX_IR_VERSION}"
        )
    if proto.ir_version and proto.ir_version < MIN_IR_VERSION:
        raise Fail(f"Unsupported model IR version: {proto.ir_version}, min supported IR version: {MIN_IR_VERSION}")
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > MAX_ONNX_OPSET:
            raise Fail(
                f"Opset {opset.version} of domain ai.onnx is newer than the newest this onnxrt knows "
                f"({MAX_ONNX_OPSET})."
            )


def _forget_invented_dims(values, original_params: set[str]) -> None:
    # onnx's inference names unknown dims 'unk__N'; onnxruntime reports them as unknown (None)
    for v in values:
        if v.type.WhichOneof("value") != "tensor_type":
            continue
        for dim in v.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param.startswith("unk__") and dim.dim_param not in original_params:
                dim.ClearField("dim_param")


# Initializers with more elements than this go to shape inference without their data: inference only
# needs their type and dims, and small ones (shape constants) still feed its data propagation.
_INFERENCE_DATA_LIMIT = 4096


def _copy_fields(source, target, skip: frozenset[str]) -> None:
    for descriptor, value in source.ListFields():
        if descriptor.name in skip:
            continue
        if hasattr(value, "extend"):  # a repeated field
            getattr(target, descriptor.name).extend(value)
        elif descriptor.message_type is not None:
            getattr(target, descriptor.name).CopyFrom(value)
        else:
            setattr(target, descriptor.name, value)


def _stub(tensor: onnx.TensorProto, stub: onnx.TensorProto) -> None:
    """``stub``: ``tensor``'s name, type and dims, its data marked external (never read)."""
    stub.name = tensor.name
    stub.data_type = tensor.data_type
    stub.dims.extend(tensor.dims)
    stub.data_location = onnx.TensorProto.EXTERNAL
    entry = stub.external_data.add()
    entry.key, entry.value = "location", "onnxrt-weights-not-loaded-for-shape-inference"


def _heavy(tensor: onnx.TensorProto) -> bool:
    return math.prod(tensor.dims) > _INFERENCE_DATA_LIMIT and tensor.data_location != onnx.TensorProto.EXTERNAL


def _is_heavy_constant(node: onnx.NodeProto) -> bool:
    return node.op_type == "Constant" and node.domain in ("", "ai.onnx") and any(
        a.name == "value" and a.type == onnx.AttributeProto.TENSOR and _heavy(a.t) for a in node.attribute)


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _light_graph(graph: onnx.GraphProto, light: onnx.GraphProto) -> None:
    """``graph`` copied into ``light`` with every large weight (initializer or Constant node value, in
    subgraphs too) stubbed: field by field, so no weight is copied (clearing a copy would free
    nothing: upb keeps a message's data in one arena)."""
    _copy_fields(graph, light, skip=frozenset({"initializer", "node"}))
    for tensor in graph.initializer:
        if _heavy(tensor):
            _stub(tensor, light.initializer.add())
        else:
            light.initializer.append(tensor)
    plain: list[onnx.NodeProto] = []  # copied in runs: one extend is much cheaper than many appends
    for node in graph.node:
        constant = bool(node.attribute) and _is_heavy_constant(node)
        if not (constant or (node.attribute and _has_subgraph(node))):
            plain.append(node)
            continue
        light.node.extend(plain)
        plain.clear()
        copy = light.node.add()
        _copy_fields(node, copy, skip=frozenset({"attribute"}))
        for attr in node.attribute:
            if constant and attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                new = copy.attribute.add()
                _copy_fields(attr, new, skip=frozenset({"t"}))
                _stub(attr.t, new.t)
            elif attr.type == onnx.AttributeProto.GRAPH:
                new = copy.attribute.add()
                _copy_fields(attr, new, skip=frozenset({"g"}))
                _light_graph(attr.g, new.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                new = copy.attribute.add()
                _copy_fields(attr, new, skip=frozenset({"graphs"}))
                for g in attr.graphs:
                    _light_graph(g, new.graphs.add())
            else:
                copy.attribute.append(attr)
    light.node.extend(plain)


def _skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its large weight payloads (marked external), for shape inference.

    ``onnx.shape_inference`` serialises and re-parses the whole model: with the weights inside, a
    400 MB model costs seconds and two extra copies of every weight (PP-OCR's recognizer, whose
    11 MB of weights are Constant nodes, took 61 MB more memory to load).
    """
    light = onnx.ModelProto()
    _copy_fields(proto, light, skip=frozenset({"graph"}))
    _light_graph(proto.graph, light.graph)
    return light


def infer_shapes(proto: onnx.ModelProto) -> onnx.GraphProto | None:
    """ONNX shape inference on a skeleton of ``proto`` (its large weights stubbed): the inferred
    skeleton's graph, whose value_info, outputs and subgraph-holding nodes carry the results, or None
    when inference fails (a load never fails over it). ``proto`` itself is not changed (it may be the
    caller's): :func:`apply_inferred_types` takes the results over."""
    try:
        inferred = onnx.shape_inference.infer_shapes(
            _skeleton(proto), check_type=False, strict_mode=False, data_prop=True
        )
    except Exception:
        return None
    if len(inferred.graph.node) != len(proto.graph.node):
        return None
    original = {
        d.dim_param
        for v in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info)
        if v.type.WhichOneof("value") == "tensor_type"
        for d in v.type.tensor_type.shape.dim
        if d.HasField("dim_param")
    }
    _forget_invented_dims((*inferred.graph.output, *inferred.graph.value_info), original)
    return inferred.graph


def apply_inferred_types(graph: ir.Graph, inferred: onnx.GraphProto, subgraph: bool = False) -> None:
    """Give the graph's node outputs, initializers and outputs the types and shapes inference found,
    and so on down every subgraph (inference annotates each in the inferred copy of its node; a
    subgraph's inputs too: a Loop body's carried values). Plain tensor types are set directly: onnx_ir's
    generic value_info path cost a third of deserializing a model whose every value inference had
    typed, and silero_vad's 50 If branches went that way when their annotated protos were deserialized."""
    infos = {info.name: info for info in inferred.value_info}
    for node, done in zip(graph, inferred.node):
        if node.op_type != done.op_type:
            return  # not the graph inference saw (never expected): leave the rest untyped
        if infos:
            for value in node.outputs:
                info = infos.get(value.name)
                if info is not None:
                    _set_type(value, info)
        if done.attribute and _has_subgraph(done):
            inferred_graphs = {a.name: a for a in done.attribute}
            for name, attr in node.attributes.items():
                done_attr = inferred_graphs.get(name)
                if done_attr is None:
                    continue
                if attr.type == ir.AttributeType.GRAPH and done_attr.type == onnx.AttributeProto.GRAPH:
                    apply_inferred_types(attr.value, done_attr.g, subgraph=True)
                elif attr.type == ir.AttributeType.GRAPHS and done_attr.type == onnx.AttributeProto.GRAPHS:
                    for g, g_done in zip(attr.value, done_attr.graphs):
                        apply_inferred_types(g, g_done, subgraph=True)
    if infos:
        for name, value in graph.initializers.items():
            if name in infos:
                _set_type(value, infos[name])
    if subgraph:
        for value, info in zip(graph.inputs, inferred.input):
            if value.name == info.name and info.type.WhichOneof("value") is not None:
                _set_type(value, info)
    for value, info in zip(graph.outputs, inferred.output):
        if value.name == info.name:
            _set_type(value, info)


def _set_type(value: ir.Value, info: onnx.ValueInfoProto) -> None:
    tp = info.type
    if _has_map(tp):
        return  # onnx_ir holds no map types (see set_aside_map_types)
    tensor = tp.tensor_type if tp.WhichOneof("value") == "tensor_type" else None
    if tensor is None or tp.denotation or info.doc_string or info.metadata_props:
        ir.serde.deserialize_value_info_proto(info, value)  # anything but a plain tensor type
        return
    dims = None
    if tensor.HasField("shape"):
        dims = []
        for d in tensor.shape.dim:
            if d.denotation:
                ir.serde.deserialize_value_info_proto(info, value)
                return
            which = d.WhichOneof("value")
            dims.append(d.dim_value if which == "dim_value" else d.dim_param if which == "dim_param" else None)
    value.type = ir.TensorType(ir.DataType(tensor.elem_type))
    if dims is not None:
        value.shape = ir.Shape(dims)


def apply_free_dimension_overrides(proto: onnx.ModelProto, by_name: dict[str, int], by_denotation: dict[str, int]) -> onnx.ModelProto:
    """Fix symbolic input dims to the values given, before shape inference propagates them."""
    if not by_name and not by_denotation:
        return proto
    copy = _copy_proto(proto)
    for value in copy.graph.input:
        if value.type.WhichOneof("value") != "tensor_type":
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in by_name:
                dim.dim_value = by_name[dim.dim_param]
            elif dim.denotation and dim.denotation in by_denotation:
                dim.dim_value = by_denotation[dim.denotation]
    return copy


def _as_array_tensor(tensor: ir.TensorProtocol) -> ir.TensorProtocol:
    if not isinstance(tensor, ir.TensorProtoTensor):
        return tensor
    try:
        array = tensor.numpy()
    except ValueError as e:  # data that does not fill the dims (a raw_data of the wrong length)
        raise InvalidGraph(f"This is an invalid model. Tensor '{tensor.name}' of shape {list(tensor.shape)} and type "
                           f"{tensor.dtype.name}: its data does not match: {e}") from None
    if tensor.dtype == ir.DataType.STRING:
        return ir.StringTensor(array.reshape(-1).tolist() if array.ndim else [array.item()],
                               shape=ir.Shape(array.shape), name=tensor.name)
    return ir.Tensor(np.ascontiguousarray(array).reshape(array.shape), name=tensor.name)


def _graphs(graph: ir.Graph):
    yield graph
    for node in graph:
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                yield from _graphs(attr.value)
            elif attr.type == ir.AttributeType.GRAPHS:
                for g in attr.value:
                    yield from _graphs(g)


def detach_from_proto(model: ir.Model) -> None:
    """Give every tensor in the IR its own numpy storage, so the parsed protobuf can be freed.

    upb keeps a parsed model in one arena: clearing a field frees nothing, and any tensor still
    pointing into the protobuf keeps every weight's bytes alive next to the numpy copies. After this,
    nothing refers to the protobuf and a model costs its weights once. External-data weights stay
    memory-mapped by onnx_ir.
    """
    graphs = list(_graphs(model.graph))
    for fn in model.functions.values():
        graphs.append(fn)  # type: ignore[arg-type]
    for graph in graphs:
        for value in getattr(graph, "initializers", {}).values():
            if value.const_value is not None:
                value.const_value = _as_array_tensor(value.const_value)
        for node in graph:
            for name, attr in list(node.attributes.items()):
                if attr.is_ref():
                    continue
                if attr.type == ir.AttributeType.TENSOR:
                    node.attributes[name] = ir.AttrTensor(name, _as_array_tensor(attr.value))
                elif attr.type == ir.AttributeType.TENSORS:
                    node.attributes[name] = ir.AttrTensors(name, [_as_array_tensor(t) for t in attr.value])


# Numeric list attributes longer than this are carried as numpy arrays: onnx_ir's Attr turns every
# element into a Python number (0.1 s for a 100-tree forest's 685k node fields), where numpy reads the
# protobuf field in well under a millisecond.
LARGE_ATTRIBUTE = 4096
_TREE_ENSEMBLES = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})
_TREE_FIELDS = ("nodes_", "class_", "target_")  # per-node and per-leaf tuples; not classlabels_*


class ArrayAttr(ir.Attr):
    """An INTS or FLOATS attribute whose value is a read-only numpy array (int64 / float32)."""

    __slots__ = ("_array",)

    def __init__(self, name: str, type_: ir.AttributeType, array: np.ndarray) -> None:
        super().__init__(name, type_, None)
        array.flags.writeable = False
        self._array = array

    @property
    def value(self) -> np.ndarray:  # type: ignore[override]
        return self._array

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ir.Attr):
            return False
        return (self.name, self.type) == (other.name, other.type) and np.array_equal(self._array, np.asarray(other.value))

    __hash__ = None  # type: ignore[assignment]


@dataclass
class _TakenAttribute:
    node_index: int
    name: str
    type: ir.AttributeType
    array: np.ndarray


def _take_large_attributes(graph: onnx.GraphProto, taken: list[_TakenAttribute], tree_fields_only: bool) -> None:
    """Move the long INTS / FLOATS attributes of ``graph``'s nodes out of the protobuf into ``taken``
    (the attribute stays, empty). ``tree_fields_only``: only the tree ensembles' per-node fields,
    which ONNX shape inference of those ops does not read, so it can run without them."""
    for index, node in enumerate(graph.node):
        if tree_fields_only and (node.op_type not in _TREE_ENSEMBLES or node.domain != ML_DOMAIN):
            continue
        for attr in node.attribute:
            if tree_fields_only and not attr.name.startswith(_TREE_FIELDS):
                continue
            if not _is_long_list(attr):
                continue
            if attr.type == onnx.AttributeProto.INTS:
                taken.append(_TakenAttribute(index, attr.name, ir.AttributeType.INTS, np.array(attr.ints, np.int64)))
                del attr.ints[:]
            else:
                taken.append(_TakenAttribute(index, attr.name, ir.AttributeType.FLOATS, np.array(attr.floats, np.float32)))
                del attr.floats[:]


def _restore_large_attributes(graph: ir.Graph, taken: list[_TakenAttribute]) -> None:
    if not taken:
        return
    nodes = list(graph)
    for t in taken:
        nodes[t.node_index].attributes[t.name] = ArrayAttr(t.name, t.type, t.array)


def _is_long_list(attr: onnx.AttributeProto) -> bool:
    return ((attr.type == onnx.AttributeProto.INTS and len(attr.ints) > LARGE_ATTRIBUTE)
            or (attr.type == onnx.AttributeProto.FLOATS and len(attr.floats) > LARGE_ATTRIBUTE))


def _has_large_attributes(graph: onnx.GraphProto) -> bool:
    return any(_is_long_list(a) for node in graph.node for a in node.attribute)


def load(
    source: ModelSource,
    *,
    run_shape_inference: bool = True,
    free_dims_by_name: dict[str, int] | None = None,
    free_dims_by_denotation: dict[str, int] | None = None,
) -> LoadedModel:
    proto, base_dir, path, aside = _read_source(source)
    check_versions(proto)
    has_external_data = check_external_data(proto, base_dir)
    proto = apply_free_dimension_overrides(proto, free_dims_by_name or {}, free_dims_by_denotation or {})
    large = _has_large_attributes(proto.graph)
    if large and proto is source:  # the caller's ModelProto is not ours to empty
        proto = _copy_proto(proto)
    taken: list[_TakenAttribute] = []
    if large:
        _take_large_attributes(proto.graph, taken, tree_fields_only=True)
    inferred = infer_shapes(proto) if run_shape_inference else None
    if large:
        _take_large_attributes(proto.graph, taken, tree_fields_only=False)
    ir_proto, type_overrides = set_aside_map_types(proto)
    try:
        model = ir.serde.deserialize_model(ir_proto)
    except Exception as e:  # a proto that parses but is not a coherent model
        raise InvalidGraph(f"This is an invalid model. {type(e).__name__}: {e}") from None
    if inferred is not None:
        apply_inferred_types(model.graph, inferred)
    _restore_large_attributes(model.graph, taken)
    for name, values in aside.items():  # the weights read straight from the file
        value = model.graph.initializers.get(name)
        if value is not None:
            value.const_value = ir.Tensor(values, name=name)
    if base_dir is not None and has_external_data:  # set_base_dir walks every tensor of every graph
        ir.external_data.set_base_dir(model.graph, base_dir)
    detach_from_proto(model)
    return LoadedModel(proto=proto, model=model, base_dir=base_dir, path=path, type_overrides=type_overrides)
