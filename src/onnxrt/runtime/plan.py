"""The execution plan: built once per graph at session construction.

A :class:`GraphPlan` holds, for one graph (the main graph, a control-flow body or
a function body):

* an integer slot per value; slot 0 is always ``None`` (an omitted optional input)
  and slot 1 swallows outputs nobody asked for;
* the initializers pre-placed in a template list;
* one :class:`Step` per node, in topological order, with its prepared kernel, the
  slots it reads and writes, and the slots that die after it (released at once);
* the names the graph reads from enclosing graphs (``captured_names``): a node with
  a subgraph receives those as extra inputs after its regular ones, so lifetimes in
  the enclosing graph stay exact.

``run`` does nothing but execute the steps.
"""

from __future__ import annotations

import contextvars
import operator
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxrt.errors import Fail, InvalidGraph, NotImplemented, OrtError, RuntimeException
from onnxrt.ops import registry
from onnxrt.runtime import channel_shuffle, concat_chains, concat_into, elementwise_chains, shape_memo
from onnxrt.runtime.values import sparse_to_dense, tensor_to_numpy

NONE_SLOT = 0
DISCARD_SLOT = 1


@dataclass(slots=True)
class Step:
    kernel: Callable[..., Any]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    release: tuple[int, ...]
    node: ir.Node
    op_type: str
    name: str
    subplans: tuple = ()  # planned bodies of this node's GRAPH attributes (control flow)
    # (input position, kernel variant that may write its result into that input's array): set where
    # the kernel offers one (``kernel.inplace``) and the value dies at this step (_assign_donations)
    donate: tuple[int, Callable[..., Any]] | None = None
    # values -> the tuple of this step's arguments (one C call, where a list display costs ~150 ns
    # more a step); derived from ``inputs``, remade by dataclasses.replace
    fetch: Callable[[list[Any]], tuple] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.inputs)
        if n > 1:
            self.fetch = operator.itemgetter(*self.inputs)
        elif n == 1:
            only = self.inputs[0]
            self.fetch = lambda values: (values[only],)
        else:
            self.fetch = lambda values: ()


@dataclass
class PlanConfig:
    """What planning needs beyond the graph: opsets, model functions, session settings."""

    opsets: dict[str, int]
    functions: dict[tuple[str, str, str], onnx.FunctionProto] = field(default_factory=dict)
    session: Any = None
    # Ops run through their ONNX function body even when a kernel exists (session config entry
    # "onnxrt.expand_function_ops", comma-separated): for checking kernels against their definition.
    expand_ops: frozenset[str] = frozenset()
    # Models below IR 4 list every initializer as a graph input; onnxruntime treats them as constants
    # (not overridable), which also lets kernels prepare weights.
    initializers_are_constant: bool = False
    # Fuse steps at planning time: chains of elementwise nodes run as one blocked pass
    # (runtime.elementwise_chains), a grouped conv writes the channel shuffle after it
    # (runtime.channel_shuffle), convs write into the Concat of their outputs (runtime.concat_into);
    # the session turns it on at ORT_ENABLE_EXTENDED and above.
    fuse_steps: bool = False


class Terminated(Exception):
    """Raised inside a run when RunOptions.terminate was set."""


# The RunOptions of the run in progress on this thread (or task): control-flow bodies run by kernels
# check it too, so `terminate` also stops a long Loop.
_active_run_options: contextvars.ContextVar[Any] = contextvars.ContextVar("onnxrt_run_options", default=None)


