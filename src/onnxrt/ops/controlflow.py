"""Control flow: If, Loop, Scan.

Every GRAPH attribute arrives planned (a ``GraphPlan``). Values a body reads from
enclosing graphs are appended to the node's inputs after the regular ones, in the
order of the union of ``plan.captured_names`` over the node's subplans; each body is
run with its own ``captured_names`` order, so the factories below precompute, per
body, which of the node's trailing arguments to hand it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx_ir as ir

from onnxrt.errors import Fail
from onnxrt.ops.registry import KernelContext, op_factory

_INT64 = np.dtype(np.int64)
_TRUE = np.array(True)
_TRUE.flags.writeable = False


# -- helpers shared by the control-flow kernels ----------------------------------------------


def captured_indices(ctx: KernelContext, plan: Any) -> tuple[int, ...]:
    """Positions, among the node's arguments, of the outer values ``plan`` reads (its own order)."""
    union: list[str] = []
    for sub in ctx.subplans:  # type: ignore[attr-defined]
        for name in sub.captured_names:
            if name not in union:
                union.append(name)
    if len(union) != ctx.num_captured:
        raise Fail(
            f"{ctx.describe()}: the node has {ctx.num_captured} captured input(s) but its subgraphs read "
            f"{len(union)} outer value(s) {union}."
        )
    return tuple(ctx.num_inputs + union.index(name) for name in plan.captured_names)


def captured_getter(ctx: KernelContext, plan: Any):
    """A function args -> the captured values ``plan.run`` expects, in the cheapest form."""
    idx = captured_indices(ctx, plan)
    if not idx:
        return lambda args: ()
    start = idx[0]
    if idx == tuple(range(start, start + len(idx))):
        stop = start + len(idx)
        return lambda args: args[start:stop]
    return lambda args: [args[i] for i in idx]


def body_output_spec(plan: Any, index: int) -> tuple[np.dtype | None, tuple[int, ...] | None]:
    """(numpy dtype, static shape with unknown dims as 0) of a body output, as far as known."""
    value = plan.graph.outputs[index]
    dtype = None
    t = value.type
    if isinstance(t, ir.TensorType):
        try:
            dtype = np.dtype(t.dtype.numpy())
        except Exception:
            dtype = None
    shape = None
    if value.shape is not None:
        shape = tuple(d if isinstance(d, int) else 0 for d in value.shape)
    return dtype, shape


def _empty_scan_output(plan: Any, body_index: int, fallback_dtype: Any, op_name: str) -> np.ndarray:
    dtype, shape = body_output_spec(plan, body_index)
    if dtype is None:
        dtype = fallback_dtype
    if dtype is None:
        raise ValueError(
            f"{op_name}: zero iterations and the type of scan output '{plan.output_names[body_index]}' is unknown"
        )
    return np.zeros((0,) + (shape or ()), dtype=dtype)


def _stack(values: list, op_name: str, what: str) -> np.ndarray:
    first = values[0]
    if not isinstance(first, np.ndarray):
        raise TypeError(f"{op_name}: {what} must be a tensor, got {type(first).__name__}")
    shape, dtype = first.shape, first.dtype
    for i, v in enumerate(values):
        if not isinstance(v, np.ndarray) or v.shape != shape or v.dtype != dtype:
            got = f"{v.dtype}{list(v.shape)}" if isinstance(v, np.ndarray) else type(v).__name__
            raise ValueError(
                f"{op_name}: {what} must have the same shape and type in every iteration: "
                f"iteration 0 gave {dtype}{list(shape)}, iteration {i} gave {got}"
            )
    return np.stack(values)


def _scalar_bool(value: Any, op_name: str, what: str) -> bool:
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.size != 1:
        raise ValueError(f"{op_name}: {what} must hold exactly one element, got shape {list(value.shape)}")
    return bool(value.reshape(-1)[0])


# -- If ----------------------------------------------------------------------------------------


