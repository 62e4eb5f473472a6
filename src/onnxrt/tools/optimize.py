"""Save a model optimized at a given level (what SessionOptions.optimized_model_filepath writes).

``onnxrt optimize MODEL -o OUT --level basic|extended|all`` loads MODEL as a session would (shape
inference included), runs the optimizer passes of that level and saves the result, which loads in
onnxruntime too (only standard ops and onnxruntime's com.microsoft contrib ops are emitted). It prints
how many rewrites each pass made.
"""

from __future__ import annotations

import argparse
import os
import sys

LEVELS = {"disable": 0, "basic": 1, "extended": 2, "layout": 3, "all": 99}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the .onnx model to optimize")
    parser.add_argument("-o", "--output", required=True, help="where to write the optimized model")
    parser.add_argument("--level", default="all", choices=sorted(LEVELS, key=LEVELS.get),
                        help="optimization level, as onnxruntime's GraphOptimizationLevel (default: all)")
    parser.add_argument("--quiet", action="store_true", help="do not print the per-pass rewrite counts")


def optimize_file(model_path: str, output_path: str, level: str = "all") -> dict[str, int]:
    """Optimize the model at ``model_path`` at ``level`` and save it to ``output_path``."""
    import onnx
    import onnx_ir as ir

    from onnxrt import optimizer
    from onnxrt.model import loader

    if level not in LEVELS:
        raise ValueError(f"unknown level '{level}'; expected one of {', '.join(LEVELS)}")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"model file '{model_path}' does not exist")
    loaded = loader.load(model_path)
    counts = optimizer.optimize(loaded.model, LEVELS[level])
    proto = ir.serde.serialize_model(loaded.model)
    loader.restore_set_aside_types(proto, loaded.type_overrides)
    if proto.ByteSize() > 1_900_000_000:
        onnx.save(proto, output_path, save_as_external_data=True, location=os.path.basename(output_path) + ".data")
    else:
        onnx.save(proto, output_path)
    return counts


def main(args: argparse.Namespace) -> int:
    counts = optimize_file(args.model, args.output, args.level)
    if not args.quiet:
        fired = {name: n for name, n in counts.items() if n}
        for name, n in sorted(fired.items()):
            print(f"{name}: {n}")
        print(f"saved {args.output}", file=sys.stderr)
    return 0
