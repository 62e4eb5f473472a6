"""Convert a float32 model to float16 (weights halved, Casts at every float32/float16 boundary).

Example: ``onnxrt float16 model.onnx -o model.fp16.onnx --keep-io-types``. Prints the size before and
after and, with ``--check``, the output difference on random inputs (onnxrt, float32 vs float16).
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to a float32 .onnx model")
    parser.add_argument("--output", "-o", required=True, help="where to write the float16 model")
    parser.add_argument("--keep-io-types", action="store_true", help="keep graph inputs and outputs float32")
    parser.add_argument("--op-block-list", nargs="+", default=None, metavar="OP",
                        help="op types kept in float32 (replaces the default list)")
    parser.add_argument("--node-block-list", nargs="+", default=None, metavar="NODE", help="node names kept in float32")
    parser.add_argument("--min-positive-val", type=float, default=1e-7)
    parser.add_argument("--max-finite-val", type=float, default=1e4)
    parser.add_argument("--disable-shape-infer", action="store_true")
    parser.add_argument("--check", action="store_true", help="compare outputs on random inputs (onnxrt)")
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                        help="size of a symbolic dimension for --check (repeatable)")


def main(args: argparse.Namespace) -> int:
    import onnx

    from onnxrt.tools.float16 import convert_float_to_float16

    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"model file '{args.model}' does not exist")
    model = onnx.load(args.model)
    converted = convert_float_to_float16(model, args.min_positive_val, args.max_finite_val, args.keep_io_types,
                                         args.disable_shape_infer, args.op_block_list, args.node_block_list)
    onnx.checker.check_model(converted)
    onnx.save_model(converted, args.output)
    before, after = os.path.getsize(args.model), os.path.getsize(args.output)
    print(f"wrote {args.output}: {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB ({before / max(after, 1):.2f}x smaller)")
    if args.check:
        from onnxrt.tools.run import make_feeds, make_session

        dims = {k: int(v) for k, _, v in (d.partition("=") for d in args.dim)}
        reference_session = make_session(args.model, dims)
        feeds = make_feeds(reference_session, [], dims)
        half_session = make_session(args.output, dims)
        half_inputs = {i.name: i.type for i in half_session.get_inputs()}
        half_feeds = {k: (v.astype(np.float16) if half_inputs.get(k) == "tensor(float16)" else v)
                      for k, v in feeds.items()}
        for arg, a, b in zip(reference_session.get_outputs(), reference_session.run(None, feeds),
                             half_session.run(None, half_feeds)):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            cosine = float((a.ravel() @ b.ravel()) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))
            print(f"  {arg.name}: max abs diff {float(np.max(np.abs(a - b))) if a.size else 0.0:.4g}, "
                  f"cosine similarity {cosine:.6f}")
    return 0
