"""Run the benchmark suite: onnxrt against onnxruntime (and the onnx reference evaluator) on every model.

    python benchmarks/make_models.py                 # once: make the models into benchmarks/.models/
    python benchmarks/run.py                         # every model that is made
    python benchmarks/run.py --models bert_base,silero_vad --runs 10 --update-docs

For each model, onnxrt and onnxruntime each run in a worker process of their own (so that each one's
peak memory is its own) and their iterations alternate in the same time window (so that load on the
machine falls on both alike). The onnx reference evaluator runs afterwards, alone, under a time limit
('timeout' when it is exceeded). All runtimes get the same inputs, made from the model's sidecar
recipe. The measuring code is ``onnxrt.tools.bench``, the same as ``onnxrt bench``'s.

Writes ``--out`` .md and .json (default benchmarks/results/latest.*); ``--update-docs`` also puts the
table into docs/benchmarks.md between its markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import make_models  # noqa: E402

from onnxrt.tools import bench  # noqa: E402

DOCS = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN_MARK = "<!-- results:begin -->"
END_MARK = "<!-- results:end -->"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU model, versions, git commit."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    import onnx
    import onnxruntime

    import onnxrt

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "usable_cores": bench.default_threads(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxrt": onnxrt.__version__,
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def bench_model(sidecar: dict[str, Any], cache_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one model on every runtime; returns the JSON record for it."""
    path = os.path.join(cache_dir, sidecar["file"])
    inputs = bench.model_inputs(path)
    # through the recipe loader: it resolves 'file' inputs beside the sidecar
    recipes, dims = bench.load_recipe(make_models.sidecar_path(cache_dir, sidecar["name"]))
    feeds, unresolved = bench.make_inputs(inputs, dims, recipes, seed=args.seed)
    record: dict[str, Any] = {
        "model": sidecar["name"],
        "description": sidecar.get("description", ""),
        "source": sidecar.get("source", ""),
        "inputs": {n: {"shape": list(a.shape), "dtype": str(a.dtype)} for n, a in feeds.items()},
        "unresolved_dims": unresolved,
    }
    pair = bench.measure(
        path, feeds, ["onnxrt", "onnxruntime"], warmup=args.warmup, runs=args.runs, max_seconds=args.max_seconds,
        threads=args.threads, opt_level=args.opt_level, timeout=args.timeout,
    )
    results = {r.runtime: r for r in pair}
    if args.reference_timeout > 0:
        (ref,) = bench.measure(
            path, feeds, ["reference"], warmup=0, runs=args.reference_runs, max_seconds=args.reference_timeout,
            min_runs=1, threads=args.threads, opt_level=args.opt_level, timeout=args.reference_timeout,
        )
        if ref.outputs is not None and results["onnxruntime"].outputs is not None:
            ref.max_rel_error = bench.max_relative_error(ref.outputs, results["onnxruntime"].outputs)
        results["reference"] = ref
    record["results"] = {name: r.to_json() for name, r in results.items()}
    mine, theirs = results["onnxrt"], results["onnxruntime"]
    record["latency_ratio"] = bench.ratio(mine.median_s, theirs.median_s)
    record["p90_ratio"] = bench.ratio(mine.p90_s, theirs.p90_s)
    record["memory_ratio"] = bench.ratio(mine.peak_bytes, theirs.peak_bytes)
    record["load_ratio"] = bench.ratio(mine.load_s, theirs.load_s)
    if "reference" in results:
        record["reference_ratio"] = bench.ratio(results["reference"].median_s, theirs.median_s)
    return record


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.0f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cell(result: dict[str, Any], text: str) -> str:
    return text if result["status"] == "ok" else result["status"]


