"""Write a self-contained HTML viewer of a model's graph.

``onnxrt graph model.onnx -o graph.html`` lays the graph out top-down here in Python (longest-path
layers, sources pulled down next to their first consumer, barycentric ordering and placement) and
writes one HTML file with the layout, the node details and the viewer's script and style inline: it
opens from disk with no network. The page draws SVG, pans (drag) and zooms (wheel), finds nodes by name
or op, shows a clicked node's attributes and its inputs'/outputs' types from shape inference, and
opens If/Loop/Scan bodies (with a breadcrumb back).
"""

from __future__ import annotations

import argparse
import html
import json
import os
from importlib import resources
from typing import Any

import numpy as np
import onnx

from onnxrt.tools.inspect import (
    add_dim_argument,
    graph_value_types,
    infer,
    parse_dims,
    read_model,
    type_string,
    with_dims,
)

NODE_HEIGHT = 36
LAYER_GAP = 34  # vertical space between layers, for the edges
NODE_GAP = 18  # horizontal space between neighbours in a layer
MAX_LABEL = 28  # characters of a node name drawn in its box (the panel shows all of it)


# -- attribute summaries ---------------------------------------------------------------------------


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tensor_summary(t: onnx.TensorProto) -> str:
    dtype = onnx.helper.tensor_dtype_to_string(t.data_type).removeprefix("TensorProto.").lower()
    head = f"tensor {dtype}[{','.join(map(str, t.dims))}]"
    if t.data_location == onnx.TensorProto.EXTERNAL or int(np.prod(t.dims)) > 16:
        return head
    try:
        values = onnx.numpy_helper.to_array(t).ravel().tolist()
    except Exception:
        return head
    return f"{head} {_short(str(values), 120)}"


def _attribute_summary(attr: onnx.AttributeProto, subgraph_ids: dict[int, str]) -> str:
    A = onnx.AttributeProto
    if attr.ref_attr_name:
        return f"@{attr.ref_attr_name}"
    if attr.type == A.GRAPH:
        return f"graph '{attr.g.name}' ({len(attr.g.node)} nodes)"
    if attr.type == A.GRAPHS:
        return f"{len(attr.graphs)} graphs"
    if attr.type == A.TENSOR:
        return _tensor_summary(attr.t)
    if attr.type == A.TENSORS:
        return "[" + ", ".join(_tensor_summary(t) for t in attr.tensors[:8]) + ("…]" if len(attr.tensors) > 8 else "]")
    if attr.type == A.SPARSE_TENSOR:
        return "sparse " + _tensor_summary(attr.sparse_tensor.values)
    if attr.type == A.TYPE_PROTO:
        return type_string(attr.tp)
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif isinstance(value, list):
        value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        if len(value) > 64:
            return _short(str(value[:64])[:-1] + f", … ({len(value)} items)]")
    return _short(str(value))


# -- layout ----------------------------------------------------------------------------------------------


def _text_width(op: str, label: str) -> float:
    # Measured roughly for the page's fonts: 12px bold for the op, 10px for the name.
    return max(7.4 * len(op), 6.0 * len(label), 40) + 20


