"""Normalization fusions (EXTENDED).

* LayerNorm written out: ``d = x - ReduceMean(x)``; ``d / Sqrt(ReduceMean(d^2) + eps)``, then optionally
  ``* gamma`` and ``+ beta`` -> ai.onnx ``LayerNormalization`` (opset 17+, reduced axes trailing).
* RMSNorm written out: ``x / Sqrt(ReduceMean(x^2) + eps)`` (optionally ``* gamma``) -> ai.onnx
  ``RMSNormalization`` (opset 23+). Older opsets keep the pattern: onnxruntime's SimplifiedLayerNormalization
  lives in the ai.onnx domain, which onnx.checker rejects, so a saved model would not check.
* ``Add(a, b) -> LayerNormalization`` over the last axis, a and b of one static 2-D/3-D shape, 1-D gamma
  (and beta) -> com.microsoft ``SkipLayerNormalization``; the sum stays available as its 4th output
  when something else reads it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir


def fuse_layer_norm(model: ir.Model) -> int:
    graph = model.graph
    version = _ir.opset(model)
    if version < 17:
        return 0
    fused = 0
    for node in _ir.live_nodes(graph):
        if not _ir.is_op(node, "ReduceMean"):
            continue
        fused += _fuse_ln(model, node) or (_fuse_rms(model, node) if version >= 23 else 0)
    return fused


def _reduce_axes(node: ir.Node, model: ir.Model) -> list[int] | None:
    if _ir.attr(node, "keepdims", 1) != 1:
        return None
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = _ir.const_array(node.inputs[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = _ir.attr(node, "axes")
    return None if axes is None else [int(a) for a in axes]


def _trailing_axis(axes: list[int], r: int | None) -> int | None:
    """The first axis when ``axes`` are exactly the last len(axes) dims of a rank-r tensor."""
    if r is None or not axes:
        return None
    norm = sorted(a + r if a < 0 else a for a in axes)
    if norm != list(range(r - len(norm), r)):
        return None
    return norm[0]


def _negative_trailing_rank(axes: list[int]) -> int | None:
    """A stand-in rank for axes given from the end (-k..-1) of a value of unknown rank: the axes
    then stand for the same trailing dims at any rank, so ``len(axes)`` serves."""
    return len(axes) if all(a < 0 for a in axes) else None


def _square_of(value: ir.Value, base: ir.Value) -> ir.Node | None:
    p = value.producer()
    if p is None:
        return None
    if _ir.is_op(p, "Pow") and p.inputs[0] is base and _ir.float_close(_ir.scalar(p.inputs[1]), 2.0, 1e-6):
        return p
    if _ir.is_op(p, "Mul") and p.inputs[0] is base and p.inputs[1] is base:
        return p
    return None


def _norm_tail(var_mean: ir.Node, d: ir.Value) -> tuple[list[ir.Node], float, ir.Node] | None:
    """From ReduceMean(d^2): ``+ eps -> Sqrt -> Div(d, .)``; returns nodes, eps, the Div."""
    add = _ir.single_consumer(var_mean.outputs[0])
    if add is None or not _ir.is_op(add, "Add"):
        return None
    other = add.inputs[1] if add.inputs[0] is var_mean.outputs[0] else add.inputs[0]
    eps = _ir.scalar(other)
    if eps is None:
        return None
    sqrt = _ir.single_consumer(add.outputs[0])
    if sqrt is None or not _ir.is_op(sqrt, "Sqrt"):
        return None
    div = _ir.single_consumer(sqrt.outputs[0])
    if div is None or not _ir.is_op(div, "Div") or div.inputs[0] is not d or div.inputs[1] is not sqrt.outputs[0]:
        return None
    return [add, sqrt, div], eps, div


def _affine(value: ir.Value, normalized: tuple[int, ...] | None,
            n_axes: int) -> tuple[list[ir.Node], np.ndarray | None, np.ndarray | None, ir.Value]:
    """Optional ``* gamma`` then ``+ beta`` with constants of the normalized shape (leading 1s allowed).
    With ``normalized`` unknown (a value of unknown shape), gamma gives it: it must have exactly
    ``n_axes`` dims, none of them 1 (so it cannot be broadcasting where LayerNormalization would not)."""
    nodes: list[ir.Node] = []
    gamma = beta = None
    out_rank = _ir.rank(value)

    def fits(c: np.ndarray | None, shape: tuple[int, ...] | None) -> bool:
        if c is None:
            return False
        if shape is None:
            return c.ndim == n_axes and all(d > 1 for d in c.shape)
        return (out_rank is not None and len(shape) <= c.ndim <= out_rank
                and tuple(c.shape[c.ndim - len(shape):]) == shape and c.size == int(np.prod(shape)))

    mul = _ir.single_consumer(value)
    if mul is not None and _ir.is_op(mul, "Mul"):
        g = _ir.const_array(mul.inputs[1] if mul.inputs[0] is value else mul.inputs[0])
        if fits(g, normalized):
            normalized = normalized or tuple(g.shape)
            gamma = g.reshape(normalized)
            nodes.append(mul)
            value = mul.outputs[0]
            add = _ir.single_consumer(value)
            if add is not None and _ir.is_op(add, "Add"):
                b = _ir.const_array(add.inputs[1] if add.inputs[0] is value else add.inputs[0])
                if b is not None and b.shape == g.shape and b.dtype == g.dtype:
                    beta = b.reshape(normalized)
                    nodes.append(add)
                    value = add.outputs[0]
    return nodes, gamma, beta, value


def _fuse_ln(model: ir.Model, mean: ir.Node) -> int:
    graph = model.graph
    x = mean.inputs[0]
    axes = _reduce_axes(mean, model)
    if axes is None or x is None or _ir.dtype_of(x) not in _ir.FLOAT_TYPES:
        return 0
    shape = _ir.static_shape(x)
    # of unknown rank (a Reshape to a computed shape before it), negative axes still say which
    rank = len(shape) if shape is not None else (_ir.rank(x) or _negative_trailing_rank(axes))
    axis = _trailing_axis(axes, rank)
    if axis is None:
        return 0
    if _ir.rank(x) is None:
        axis -= rank  # LayerNormalization's axis counted from the end
    sub = _ir.single_consumer(mean.outputs[0])
    if sub is None or not _ir.is_op(sub, "Sub") or sub.inputs[0] is not x or sub.inputs[1] is not mean.outputs[0]:
        return 0
    d = sub.outputs[0]
    if d.is_graph_output():
        return 0
    readers = {id(u.node): u.node for u in d.uses()}
    sq = next((n for n in readers.values() if _square_of(n.outputs[0], d) is n), None)
    if sq is None or len(readers) != 2 or any(n.graph is not d.graph for n in readers.values()):
        return 0
    var_mean = _ir.single_consumer(sq.outputs[0])
    if var_mean is None or not _ir.is_op(var_mean, "ReduceMean") or _reduce_axes(var_mean, model) is None:
        return 0
    if _trailing_axis(_reduce_axes(var_mean, model), rank) != axis % rank:
        return 0
    tail = _norm_tail(var_mean, d)
    if tail is None:
        return 0
    tail_nodes, eps, div = tail
    normalized = tuple(shape[axis:]) if shape is not None else None
    aff_nodes, gamma, beta, out = _affine(div.outputs[0], normalized, len(axes))
    dtype = _ir.dtype_of(x).numpy()
    if gamma is None:
        if normalized is None:
            return 0  # nothing says the normalized shape
        gamma = np.ones(normalized, dtype=dtype)
    inputs = [x, _ir.add_initializer(graph, gamma.astype(dtype), "ln_scale")]
    if beta is not None:
        inputs.append(_ir.add_initializer(graph, beta.astype(dtype), "ln_bias"))
    anchor = (aff_nodes or [div])[-1]
    ln = _ir.new_node(graph, "", "LayerNormalization", inputs, {"axis": axis, "epsilon": eps},
                      name_hint="LayerNorm", before=anchor)
    _ir.copy_type(out, ln.outputs[0])
    _ir.replace_value(graph, out, ln.outputs[0])
    _ir.remove_unused_nodes(graph, [*reversed(aff_nodes), *reversed(tail_nodes), var_mean, sq, sub, mean])
    return 1


def _fuse_rms(model: ir.Model, var_mean: ir.Node) -> int:
    graph = model.graph
    sq_out = var_mean.inputs[0]
    if sq_out is None or sq_out.producer() is None:
        return 0
    sq = sq_out.producer()
    x = sq.inputs[0]
    if _square_of(sq_out, x) is not sq or _ir.single_consumer(sq_out) is not var_mean:
        return 0
    shape = _ir.static_shape(x)
    axes = _reduce_axes(var_mean, model)
    if shape is None or axes is None or _ir.dtype_of(x) not in _ir.FLOAT_TYPES:
        return 0
    axis = _trailing_axis(axes, len(shape))
    if axis is None:
        return 0
    tail = _norm_tail(var_mean, x)
    if tail is None:
        return 0
    tail_nodes, eps, div = tail
    normalized = tuple(shape[axis:])
    aff_nodes, gamma, beta, out = _affine(div.outputs[0], normalized, len(axes))
    if beta is not None:  # RMSNormalization has no bias: keep the Add outside
        aff_nodes, out = aff_nodes[:1], aff_nodes[0].outputs[0]
    dtype = _ir.dtype_of(x).numpy()
    if gamma is None:
        gamma = np.ones(normalized, dtype=dtype)
    scale = _ir.add_initializer(graph, gamma.astype(dtype), "rms_scale")
    anchor = (aff_nodes or [div])[-1]
    node = _ir.new_node(graph, "", "RMSNormalization", [x, scale], {"axis": axis, "epsilon": eps},
                        name_hint="RMSNorm", before=anchor)
    _ir.copy_type(out, node.outputs[0])
    _ir.replace_value(graph, out, node.outputs[0])
    _ir.remove_unused_nodes(graph, [*reversed(aff_nodes), *reversed(tail_nodes), var_mean, sq])
    return 1


def fuse_skip_layer_norm(model: ir.Model) -> int:
    graph = model.graph
    fused = 0
    for ln in list(graph):
        if ln.graph is not graph or not _ir.is_op(ln, "LayerNormalization"):
            continue
        if any(o.uses() or o.is_graph_output() for o in ln.outputs[1:]):
            continue
        add = ln.inputs[0].producer() if ln.inputs[0] is not None else None
        if add is None or not _ir.is_op(add, "Add") or add.graph is not graph:
            continue
        a, b = add.inputs
        gamma = ln.inputs[1]
        beta = ln.inputs[2] if len(ln.inputs) > 2 else None
        if _ir.rank(gamma) != 1 or (beta is not None and _ir.rank(beta) != 1):
            continue
        shape = _ir.static_shape(a)
        axis = int(_ir.attr(ln, "axis", -1))
        if shape is not None and len(shape) in (2, 3) and _ir.static_shape(b) == shape:
            if _ir.dtype_of(a) not in (ir.DataType.FLOAT, ir.DataType.FLOAT16) or axis not in (-1, len(shape) - 1):
                continue
        elif axis != -1 or not _same_rows(a, b, _ir.static_shape(gamma)):
            continue
        bias = None
        for x, y in ((a, b), (b, a)):  # a projection's bias Add goes into SkipLayerNormalization's bias input
            bias_add = x.producer()
            if (bias_add is not None and _ir.is_op(bias_add, "Add") and _ir.single_consumer(x) is add
                    and _ir.static_shape(gamma) is not None):
                for i in (0, 1):
                    c = _ir.const_array(bias_add.inputs[1 - i])
                    mm = bias_add.inputs[i].producer()
                    if (c is not None and c.ndim == 1 and (c.size,) == _ir.static_shape(gamma)
                            and mm is not None and _ir.is_op(mm, "MatMul")):
                        bias, a, b = bias_add.inputs[1 - i], bias_add.inputs[i], y
                        break
            if bias is not None:
                break
        if int(_ir.attr(ln, "stash_type", 1)) != 1:
            continue
        _ir.ensure_domain(model, _ir.MS_DOMAIN)
        sum_needed = add.outputs[0].is_graph_output() or len(list(add.outputs[0].uses())) > 1
        if bias is not None and beta is None:
            beta = _ir.add_initializer(graph, np.zeros(_ir.static_shape(gamma), _ir.const_array(bias).dtype), "skip_ln_beta")
        skip = _ir.new_node(graph, _ir.MS_DOMAIN, "SkipLayerNormalization", [a, b, gamma, beta, bias],
                            {"epsilon": float(_ir.attr(ln, "epsilon", 1e-5))},
                            num_outputs=4 if sum_needed else 1, name_hint="SkipLayerNorm", before=ln)
        if sum_needed:
            for unused in skip.outputs[1:3]:
                unused.name = ""
        _ir.copy_type(ln.outputs[0], skip.outputs[0])
        _ir.replace_value(graph, ln.outputs[0], skip.outputs[0])
        graph.remove(ln, safe=True)
        if sum_needed:
            _ir.copy_type(add.outputs[0], skip.outputs[3])
            if not _ir.replace_value(graph, add.outputs[0], skip.outputs[3]):
                continue
        _ir.remove_unused_nodes(graph, [add])
        fused += 1
    return fused


_ROW_WISE = ("Add", "Mul", "Sub", "Div", "Relu", "Gelu", "Tanh", "Sigmoid", "Erf", "Cast")


def _row_sources(value: ir.Value) -> tuple[list[ir.Value], int | None]:
    """Values with the same leading dims as ``value`` (reached through ops that keep them: x @ W with a
    2-D constant W, elementwise ops with a constant of rank <= 1, normalizations over the last axis,
    MultiHeadAttention's query, Split on the last axis), and ``value``'s last dim when read on the way."""
    seen: list[ir.Value] = [value]
    width = None
    for _ in range(12):
        node = value.producer()
        if node is None or node.graph is None:
            break
        nxt = None
        if _ir.is_op(node, "MatMul"):
            w = _ir.const_array(node.inputs[1])
            if w is not None and w.ndim == 2:
                width = width if width is not None else int(w.shape[1])
                nxt = node.inputs[0]
        elif node.op_type in _ROW_WISE and node.domain in ("", "ai.onnx"):
            var = [i for i in node.inputs if _ir.const_array(i) is None]
            if len(var) == 1 and all((_ir.rank(i) or 0) <= 1 for i in node.inputs if i is not var[0]):
                nxt = var[0]
        elif node.domain == _ir.MS_DOMAIN and node.op_type in ("BiasGelu", "FastGelu", "Gelu", "QuickGelu"):
            if all((_ir.rank(i) or 0) <= 1 and _ir.const_array(i) is not None for i in node.inputs[1:] if i is not None):
                nxt = node.inputs[0]
        elif _ir.is_op(node, "LayerNormalization") and int(_ir.attr(node, "axis", -1)) == -1:
            g = _ir.static_shape(node.inputs[1])
            width = width if width is not None or g is None else g[0]
            nxt = node.inputs[0]
        elif _ir.is_op(node, "SkipLayerNormalization", _ir.MS_DOMAIN) and node.outputs[0] is value:
            g = _ir.static_shape(node.inputs[2])
            width = width if width is not None or g is None else g[0]
            nxt = node.inputs[0]
        elif _ir.is_op(node, "MultiHeadAttention", _ir.MS_DOMAIN) and node.outputs[0] is value and _ir.rank(node.inputs[0]) in (None, 3):
            nxt = node.inputs[0]  # (B, S, Dv) output of a (B, S, D) query
            width = width if width is not None else _row_sources(node.inputs[2])[1] if len(node.inputs) > 2 and node.inputs[2] is not None else None
            if width is None:
                break
        if nxt is None:
            break
        value = nxt
        seen.append(value)
    return seen, width


def _same_rows(a: ir.Value, b: ir.Value, gamma_shape: tuple[int, ...] | None) -> bool:
    """``a`` and ``b`` have one shape (B, S, D) with D = gamma's size, proved from how they are computed
    (the models torch exports carry no intermediate shapes)."""
    if gamma_shape is None or len(gamma_shape) != 1:
        return False
    rows_a, width_a = _row_sources(a)
    rows_b, width_b = _row_sources(b)
    if width_a != gamma_shape[0] or width_b != gamma_shape[0]:
        return False
    if not any(x is y for x in rows_a for y in rows_b):
        return False
    return all(_ir.rank(v) in (None, 3) for v in (a, b))