def _error_text(value: float | None, mismatch: bool) -> str:
    if mismatch:
        return "MISMATCH"
    return "-" if value is None else f"{value:.1e}"


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: a table, geometric means, the command, the machine, errors."""
    m = report["machine"]
    lines = [
        f"Measured {m['date']} at commit `{m['git_commit']}`{' (with uncommitted changes)' if m['git_dirty'] else ''} "
        f"on {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB; onnxrt {m['onnxrt']}, onnxruntime {m['onnxruntime']}, "
        f"numpy {m['numpy']}, onnx {m['onnx']}, Python {m['python']}. "
        f"Threads per runtime: {report['threads']}; graph optimization level: {report['opt_level']}.",
        "",
        f"Command: `{report['command']}`",
        "",
        "Latencies in ms (median and p90 of the interleaved timed runs); ratio = onnxrt / onnxruntime (lower is better "
        "for onnxrt); import = importing the runtime's module in a fresh process (with numpy already imported), load = "
        "creating the session after it (onnxruntime_perf_test's session creation time), both in ms; peak memory in MB above each worker's baseline; error = max |a - b| / max |b| against "
        "onnxruntime's outputs; reference = onnx.reference.ReferenceEvaluator's median and its ratio to onnxruntime.",
        "",
        "| model | onnxrt median | ORT median | ratio | onnxrt p90 | ORT p90 | onnxrt import | ORT import | onnxrt load | ORT load "
        "| load ratio | onnxrt 1st run | ORT 1st run | onnxrt MB | ORT MB | MB ratio | onnxrt error | reference | ref error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    errors = []
    for rec in report["models"]:
        r = rec["results"]
        mine, theirs = r["onnxrt"], r["onnxruntime"]
        ref = r.get("reference")
        if ref is None:
            ref_text, ref_err = "not run", "-"
        elif ref["status"] == "ok":
            ref_text = f"{_ms(ref['median_s'])} ({_x(rec.get('reference_ratio'))})"
            ref_err = _error_text(ref["max_rel_error"], ref["outputs_mismatch"])
        else:
            ref_text, ref_err = ref["status"], "-"
        lines.append(
            "| " + " | ".join([
                rec["model"],
                _cell(mine, _ms(mine["median_s"])), _cell(theirs, _ms(theirs["median_s"])), _x(rec["latency_ratio"]),
                _cell(mine, _ms(mine["p90_s"])), _cell(theirs, _ms(theirs["p90_s"])),
                _ms(mine.get("import_s")), _ms(theirs.get("import_s")),
                _ms(mine["load_s"]), _ms(theirs["load_s"]), _x(rec.get("load_ratio")),
                _ms(mine["first_run_s"]), _ms(theirs["first_run_s"]),
                _mb(mine["peak_bytes"]), _mb(theirs["peak_bytes"]), _x(rec["memory_ratio"]),
                _error_text(mine["max_rel_error"], mine["outputs_mismatch"]), ref_text, ref_err,
            ]) + " |"
        )
        for name, res in r.items():
            if res["status"] != "ok" and res["error"]:
                errors.append(f"* {rec['model']} / {name}: {res['status']}: {res['error'].splitlines()[0][:300]}")
    g = report["geomean"]
    lines += [
        "",
        f"Geometric mean over {g['models']} models measured on both: latency ratio onnxrt/onnxruntime **{_x(g['latency_ratio'])}**, "
        f"p90 ratio {_x(g['p90_ratio'])}, peak-memory ratio {_x(g['memory_ratio'])}.",
    ]
    if errors:
        lines += ["", "Failures:", "", *errors]
    return "\n".join(lines) + "\n"


def update_docs(table: str, path: str = DOCS) -> None:
    """Put ``table`` between the result markers of docs/benchmarks.md (appended when they are missing)."""
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else "# Benchmarks\n"
    block = f"{BEGIN_MARK}\n{table}{END_MARK}"
    if BEGIN_MARK in text and END_MARK in text:
        before, rest = text.split(BEGIN_MARK, 1)
        after = rest.split(END_MARK, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--cache-dir", default=make_models.DEFAULT_CACHE, help="where make_models.py put the models")
    parser.add_argument("--models", help="comma-separated subset (default: every model that is made)")
    parser.add_argument("--make", action="store_true", help="make missing models first (see make_models.py)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per runtime (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs after the first (default 2)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per model, stop timing after this (at least 3 runs; default 60)")
    parser.add_argument("--timeout", type=float, default=600.0, help="kill a runtime whose load or single run exceeds this (default 600 s)")
    parser.add_argument("--reference-timeout", type=float, default=60.0, help="time limit for the reference evaluator per model; 0 skips it (default 60 s)")
    parser.add_argument("--reference-runs", type=int, default=3, help="timed runs of the reference evaluator within its limit (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads per runtime (default 0: the machine's cores)")
    parser.add_argument("--opt-level", choices=bench.OPT_LEVELS, default="all", help="graph optimization level for both runtimes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "latest"), help="write OUT.md and OUT.json")
    parser.add_argument("--update-docs", action="store_true", help=f"also put the table into {os.path.relpath(DOCS, ROOT)}")
    args = parser.parse_args(argv)
    args.threads = args.threads or bench.default_threads()
    # Load times include importing the runtime. An installed wheel carries compiled bytecode; an
    # editable checkout under PYTHONDONTWRITEBYTECODE would recompile onnxrt's sources (~0.1 s) in
    # every worker, so compile them once here, as installing does.
    import compileall

    import onnxrt

    compileall.compile_dir(os.path.dirname(onnxrt.__file__), quiet=1)

    specs = make_models.select_models(args.models)
    sidecars = []
    for spec in specs:
        side = make_models.sidecar_path(args.cache_dir, spec.name)
        if args.make:
            try:
                make_models.ensure_model(spec, args.cache_dir)
            except make_models.Skipped as e:
                print(f"skipped {spec.name}: {e}", file=sys.stderr)
                continue
        if not os.path.isfile(side):
            if args.models:
                print(f"{spec.name} is not made yet: python benchmarks/make_models.py --models {spec.name}", file=sys.stderr)
            continue
        with open(side, encoding="utf-8") as f:
            sidecars.append(json.load(f))
    if not sidecars:
        print(f"no models in {args.cache_dir}: run python benchmarks/make_models.py first", file=sys.stderr)
        return 1

    report: dict[str, Any] = {
        "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "threads": args.threads,
        "opt_level": args.opt_level,
        "models": [],
    }
    for sidecar in sidecars:
        print(f"{sidecar['name']} ...", file=sys.stderr, flush=True)
        record = bench_model(sidecar, args.cache_dir, args)
        report["models"].append(record)
        mine, theirs = record["results"]["onnxrt"], record["results"]["onnxruntime"]
        print(
            f"  onnxrt {_ms(mine['median_s'])} ms [{mine['status']}], onnxruntime {_ms(theirs['median_s'])} ms [{theirs['status']}], "
            f"ratio {_x(record['latency_ratio'])}, memory {_x(record['memory_ratio'])}, "
            f"error {_error_text(mine['max_rel_error'], mine['outputs_mismatch'])}",
            file=sys.stderr, flush=True,
        )
    both = [rec for rec in report["models"] if rec["latency_ratio"] is not None]
    report["geomean"] = {
        "models": len(both),
        "latency_ratio": bench.geometric_mean([rec["latency_ratio"] for rec in both]),
        "p90_ratio": bench.geometric_mean([rec["p90_ratio"] for rec in both]),
        "memory_ratio": bench.geometric_mean([rec["memory_ratio"] for rec in both if rec["memory_ratio"]]),
    }
    table = markdown(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else str(v))
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    if args.update_docs:
        update_docs(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
