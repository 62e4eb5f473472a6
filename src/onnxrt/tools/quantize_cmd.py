"""Quantize a model: dynamic (int8 weights), static (calibrated, QDQ or QOperator) or 4-bit weight-only.

Examples::

    onnxrt quantize model.onnx -o model.int8.onnx                       # dynamic
    onnxrt quantize model.onnx -o model.qdq.onnx --mode static --calibration-data batches/
    onnxrt quantize model.onnx -o model.q4.onnx --mode 4bit --block-size 32

Calibration data: .npz files (one batch each, keys = input names) or folders of them. Without any,
random batches are used (fine for a smoke test, not for accuracy). The report (size before and after,
output difference on the calibration data) is printed; ``--json`` prints it as JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from onnxrt.quantization import CalibrationMethod, QuantFormat, QuantType

    parser.add_argument("model", help="path to a float .onnx model")
    parser.add_argument("--output", "-o", required=True, help="where to write the quantized model")
    parser.add_argument("--mode", choices=["dynamic", "static", "4bit"], default="dynamic",
                        help="dynamic: int8 weights, activations at run time (default); static: calibrated "
                             "activations; 4bit: block-wise MatMulNBits weight-only")
    parser.add_argument("--format", choices=[f.name for f in QuantFormat], default="QDQ",
                        help="static mode: QDQ (default) or QOperator")
    parser.add_argument("--weight-type", choices=[t.name for t in QuantType], default="QInt8")
    parser.add_argument("--activation-type", choices=[t.name for t in QuantType], default="QInt8",
                        help="static mode (default QInt8)")
    parser.add_argument("--calibrate-method", choices=[m.name for m in CalibrationMethod], default="MinMax")
    parser.add_argument("--calibration-data", nargs="+", default=[], metavar="NPZ_OR_DIR",
                        help=".npz files (one batch each, keys = input names) or folders of .npz files")
    parser.add_argument("--random-batches", type=int, default=8, metavar="N",
                        help="random calibration batches when no --calibration-data is given (default 8)")
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                        help="size of a symbolic dimension for random batches (repeatable)")
    parser.add_argument("--per-channel", action="store_true", help="one scale per output channel of each weight")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (for CPUs without VNNI)")
    parser.add_argument("--op-types", nargs="+", default=None, metavar="OP", help="op types to quantize")
    parser.add_argument("--nodes-to-quantize", nargs="+", default=None, metavar="NODE")
    parser.add_argument("--nodes-to-exclude", nargs="+", default=None, metavar="NODE")
    parser.add_argument("--block-size", type=int, default=128, help="4bit mode: rows per block (default 128)")
    parser.add_argument("--symmetric", action="store_true", help="4bit mode: symmetric blocks (no zero points)")
    parser.add_argument("--no-progress", action="store_true", help="no calibration progress bar")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _calibration_batches(args: argparse.Namespace) -> tuple[list[dict[str, np.ndarray]], str]:
    files: list[str] = []
    for item in args.calibration_data:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.npz")))
            if not found:
                raise FileNotFoundError(f"calibration folder '{item}' holds no .npz files")
            files += found
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise FileNotFoundError(f"calibration data '{item}' does not exist")
    if files:
        batches = []
        for path in files:
            with np.load(path, allow_pickle=False) as data:
                batches.append({key: data[key] for key in data.files})
        return batches, f"{len(batches)} calibration batch(es) from files"
    from onnxrt.tools.run import make_feeds, make_session

    dims = {}
    for item in args.dim:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise ValueError(f"--dim expects NAME=VALUE with an integer VALUE, got '{item}'")
        dims[name] = int(value)
    session = make_session(args.model, dims)
    notes: list[str] = []
    batches = [make_feeds(session, [], dims, seed=i, notes=notes) for i in range(args.random_batches)]
    return batches, f"{len(batches)} random calibration batch(es) (pass --calibration-data for real accuracy)"


def main(args: argparse.Namespace) -> int:
    from onnxrt.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                     quantize_matmul_4bits, quantize_static)

    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"model file '{args.model}' does not exist")
    batches, source = _calibration_batches(args)
    options = {"ShowProgress": not args.no_progress}
    if args.mode == "dynamic":
        report = quantize_dynamic(args.model, args.output, op_types_to_quantize=args.op_types,
                                  per_channel=args.per_channel, reduce_range=args.reduce_range,
                                  weight_type=QuantType[args.weight_type], nodes_to_quantize=args.nodes_to_quantize,
                                  nodes_to_exclude=args.nodes_to_exclude, extra_options=options, report_data=batches)
    elif args.mode == "static":
        report = quantize_static(args.model, args.output, batches, quant_format=QuantFormat[args.format],
                                 op_types_to_quantize=args.op_types, per_channel=args.per_channel,
                                 reduce_range=args.reduce_range, activation_type=QuantType[args.activation_type],
                                 weight_type=QuantType[args.weight_type], nodes_to_quantize=args.nodes_to_quantize,
                                 nodes_to_exclude=args.nodes_to_exclude,
                                 calibrate_method=CalibrationMethod[args.calibrate_method], extra_options=options)
    else:
        report = quantize_matmul_4bits(args.model, args.output, block_size=args.block_size,
                                       is_symmetric=args.symmetric, nodes_to_exclude=args.nodes_to_exclude,
                                       report_data=batches)
    if args.json:
        print(json.dumps({"output": args.output, "data": source, **report.as_dict()}, indent=2))
    else:
        print(f"wrote {args.output} ({args.mode}{', ' + args.format if args.mode == 'static' else ''}); {source}")
        print(report)
    return 0
