"""Describe a model: IR version, opsets, inputs/outputs, op histogram, parameters, FLOPs, unsupported nodes.

``onnxrt inspect model.onnx --dim batch=8`` prints a report; ``--json`` prints the same facts as one JSON
object. FLOPs are estimated from shapes that ONNX shape inference finds once the symbolic input dims named
with ``--dim`` are fixed; nodes whose shapes stay unknown are listed rather than guessed.

The helpers here (``parse_dims``, ``read_model``, ``infer_value_types``) are shared by the other tools.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
from typing import Any, Iterator

import onnx

from onnxrt.model import loader

# -- helpers shared by the tools ------------------------------------------------------------------


def parse_dims(items: list[str] | None) -> dict[str, int]:
    """``["batch=8", "seq=128"]`` -> ``{"batch": 8, "seq": 128}``; a malformed item raises ValueError."""
    dims: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--dim expects NAME=VALUE (a symbolic dim name and a size), got '{item}'")
        try:
            size = int(value)
        except ValueError:
            raise ValueError(f"--dim {name}: the size must be an integer, got '{value}'") from None
        if size < 0:
            raise ValueError(f"--dim {name}: the size must be >= 0, got {size}")
        dims[name] = size
    return dims


def add_dim_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a symbolic input dim, e.g. --dim batch=8 (repeatable)",
    )


def read_model(path: str) -> onnx.ModelProto:
    """Parse a model file without loading external data (weights' sizes come from their dims)."""
    proto, _, _ = loader.read_model_proto(path)
    return proto


def with_dims(proto: onnx.ModelProto, dims: dict[str, int]) -> onnx.ModelProto:
    """A copy of ``proto`` whose symbolic input dims named in ``dims`` are fixed."""
    return loader.apply_free_dimension_overrides(proto, dims, {})


def tensor_type_of(tp: onnx.TypeProto) -> tuple[str, list[int | str | None]] | None:
    """(dtype name, dims) of a tensor TypeProto, dims as int, symbolic name, or None when unknown."""
    kind = tp.WhichOneof("value")
    if kind not in ("tensor_type", "sparse_tensor_type"):
        return None
    tt = getattr(tp, kind)
    dtype = onnx.helper.tensor_dtype_to_string(tt.elem_type).removeprefix("TensorProto.").lower() if tt.elem_type else "?"
    if not tt.HasField("shape"):
        return dtype, None  # type: ignore[return-value]
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dtype, dims


def type_string(tp: onnx.TypeProto) -> str:
    """A short readable type: ``float32[N,3,224,224]``, ``seq(float32[?])``, ``map(int64,float32)``."""
    kind = tp.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        dtype, dims = tensor_type_of(tp)  # type: ignore[misc]
        shape = "[?]" if dims is None else "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"
        return ("sparse " if kind == "sparse_tensor_type" else "") + dtype + shape
    if kind == "sequence_type":
        return f"seq({type_string(tp.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({type_string(tp.optional_type.elem_type)})"
    if kind == "map_type":
        key = onnx.helper.tensor_dtype_to_string(tp.map_type.key_type).removeprefix("TensorProto.").lower()
        return f"map({key},{type_string(tp.map_type.value_type)})"
    return "?"


def infer(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Run ONNX shape inference (with data propagation); returns (model, error message or None)."""
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True), None
    except Exception as e:  # inference is best effort: report, never fail the tool over it
        return proto, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def graph_value_types(graph: onnx.GraphProto) -> dict[str, onnx.TypeProto]:
    """Every value of ``graph`` whose type is known: inputs, outputs, value_info, initializers."""
    types: dict[str, onnx.TypeProto] = {}
    for init in graph.initializer:
        types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
    for v in (*graph.input, *graph.value_info, *graph.output):
        if v.type.WhichOneof("value"):
            types[v.name] = v.type
    for node in graph.node:  # Constant outputs: shape inference may leave them out of value_info
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output and node.output[0] not in types:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    types[node.output[0]] = onnx.helper.make_tensor_type_proto(attr.t.data_type, list(attr.t.dims))
    return types


def iter_graphs(graph: onnx.GraphProto, path: str = "main") -> Iterator[tuple[str, onnx.GraphProto]]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first, with a readable path."""
    yield path, graph
    for i, node in enumerate(graph.node):
        for attr in node.attribute:
            label = node.name or f"{node.op_type}_{i}"
            if attr.HasField("g"):
                yield from iter_graphs(attr.g, f"{path}/{label}.{attr.name}")
            for j, g in enumerate(attr.graphs):
                yield from iter_graphs(g, f"{path}/{label}.{attr.name}[{j}]")


def opset_map(proto: onnx.ModelProto) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in proto.opset_import}


# -- parameters ---------------------------------------------------------------------------------

_BITS = {
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.FLOAT4E2M1: 4,
}
for _name in ("INT2", "UINT2"):
    if hasattr(onnx.TensorProto, _name):
        _BITS[getattr(onnx.TensorProto, _name)] = 2


def _dtype_name(elem_type: int) -> str:
    return onnx.helper.tensor_dtype_to_string(elem_type).removeprefix("TensorProto.").lower()


def _tensor_nbytes(t: onnx.TensorProto) -> int:
    count = math.prod(t.dims)
    if t.data_type == onnx.TensorProto.STRING:
        return sum(len(s) for s in t.string_data)
    bits = _BITS.get(t.data_type)
    if bits is not None:
        return (count * bits + 7) // 8
    return count * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The value of a Constant node as a TensorProto (value_float(s)/value_int(s) included)."""
    for attr in node.attribute:
        if attr.name == "value" and attr.HasField("t"):
            return attr.t
        if attr.name == "sparse_value":
            return attr.sparse_tensor.values
        if attr.name == "value_float":
            return onnx.helper.make_tensor("", onnx.TensorProto.FLOAT, [], [attr.f])
        if attr.name == "value_floats":
            return onnx.helper.make_tensor("", onnx.TensorProto.FLOAT, [len(attr.floats)], list(attr.floats))
        if attr.name == "value_int":
            return onnx.helper.make_tensor("", onnx.TensorProto.INT64, [], [attr.i])
        if attr.name == "value_ints":
            return onnx.helper.make_tensor("", onnx.TensorProto.INT64, [len(attr.ints)], list(attr.ints))
        if attr.name == "value_string":
            return onnx.helper.make_tensor("", onnx.TensorProto.STRING, [], [attr.s])
        if attr.name == "value_strings":
            return onnx.helper.make_tensor("", onnx.TensorProto.STRING, [len(attr.strings)], list(attr.strings))
    return None


def count_parameters(proto: onnx.ModelProto) -> dict[str, Any]:
    """Elements and bytes of initializers and Constant-node values, by dtype, over all graphs."""
    by_dtype: dict[str, dict[str, int]] = {}

    def add(t: onnx.TensorProto) -> None:
        entry = by_dtype.setdefault(_dtype_name(t.data_type), {"count": 0, "bytes": 0, "tensors": 0})
        entry["count"] += math.prod(t.dims)
        entry["bytes"] += _tensor_nbytes(t)
        entry["tensors"] += 1

    for _, graph in iter_graphs(proto.graph):
        for init in graph.initializer:
            add(init)
        for sparse in graph.sparse_initializer:
            add(sparse.values)
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                t = _constant_tensor(node)
                if t is not None:
                    add(t)
    return {
        "total_count": sum(e["count"] for e in by_dtype.values()),
        "total_bytes": sum(e["bytes"] for e in by_dtype.values()),
        "by_dtype": dict(sorted(by_dtype.items(), key=lambda kv: -kv[1]["bytes"])),
    }


# -- FLOPs ------------------------------------------------------------------------------------------

# One FLOP per output element.
ELEMENTWISE = frozenset(
    """Abs Acos Acosh Add And Asin Asinh Atan Atanh BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Ceil
    Celu Clip Cos Cosh Div Elu Equal Erf Exp Floor Gelu Greater GreaterOrEqual HardSigmoid HardSwish Hardmax
    IsInf IsNaN LeakyRelu Less LessOrEqual Log Max Mean Min Mish Mod Mul Neg Not Or PRelu Pow Reciprocal Relu
    Round Selu Shrink Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Sub Sum Tan Tanh ThresholdedRelu Where Xor
    Softmax LogSoftmax BatchNormalization InstanceNormalization LayerNormalization GroupNormalization
    RMSNormalization SimplifiedLayerNormalization SkipLayerNormalization SkipSimplifiedLayerNormalization
    QuickGelu FastGelu BiasGelu BiasAdd Dropout LpNormalization MeanVarianceNormalization
    DequantizeLinear QuantizeLinear Cast CastLike""".split()
)
MATMUL_OPS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "MatMulNBits"})
POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"})
REDUCE_OPS = frozenset(
    """ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
    ReduceSumSquare GlobalAveragePool GlobalMaxPool GlobalLpPool ArgMax ArgMin""".split()
)
ATTENTION_OPS = frozenset({"Attention", "MultiHeadAttention", "GroupQueryAttention"})


class _Unknown(Exception):
    """A shape the estimate needs is not known."""


def _static(shape: list[int | str | None] | None) -> list[int]:
    if shape is None or any(not isinstance(d, int) for d in shape):
        raise _Unknown
    return shape  # type: ignore[return-value]


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def node_flops(node: onnx.NodeProto, shape_of: Any) -> int | None:
    """Estimated FLOPs of one node (2 per multiply-add), 0 for data movement, None when shapes are unknown.

    ``shape_of(name)`` returns the dims of a value (ints, symbolic names or None) or None.
    """
    op = node.op_type

    def shp(name: str) -> list[int]:
        return _static(shape_of(name) if name else None)

    def out(i: int = 0) -> list[int]:
        return shp(node.output[i])

    try:
        if op in ("Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv"):
            w_index = 3 if op == "QLinearConv" else 1
            w = shp(node.input[w_index])
            y = out()
            flops = 2 * math.prod(y) * math.prod(w[1:])
            if op == "Conv" and len(node.input) > 2 and node.input[2]:
                flops += math.prod(y)
            return flops
        if op == "ConvTranspose":
            x, w = shp(node.input[0]), shp(node.input[1])
            return 2 * math.prod(x) * math.prod(w[1:])
        if op in MATMUL_OPS:
            y = out()
            if op == "MatMulNBits":
                k = int(_attr(node, "K"))
            else:
                a = shp(node.input[0])
                k = a[-1]
            return 2 * math.prod(y) * k
        if op == "Gemm":
            a = shp(node.input[0])
            y = out()
            k = a[0] if _attr(node, "transA", 0) else a[-1]
            extra = math.prod(y) if len(node.input) > 2 and node.input[2] else 0
            return 2 * math.prod(y) * k + extra
        if op in ATTENTION_OPS:
            return _attention_flops(node, shp)
        if op in POOL_OPS:
            kernel = _attr(node, "kernel_shape") or []
            return math.prod(out()) * math.prod(kernel)
        if op in REDUCE_OPS:
            return math.prod(shp(node.input[0]))
        if op in ("LSTM", "GRU", "RNN"):
            x, w, r = shp(node.input[0]), shp(node.input[1]), shp(node.input[2])
            seq, batch = (x[1], x[0]) if _attr(node, "layout", 0) else (x[0], x[1])
            # input and recurrent projections for every step and direction
            return 2 * seq * batch * w[0] * w[1] * (w[2] + r[2])
        if op in ELEMENTWISE:
            return math.prod(out())
        return 0
    except (_Unknown, IndexError, TypeError, ValueError):
        return None


def _attention_flops(node: onnx.NodeProto, shp: Any) -> int:
    """Scores (Q·Kᵀ) and weighted values (P·V), plus the input projection for com.microsoft Attention."""
    if node.op_type == "Attention" and node.domain == "com.microsoft":
        x, w = shp(node.input[0]), shp(node.input[1])  # (B, S, D_in), (D_in, 3*D)
        batch, seq = x[0], x[1]
        hidden = w[1] // 3
        past = 0
        if len(node.input) > 4 and node.input[4]:
            past = shp(node.input[4])[3]
        return 2 * batch * seq * x[2] * w[1] + 4 * batch * seq * (seq + past) * hidden
    q, k = shp(node.input[0]), shp(node.input[1])
    if node.op_type == "Attention":  # ai.onnx Attention-23: 3-D (B, S, H*D) or 4-D (B, H, S, D)
        y = shp(node.output[0])
        if len(q) == 4:
            batch, q_seq, q_width = q[0], q[2], q[1] * q[3]
            kv_seq = k[2]
            v_width = y[1] * y[3]
        else:
            batch, q_seq, q_width = q[0], q[1], q[2]
            kv_seq = k[1]
            v_width = y[2]
        if len(node.input) > 4 and node.input[4]:
            kv_seq += shp(node.input[4])[2]
        return 2 * batch * q_seq * kv_seq * (q_width + v_width)
    # MultiHeadAttention / GroupQueryAttention (com.microsoft): query (B, S, D), key (B, L, D_kv)
    batch, q_seq, width = q[0], q[1], q[2]
    kv_seq = k[1] if len(k) == 3 else k[2]
    return 4 * batch * q_seq * kv_seq * width


# -- unsupported nodes ----------------------------------------------------------------------------


def kernel_support(proto: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Nodes that onnxrt runs through an ONNX function body, and nodes no provider can run.

    Mirrors the planner's choice (``GraphPlan._make_kernel``): a model-local function, then a registered
    kernel, then the op's schema function body; anything else fails at session creation.
    """
    import onnxrt.ops  # noqa: F401  (registers every kernel)
    from onnxrt.ops import registry

    opsets = opset_map(proto)
    local_functions = {(f.domain, f.name) for f in proto.functions}
    unsupported: list[dict[str, Any]] = []
    expanded: list[dict[str, Any]] = []
    for path, graph in iter_graphs(proto.graph):
        for node in graph.node:
            domain = "" if node.domain == "ai.onnx" else node.domain
            where = {"graph": path, "node": node.name, "op": f"{domain or 'ai.onnx'}:{node.op_type}"}
            if (node.domain, node.op_type) in local_functions:
                continue
            opset = opsets.get(domain)
            if opset is None:
                unsupported.append({**where, "reason": f"domain '{domain or 'ai.onnx'}' is not imported by the model"})
                continue
            if registry.lookup(domain, node.op_type, opset) is not None:
                continue
            try:
                schema = onnx.defs.get_schema(node.op_type, opset, domain)
            except Exception:
                schema = None
            if schema is not None and (schema.has_function or schema.has_context_dependent_function):
                expanded.append({**where, "opset": opset})
                continue
            reason = f"no kernel for opset {opset}" + ("" if schema is not None else " and no ONNX schema")
            unsupported.append({**where, "opset": opset, "reason": reason})
    return {"unsupported": unsupported, "function_expanded": expanded}


# -- the report ---------------------------------------------------------------------------------------


def _value_entries(values: Any, initializer_names: set[str]) -> list[dict[str, Any]]:
    entries = []
    for v in values:
        if v.name in initializer_names:
            continue
        tt = tensor_type_of(v.type)
        entry: dict[str, Any] = {"name": v.name, "type": type_string(v.type)}
        if tt is not None:
            entry["dtype"], entry["shape"] = tt
        entries.append(entry)
    return entries


def inspect_model(proto: onnx.ModelProto, dims: dict[str, int] | None = None) -> dict[str, Any]:
    """Every fact the ``inspect`` command reports, as a JSON-ready dict."""
    dims = dims or {}
    known_params = {
        d.dim_param
        for v in proto.graph.input
        if v.type.WhichOneof("value") == "tensor_type"
        for d in v.type.tensor_type.shape.dim
        if d.HasField("dim_param")
    }
    unknown_dim_names = sorted(set(dims) - known_params)
    fixed, inference_error = infer(with_dims(proto, dims))
    initializer_names = {i.name for i in proto.graph.initializer}

    histogram: collections.Counter[str] = collections.Counter()
    flops_by_op: dict[str, int] = collections.defaultdict(int)
    unknown_nodes: list[dict[str, str]] = []
    node_count = 0
    for path, graph in iter_graphs(fixed.graph):
        types = graph_value_types(graph)
        if path != "main":  # a body sees its enclosing graphs' values too
            for outer_path, outer in iter_graphs(fixed.graph):
                if path.startswith(outer_path) and outer_path != path:
                    for name, tp in graph_value_types(outer).items():
                        types.setdefault(name, tp)

        def shape_of(name: str, types: dict[str, onnx.TypeProto] = types) -> list[int | str | None] | None:
            tp = types.get(name)
            tt = tensor_type_of(tp) if tp is not None else None
            return tt[1] if tt else None

        for node in graph.node:
            node_count += 1
            key = f"{node.domain or 'ai.onnx'}:{node.op_type}"
            histogram[key] += 1
            flops = node_flops(node, shape_of)
            if flops is None:
                unknown_nodes.append({"graph": path, "node": node.name, "op": node.op_type})
            else:
                flops_by_op[key] += flops

    support = kernel_support(proto)
    return {
        "ir_version": int(proto.ir_version),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        "producer": {"name": proto.producer_name, "version": proto.producer_version},
        "domain": proto.domain,
        "model_version": int(proto.model_version),
        "doc_string": proto.doc_string,
        "graph_name": proto.graph.name,
        "metadata": {p.key: p.value for p in proto.metadata_props},
        "inputs": _value_entries(proto.graph.input, initializer_names),
        "overridable_initializers": [
            {"name": v.name, "type": type_string(v.type)} for v in proto.graph.input if v.name in initializer_names
        ],
        "outputs": _value_entries(fixed.graph.output, set()),
        "functions": [f"{f.domain}:{f.name}" for f in proto.functions],
        "node_count": node_count,
        "op_histogram": dict(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
        "parameters": count_parameters(proto),
        "dims": dims,
        "unknown_dim_names": unknown_dim_names,
        "shape_inference_error": inference_error,
        "flops": {
            "total": sum(flops_by_op.values()),
            "by_op": dict(sorted(((k, v) for k, v in flops_by_op.items() if v), key=lambda kv: -kv[1])),
            "nodes_with_unknown_shapes": unknown_nodes,
        },
        "unsupported_nodes": support["unsupported"],
        "function_expanded_nodes": support["function_expanded"],
    }


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (decimal prefixes)."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: int) -> str:
    for prefix, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {prefix}"
    return f"{n} B"


def format_report(facts: dict[str, Any], top: int = 0) -> str:
    lines: list[str] = []
    add = lines.append
    producer = " ".join(x for x in (facts["producer"]["name"], facts["producer"]["version"]) if x) or "(none)"
    add(f"IR version     {facts['ir_version']}")
    add("opsets         " + ", ".join(f"{d} {v}" for d, v in facts["opsets"].items()))
    add(f"producer       {producer}")
    if facts["graph_name"]:
        add(f"graph          {facts['graph_name']}")
    if facts["domain"] or facts["model_version"]:
        add(f"domain/version {facts['domain'] or '-'} / {facts['model_version']}")
    if facts["doc_string"]:
        add(f"doc            {facts['doc_string'].strip().splitlines()[0][:100]}")
    for key, value in facts["metadata"].items():
        add(f"metadata       {key} = {value[:100]}")
    if facts["functions"]:
        add("functions      " + ", ".join(facts["functions"]))
    add("")
    add("inputs")
    for v in facts["inputs"]:
        add(f"  {v['name']:<30} {v['type']}")
    if facts["overridable_initializers"]:
        add(f"  (+ {len(facts['overridable_initializers'])} initializers that a feed may override)")
    add("outputs")
    for v in facts["outputs"]:
        add(f"  {v['name']:<30} {v['type']}")
    add("")
    add(f"ops ({facts['node_count']} nodes, subgraphs included)")
    items = list(facts["op_histogram"].items())
    for key, count in items[: top or None]:
        add(f"  {key:<40} {count:>6}")
    if top and len(items) > top:
        add(f"  ... {len(items) - top} more op types")
    add("")
    params = facts["parameters"]
    add(f"parameters     {human(params['total_count'])} ({human_bytes(params['total_bytes'])})")
    for dtype, e in params["by_dtype"].items():
        add(f"  {dtype:<12} {e['count']:>14,} elements {human_bytes(e['bytes']):>12} in {e['tensors']} tensors")
    add("")
    flops = facts["flops"]
    dims = ", ".join(f"{k}={v}" for k, v in facts["dims"].items())
    add(f"FLOPs          {human(flops['total'])}" + (f" at {dims}" if dims else "") + "  (2 per multiply-add)")
    for key, value in list(flops["by_op"].items())[: top or None]:
        share = value / flops["total"] if flops["total"] else 0
        add(f"  {key:<40} {human(value):>12} {share:>7.1%}")
    unknown = flops["nodes_with_unknown_shapes"]
    if unknown:
        names = ", ".join(f"{u['node'] or '?'} ({u['op']})" for u in unknown[:8])
        add(f"  not counted: {len(unknown)} node(s) with unknown shapes: {names}" + (" ..." if len(unknown) > 8 else ""))
        add("  (fix symbolic dims with --dim NAME=VALUE)")
    if facts["unknown_dim_names"]:
        add(f"  note: --dim names not used by any input: {', '.join(facts['unknown_dim_names'])}")
    if facts["shape_inference_error"]:
        add(f"  note: shape inference failed: {facts['shape_inference_error']}")
    add("")
    expanded = facts["function_expanded_nodes"]
    if expanded:
        ops = sorted({e["op"] for e in expanded})
        add(f"run through their ONNX function body: {len(expanded)} node(s): {', '.join(ops)}")
    unsupported = facts["unsupported_nodes"]
    if unsupported:
        add(f"UNSUPPORTED: {len(unsupported)} node(s) that no provider can run:")
        for u in unsupported[:20]:
            add(f"  {u['graph']}: '{u['node']}' {u['op']}: {u['reason']}")
        if len(unsupported) > 20:
            add(f"  ... {len(unsupported) - 20} more")
    else:
        add("every node has a kernel (CPUExecutionProvider)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to an .onnx model")
    add_dim_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument("--top", type=int, default=0, metavar="K", help="show only the K most frequent/costly op types")


def main(args: argparse.Namespace) -> int:
    dims = parse_dims(args.dim)
    facts = inspect_model(read_model(args.model), dims)
    if args.json:
        json.dump(facts, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_report(facts, args.top))
    return 0