def layout(widths: list[float], edges: list[tuple[int, int]]) -> tuple[list[float], list[float]]:
    """Top-down coordinates (centre x, top y) for nodes of the given widths joined by ``edges``.

    Layers are longest paths from the sources; a source (an input, a Constant) is then moved down to the
    layer just above its nearest consumer so that constants do not crowd the top row. Within layers,
    nodes are ordered by the barycentre of their neighbours (sweeps down and up), then placed at the
    mean x of their neighbours with overlaps pushed apart.
    """
    n = len(widths)
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        if a != b:
            preds[b].append(a)
            succs[a].append(b)

    # Kahn order; nodes left on a cycle (invalid models) are appended so that everything is drawn.
    indegree = [len(p) for p in preds]
    order = [i for i in range(n) if indegree[i] == 0]
    head = 0
    while head < len(order):
        for s in succs[order[head]]:
            indegree[s] -= 1
            if indegree[s] == 0:
                order.append(s)
        head += 1
    seen = set(order)
    order += [i for i in range(n) if i not in seen]
    rank = {node: i for i, node in enumerate(order)}

    layer = [0] * n
    for node in order:
        for p in preds[node]:
            if rank[p] < rank[node]:
                layer[node] = max(layer[node], layer[p] + 1)
    for node in reversed(order):
        if not preds[node] and succs[node]:
            layer[node] = max(0, min(layer[s] for s in succs[node]) - 1)

    depth = max(layer, default=-1) + 1
    layers: list[list[int]] = [[] for _ in range(depth)]
    for node in order:
        layers[layer[node]].append(node)

    position = [0.0] * n
    for nodes in layers:
        for i, node in enumerate(nodes):
            position[node] = float(i)

    def reorder(nodes: list[int], neighbours: list[list[int]]) -> None:
        def key(node: int) -> float:
            near = neighbours[node]
            return sum(position[m] for m in near) / len(near) if near else position[node]

        nodes.sort(key=key)
        for i, node in enumerate(nodes):
            position[node] = float(i)

    for _ in range(3):
        for nodes in layers[1:]:
            reorder(nodes, preds)
        for nodes in reversed(layers[:-1]):
            reorder(nodes, succs)

    # x: start packed around 0, then pull each node towards its neighbours' mean x.
    x = [0.0] * n
    for nodes in layers:
        total = sum(widths[m] for m in nodes) + NODE_GAP * max(len(nodes) - 1, 0)
        cursor = -total / 2
        for node in nodes:
            x[node] = cursor + widths[node] / 2
            cursor += widths[node] + NODE_GAP

    # Sources (inputs, constants) follow their consumer; they must not pull the consumer sideways,
    # or a chain with a weight on one side drifts a little further at every layer.
    steering_preds = [[p for p in ps if preds[p]] or ps for ps in preds]

    def place(nodes: list[int], neighbours: list[list[int]]) -> None:
        if not nodes:
            return
        desired = [
            sum(x[m] for m in neighbours[node]) / len(neighbours[node]) if neighbours[node] else x[node]
            for node in nodes
        ]
        placed: list[float] = []
        for i, node in enumerate(nodes):
            want = desired[i]
            if i:
                prev = nodes[i - 1]
                want = max(want, placed[-1] + widths[prev] / 2 + NODE_GAP + widths[node] / 2)
            placed.append(want)
        # Pushing only ever moves right: shift the row back so that, on average, its nodes sit where
        # they want to be. Only nodes fed by other nodes count when there are any: sources beside them
        # must not move the chain off its line.
        steered = [i for i, node in enumerate(nodes) if preds[node]] or range(len(nodes))
        shift = sum(placed[i] - desired[i] for i in steered) / len(steered)
        for node, p in zip(nodes, placed):
            x[node] = p - shift

    for _ in range(4):
        for nodes in layers[1:]:
            place(nodes, steering_preds)
        for nodes in reversed(layers[:-1]):
            place(nodes, succs)
    for nodes in layers[1:]:
        place(nodes, steering_preds)

    y = [layer[node] * (NODE_HEIGHT + LAYER_GAP) for node in range(n)]
    return x, y


# -- graph description for the page -------------------------------------------------------------------


def _outer_names(graph: onnx.GraphProto) -> list[str]:
    """Values a (sub)graph reads without defining them: its captures from enclosing scopes."""
    defined = {v.name for v in graph.input} | {i.name for i in graph.initializer}
    defined |= {s.values.name for s in graph.sparse_initializer}
    read: list[str] = []
    for node in graph.node:
        names = list(node.input)
        for attr in node.attribute:
            for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                names += _outer_names(g)
        read += [n for n in names if n and n not in defined]
        defined.update(node.output)
    read += [v.name for v in graph.output if v.name not in defined]
    return list(dict.fromkeys(n for n in read if n not in defined))


class _Builder:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graphs: list[dict[str, Any]] = []

    def add_graph(self, graph: onnx.GraphProto, title: str, outer_types: dict[str, onnx.TypeProto], parent: str | None) -> str:
        graph_id = f"g{len(self.graphs)}"
        entry: dict[str, Any] = {"id": graph_id, "title": title, "parent": parent}
        self.graphs.append(entry)

        types = dict(outer_types)
        types.update(graph_value_types(graph))
        initializers = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}

        nodes: list[dict[str, Any]] = []
        producer: dict[str, int] = {}

        def new_node(**fields: Any) -> int:
            nodes.append(fields)
            return len(nodes) - 1

        for v in graph.input:
            if v.name not in initializers:
                producer[v.name] = new_node(kind="input", op="Input", name=v.name, inputs=[], outputs=[v.name], attrs=[])
        for i, node in enumerate(graph.node):
            attrs = []
            subgraphs = []
            for attr in node.attribute:
                graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
                for j, g in enumerate(graphs):
                    label = f"{node.name or node.op_type}.{attr.name}" + (f"[{j}]" if len(graphs) > 1 else "")
                    subgraphs.append({"attr": label, "graph": None, "proto": g, "label": label})
                attrs.append([attr.name, _attribute_summary(attr, {})])
            index = new_node(
                kind="node",
                op=node.op_type,
                domain=node.domain,
                name=node.name,
                inputs=list(node.input),
                outputs=list(node.output),
                attrs=attrs,
                subgraphs=subgraphs,
            )
            for out in node.output:
                if out:
                    producer[out] = index
        edges: list[tuple[int, int, str]] = []
        outer_nodes: dict[str, int] = {}
        for index, node in enumerate(list(nodes)):
            if node["kind"] != "node":
                continue
            implicit = [n for sub in node["subgraphs"] for n in _outer_names(sub["proto"]) if n not in node["inputs"]]
            node["implicit_inputs"] = list(dict.fromkeys(implicit))
            for name in (*node["inputs"], *node["implicit_inputs"]):
                if not name or name in initializers:
                    continue
                source = producer.get(name)
                if source is None:  # read from an enclosing graph
                    source = outer_nodes.get(name)
                    if source is None:
                        source = outer_nodes[name] = new_node(
                            kind="outer", op="Outer", name=name, inputs=[], outputs=[name], attrs=[]
                        )
                edges.append((source, index, name))
        for v in graph.output:
            out_index = new_node(kind="output", op="Output", name=v.name, inputs=[v.name], outputs=[], attrs=[])
            source = producer.get(v.name)
            if source is not None:
                edges.append((source, out_index, v.name))

        widths = [_text_width(nd["op"], nd["name"][:MAX_LABEL]) for nd in nodes]
        xs, ys = layout(widths, [(a, b) for a, b, _ in edges])
        for nd, w, x, y in zip(nodes, widths, xs, ys):
            nd.update(x=round(x, 1), y=round(y, 1), w=round(w, 1))

        # subgraphs after this graph's own entry so ids stay in breadth order of discovery
        for nd in nodes:
            for sub in nd.get("subgraphs", ()):
                proto = sub.pop("proto")
                sub["graph"] = self.add_graph(proto, sub.pop("label"), types, graph_id)

        value_names = {n for nd in nodes for n in (*nd["inputs"], *nd["outputs"], *nd.get("implicit_inputs", ())) if n}
        entry["nodes"] = nodes
        entry["edges"] = [[a, b, name] for a, b, name in edges]
        entry["types"] = {name: type_string(types[name]) for name in sorted(value_names) if name in types}
        entry["initializers"] = sorted(n for n in initializers if n in value_names)
        return graph_id