@op_factory("If", 1)
def if_(ctx: KernelContext):
    then_plan = ctx.attrs.get("then_branch")
    else_plan = ctx.attrs.get("else_branch")
    if then_plan is None or else_plan is None:
        raise Fail(f"{ctx.describe()}: both then_branch and else_branch are required.")
    if len(then_plan.output_names) != len(else_plan.output_names):
        raise Fail(
            f"{ctx.describe()}: then_branch has {len(then_plan.output_names)} outputs but else_branch has "
            f"{len(else_plan.output_names)}."
        )
    then_run, else_run = then_plan.run, else_plan.run
    then_cap, else_cap = captured_getter(ctx, then_plan), captured_getter(ctx, else_plan)

    def run_if(cond, *args):
        if type(cond) is np.ndarray and cond.size == 1:
            taken = bool(cond.item())
        elif cond is None:
            raise ValueError("If: input 'cond' is missing")
        else:
            taken = _scalar_bool(cond, "If", "input 'cond'")
        outs = then_run((), then_cap((cond,) + args)) if taken else else_run((), else_cap((cond,) + args))
        return tuple(outs)

    return run_if


# -- Loop --------------------------------------------------------------------------------------


@op_factory("Loop", 1)
def loop(ctx: KernelContext):
    body = ctx.attrs.get("body")
    if body is None:
        raise Fail(f"{ctx.describe()}: attribute 'body' is required.")
    n_in = ctx.num_inputs
    n_carried = n_in - 2
    n_body_in = len(body.input_names)
    n_body_out = len(body.output_names)
    if n_body_in != n_carried + 2:
        raise Fail(
            f"{ctx.describe()}: the body takes {n_body_in} inputs, expected {n_carried + 2} "
            f"(iteration number, condition and {n_carried} loop-carried value(s))."
        )
    n_scan = n_body_out - 1 - n_carried
    if n_scan < 0:
        raise Fail(
            f"{ctx.describe()}: the body has {n_body_out} outputs, expected at least {1 + n_carried} "
            f"(condition and {n_carried} loop-carried value(s))."
        )
    body_run = body.run
    get_cap = captured_getter(ctx, body)
    out_dtypes = list(ctx.output_dtypes)
    scan_fallback = [out_dtypes[n_carried + k] if n_carried + k < len(out_dtypes) else None for k in range(n_scan)]

    def run_loop(M=None, cond=None, *args):
        carried = list(args[:n_carried])
        cap = get_cap((M, cond) + args)
        if M is not None:
            if not isinstance(M, np.ndarray) or M.size != 1:
                raise ValueError(f"Loop: input 'M' must be a scalar, got {getattr(M, 'shape', type(M).__name__)}")
            max_trip = int(M.reshape(-1)[0])
        else:
            max_trip = None  # no trip count: run until the condition is false
        if cond is not None:
            keep_going = _scalar_bool(cond, "Loop", "input 'cond'")
            cond_value = cond
        else:
            keep_going = True
            cond_value = _TRUE
        scans: list[list] = [[] for _ in range(n_scan)]
        i = 0
        while keep_going and (max_trip is None or i < max_trip):
            outs = body_run([np.array(i, dtype=_INT64), cond_value, *carried], cap)
            cond_value = outs[0]
            # Like onnxruntime (and onnx's reference evaluator), the body's condition ends the loop
            # even when the 'cond' input is omitted (the spec says it is then ignored).
            if type(cond_value) is np.ndarray and cond_value.size == 1:
                keep_going = bool(cond_value.item())
            else:
                keep_going = _scalar_bool(cond_value, "Loop", "the body's condition output")
            carried = outs[1 : 1 + n_carried]
            for k in range(n_scan):
                scans[k].append(outs[1 + n_carried + k])
            i += 1
        results: list[Any] = carried
        for k in range(n_scan):
            if scans[k]:
                results.append(_stack(scans[k], "Loop", f"scan output '{body.output_names[1 + n_carried + k]}'"))
            else:
                results.append(_empty_scan_output(body, 1 + n_carried + k, scan_fallback[k], "Loop"))
        return tuple(results)

    return run_loop


# -- Scan --------------------------------------------------------------------------------------


def _scan_iterate(body_run, cap, states: list, views: Sequence[np.ndarray], n_states: int, n_scan_out: int):
    """Run the body once per step over time-major ``views``; returns (final states, per-output lists)."""
    outs_lists: list[list] = [[] for _ in range(n_scan_out)]
    steps = views[0].shape[0] if views else 0
    for t in range(steps):
        outs = body_run([*states, *[v[t] for v in views]], cap)
        states = outs[:n_states]
        for k in range(n_scan_out):
            outs_lists[k].append(outs[n_states + k])
    return states, outs_lists