class GraphPlan:
    def __init__(
        self,
        graph: ir.Graph,
        config: PlanConfig,
        outer_scope: frozenset[str] = frozenset(),
        overridable_initializers: bool = True,
        extra_outputs: Sequence[str] = (),
        outer_constants: dict[str, Any] | None = None,
        free_names: dict[int, set[str]] | None = None,
    ) -> None:
        self.graph = graph
        self.config = config
        # each nested graph's free names, by id, shared with the subplans: computed once per build,
        # not again at every level of nesting above the graph
        self._free_names = {} if free_names is None else free_names
        # constants of the enclosing graphs: a body reads them as its own constants (so its kernels can
        # prepare with them and its constant-only nodes fold) instead of capturing them on every run
        self._outer_constants = outer_constants or {}
        self._slot_of: dict[str, int] = {}
        self._n_slots = 2
        self.input_names = [v.name for v in graph.inputs]
        # extra_outputs: values inside the graph a caller asked to fetch; they are kept alive to the end
        self.output_names = [v.name for v in graph.outputs] + [n for n in extra_outputs if n not in
                                                               {v.name for v in graph.outputs}]
        self._fetched_names = frozenset(self.output_names)
        initializer_names = set(graph.initializers)
        if config.initializers_are_constant:
            overridable_initializers = False
            self.input_names = [n for n in self.input_names if n not in initializer_names]
        self.overridable: list[str] = [n for n in self.input_names if n in initializer_names]

        template: dict[int, Any] = {}
        self._template_values = template
        self.constants: dict[str, Any] = {}
        for name, value in graph.initializers.items():
            slot = self._new_slot(name)
            if value.const_value is None:
                raise InvalidGraph(f"Initializer '{name}' has no value.")
            array = tensor_to_numpy(value.const_value)
            array.flags.writeable = False  # weights are shared by every run: no kernel may write them
            template[slot] = array
            if name not in self.input_names or not overridable_initializers:
                self.constants[name] = array
        self.input_slots = [self._slot_of.get(n) or self._new_slot(n) for n in self.input_names]

        nodes = self._topological_order(graph, self._free_names)
        defined = set(self._slot_of)
        for node in nodes:
            defined.update(o.name for o in node.outputs if o.name)
        inner_scope = frozenset(outer_scope | defined)

        self.captured_names: list[str] = []
        self.steps: list[Step] = []
        self.folded_nodes = 0
        for node in nodes:
            step = self._plan_node(node, inner_scope, outer_scope)
            if not self._fold(step):
                self.steps.append(step)
        del self._free_names  # subplans are all built: the ids in it may be reused from here on

        missing = [n for n in self.output_names if n not in self._slot_of]
        if missing:
            raise InvalidGraph(f"Graph output(s) {missing} are not produced by any node, input or initializer.")
        self.output_slots = [self._slot_of[n] for n in self.output_names]
        self.captured_slots = [self._slot_of[n] for n in self.captured_names]
        if config.fuse_steps:
            constants = {self._slot_of[name]: array for name, array in self.constants.items() if name in self._slot_of}
            self.steps = channel_shuffle.fuse(self.steps, set(self.output_slots), _node_failure)
            self.steps = elementwise_chains.fuse(self.steps, constants, set(self.output_slots),
                                                 config.opsets.get("", 0), NONE_SLOT, _node_failure)
            self.steps = concat_into.fuse(self.steps, set(self.output_slots), _node_failure)

        # Values only folded nodes read (a weight transposed at planning time, say) are not needed to
        # run: drop them so a weight is not held twice.
        needed = set(self.output_slots) | set(self.input_slots)
        for step in self.steps:
            needed.update(step.inputs)
        for name, slot in list(self._slot_of.items()):
            if slot in template and slot not in needed:
                del template[slot]
                self.constants.pop(name, None)
        self._template: list[Any] = [None] * self._n_slots
        for slot, array in template.items():
            self._template[slot] = array
        # slots holding a value fixed at planning time (weights, folded results; not overridable inputs)
        self._constant_slots = frozenset(template) - set(self.input_slots)
        shape_memo.wrap(self.steps, self._constant_slots, NONE_SLOT)
        concat_chains.chain(self.steps, set(self.output_slots))
        self._assign_release_points()
        self._assign_donations()
        self._build_dependencies()
        # Set by the session on its top-level plans for ExecutionMode.ORT_PARALLEL (never on subgraph
        # plans: a body run from a pool thread must not wait on the same pool).
        self.parallel_pool: Any = None

    # -- building -------------------------------------------------------------------------

    def _new_slot(self, name: str) -> int:
        slot = self._n_slots
        self._n_slots += 1
        self._slot_of[name] = slot
        return slot

    def _fold(self, step: Step) -> bool:
        """Compute a node whose inputs are all constant now, once, instead of on every run.

        Deterministic ops only, never control flow or function calls, and only when the results are
        not much larger than the inputs (folding must not trade a cheap run for a huge constant). A
        node that fails here stays a step, so its error surfaces at run time as usual.
        """
        node = step.node
        if step.subplans or node.op_type in _NOT_FOLDED or node.domain not in ("", "ai.onnx", "com.microsoft"):
            return False
        if (node.domain, node.op_type, node.overload or "") in self.config.functions:
            return False
        inputs = []
        for slot, value in zip(step.inputs, node.inputs):
            if slot == NONE_SLOT:
                inputs.append(None)
            elif value is not None and value.name in self.constants:
                inputs.append(self.constants[value.name])
            else:
                return False
        try:
            result = step.kernel(*inputs)
        except Exception:
            return False
        outputs = _output_list(result)
        if len(outputs) < len(step.outputs) or not all(isinstance(o, np.ndarray) for o in outputs[: len(step.outputs)]):
            return False
        in_size = sum(int(np.size(a)) for a in inputs if a is not None)
        out_size = sum(int(o.size) for o in outputs[: len(step.outputs)])
        # A node without inputs (Constant) already holds its value: folding it costs no memory. A
        # result every reader takes as a weight is kept whatever its size: made on every run instead,
        # it would cost as much memory during the run and its making each time (light VGG-19's fc
        # weight, a 411 MB ConstantOfShape: 71 ms of a 290 ms run).
        if inputs and out_size > max(1 << 16, 2 * in_size):
            if not registry.read_only_as_weights(node.outputs):
                return False
        for slot, value, out in zip(step.outputs, node.outputs, outputs):
            if slot == DISCARD_SLOT:
                continue
            if out.flags.writeable:
                out = out.copy() if not out.flags.owndata else out
                out.flags.writeable = False
            self._template_values[slot] = out
            self.constants[value.name] = out
        self.folded_nodes += 1
        return True

    def _read_slot(self, name: str, outer_scope: frozenset[str]) -> int:
        slot = self._slot_of.get(name)
        if slot is None and name in self._outer_constants:
            slot = self._new_slot(name)
            self._template_values[slot] = self._outer_constants[name]
            self.constants[name] = self._outer_constants[name]
            return slot
        if slot is None:
            if name not in outer_scope:
                raise InvalidGraph(
                    f"Value '{name}' is used but is not a graph input, an initializer, or the output of a node."
                )
            self.captured_names.append(name)
            slot = self._new_slot(name)
        return slot

    @staticmethod
    def _topological_order(graph: ir.Graph, free_names: dict[int, set[str]]) -> list[ir.Node]:
        nodes = list(graph)
        producer: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for out in node.outputs:
                if out.name:
                    if out.name in producer:
                        raise InvalidGraph(f"Value '{out.name}' is produced by more than one node.")
                    producer[out.name] = i
        deps: list[set[int]] = []
        for node in nodes:
            needed: set[int] = set()
            for name in _names_read(node, free_names):
                j = producer.get(name)
                if j is not None:
                    needed.add(j)
            deps.append(needed)
        # Kahn's algorithm, keeping the file order among ready nodes.
        order: list[ir.Node] = []
        users: list[list[int]] = [[] for _ in nodes]
        pending = [len(d) for d in deps]
        for i, d in enumerate(deps):
            for j in d:
                users[j].append(i)
        ready = [i for i, n in enumerate(pending) if n == 0]
        import heapq

        heapq.heapify(ready)
        while ready:
            i = heapq.heappop(ready)
            order.append(nodes[i])
            for u in users[i]:
                pending[u] -= 1
                if pending[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(nodes):
            stuck = [nodes[i].name or nodes[i].op_type for i, n in enumerate(pending) if n > 0]
            raise InvalidGraph(f"The graph has a cycle; nodes that can never run: {stuck[:10]}")
        return order

    def _plan_node(self, node: ir.Node, inner_scope: frozenset[str], outer_scope: frozenset[str]) -> Step:
        domain, opset = self._opset_of(node)

        attrs, subplans = self._parse_attributes(node, domain, opset, inner_scope)
        captured: list[str] = []
        for sub in subplans:
            for name in sub.captured_names:
                if name not in captured:
                    captured.append(name)

        in_slots = [NONE_SLOT if v is None or not v.name else self._read_slot(v.name, outer_scope) for v in node.inputs]
        in_slots += [self._read_slot(name, outer_scope) for name in captured]

        const_inputs = [self.constants.get(v.name) if v is not None else None for v in node.inputs]
        ctx = self._kernel_context(node, domain, opset, attrs, subplans, const_inputs, len(captured))

        kernel = self._make_kernel(node, domain, opset, ctx)

        out_slots = []
        for v in node.outputs:
            if not v.name:
                out_slots.append(DISCARD_SLOT)
            else:
                out_slots.append(self._new_slot(v.name))
        return Step(kernel, tuple(in_slots), tuple(out_slots), (), node, node.op_type, node.name or "", tuple(subplans))

    def evaluate(self, node: ir.Node, arrays: Sequence[Any]) -> list[Any]:
        """Run ``node`` (no graph attributes) once on ``arrays`` (None for an omitted input), outside
        this plan's schedule: constant folding's way to use the kernels without planning a graph per
        node. Returns the outputs as a list; kernel errors propagate."""
        if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
            # checked before planning anything: subplans are built only while this plan is
            raise InvalidGraph(f"Node '{node.name}' ({node.op_type}) has graph attributes: it cannot run alone.")
        domain, opset = self._opset_of(node)
        attrs, _ = self._parse_attributes(node, domain, opset, frozenset())
        ctx = self._kernel_context(node, domain, opset, attrs, [], list(arrays), 0)
        ctx.fetched_outputs = [True] * len(node.outputs)  # folded values become constants
        return _output_list(self._make_kernel(node, domain, opset, ctx)(*arrays))

    def _opset_of(self, node: ir.Node) -> tuple[str, int]:
        domain = registry.normalize_domain(node.domain)
        opset = self.config.opsets.get(domain)
        if opset is None:
            raise InvalidGraph(
                f"This is an invalid model. node '{node.name}' ({node.op_type}) uses domain "
                f"'{domain or 'ai.onnx'}', which the model does not import."
            )
        return domain, opset

    def _kernel_context(self, node: ir.Node, domain: str, opset: int, attrs: dict[str, Any], subplans: list,
                        const_inputs: list, num_captured: int) -> registry.KernelContext:
        return registry.KernelContext(
            op_type=node.op_type,
            domain=domain,
            name=node.name or "",
            opset=opset,
            since_version=0,
            attrs=attrs,
            num_inputs=len(node.inputs),
            num_outputs=len(node.outputs),
            input_names=[v.name if v is not None else "" for v in node.inputs],
            output_names=[v.name for v in node.outputs],
            const_inputs=const_inputs,
            input_types=[v.type if v is not None else None for v in node.inputs],
            output_types=[v.type for v in node.outputs],
            num_captured=num_captured,
            session=self.config.session,
            subplans=subplans,
            node=node,
            fetched_outputs=[v.name in self._fetched_names for v in node.outputs],
        )

    def _make_kernel(self, node: ir.Node, domain: str, opset: int, ctx: registry.KernelContext) -> Callable:
        from onnxrt.runtime import functions  # late import: functions builds GraphPlans

        model_fn = self.config.functions.get((node.domain, node.op_type, node.overload or ""))
        if model_fn is not None:
            factory: Callable = functions.model_function_factory(model_fn, self.config)
            ctx.since_version = opset
        else:
            found = None if node.op_type in self.config.expand_ops else registry.lookup(domain, node.op_type, opset)
            if found is not None:
                ctx.since_version, factory = found
            else:
                schema = _schema(node.op_type, opset, domain)
                if schema is not None and (schema.has_function or schema.has_context_dependent_function):
                    factory = functions.schema_function_factory(schema, self.config)
                    ctx.since_version = schema.since_version
                else:
                    raise NotImplemented(
                        f"Could not find an implementation for {node.op_type}({opset}) node with name "
                        f"'{node.name}' in domain '{domain or 'ai.onnx'}'"
                    )
        try:
            return factory(ctx)
        except OrtError:
            raise
        except Exception as e:
            raise Fail(f"Failed to prepare {ctx.describe()}: {type(e).__name__}: {e}") from e

    def _parse_attributes(
        self, node: ir.Node, domain: str, opset: int, inner_scope: frozenset[str]
    ) -> tuple[dict[str, Any], list["GraphPlan"]]:
        attrs: dict[str, Any] = dict(_schema_defaults(node.op_type, opset, domain))
        subplans: list[GraphPlan] = []
        for name, attr in node.attributes.items():
            if attr.is_ref():
                raise InvalidGraph(f"Attribute '{name}' of node '{node.name}' refers to a function attribute outside a function.")
            value = attr.value
            if domain == registry.ML_DOMAIN and isinstance(value, np.ndarray):
                # a long INTS / FLOATS list the loader read into numpy (loader.ArrayAttr): the ai.onnx.ml
                # kernels read their attributes as arrays, so it is not unpacked into Python numbers
                attrs[name] = value
                continue
            attrs[name] = self._attribute_value(attr, inner_scope, subplans)
        schema = _schema(node.op_type, opset, domain)
        if schema is not None:
            _check_arity(node, schema)
            for name, spec in schema.attributes.items():
                if spec.required and name not in attrs:
                    raise InvalidGraph(
                        f"This is an invalid model. Node '{node.name}' ({node.op_type}): required attribute "
                        f"'{name}' is missing."
                    )
        return attrs, subplans

    def _attribute_value(self, attr: ir.Attr, inner_scope: frozenset[str], subplans: list) -> Any:
        t = attr.type
        A = ir.AttributeType
        if t == A.FLOAT:
            return float(attr.value)
        if t == A.INT:
            return int(attr.value)
        if t == A.STRING:
            return attr.value if isinstance(attr.value, str) else attr.value.decode()
        if t == A.TENSOR:
            return tensor_to_numpy(attr.value)
        if t == A.GRAPH:
            sub = GraphPlan(attr.value, self.config, inner_scope, overridable_initializers=False,
                            outer_constants={**self._outer_constants, **self.constants}, free_names=self._free_names)
            subplans.append(sub)
            return sub
        if t in (A.FLOATS, A.INTS):
            value = attr.value  # Python floats / ints in onnx_ir's Attr; a numpy array in a loader.ArrayAttr
            return value.tolist() if isinstance(value, np.ndarray) else list(value)
        if t == A.STRINGS:
            return [x if isinstance(x, str) else x.decode() for x in attr.value]
        if t == A.TENSORS:
            return [tensor_to_numpy(x) for x in attr.value]
        if t == A.GRAPHS:
            subs = [GraphPlan(g, self.config, inner_scope, overridable_initializers=False,
                              outer_constants={**self._outer_constants, **self.constants}, free_names=self._free_names)
                    for g in attr.value]
            subplans.extend(subs)
            return subs
        if t == A.SPARSE_TENSOR:
            return sparse_to_dense(attr.value)
        if t == A.TYPE_PROTO:
            return attr.value
        if t == A.TYPE_PROTOS:
            return list(attr.value)
        return attr.value

    def _assign_release_points(self) -> None:
        keep = set(self.output_slots) | {NONE_SLOT, DISCARD_SLOT}
        last_use: dict[int, int] = {}
        for i, step in enumerate(self.steps):
            for s in step.inputs:
                last_use[s] = i
            for s in step.outputs:
                last_use.setdefault(s, i)  # an output nobody reads dies where it is made
        releases: list[list[int]] = [[] for _ in self.steps]
        for slot, i in last_use.items():
            if slot not in keep:
                releases[i].append(slot)
        for step, rel in zip(self.steps, releases):
            step.release = tuple(rel)

    def _assign_donations(self) -> None:
        """In-place work where an input dies: a kernel may offer variants that write their result
        into the array of one input (``kernel.inplace``: {input position: variant}). A step gets one
        when that input's value dies at the step, the step reads it once, and it is neither a feed, a
        captured outer value, a constant nor a graph output. Whether the array itself may be
        overwritten (no view of it, no other holder) is checked on every run (_donating_call)."""
        if sys.implementation.name != "cpython":  # the run-time check counts references
            return
        protected = (set(self.input_slots) | set(self.captured_slots) | set(self.output_slots)
                     | self._constant_slots | {NONE_SLOT, DISCARD_SLOT})
        for step in self.steps:
            variants = getattr(step.kernel, "inplace", None)
            step.donate = None
            if not variants:
                continue
            for position, slot in enumerate(step.inputs):
                variant = variants.get(position)
                if (variant is not None and slot in step.release and slot not in protected
                        and step.inputs.count(slot) == 1):
                    step.donate = (position, variant)
                    break

    def _build_dependencies(self) -> None:
        """Step-level dependencies for parallel execution: who waits for whom, who reads each slot."""
        writer: dict[int, int] = {}
        for i, step in enumerate(self.steps):
            for slot in step.outputs:
                writer[slot] = i
        self._successors: list[list[int]] = [[] for _ in self.steps]
        self._n_predecessors: list[int] = []
        readers: dict[int, int] = {}
        for i, step in enumerate(self.steps):
            preds = {writer[s] for s in step.inputs if s in writer}
            for p in preds:
                self._successors[p].append(i)
            self._n_predecessors.append(len(preds))
            for s in set(step.inputs):
                readers[s] = readers.get(s, 0) + 1
        keep = set(self.output_slots) | {NONE_SLOT, DISCARD_SLOT}
        self._readers = {s: n for s, n in readers.items() if s not in keep}

    # -- running ---------------------------------------------------------------------------

    def run(self, feeds: Sequence[Any], captured: Sequence[Any] = (), run_options: Any = None) -> list[Any]:
        """Execute the graph. ``feeds`` align with ``input_names``, ``captured`` with ``captured_names``."""
        if run_options is None:
            run_options = _active_run_options.get()
            token = None
        else:
            token = _active_run_options.set(run_options)
        try:
            return self._execute(feeds, captured, run_options)
        finally:
            if token is not None:
                _active_run_options.reset(token)

    def _execute(self, feeds: Sequence[Any], captured: Sequence[Any], run_options: Any) -> list[Any]:
        pool = self.parallel_pool
        if pool is not None and len(self.steps) > 1:
            return self._execute_parallel(feeds, captured, run_options, pool)
        values = self._initial_values(feeds, captured)
        step = None
        check_terminate = run_options is not None
        try:
            for step in self.steps:
                if check_terminate and run_options.terminate:
                    raise Terminated()
                if step.donate is None:
                    inputs = step.inputs
                    if len(inputs) == 1:  # most steps: the slot read directly, no tuple made
                        result = step.kernel(values[inputs[0]])
                    else:
                        result = step.kernel(*step.fetch(values))
                else:
                    result = None  # it may hold the previous step's output: the array to donate
                    result = _donating_call(step, list(step.fetch(values)), values)
                outs = step.outputs
                if len(outs) == 1:
                    values[outs[0]] = result[0] if type(result) is tuple else result
                else:
                    for slot, value in zip(outs, result):
                        values[slot] = value
                for slot in step.release:
                    values[slot] = None
        except Terminated:
            raise
        except Exception as e:
            failure = e if step is None else _node_failure(step, e)
            if failure is e:
                raise
            raise failure from e
        return self._outputs(values)

    def _outputs(self, values: list[Any]) -> list[Any]:
        out = [values[s] for s in self.output_slots]
        for i, v in enumerate(out):
            if isinstance(v, np.generic):  # numpy ufuncs return scalars for 0-d inputs
                out[i] = np.asarray(v)
        return out

    def _initial_values(self, feeds: Sequence[Any], captured: Sequence[Any]) -> list[Any]:
        values = self._template.copy()
        for slot, value in zip(self.input_slots, feeds):
            if value is not None or values[slot] is None:
                values[slot] = value
        for slot, value in zip(self.captured_slots, captured):
            values[slot] = value
        return values

    def _execute_parallel(self, feeds: Sequence[Any], captured: Sequence[Any], run_options: Any, pool: Any) -> list[Any]:
        """ExecutionMode.ORT_PARALLEL: run each step as soon as its inputs exist, on the inter-op pool.

        Independent branches (Inception towers, multi-head graphs) overlap; numpy releases the GIL in
        its kernels, so the overlap is real. A slot is released when its last reader finishes.
        """
        import threading

        values = self._initial_values(feeds, captured)
        pending = list(self._n_predecessors)
        readers_left = dict(self._readers)
        lock = threading.Lock()
        done = threading.Event()
        state = {"finished": 0, "error": None}
        n_steps = len(self.steps)

        def run_chain(i: int) -> None:
            # follow one ready successor on this thread (no hand-off cost along a chain); submit the others
            next_step: int | None = i
            while next_step is not None:
                next_step = run_step(next_step)

        def run_step(i: int) -> int | None:
            step = self.steps[i]
            try:
                if state["error"] is not None:
                    return None
                if run_options is not None and run_options.terminate:
                    raise Terminated()
                result = step.kernel(*step.fetch(values))
                if len(step.outputs) == 1:
                    values[step.outputs[0]] = result[0] if type(result) is tuple else result
                else:
                    for slot, value in zip(step.outputs, result):
                        values[slot] = value
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                with lock:
                    if state["error"] is None:
                        state["error"] = (e, step)
                done.set()
                return None
            ready = []
            with lock:
                for s in set(step.inputs):
                    left = readers_left.get(s)
                    if left is not None:
                        readers_left[s] = left - 1
                        if left == 1:
                            values[s] = None
                for j in self._successors[i]:
                    pending[j] -= 1
                    if pending[j] == 0:
                        ready.append(j)
                state["finished"] += 1
                if state["finished"] == n_steps:
                    done.set()
            for j in ready[1:]:
                pool.submit(run_chain, j)
            return ready[0] if ready else None

        for i, n in enumerate(self._n_predecessors):
            if n == 0:
                pool.submit(run_chain, i)
        done.wait()
        if state["error"] is not None:
            error, step = state["error"]
            if isinstance(error, Terminated):
                raise error
            failure = _node_failure(step, error)
            if failure is error:
                raise error
            raise failure from error
        return self._outputs(values)


def _donating_call(step: Step, args: list[Any], values: list[Any]) -> Any:
    """Run a step whose donated input dies here: through its in-place variant when the array is
    the run's alone to overwrite, else through its kernel."""
    position, variant = step.donate
    values[step.inputs[position]] = None  # released after this step anyway
    x = args[position]
    # Its holders now: ``args``, ``x`` and getrefcount's argument: a view of it would hold it as its
    # base, another slot, a cache or the caller would hold it too. A view (a reshaped MatMul result,
    # say) qualifies when it alone holds its base (getrefcount: the .base reference and its argument).
    # A feed or captured value, or a view of one, never passes: _execute's own arguments hold those.
    if type(x) is np.ndarray and x.flags.writeable and sys.getrefcount(x) == 3:
        base = x.base
        if base is None or (type(base) is np.ndarray and base.flags.owndata and sys.getrefcount(base) == 3):
            del x, base
            return variant(*args)
        del base
    del x
    return step.kernel(*args)


def _node_failure(step: Step, error: BaseException) -> BaseException:
    """onnxruntime's report of a kernel failure, naming the node and its op.

    An OrtError keeps its class (a nested body's error is already named and passes through); anything
    else a kernel raises becomes a RuntimeException.
    """
    if getattr(error, "_node_named", False):
        return error
    if isinstance(error, OrtError):
        err: OrtError = type(error)(
            f"Non-zero status code returned while running {step.op_type} node. Name:'{step.name}' "
            f"Status Message: {error.message}"
        )
    else:
        err = RuntimeException(
            f"Non-zero status code returned while running {step.op_type} node. Name:'{step.name}' "
            f"Status Message: {type(error).__name__}: {error}"
        )
    err._node_named = True  # type: ignore[attr-defined]
    return err


# Ops never computed at planning time: their result must differ between runs (random draws,
# training-mode dropout) or they depend on more than their inputs.
_NOT_FOLDED = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "Dropout", "If", "Loop", "Scan", "SequenceMap",
})


