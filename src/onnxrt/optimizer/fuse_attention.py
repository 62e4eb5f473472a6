"""Attention fusion (EXTENDED): the scaled-dot-product attention core -> com.microsoft MultiHeadAttention.

Matched from each Softmax over the last axis, as torch's exporter writes it::

    q4 = Transpose(0,2,1,3)(Reshape(q3, [B, S, N|-1, H]))        [* cq]
    k4 = Transpose(0,2,3,1)(Reshape(k3, [B, T|-1, N|-1, H]))     [* ck]   (or Transpose(0,1,3,2) of the
                                                                           (0,2,1,3) head split)
    v4 = Transpose(0,2,1,3)(Reshape(v3, [B, T|-1, N|-1, H]))
    scores = MatMul(q4, k4) [* c | / d] [+ mask]
    p = Softmax(scores, axis=-1) [-> Where(IsNaN(p), 0, p)]
    out = Reshape(Transpose(0,2,1,3)(MatMul(p, v4)), [B, S, N*H | -1])

becomes ``MultiHeadAttention(q3, k3, v3, attention_bias=mask)`` with ``num_heads`` N and ``scale``
cq * ck * c (or / d). The reshape shapes may be constants or Shape/Gather/Unsqueeze/Concat chains; their
batch and sequence entries must read dims 0 and 1 of q3/k3 (or of a value those are projected from), the
head entries must be constants, and N comes from them or from the projection's width. The mask goes in
as attention_bias, expanded to (1, 1, S, T) at least so that its shape is one MultiHeadAttention takes.
Anything else leaves the graph alone.

The IsNaN guard only changes rows whose keys are all -inf; MultiHeadAttention's kernels give zeros
there too (onnxrt's does; onnxruntime's masks never produce such rows in the exported models).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir

_PASS_THROUGH = ("Add", "Mul", "Div", "Sub", "LayerNormalization", "Relu", "Gelu", "Cast")


def fuse_attention(model: ir.Model) -> int:
    graph = model.graph
    if _ir.opset(model) < 13:
        return 0
    fused = 0
    for node in _ir.live_nodes(graph):
        if _ir.is_op(node, "Softmax"):
            fused += _fuse_one(model, node)
    return fused


# -- small matchers ------------------------------------------------------------------------------


def _prod(node: ir.Node | None, op: str) -> ir.Node | None:
    return node if node is not None and _ir.is_op(node, op) and node.graph is not None else None


def _producer(value: ir.Value | None, op: str) -> ir.Node | None:
    if value is None:
        return None
    return _prod(value.producer(), op)


def _perm(node: ir.Node | None) -> tuple[int, ...] | None:
    if node is None or not _ir.is_op(node, "Transpose"):
        return None
    p = _ir.attr(node, "perm")
    return None if p is None else tuple(int(x) for x in p)


def _scaled(value: ir.Value) -> tuple[ir.Value, float] | None:
    """``Mul(x, c)`` / ``Mul(c, x)`` with a scalar constant c -> (x, c); else (value, 1)."""
    mul = _producer(value, "Mul")
    if mul is not None:
        for i in (0, 1):
            c = _ir.scalar(mul.inputs[1 - i])
            if c is not None and _ir.const_array(mul.inputs[i]) is None:
                if not _one_reader(mul.outputs[0]):
                    return None
                return mul.inputs[i], c
    return value, 1.0


def _dim_ref(value: ir.Value | None) -> tuple[ir.Value, int] | int | None:
    """A 1-element shape entry: a constant int, or (tensor, axis) for ``Unsqueeze(Gather(Shape(t), axis))``
    or ``Shape(t, start=axis, end=axis+1)``."""
    if value is None:
        return None
    c = _ir.const_array(value)
    if c is not None:
        return int(c.reshape(-1)[0]) if c.size == 1 and c.dtype.kind in "iu" else None
    node = value.producer()
    if node is None:
        return None
    if _ir.is_op(node, "Unsqueeze"):
        gather = _producer(node.inputs[0], "Gather")
        if gather is None or int(_ir.attr(gather, "axis", 0)) != 0:
            return None
        idx = _ir.const_array(gather.inputs[1])
        shape = _producer(gather.inputs[0], "Shape")
        if idx is None or idx.size != 1 or shape is None or _ir.attr(shape, "start") or _ir.attr(shape, "end") is not None:
            return None
        axis = int(idx.reshape(-1)[0])
        return (shape.inputs[0], axis) if axis >= 0 else None
    if _ir.is_op(node, "Shape"):
        start, end = _ir.attr(node, "start", 0), _ir.attr(node, "end")
        if start is not None and start >= 0 and end == start + 1:
            return node.inputs[0], int(start)
    return None


def _shape_entries(value: ir.Value | None) -> list | None:
    """A reshape target as a list of entries (ints or (tensor, axis)); None when unreadable."""
    c = _ir.const_array(value)
    if c is not None:
        return [int(x) for x in c.reshape(-1)] if c.dtype.kind in "iu" else None
    concat = _producer(value, "Concat")
    if concat is None:
        return None
    entries: list = []
    for part in concat.inputs:
        pc = _ir.const_array(part)
        if pc is not None:
            if pc.dtype.kind not in "iu":
                return None
            entries.extend(int(x) for x in pc.reshape(-1))
            continue
        ref = _dim_ref(part)
        if ref is None:
            return None
        entries.append(ref)
    return entries


def _origins(value: ir.Value) -> list[ir.Value]:
    """``value`` and the values it is computed from row by row (same leading dims): through bias/scale
    elementwise ops with constants, MatMul/Gemm-free projections (x @ W with a 2-D W) and Split on the
    last axis. Shape entries reading dims 0/1 of any of these read dims 0/1 of ``value``."""
    out = [value]
    for _ in range(8):
        node = value.producer()
        if node is None or node.graph is None:
            break
        if _ir.is_op(node, "MatMul") and _ir.rank(node.inputs[1]) == 2 and _ir.const_array(node.inputs[1]) is not None:
            value = node.inputs[0]
        elif node.op_type in _PASS_THROUGH and node.domain in ("", "ai.onnx") and len(node.inputs) >= 1:
            if node.op_type in ("Add", "Mul", "Div", "Sub"):
                c = [i for i in node.inputs if _ir.const_array(i) is not None]
                if len(c) != 1 or (_ir.rank(c[0]) or 0) > 1:
                    break
                value = next(i for i in node.inputs if _ir.const_array(i) is None)
            else:
                if node.op_type == "LayerNormalization" and int(_ir.attr(node, "axis", -1)) != -1:
                    break
                value = node.inputs[0]
        elif _ir.is_op(node, "Split") and int(_ir.attr(node, "axis", 0)) in (-1, 2):
            out.extend(o for o in node.outputs if o is not value)  # siblings share the leading dims
            value = node.inputs[0]
        else:
            break
        out.append(value)
    return out


def _width(value: ir.Value) -> int | None:
    """The last dimension of a projection's output, read from its weights/split sizes."""
    for _ in range(6):
        shape = _ir.static_shape(value)
        if shape:
            return shape[-1]
        node = value.producer()
        if node is None:
            return None
        if _ir.is_op(node, "MatMul"):
            w = _ir.const_array(node.inputs[1])
            return int(w.shape[-1]) if w is not None and w.ndim == 2 else None
        if _ir.is_op(node, "Split") and int(_ir.attr(node, "axis", 0)) in (-1, 2):
            sizes = _ir.const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
            if sizes is None:
                sizes = _ir.attr(node, "split")
            if sizes is None:
                return None
            i = next(j for j, o in enumerate(node.outputs) if o is value)
            return int(np.asarray(sizes).reshape(-1)[i])
        if node.op_type in ("Add", "Mul", "Div", "Sub") and node.domain in ("", "ai.onnx"):
            c = [i for i in node.inputs if _ir.const_array(i) is not None]
            if len(c) == 1 and _ir.rank(c[0]) == 1 and _ir.const_array(c[0]).size > 1:
                return int(_ir.const_array(c[0]).size)
            value = next((i for i in node.inputs if _ir.const_array(i) is None), None)
            if value is None:
                return None
            continue
        return None
    return None