def _scan_common(ctx: KernelContext):
    body = ctx.attrs.get("body")
    if body is None:
        raise Fail(f"{ctx.describe()}: attribute 'body' is required.")
    n_scan_in = int(ctx.attrs["num_scan_inputs"])
    return body, n_scan_in


@op_factory("Scan", 9)
def scan9(ctx: KernelContext):
    body, n_scan_in = _scan_common(ctx)
    n_in = ctx.num_inputs
    n_states = n_in - n_scan_in
    if n_states < 0:
        raise Fail(f"{ctx.describe()}: num_scan_inputs={n_scan_in} exceeds the {n_in} inputs.")
    if len(body.input_names) != n_in:
        raise Fail(f"{ctx.describe()}: the body takes {len(body.input_names)} inputs, expected {n_in}.")
    n_scan_out = len(body.output_names) - n_states
    if n_scan_out < 0:
        raise Fail(f"{ctx.describe()}: the body has {len(body.output_names)} outputs, expected at least {n_states}.")

    def flags(name: str, count: int) -> list[int]:
        value = ctx.attrs.get(name)
        if value is None:
            return [0] * count
        value = [int(v) for v in value]
        if len(value) != count:
            raise Fail(f"{ctx.describe()}: attribute '{name}' has {len(value)} entries, expected {count}.")
        return value

    in_axes = flags("scan_input_axes", n_scan_in)
    in_dirs = flags("scan_input_directions", n_scan_in)
    out_axes = flags("scan_output_axes", n_scan_out)
    out_dirs = flags("scan_output_directions", n_scan_out)
    body_run = body.run
    get_cap = captured_getter(ctx, body)
    out_dtypes = list(ctx.output_dtypes)

    def run_scan(*args):
        states = list(args[:n_states])
        cap = get_cap(args)
        views = []
        length = None
        for j in range(n_scan_in):
            x = args[n_states + j]
            if not isinstance(x, np.ndarray):
                raise TypeError(f"Scan: scan input {j} must be a tensor, got {type(x).__name__}")
            r = x.ndim
            axis = in_axes[j]
            if not -r <= axis < r:
                raise ValueError(f"Scan: scan_input_axes[{j}]={axis} is out of range for scan input {j} of rank {r}")
            axis = axis + r if axis < 0 else axis
            v = np.moveaxis(x, axis, 0) if axis else x
            if in_dirs[j]:
                v = v[::-1]
            if length is None:
                length = v.shape[0]
            elif v.shape[0] != length:
                raise ValueError(
                    f"Scan: every scan input must have the same sequence length: scan input 0 has {length}, "
                    f"scan input {j} has {v.shape[0]}"
                )
            views.append(v)
        states, lists = _scan_iterate(body_run, cap, states, views, n_states, n_scan_out)
        results: list[Any] = list(states)
        for k in range(n_scan_out):
            values = lists[k]
            name = body.output_names[n_states + k]
            if values:
                if out_dirs[k]:
                    values = values[::-1]
                stacked = _stack(values, "Scan", f"scan output '{name}'")
            else:
                fallback = out_dtypes[n_states + k] if n_states + k < len(out_dtypes) else None
                stacked = _empty_scan_output(body, n_states + k, fallback, "Scan")
            axis = out_axes[k]
            r = stacked.ndim
            if not -r <= axis < r:
                raise ValueError(f"Scan: scan_output_axes[{k}]={axis} is out of range for scan output {k} of rank {r}")
            axis = axis + r if axis < 0 else axis
            if axis:
                stacked = np.ascontiguousarray(np.moveaxis(stacked, 0, axis))
            results.append(stacked)
        return tuple(results)

    return run_scan


