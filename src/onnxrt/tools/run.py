"""Run a model on inputs from .npy/.npz/.pb/JSON files or random data, and print or save its outputs.

``onnxrt run model.onnx --input x=x.npy`` prints every output (shape, dtype, statistics, first values);
inputs not given are made up from the input's type (``--dim`` fixes symbolic dims, integers are drawn
from a small range). ``--output-dir`` saves outputs as .npy; ``--dump DIR`` saves every intermediate
value of the graph with an ``index.json`` saying which node made it.

The helpers here (``read_input_file``, ``random_feeds``, ``Progress``) are shared by the other tools.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any, Sequence

import numpy as np
import onnx

from onnxrt.tools.inspect import add_dim_argument, parse_dims
from onnxrt.types import dtype_of_type_string

# onnxruntime type strings -> numpy dtypes (the exotic ones through ml_dtypes)
def dtype_of(type_string: str) -> np.dtype:
    """numpy dtype of an onnxruntime-style type string such as ``tensor(float)``."""
    try:
        return dtype_of_type_string(type_string)
    except ValueError:
        raise ValueError(f"cannot make data for an input of type '{type_string}': give it with --input") from None


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, label: str, stream: Any = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty() and total > 1
        self.done = 0
        self._last = 0.0

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        filled = int(30 * self.done / self.total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (len(self.label) + 50) + "\r")
            self.stream.flush()


# -- inputs -------------------------------------------------------------------------------------------


def read_input_file(path: str, name: str, dtype: np.dtype | None) -> Any:
    """Read one input's value from .npy, .npz (key = input name), .pb (TensorProto) or .json (nested lists)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file '{path}' for '{name}' does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if name not in archive.files:
                raise ValueError(f"'{path}' has no array named '{name}' (it has: {', '.join(archive.files) or 'none'})")
            return archive[name]
    if ext == ".pb":
        tensor = onnx.TensorProto()
        with open(path, "rb") as f:
            try:
                tensor.ParseFromString(f.read())
            except Exception:
                raise ValueError(f"'{path}' is not a serialized onnx.TensorProto") from None
        return onnx.numpy_helper.to_array(tensor)
    if ext == ".json":
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"'{path}' is not valid JSON: {e}") from None
        return np.array(data, dtype=dtype)
    raise ValueError(f"input file '{path}': unknown extension '{ext}' (use .npy, .npz, .pb or .json)")