def _names_read(node: ir.Node, memo: dict[int, set[str]]) -> list[str]:
    """Every value name a node reads, including names its subgraphs read from outside themselves
    (``memo``: the free names of graphs already walked, by id)."""
    names = [v.name for v in node.inputs if v is not None and v.name]
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            names.extend(_free_names(attr.value, memo))
        elif attr.type == ir.AttributeType.GRAPHS:
            for g in attr.value:
                names.extend(_free_names(g, memo))
    return names


def _free_names(graph: ir.Graph, memo: dict[int, set[str]]) -> set[str]:
    free = memo.get(id(graph))
    if free is None:
        defined = {v.name for v in graph.inputs} | set(graph.initializers)
        used: set[str] = set()
        for node in graph:
            used.update(_names_read(node, memo))
            defined.update(o.name for o in node.outputs if o.name)
        free = memo[id(graph)] = used - defined
    return free


_schema_cache: dict[tuple[str, int, str], Any] = {}


def _output_list(result: Any) -> list[Any]:
    """A kernel's return value as a list of outputs (numpy scalars made 0-d arrays)."""
    outputs = list(result) if type(result) is tuple else [result]
    return [np.asarray(o) if isinstance(o, np.generic) else o for o in outputs]


def _schema(op_type: str, opset: int, domain: str) -> onnx.defs.OpSchema | None:
    key = (op_type, opset, domain)
    if key not in _schema_cache:
        try:
            _schema_cache[key] = onnx.defs.get_schema(op_type, opset, domain)
        except Exception:
            _schema_cache[key] = None
    return _schema_cache[key]