@op_factory("Scan", 8)
def scan8(ctx: KernelContext):
    body, n_scan_in = _scan_common(ctx)
    n_in = ctx.num_inputs
    n_states = n_in - 1 - n_scan_in
    if n_states < 0:
        raise Fail(f"{ctx.describe()}: num_scan_inputs={n_scan_in} exceeds the {n_in - 1} state/scan inputs.")
    if len(body.input_names) != n_in - 1:
        raise Fail(f"{ctx.describe()}: the body takes {len(body.input_names)} inputs, expected {n_in - 1}.")
    n_scan_out = len(body.output_names) - n_states
    if n_scan_out < 0:
        raise Fail(f"{ctx.describe()}: the body has {len(body.output_names)} outputs, expected at least {n_states}.")
    dirs = ctx.attrs.get("directions")
    dirs = [0] * n_scan_in if dirs is None else [int(d) for d in dirs]
    if len(dirs) != n_scan_in:
        raise Fail(f"{ctx.describe()}: attribute 'directions' has {len(dirs)} entries, expected {n_scan_in}.")
    body_run = body.run
    get_cap = captured_getter(ctx, body)
    out_dtypes = list(ctx.output_dtypes)

    def run_scan8(sequence_lens, *args):
        cap = get_cap((sequence_lens,) + args)
        states_in = list(args[:n_states])
        scans_in = list(args[n_states : n_states + n_scan_in])
        for j, x in enumerate(scans_in):
            if not isinstance(x, np.ndarray) or x.ndim < 2:
                raise ValueError(
                    f"Scan: scan input {j} must be a tensor of rank >= 2 [batch, sequence, ...], "
                    f"got {getattr(x, 'shape', type(x).__name__)}"
                )
        for j, s in enumerate(states_in):
            if not isinstance(s, np.ndarray) or s.ndim < 1:
                raise ValueError(f"Scan: state input {j} must be a tensor with a batch axis")
        if scans_in:
            batch, max_len = scans_in[0].shape[:2]
        elif states_in:
            batch, max_len = states_in[0].shape[0], 0
        else:
            batch, max_len = 0, 0
        for j, x in enumerate(scans_in):
            if x.shape[:2] != (batch, max_len):
                raise ValueError(
                    f"Scan: scan input {j} has batch/sequence dims {list(x.shape[:2])}, expected {[batch, max_len]}"
                )
        for j, s in enumerate(states_in):
            if s.shape[0] != batch:
                raise ValueError(f"Scan: state input {j} has batch size {s.shape[0]}, expected {batch}")
        if sequence_lens is None:
            lens = [max_len] * batch
        else:
            lens = [int(v) for v in np.asarray(sequence_lens).reshape(-1)]
            if len(lens) != batch:
                raise ValueError(f"Scan: input 'sequence_lens' has {len(lens)} entries, expected batch size {batch}")
            bad = [v for v in lens if not 1 <= v <= max_len]
            if bad:  # onnxruntime rejects empty sequences too
                raise ValueError(f"Scan: 'sequence_lens' values must be in [1, {max_len}], got {bad}")
        final_states: list[list] = [[] for _ in range(n_states)]
        per_batch_outs: list[list] = [[] for _ in range(n_scan_out)]
        for b in range(batch):
            n = lens[b]
            views = []
            for j, x in enumerate(scans_in):
                v = x[b, :n]
                views.append(v[::-1] if dirs[j] else v)
            states, lists = _scan_iterate(body_run, cap, [s[b] for s in states_in], views, n_states, n_scan_out)
            for i, s in enumerate(states):
                final_states[i].append(s)
            for k in range(n_scan_out):
                per_batch_outs[k].append(lists[k])
        results: list[Any] = []
        for i in range(n_states):
            if final_states[i]:
                results.append(_stack(final_states[i], "Scan", f"state '{body.output_names[i]}'"))
            else:
                results.append(np.zeros_like(states_in[i]))
        for k in range(n_scan_out):
            name = body.output_names[n_states + k]
            lists = per_batch_outs[k]
            sample = next((lst[0] for lst in lists if lst), None)
            if sample is None:
                fallback = out_dtypes[n_states + k] if n_states + k < len(out_dtypes) else None
                empty = _empty_scan_output(body, n_states + k, fallback, "Scan")
                results.append(np.zeros((batch, max_len) + empty.shape[1:], dtype=empty.dtype))
                continue
            if all(len(lst) == max_len for lst in lists):
                results.append(_stack([v for lst in lists for v in lst], "Scan", f"scan output '{name}'").reshape(
                    (batch, max_len) + sample.shape))
                continue
            out = np.zeros((batch, max_len) + sample.shape, dtype=sample.dtype)
            for b, lst in enumerate(lists):
                if lst:
                    out[b, : len(lst)] = _stack(lst, "Scan", f"scan output '{name}'")
            results.append(out)
        return tuple(results)

    return run_scan8