def _one_reader(value: ir.Value) -> bool:
    """One node reads ``value`` besides Shape nodes (which only feed reshape targets here)."""
    if value.is_graph_output():
        return False
    return len([u for u in value.uses() if not _ir.is_op(u.node, "Shape")]) == 1


def _is_dim(entry, origins: list[ir.Value], axis: int) -> bool:
    return isinstance(entry, tuple) and entry[1] == axis and any(entry[0] is o for o in origins)


def _head_split(value: ir.Value, k_layout: bool) -> tuple[ir.Value, list[ir.Node], int, int, list] | None:
    """``value`` = Transpose(Reshape(x3)) splitting heads; returns x3, nodes, N, H, shape entries."""
    t = _producer(value, "Transpose")
    nodes: list[ir.Node] = []
    if t is None:
        return None
    perm = _perm(t)
    if k_layout and perm == (0, 1, 3, 2):  # K^T written as a second transpose of the (0,2,1,3) split
        inner = _producer(t.inputs[0], "Transpose")
        if inner is None or _perm(inner) != (0, 2, 1, 3) or not _one_reader(t.inputs[0]):
            return None
        nodes.append(t)
        t = inner
    elif perm != ((0, 2, 3, 1) if k_layout else (0, 2, 1, 3)):
        return None
    nodes.append(t)
    reshape = _producer(t.inputs[0], "Reshape")
    if reshape is None or _ir.attr(reshape, "allowzero", 0) or not _one_reader(reshape.outputs[0]):
        return None
    nodes.append(reshape)
    x3 = reshape.inputs[0]
    entries = _shape_entries(reshape.inputs[1])
    if entries is None or len(entries) != 4 or not isinstance(entries[3], int) or entries[3] <= 0:
        return None
    if _ir.rank(x3) not in (None, 3):
        return None
    h = entries[3]
    origins = _origins(x3)
    if not (_is_dim(entries[0], origins, 0) or isinstance(entries[0], int) and entries[0] > 0):
        return None
    n = entries[2] if isinstance(entries[2], int) and entries[2] > 0 else None
    seq = entries[1]
    if _is_dim(seq, origins, 1):
        pass
    elif seq == -1 and n is not None:
        pass
    elif isinstance(seq, int) and seq > 0 and isinstance(entries[0], int):
        pass
    else:
        return None
    width = _width(x3)
    if n is None:
        if entries[2] != -1 or width is None or width % h:
            return None
        n = width // h
    elif seq == -1 and width is not None and width != n * h:
        return None
    elif seq == -1 and width is None:
        return None
    if isinstance(entries[0], int) and _ir.static_shape(x3) is None:
        return None  # constant batch: only when x3's shape confirms it
    if isinstance(entries[0], int) and _ir.static_shape(x3)[:2] != (entries[0], seq if seq != -1 else _ir.static_shape(x3)[1]):
        return None
    return x3, nodes, n, h, entries


