"""Graph optimizer: passes chosen by ``SessionOptions.graph_optimization_level``.

Each pass lives in its own module and rewrites an ``onnx_ir.Model`` in place.
The table ``PASSES`` maps each level to the passes it adds on top of the
levels below it.
"""

from __future__ import annotations

from typing import Callable

import onnx_ir as ir

from onnxrt.options import GraphOptimizationLevel

Pass = Callable[[ir.Model], None]

# Level -> passes it adds. Filled as passes are written (see the fast-execution issue).
PASSES: dict[GraphOptimizationLevel, list[Pass]] = {
    GraphOptimizationLevel.ORT_ENABLE_BASIC: [],
    GraphOptimizationLevel.ORT_ENABLE_EXTENDED: [],
    GraphOptimizationLevel.ORT_ENABLE_LAYOUT: [],
    GraphOptimizationLevel.ORT_ENABLE_ALL: [],
}


def passes_for(level: int) -> list[Pass]:
    chosen: list[Pass] = []
    for lvl in sorted(PASSES):
        if int(level) >= int(lvl):
            chosen.extend(PASSES[lvl])
    return chosen


def optimize(model: ir.Model, level: int) -> None:
    for pass_ in passes_for(level):
        pass_(model)
