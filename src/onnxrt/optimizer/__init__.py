"""Graph optimizer: passes chosen by ``SessionOptions.graph_optimization_level``.

Each pass lives in its own module, rewrites ``model.graph`` of an ``onnx_ir.Model`` in place and returns
how many rewrites it made; :func:`optimize` runs the passes on the main graph and then on every subgraph
(through ``_ir.GraphView``, with the subgraph's outer values isolated by ``_ir.isolated``). ``PASSES`` maps each level to the passes it adds on top of the levels below
it, in the order they run; :func:`optimize` runs the BASIC passes in turn until each has run once
since the last rewrite (folding can expose a no-op, removing a no-op can expose a fusion), bounded by
``MAX_ROUNDS`` rounds. A subgraph reads its enclosing graphs' constants as constants, so what it
computes from them folds; a constant no graph reads any more then goes.

What the optimizer emits is always a model onnxruntime 1.31 loads and runs with the same results:
standard ai.onnx ops, or com.microsoft contrib ops with onnxruntime's CPU semantics (kernels for those
are in ``onnxrt/ops/contrib_fused.py``). Fusing elementwise chains into onnxrt-private kernels is a
planning decision, not a graph rewrite, so it never reaches ``optimized_model_filepath``.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import onnx_ir as ir

from onnxrt.optimizer import _ir
from onnxrt.optimizer.cse import eliminate_common_subexpressions
from onnxrt.optimizer.eliminate import eliminate_noops, remove_dead_nodes
from onnxrt.optimizer.fold_constants import fold_constants
from onnxrt.optimizer.fuse_activation import fuse_activations
from onnxrt.optimizer.fuse_attention import fuse_attention
from onnxrt.optimizer.fuse_conv import fuse_conv_affine
from onnxrt.optimizer.fuse_conv_input import fuse_conv_input_affine
from onnxrt.optimizer.fuse_dynamic_quant import fuse_dynamic_quant
from onnxrt.optimizer.fuse_gelu import fuse_gelu
from onnxrt.optimizer.fuse_layernorm import fuse_layer_norm, fuse_skip_layer_norm
from onnxrt.optimizer.fuse_matmul_add import fuse_matmul_add
from onnxrt.optimizer.merge_consecutive import merge_consecutive
from onnxrt.optimizer.merge_sibling_convs import merge_sibling_convs
from onnxrt.options import GraphOptimizationLevel

Pass = Callable[[ir.Model], int]
MAX_ROUNDS = 4
_TRAINING_DOMAIN = "ai.onnx.preview.training"

_log = logging.getLogger("onnxrt.optimizer")

# Level -> passes it adds, in running order.
PASSES: dict[GraphOptimizationLevel, list[Pass]] = {
    GraphOptimizationLevel.ORT_ENABLE_BASIC: [
        fold_constants,
        eliminate_noops,
        merge_consecutive,
        eliminate_common_subexpressions,
        fuse_conv_affine,
        fuse_matmul_add,
        remove_dead_nodes,
    ],
    GraphOptimizationLevel.ORT_ENABLE_EXTENDED: [
        fuse_attention,
        fuse_gelu,
        fuse_dynamic_quant,
        fuse_layer_norm,
        fuse_skip_layer_norm,
        fuse_conv_input_affine,
        fuse_activations,
        merge_sibling_convs,
        remove_dead_nodes,
    ],
    GraphOptimizationLevel.ORT_ENABLE_LAYOUT: [],
    GraphOptimizationLevel.ORT_ENABLE_ALL: [],
}


def passes_for(level: int) -> list[Pass]:
    chosen: list[Pass] = []
    for lvl in sorted(PASSES):
        if int(level) >= int(lvl):
            chosen.extend(PASSES[lvl])
    return chosen


def optimize(model: ir.Model, level: int) -> dict[str, int]:
    """Optimize ``model`` in place at ``level``, its main graph and then every subgraph (If branches,
    Loop and Scan bodies, outermost first, as onnxruntime does); returns rewrites made per pass name."""
    if int(level) < int(GraphOptimizationLevel.ORT_ENABLE_BASIC):
        return {}
    # (a node of a domain the model does not import fails at planning anyway; the walk over every
    # node of every subgraph costs ~1 ms on silero_vad)
    if _TRAINING_DOMAIN in model.opset_imports and any(node.domain == _TRAINING_DOMAIN for node in model.graph.all_nodes()):
        # Gradient names the values it differentiates by name: renaming or folding them would break it
        return {}
    counts: dict[str, int] = {}
    old_ir = (model.ir_version or 0) < 4
    model.graph.meta[_ir.INITIALIZER_INPUTS_CONSTANT] = old_ir
    initializers_before = set(model.graph.initializers)
    _optimize_graph(model, level, counts)
    _optimize_subgraphs(model, model.graph, level, counts)
    if old_ir and set(model.graph.initializers) - initializers_before:
        # IR 3 wants every initializer listed as a graph input; listing the new ones would make them
        # overridable, so the model moves to IR 4 instead (the old initializer inputs stay as they were)
        model.ir_version = 4
    model.graph.meta.pop(_ir.INITIALIZER_INPUTS_CONSTANT, None)
    _ir.forget_names(model.graph)
    return counts


# If branches run once per run of the node: one with fewer nodes (passing a value on, squeezing it)
# has nothing to fold or fuse, and a round of every pass costs ~0.3 ms (silero_vad has 47 such
# branches). Loop and Scan bodies run once per iteration: any with two nodes or more is optimized.
MIN_BRANCH_NODES = 4
MIN_BODY_NODES = 2


def _optimize_subgraphs(model: ir.Model, graph: ir.Graph, level: int, counts: dict[str, int]) -> None:
    optimized = False
    for node, sub in _ir.subgraphs(graph):
        if len(sub) < (MIN_BRANCH_NODES if node.op_type == "If" else MIN_BODY_NODES):
            continue
        sub.meta[_ir.ROOT_GRAPH] = model.graph
        with _ir.isolated(sub):
            _optimize_graph(_ir.GraphView(model, sub), level, counts)
        del sub.meta[_ir.ROOT_GRAPH]
        _optimize_subgraphs(model, sub, level, counts)
        optimized = True
    if optimized:
        # a subgraph may have folded away its every read of a constant of this graph (silero_vad's
        # branches slice their LSTM weights): that constant is dead now
        n = remove_dead_nodes(model if graph is model.graph else _ir.GraphView(model, graph))
        counts["remove_dead_nodes"] = counts.get("remove_dead_nodes", 0) + n


def _optimize_graph(model: ir.Model | _ir.GraphView, level: int, counts: dict[str, int]) -> None:
    """The level's passes over ``model.graph``: BASIC until nothing changes, then the rest."""
    basic = PASSES[GraphOptimizationLevel.ORT_ENABLE_BASIC]
    later = [p for p in passes_for(level) if p not in basic or p is remove_dead_nodes]

    def run(pass_: Pass) -> int:
        """Run one pass; returns its rewrites (none counted for remove_dead_nodes, which only tidies)."""
        start = time.perf_counter()
        n = int(pass_(model) or 0)
        counts[pass_.__name__] = counts.get(pass_.__name__, 0) + n
        _log.debug("%s: %d rewrites in %.1f ms", pass_.__name__, n, 1e3 * (time.perf_counter() - start))
        return 0 if pass_ is remove_dead_nodes else n

    # BASIC in turn until every pass has run once since the last rewrite (not until a whole round
    # from the first pass is quiet: on silero_vad's 13 graphs that re-ran half a round per graph)
    quiet = 0
    for step in range(MAX_ROUNDS * len(basic)):
        quiet = 0 if run(basic[step % len(basic)]) else quiet + 1
        if quiet == len(basic):
            break
    if sum(run(pass_) for pass_ in later):
        for pass_ in basic:  # fusions may leave constants or no-ops behind
            run(pass_)