def parse_input_args(items: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``name=file`` pairs, and bare ``.npz`` files whose keys name the inputs."""
    named: dict[str, str] = {}
    archives: list[str] = []
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name:
            named[name] = path
        elif item.lower().endswith(".npz"):
            archives.append(item)
        else:
            raise ValueError(f"--input expects NAME=FILE (or an .npz whose keys are input names), got '{item}'")
    return named, archives


def random_value(name: str, type_string: str, shape: Sequence[Any], dims: dict[str, int], rng: np.random.Generator,
                 notes: list[str]) -> np.ndarray:
    """Random data for an input: normal floats, small non-negative integers, random booleans."""
    dtype = dtype_of(type_string)
    concrete = []
    for axis, d in enumerate(shape):
        if isinstance(d, int):
            concrete.append(d)
        elif isinstance(d, str) and d in dims:
            concrete.append(dims[d])
        else:
            label = f"'{d}'" if d else f"axis {axis}"
            notes.append(f"input '{name}': dim {label} is not fixed, using 1 (set it with --dim NAME=VALUE)")
            concrete.append(1)
    if dtype == np.bool_:
        return rng.random(concrete) < 0.5
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=concrete).astype(dtype)  # small: indices and ids stay in range
    if dtype == object:
        return np.full(concrete, "a", dtype=object)
    return rng.standard_normal(concrete).astype(np.float32).astype(dtype)


def make_feeds(session: Any, input_items: Sequence[str], dims: dict[str, int], seed: int = 0,
               notes: list[str] | None = None) -> dict[str, Any]:
    """Feeds for every input of ``session``: from the files given, else random."""
    notes = notes if notes is not None else []
    named, archives = parse_input_args(input_items)
    inputs = {i.name: i for i in session.get_inputs()}
    known = set(inputs) | {i.name for i in session.get_overridable_initializers()}
    unknown = sorted(set(named) - known)
    if unknown:
        raise ValueError(f"--input names {unknown} are not inputs of the model (inputs: {', '.join(inputs)})")
    feeds: dict[str, Any] = {}
    for archive in archives:
        if not os.path.isfile(archive):
            raise FileNotFoundError(f"input file '{archive}' does not exist")
        with np.load(archive, allow_pickle=False) as data:
            for key in data.files:
                if key in known:
                    feeds[key] = data[key]
    for name, path in named.items():
        arg = inputs.get(name)
        dtype = None
        if arg is not None:
            try:
                dtype = dtype_of(arg.type)
            except ValueError:
                dtype = None
        feeds[name] = read_input_file(path, name, dtype)
    rng = np.random.default_rng(seed)
    for name, arg in inputs.items():
        if name not in feeds:
            feeds[name] = random_value(name, arg.type, arg.shape, dims, rng, notes)
    return feeds


def make_session(model: str, dims: dict[str, int], *, optimize: bool = True, options: Any = None) -> Any:
    import onnxrt

    options = options or onnxrt.SessionOptions()
    for name, value in dims.items():
        options.add_free_dimension_override_by_name(name, value)
    if not optimize:
        options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxrt.InferenceSession(model, options, providers=["CPUExecutionProvider"])


# -- outputs ------------------------------------------------------------------------------------------


def sanitize(name: str) -> str:
    """A file name for a value name: path separators and odd characters become '_'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "value"
    return cleaned[:150]


def describe_value(value: Any, count: int = 6) -> str:
    """``float32[1,1000] min=… max=… mean=… [v0, v1, …]`` or a short repr for sequences and maps."""
    if isinstance(value, np.ndarray):
        head = f"{value.dtype}[{','.join(map(str, value.shape))}]"
        flat = value.ravel()
        if value.size and value.dtype.kind not in "OSUc":  # numbers, bool and the ml_dtypes floats
            try:
                as_float = flat.astype(np.float64)
                finite = as_float[np.isfinite(as_float)]
                if finite.size:
                    head += f" min={finite.min():.6g} max={finite.max():.6g} mean={finite.mean():.6g}"
                if finite.size < as_float.size:
                    head += f" non-finite={as_float.size - finite.size}"
            except (TypeError, ValueError):
                pass
        shown = np.array2string(flat[:count], precision=5, separator=", ", max_line_width=200)
        return f"{head} {shown[:-1]}{', …]' if flat.size > count else ']'}"
    if isinstance(value, list):
        return f"sequence of {len(value)}: [" + ", ".join(describe_value(v, 3) for v in value[:3]) + (", …]" if len(value) > 3 else "]")
    if isinstance(value, dict):
        items = list(value.items())[:count]
        return f"map of {len(value)}: {items}"
    return repr(value)[:200]


def save_value(value: Any, path: str) -> None:
    if isinstance(value, np.ndarray):
        np.save(path, value, allow_pickle=value.dtype == object)
    else:  # sequences and maps: a pickle-free JSON rendering would lose dtypes; keep numpy's object array
        np.save(path, np.array(value, dtype=object), allow_pickle=True)


def dump_intermediates(model: str, feeds: dict[str, Any], directory: str, dims: dict[str, int],
                       names: Sequence[str] | None = None) -> dict[str, Any]:
    """Run once fetching every value the main graph computes; write DIR/<name>.npy and DIR/index.json.

    Graph optimisation is turned off so that every value of the model as written exists.
    """
    from onnxrt.tools.inspect import read_model

    proto = read_model(model)
    producers: dict[str, str] = {}
    for i, node in enumerate(proto.graph.node):
        for out in node.output:
            if out:
                producers[out] = node.name or f"{node.op_type}_{i}"
    op_of = {(n.name or f"{n.op_type}_{i}"): n.op_type for i, n in enumerate(proto.graph.node)}
    wanted = list(names) if names else list(producers)
    session = make_session(model, dims, optimize=False)
    values = session.run(wanted, feeds)
    os.makedirs(directory, exist_ok=True)
    index: dict[str, Any] = {}
    used: set[str] = set()
    progress = Progress(len(wanted), "writing")
    for name, value in zip(wanted, values):
        base = sanitize(name)
        file_name, k = base, 1
        while file_name.lower() in used:  # two names that sanitize alike keep separate files
            k += 1
            file_name = f"{base}_{k}"
        used.add(file_name.lower())
        save_value(value, os.path.join(directory, file_name + ".npy"))
        node = producers.get(name)
        index[name] = {
            "file": file_name + ".npy",
            "shape": list(value.shape) if isinstance(value, np.ndarray) else None,
            "dtype": str(value.dtype) if isinstance(value, np.ndarray) else type(value).__name__,
            "node": node,
            "op": op_of.get(node) if node else None,
        }
        progress.advance()
    progress.close()
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    return index


# -- command ------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to an .onnx model")
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE",
                        help="an input from .npy, .npz (key = input name), .pb (TensorProto) or .json "
                             "(nested lists, read with the input's dtype); a bare .npz feeds every input it "
                             "names; inputs not given get random data (repeatable)")
    add_dim_argument(parser)
    parser.add_argument("--output", "-O", nargs="+", default=None, metavar="NAME",
                        help="fetch only these values (graph outputs or any intermediate value)")
    parser.add_argument("--output-dir", metavar="DIR", help="save the outputs as DIR/<name>.npy")
    parser.add_argument("--dump", metavar="DIR",
                        help="save every intermediate value as DIR/<name>.npy with DIR/index.json "
                             "(runs with graph optimisation off)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random inputs (default 0)")
    parser.add_argument("--values", type=int, default=6, metavar="N", help="values printed per output (default 6)")


def main(args: argparse.Namespace) -> int:
    dims = parse_dims(args.dim)
    session = make_session(args.model, dims, optimize=not args.dump)
    notes: list[str] = []
    feeds = make_feeds(session, args.input, dims, args.seed, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for name, value in feeds.items():
        print(f"input  {name}: {describe_value(value, 0).rsplit(' [', 1)[0]}")

    if args.dump:
        index = dump_intermediates(args.model, feeds, args.dump, dims)
        print(f"dumped {len(index)} values to {args.dump} (index.json lists them)")

    names = args.output or [o.name for o in session.get_outputs()]
    if args.output:
        from onnxrt.tools.inspect import read_model

        graph = read_model(args.model).graph
        known = {o for n in graph.node for o in n.output} | {v.name for v in graph.input} | {i.name for i in graph.initializer}
        missing = [n for n in names if n not in known]
        if missing:
            outputs = ", ".join(o.name for o in session.get_outputs())
            raise ValueError(f"--output {missing}: no such value in the model's main graph (its outputs: {outputs})")
    started = time.perf_counter()
    values = session.run(names, feeds)
    elapsed = time.perf_counter() - started
    for name, value in zip(names, values):
        print(f"output {name}: {describe_value(value, args.values)}")
    print(f"ran in {elapsed * 1000:.2f} ms")
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        for name, value in zip(names, values):
            save_value(value, os.path.join(args.output_dir, sanitize(name) + ".npy"))
        print(f"saved {len(names)} output(s) to {args.output_dir}")
    return 0
