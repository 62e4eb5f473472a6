"""The ``onnxrt`` command: one subcommand per tool.

Each tool lives in ``onnxrt/tools/<name>.py`` and exposes ``add_arguments(parser)`` and
``main(args) -> int``; the table ``COMMANDS`` below wires them up. Errors a user can cause end with
one clear line on stderr and a non-zero exit code, never a traceback (``--traceback`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# subcommand -> (module under onnxrt.tools, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run a model on inputs from .npy/.npz/.pb/JSON files or random data"),
    "bench": ("bench", "measure load time, latency, throughput and memory (optionally against onnxruntime)"),
    "profile": ("profile", "profile a run and print time per op type"),
    "inspect": ("inspect", "describe a model: opsets, inputs/outputs, op histogram, parameters, FLOPs"),
    "graph": ("graph", "write a self-contained HTML viewer of the model graph"),
    "optimize": ("optimize", "save the model optimized at a given level"),
    "quantize": ("quantize_cmd", "quantize a model (dynamic, static, 4-bit weight-only)"),
    "float16": ("float16_cmd", "convert a model to float16"),
    "check": ("check", "check a model with onnx.checker and onnxrt's own load check"),
}


def build_parser() -> argparse.ArgumentParser:
    from onnxrt.version import __version__

    parser = argparse.ArgumentParser(prog="onnxrt", description="ONNX Runtime in Python: tools for ONNX models.")
    parser.add_argument("--version", action="version", version=f"onnxrt {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(f"onnxrt.tools.{module_name}")
        except ModuleNotFoundError as e:
            if e.name != f"onnxrt.tools.{module_name}":
                raise
            continue  # tool not written yet
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(_tool=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_tool", None):
        parser.print_help()
        return 2
    try:
        return int(args._tool.main(args) or 0)
    except KeyboardInterrupt:
        print("onnxrt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line, unless asked for the traceback
        if args.traceback:
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"onnxrt {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
