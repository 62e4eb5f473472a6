"""Profile runs of a model and print where the time goes, per op type.

``onnxrt profile model.onnx --runs 10`` runs the model with ``SessionOptions.enable_profiling`` (onnxrt
writes onnxruntime's Chrome-trace format), then reads the trace back and prints, per op type, the number
of kernel calls, total and mean milliseconds and the share of the run time. ``--trace FILE`` keeps the
trace for chrome://tracing or Perfetto.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from typing import Any

from onnxrt.tools.inspect import add_dim_argument, parse_dims
from onnxrt.tools.run import Progress, make_feeds, make_session


def summarize_trace(events: list[dict[str, Any]], group_by: str = "op") -> dict[str, Any]:
    """Per op type (or per node) totals from an onnxruntime-format trace: calls, total/mean ms, share.

    The share is of the summed ``model_run`` time, so the rest (Python overhead between kernels) shows as
    the difference from 100%.
    """
    if not isinstance(events, list):
        raise ValueError("the trace is not a JSON array of events")
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    run_us = sum(e.get("dur", 0) for e in runs)
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"calls": 0, "total_us": 0, "op": ""})
    for e in events:
        if e.get("cat") != "Node":
            continue
        op = e.get("args", {}).get("op_name", "?")
        key = op if group_by == "op" else e.get("name", "?").removesuffix("_kernel_time")
        row = rows[key]
        row["calls"] += 1
        row["total_us"] += e.get("dur", 0)
        row["op"] = op
    table = []
    for key, row in rows.items():
        total_ms = row["total_us"] / 1000
        table.append({
            "name": key,
            "op": row["op"],
            "calls": row["calls"],
            "total_ms": total_ms,
            "mean_ms": total_ms / row["calls"],
            "share": row["total_us"] / run_us if run_us else 0.0,
        })
    table.sort(key=lambda r: -r["total_ms"])
    kernel_us = sum(r["total_us"] for r in rows.values())
    return {
        "runs": len(runs),
        "run_total_ms": run_us / 1000,
        "run_mean_ms": run_us / 1000 / len(runs) if runs else 0.0,
        "kernel_total_ms": kernel_us / 1000,
        "rows": table,
    }


def format_table(summary: dict[str, Any], top: int, group_by: str = "op") -> str:
    rows = summary["rows"]
    shown = rows[:top] if top else rows
    width = max([len("op type" if group_by == "op" else "node")] + [len(r["name"]) for r in shown]) + 2
    width = min(width, 60)
    head = "op type" if group_by == "op" else "node"
    lines = [f"{head:<{width}}{'calls':>8}{'total ms':>12}{'mean ms':>11}{'share':>8}"]
    for r in shown:
        name = r["name"] if len(r["name"]) < width else r["name"][: width - 2] + "…"
        lines.append(f"{name:<{width}}{r['calls']:>8}{r['total_ms']:>12.3f}{r['mean_ms']:>11.4f}{r['share']:>8.1%}")
    if top and len(rows) > top:
        rest = rows[top:]
        share = sum(r["share"] for r in rest)
        lines.append(f"{'(' + str(len(rest)) + ' more)':<{width}}{sum(r['calls'] for r in rest):>8}"
                     f"{sum(r['total_ms'] for r in rest):>12.3f}{'':>11}{share:>8.1%}")
    overhead = summary["run_total_ms"] - summary["kernel_total_ms"]
    lines.append(
        f"{summary['runs']} run(s), mean {summary['run_mean_ms']:.3f} ms; kernels {summary['kernel_total_ms']:.3f} ms "
        f"of {summary['run_total_ms']:.3f} ms in all, {max(overhead, 0):.3f} ms between kernels"
    )
    return "\n".join(lines)


def profile_model(model: str, runs: int, dims: dict[str, int], input_items: list[str], warmup: int = 1,
                  seed: int = 0) -> tuple[list[dict[str, Any]], str]:
    """Run ``model`` ``runs`` times with profiling on (after ``warmup`` unprofiled runs are dropped).

    Returns the trace's events (warm-up runs removed) and the path of the trace file onnxrt wrote.
    """
    import onnxrt

    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    workdir = tempfile.mkdtemp(prefix="onnxrt-profile-")
    options = onnxrt.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(workdir, "onnxrt_profile_")
    session = make_session(model, dims, options=options)
    notes: list[str] = []
    feeds = make_feeds(session, input_items, dims, seed, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    progress = Progress(warmup + runs, "profiling")
    for _ in range(warmup + runs):
        session.run(None, feeds)
        progress.advance()
    progress.close()
    path = session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    return _drop_warmup(events, warmup), path


def _drop_warmup(events: list[dict[str, Any]], warmup: int) -> list[dict[str, Any]]:
    """Remove the first ``warmup`` model_run spans and the kernel events inside them."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if warmup <= 0 or not runs:
        return events
    cutoff = runs[min(warmup, len(runs)) - 1]
    end = cutoff["ts"] + cutoff["dur"]
    dropped = {id(r) for r in runs[:warmup]}
    return [e for e in events if id(e) not in dropped and not (e.get("cat") == "Node" and e.get("ts", 0) <= end)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to an .onnx model")
    parser.add_argument("--runs", type=int, default=10, help="profiled runs (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="runs before profiling that are left out (default 1)")
    add_dim_argument(parser)
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE",
                        help="an input file, as for 'onnxrt run' (others get random data)")
    parser.add_argument("--top", type=int, default=20, metavar="K", help="rows to print (default 20; 0: all)")
    parser.add_argument("--by-node", action="store_true", help="one row per node instead of per op type")
    parser.add_argument("--trace", metavar="FILE", help="keep the Chrome trace (onnxruntime format) in FILE")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def main(args: argparse.Namespace) -> int:
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    events, path = profile_model(args.model, args.runs, parse_dims(args.dim), args.input, args.warmup)
    try:
        if args.trace:
            with open(args.trace, "w") as f:
                json.dump(events, f)
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    group_by = "node" if args.by_node else "op"
    summary = summarize_trace(events, group_by)
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_table(summary, args.top, group_by))
    if args.trace:
        print(f"trace written to {args.trace}", file=sys.stderr if args.json else sys.stdout)
    return 0