_defaults_cache: dict[tuple[str, int, str], dict[str, Any]] = {}


def _check_arity(node: ir.Node, schema: onnx.defs.OpSchema) -> None:
    """onnxruntime's load-time check of a node's input and output counts against its schema (omitted
    optional ones count, as their empty names do in the file), so that a kernel never runs with more
    or fewer arguments than it was written for."""
    for what, count, low, high in (("input", len(node.inputs), schema.min_input, schema.max_input),
                                   ("output", len(node.outputs), schema.min_output, schema.max_output)):
        if not low <= count <= high:
            raise InvalidGraph(
                f"This is an invalid model. Node '{node.name}' ({node.op_type}): Error Node with schema"
                f"({schema.domain}::{schema.name}:{schema.since_version}) has {what} size {count} not in range "
                f"[min={low}, max={high}]."
            )


def _schema_defaults(op_type: str, opset: int, domain: str) -> dict[str, Any]:
    key = (op_type, opset, domain)
    cached = _defaults_cache.get(key)
    if cached is not None:
        return cached
    defaults: dict[str, Any] = {}
    schema = _schema(op_type, opset, domain)
    if schema is not None:
        for name, spec in schema.attributes.items():
            dv = spec.default_value
            if dv is None or dv.type == onnx.AttributeProto.UNDEFINED:
                continue
            value = onnx.helper.get_attribute_value(dv)
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, list):
                value = [v.decode() if isinstance(v, bytes) else v for v in value]
            elif isinstance(value, onnx.TensorProto):
                value = onnx.numpy_helper.to_array(value)
            defaults[name] = value
    _defaults_cache[key] = defaults
    return defaults
