"""Check a model with onnx.checker (full check, with strict shape inference) and onnxrt's own load check.

``onnxrt check model.onnx`` prints one line per check, PASS or FAIL with the reason, then lists any
node that no onnxrt provider can run; the exit code is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import onnx


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def run_checks(model_path: str) -> list[dict[str, Any]]:
    """Each check's name, whether it passed and a message; the model file must exist."""
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"model file '{model_path}' does not exist")
    results: list[dict[str, Any]] = []

    try:  # by path, so that models over 2 GB and external data are checked too
        onnx.checker.check_model(model_path, full_check=True)
        results.append({"check": "onnx.checker (full check, strict shape inference)", "ok": True, "message": ""})
    except Exception as e:
        results.append({"check": "onnx.checker (full check, strict shape inference)", "ok": False, "message": _first_line(e)})

    try:
        import onnxrt

        session = onnxrt.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        inputs = ", ".join(f"{i.name}: {i.type}{i.shape}" for i in session.get_inputs())
        results.append({"check": "onnxrt InferenceSession", "ok": True, "message": f"inputs {inputs}" if inputs else ""})
    except Exception as e:
        results.append({"check": "onnxrt InferenceSession", "ok": False, "message": _first_line(e)})

    try:
        from onnxrt.tools.inspect import kernel_support, read_model

        support = kernel_support(read_model(model_path))
        missing = support["unsupported"]
        message = "; ".join(f"'{u['node']}' {u['op']}: {u['reason']}" for u in missing[:5])
        if len(missing) > 5:
            message += f"; … {len(missing) - 5} more"
        if not missing and support["function_expanded"]:
            ops = sorted({e["op"] for e in support["function_expanded"]})
            message = f"{len(support['function_expanded'])} node(s) run through their ONNX function body: {', '.join(ops)}"
        results.append({"check": "every node has a kernel", "ok": not missing, "message": message})
    except Exception as e:
        results.append({"check": "every node has a kernel", "ok": False, "message": _first_line(e)})
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to an .onnx model")


def main(args: argparse.Namespace) -> int:
    results = run_checks(args.model)
    for r in results:
        line = f"{'PASS' if r['ok'] else 'FAIL'}  {r['check']}"
        if r["message"]:
            line += f": {r['message']}"
        print(line)
    failed = sum(not r["ok"] for r in results)
    print(f"{args.model}: " + ("all checks passed" if not failed else f"{failed} check(s) failed"))
    return 1 if failed else 0