def _fuse_one(model: ir.Model, softmax: ir.Node) -> int:
    graph = model.graph
    if int(_ir.attr(softmax, "axis", -1)) not in (-1, 3):
        return 0
    probs = softmax.outputs[0]
    nodes: list[ir.Node] = [softmax]
    # optional Where(IsNaN(p), 0, p) guard
    readers = _ir.consumers(probs)
    if probs.is_graph_output():
        return 0
    if len(readers) == 2 and {n.op_type for n in readers} == {"IsNaN", "Where"}:
        isnan = next(n for n in readers if n.op_type == "IsNaN")
        where = next(n for n in readers if n.op_type == "Where")
        if (where.inputs[0] is not isnan.outputs[0] or where.inputs[2] is not probs
                or _ir.scalar(where.inputs[1]) != 0.0 or _ir.single_consumer(isnan.outputs[0]) is not where):
            return 0
        nodes += [isnan, where]
        probs = where.outputs[0]
    pv = _ir.single_consumer(probs)
    if pv is None or not _ir.is_op(pv, "MatMul") or pv.inputs[0] is not probs:
        return 0
    nodes.append(pv)
    # scores
    scores = softmax.inputs[0]
    mask = None
    scale = 1.0
    add = _producer(scores, "Add")
    if add is not None:
        if _ir.single_consumer(scores) is not softmax:
            return 0
        mm = [i for i in add.inputs if _producer(i, "MatMul") is not None]
        if not mm:
            return 0
        scores_mm = mm[0]
        mask = add.inputs[1] if add.inputs[0] is scores_mm else add.inputs[0]
        if mask is scores_mm:
            return 0
        nodes.append(add)
        scores = scores_mm
    for op in ("Div", "Mul"):
        s_node = _producer(scores, op)
        if s_node is not None and _ir.single_consumer(scores) is not None:
            c = _ir.scalar(s_node.inputs[1])
            if c is None or c == 0 or _ir.const_array(s_node.inputs[0]) is not None:
                return 0
            scale *= (1.0 / c) if op == "Div" else c
            nodes.append(s_node)
            scores = s_node.inputs[0]
            break
    qk = _producer(scores, "MatMul")
    if qk is None or _ir.single_consumer(scores) is None:
        return 0
    nodes.append(qk)
    q_s = _scaled(qk.inputs[0])
    k_s = _scaled(qk.inputs[1])
    if q_s is None or k_s is None:
        return 0
    for side, (val, c) in ((qk.inputs[0], q_s), (qk.inputs[1], k_s)):
        if val is not side:
            nodes.append(side.producer())
        scale *= c
    q = _head_split(q_s[0], False)
    k = _head_split(k_s[0], True)
    v = _head_split(pv.inputs[1], False)
    if q is None or k is None or v is None:
        return 0
    q3, q_nodes, n, h, q_entries = q
    k3, k_nodes, nk, hk, _ = k
    v3, v_nodes, nv, hv, _ = v
    if n != nk or n != nv or h != hk:
        return 0
    if not all(_one_reader(x) for x in (q_s[0], k_s[0], pv.inputs[1])):
        return 0
    # merge: [no-op Reshape to (B, N, S, Hv)] -> Transpose(0,2,1,3) -> Reshape(B, S, N*Hv | -1); Shape
    # readers of the intermediate values may only feed those reshapes' shapes
    q4, v4 = q_nodes[0].outputs[0], v_nodes[0].outputs[0]
    q_origins = _origins(q3)
    dims = {"B": [(pv.outputs[0], 0), (q4, 0), (v4, 0)], "N": [(pv.outputs[0], 1), (q4, 1), (v4, 1)],
            "S": [(pv.outputs[0], 2), (q4, 2)], "H": [(pv.outputs[0], 3), (v4, 3)] + ([(q4, 3), (k_nodes[0].outputs[0], 2)] if h == hv else [])}

    def is_(entry, what: str, const: int | None = None) -> bool:
        if isinstance(entry, int):
            return const is not None and entry == const
        return any(entry[0] is t and entry[1] == ax for t, ax in dims[what])

    cur = pv.outputs[0]
    merge_nodes: list[ir.Node] = []

    def next_op(value: ir.Value) -> ir.Node | None:
        if value.is_graph_output():
            return None
        main = [n for n in _ir.consumers(value) if not _ir.is_op(n, "Shape")]
        return main[0] if len(main) == 1 and len(list(value.uses())) - len(
            [u for u in value.uses() if _ir.is_op(u.node, "Shape")]) == 1 else None

    nxt = next_op(cur)
    if nxt is not None and _ir.is_op(nxt, "Reshape") and nxt.inputs[0] is cur:
        e = _shape_entries(nxt.inputs[1])
        if (e is None or len(e) != 4 or _ir.attr(nxt, "allowzero", 0) or not is_(e[0], "B")
                or not (e[1] in (-1, n) or is_(e[1], "N")) or not is_(e[2], "S") or not is_(e[3], "H", hv)):
            return 0
        merge_nodes.append(nxt)
        cur = nxt.outputs[0]
        nxt = next_op(cur)
    if nxt is None or _perm(nxt) != (0, 2, 1, 3) or nxt.inputs[0] is not cur:
        return 0
    merge_nodes.append(nxt)
    dims["B"].append((nxt.outputs[0], 0))
    dims["S"].append((nxt.outputs[0], 1))
    cur = nxt.outputs[0]
    merge_r = next_op(cur)
    if merge_r is None or not _ir.is_op(merge_r, "Reshape") or merge_r.inputs[0] is not cur:
        return 0
    merge_nodes.append(merge_r)
    out_entries = _shape_entries(merge_r.inputs[1])
    if out_entries is None or len(out_entries) != 3 or _ir.attr(merge_r, "allowzero", 0):
        return 0
    b_ok = _is_dim(out_entries[0], q_origins, 0) or is_(out_entries[0], "B") or (
        isinstance(out_entries[0], int) and out_entries[0] == q_entries[0])
    s_ok = _is_dim(out_entries[1], q_origins, 1) or is_(out_entries[1], "S") or (
        isinstance(out_entries[1], int) and out_entries[1] == q_entries[1] and out_entries[1] > 0)
    if not (b_ok and s_ok and out_entries[2] in (-1, n * hv)):
        return 0
    # every Shape reader of the replaced values must feed only the merge reshapes' shapes: checked by
    # removal afterwards (a reader elsewhere keeps the old chain alive, which is still correct)
    if _ir.dtype_of(q3) not in (None, ir.DataType.FLOAT, ir.DataType.FLOAT16):
        return 0
    # attention_bias: broadcast the mask up to (1, 1, S, T) at least (MultiHeadAttention wants 4-D with
    # exact S and T; batch and heads may be 1)
    bias_in = None
    pre: list[ir.Node] = []
    anchor = merge_r
    if mask is not None:
        index1 = _ir.add_initializer(graph, np.array([1], dtype=np.int64), "attn_seq_axis")
        s_shape = _ir.new_node(graph, "", "Shape", [q3], name_hint="AttnQueryShape", before=anchor)
        t_shape = _ir.new_node(graph, "", "Shape", [k3], name_hint="AttnKeyShape", before=anchor)
        s_dim = _ir.new_node(graph, "", "Gather", [s_shape.outputs[0], index1], {"axis": 0}, before=anchor)
        t_dim = _ir.new_node(graph, "", "Gather", [t_shape.outputs[0], index1], {"axis": 0}, before=anchor)
        ones = _ir.add_initializer(graph, np.ones(2, dtype=np.int64), "attn_bias_lead")
        target = _ir.new_node(graph, "", "Concat", [ones, s_dim.outputs[0], t_dim.outputs[0]], {"axis": 0},
                              name_hint="AttnBiasShape", before=anchor)
        expand = _ir.new_node(graph, "", "Expand", [mask, target.outputs[0]], name_hint="AttnBias", before=anchor)
        pre = [s_shape, t_shape, s_dim, t_dim, target, expand]
        bias_in = expand.outputs[0]
    _ir.ensure_domain(model, _ir.MS_DOMAIN)
    mha = _ir.new_node(graph, _ir.MS_DOMAIN, "MultiHeadAttention",
                       [q3, k3, v3, None, None, bias_in], {"num_heads": int(n), "scale": float(scale)},
                       name_hint="MultiHeadAttention", before=anchor)
    _ir.copy_type(merge_r.outputs[0], mha.outputs[0])
    if not _ir.replace_value(graph, merge_r.outputs[0], mha.outputs[0]):
        graph.remove(mha, safe=True)
        _ir.remove_unused_nodes(graph, pre)
        return 0
    _ir.remove_unused_nodes(graph, [*reversed(merge_nodes), *nodes, *q_nodes, *k_nodes, *v_nodes])
    return 1