def describe(model: onnx.ModelProto, dims: dict[str, int] | None = None) -> dict[str, Any]:
    """The JSON-ready description the page draws: graphs (main first) with laid-out nodes and edges."""
    inferred, error = infer(with_dims(model, dims or {}))
    builder = _Builder(inferred)
    builder.add_graph(inferred.graph, inferred.graph.name or "main graph", {}, None)
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x)
    return {
        "model": {
            "ir_version": int(model.ir_version),
            "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
            "producer": producer,
            "shape_inference_error": error,
        },
        "graphs": builder.graphs,
    }


def _asset(name: str) -> str:
    return resources.files("onnxrt.tools").joinpath(name).read_text(encoding="utf-8")


def render_html(description: dict[str, Any], title: str) -> str:
    """One HTML page with the description, script and style inline."""
    # "</" inside a <script> would end it early: escape the slash in the embedded JSON.
    data = json.dumps(description, separators=(",", ":")).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)} — onnxrt graph</title>\n"
        f"<style>\n{_asset('graph_viewer.css')}\n</style></head>\n<body>\n"
        "<header><span id=\"crumbs\"></span>"
        "<input id=\"search\" type=\"search\" placeholder=\"find node by name or op (Enter: next)\" autocomplete=\"off\">"
        "<span id=\"matches\"></span><button id=\"fit\" title=\"fit the graph to the window\">fit</button></header>\n"
        "<main><svg id=\"canvas\" xmlns=\"http://www.w3.org/2000/svg\"><defs><marker id=\"arrow\" viewBox=\"0 0 8 8\" "
        "refX=\"8\" refY=\"4\" markerWidth=\"8\" markerHeight=\"8\" markerUnits=\"userSpaceOnUse\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\"/>"
        "</marker></defs><g id=\"viewport\"></g></svg>\n"
        "<aside id=\"panel\"><p class=\"hint\">Click a node to see its details. Drag to pan, wheel to zoom.</p></aside>"
        "</main>\n"
        f"<script id=\"graph-data\" type=\"application/json\">{data}</script>\n"
        f"<script>\n{_asset('graph_viewer.js')}\n</script>\n</body></html>\n"
    )


def write_graph_html(model_path: str, output: str, dims: dict[str, int] | None = None) -> dict[str, Any]:
    """Write the viewer for ``model_path`` to ``output``; returns the description drawn."""
    description = describe(read_model(model_path), dims)
    page = render_html(description, os.path.basename(model_path))
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)
    return description


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to an .onnx model")
    parser.add_argument("-o", "--output", help="HTML file to write (default: MODEL with .html)")
    add_dim_argument(parser)


def main(args: argparse.Namespace) -> int:
    output = args.output or os.path.splitext(args.model)[0] + ".html"
    description = write_graph_html(args.model, output, parse_dims(args.dim))
    nodes = sum(1 for g in description["graphs"] for n in g["nodes"] if n["kind"] == "node")
    extra = len(description["graphs"]) - 1
    print(f"wrote {output}: {nodes} nodes" + (f" in {extra + 1} graphs" if extra else ""))
    return 0
