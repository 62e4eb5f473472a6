"""InferenceSession: onnxruntime's Python API over onnxrt's loader, planner and executor."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxrt import optimizer
from onnxrt import providers as _providers
from onnxrt import types as _types
from onnxrt.errors import Fail, InvalidArgument
from onnxrt.model import loader
from onnxrt.options import GraphOptimizationLevel, RunOptions, SessionOptions
from onnxrt.ops.registry import normalize_domain
from onnxrt.ortvalue import OrtValue
from onnxrt.runtime import memory, threads
from onnxrt.runtime import profiler as _profiler
from onnxrt.runtime.plan import GraphPlan, PlanConfig, Terminated
from onnxrt.runtime.values import type_to_proto


class NodeArg:
    """Name, type string and shape of a graph input or output, as onnxruntime reports them."""

    def __init__(self, name: str, type: str, shape: list[int | str | None]) -> None:  # noqa: A002
        self.name = name
        self.type = type
        self.shape = shape

    def __repr__(self) -> str:
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeArg) and (self.name, self.type, self.shape) == (other.name, other.type, other.shape)

    __hash__ = None  # type: ignore[assignment]


@dataclass
class ModelMetadata:
    producer_name: str = ""
    graph_name: str = ""
    domain: str = ""
    description: str = ""
    graph_description: str = ""
    version: int = 0
    custom_metadata_map: dict[str, str] = field(default_factory=dict)


@dataclass
class _InputSpec:
    """What a feed is checked against: built once, used on every run."""

    name: str
    slot_index: int
    kind: str  # 'tensor', 'sequence', 'map', 'optional', 'unknown'
    dtype: np.dtype | None
    dims: tuple[int | None, ...] | None  # None: rank unknown; None inside: free dimension
    type_string: str
    # the one shape a feed can have when every dim is fixed (a feed of it needs no per-axis check)
    fixed_shape: tuple[int, ...] | None = field(init=False)

    def __post_init__(self) -> None:
        dims = self.dims
        self.fixed_shape = dims if self.kind == "tensor" and dims is not None and None not in dims else None


def _node_arg(value: ir.Value, overrides: dict[str, onnx.TypeProto] | None = None) -> NodeArg:
    if overrides and value.name in overrides:
        tp = overrides[value.name]
        return NodeArg(value.name, _types.type_proto_string(tp), _types.type_proto_shape(tp) or [])
    proto = type_to_proto(value.type, value.shape)
    if proto is None or proto.WhichOneof("value") is None:
        return NodeArg(value.name, "tensor(float)" if value.type is None else "unknown", [])
    shape = _types.type_proto_shape(proto)
    return NodeArg(value.name, _types.type_proto_string(proto), shape if shape is not None else [])


def _input_spec(value: ir.Value, index: int) -> _InputSpec:
    type_ = value.type
    if isinstance(type_, ir.TensorType):
        try:
            dtype = np.dtype(type_.dtype.numpy())
        except Exception:
            dtype = None
        dims = None
        if value.shape is not None:
            # negative dims (some exporters write -1) are free dimensions, as onnxruntime treats them
            dims = tuple(d if isinstance(d, int) and d >= 0 else None for d in value.shape)
        return _InputSpec(value.name, index, "tensor", dtype, dims, _node_arg(value).type)
    if isinstance(type_, ir.SequenceType):
        return _InputSpec(value.name, index, "sequence", None, None, _node_arg(value).type)
    if isinstance(type_, ir.OptionalType):
        return _InputSpec(value.name, index, "optional", None, None, _node_arg(value).type)
    return _InputSpec(value.name, index, "unknown", None, None, "unknown")


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Python's cyclic garbage collector off while sessions are being built.

    Loading and optimizing a graph allocates tens of thousands of container objects; that triggers
    a full collection, which walks every object in the process (numpy, onnx, onnx_ir included):
    about 20 ms of a small model's 100 ms load, measured. Cyclic garbage made meanwhile is collected
    once the collector is back on, which happens when the last concurrent construction ends (and
    not at all if the caller had it off)."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


class InferenceSession:
    """Loads a model once and runs it; the same constructor and methods as onnxruntime's."""

    def __init__(
        self,
        path_or_bytes: str | bytes | os.PathLike | onnx.ModelProto,
        sess_options: SessionOptions | None = None,
        providers: Sequence[str | tuple[str, dict]] | None = None,
        provider_options: Sequence[dict] | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_source = path_or_bytes
        self._model_path = os.fspath(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else None
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._providers, self._provider_options = self._resolve_providers(providers, provider_options)
        self._profiler = None
        with _cyclic_gc_paused():
            self._create_session()

    # -- construction ----------------------------------------------------------------------

    @staticmethod
    def _resolve_providers(providers, provider_options) -> tuple[list[str], list[dict]]:
        if providers is None:
            return [_providers.CPU], [{}]
        names: list[str] = []
        options: list[dict] = []
        if provider_options is not None and len(provider_options) != len(providers):
            raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
        for i, p in enumerate(providers):
            if isinstance(p, tuple):
                if len(p) != 2 or not isinstance(p[1], dict):
                    raise ValueError("A provider given as a tuple must be (name, options dict).")
                name, opts = p
            else:
                name, opts = p, (provider_options[i] if provider_options is not None else {})
            if not isinstance(name, str):
                raise ValueError(f"Provider names must be strings, got {type(name).__name__}.")
            if name not in _providers.get_available_providers():
                warnings.warn(
                    f"Specified provider '{name}' is not in available provider names."
                    f"Available providers: '{', '.join(_providers.get_available_providers())}'",
                    stacklevel=3,
                )
                continue
            names.append(name)
            options.append({str(k): str(v) for k, v in opts.items()})
        if _providers.CPU not in names:
            names.append(_providers.CPU)
            options.append({})
        return names, options

    def _create_session(self) -> None:
        options = self._sess_options
        if options.enable_cpu_mem_arena:
            memory.keep_freed_memory()
        if options.enable_profiling:
            self._profiler = _profiler.Profiler(options.profile_file_prefix)
        with _profiler.session_event(self._profiler, "model_loading_uri" if self._model_path else "model_loading_array"):
            loaded = loader.load(
                self._model_source,
                free_dims_by_name=options._free_dim_by_name,
                free_dims_by_denotation=options._free_dim_by_denotation,
            )
        self._loaded = loaded
        with _profiler.session_event(self._profiler, "session_initialization"):
            model = loaded.model
            self._apply_added_initializers(model)
            self._optimize(model)
            if options.optimized_model_filepath:
                self._save_optimized(model, options.optimized_model_filepath)
            opsets = {normalize_domain(d): v for d, v in model.opset_imports.items()}
            functions = {}
            for fn in loaded.proto.functions:
                own = onnx.FunctionProto()
                own.CopyFrom(fn)  # its own message: holding a part of the parsed model would pin all of it
                functions[(fn.domain, fn.name, fn.overload or "")] = own
            expand = options._config.get("onnxrt.expand_function_ops", "")
            config = PlanConfig(opsets=opsets, functions=functions, session=self,
                                expand_ops=frozenset(op for op in expand.split(",") if op),
                                initializers_are_constant=0 < loaded.proto.ir_version < 4,
                                fuse_steps=int(options.graph_optimization_level)
                                >= int(GraphOptimizationLevel.ORT_ENABLE_EXTENDED))
            self._plan_config = config
            self._plan = GraphPlan(model.graph, config)
            self._plan.parallel_pool = self._parallel_pool()
            if self._profiler is not None:
                self._profiler.instrument(self._plan)

        graph = model.graph
        initializer_names = set(graph.initializers)
        graph_inputs = [v for v in graph.inputs if v.name in set(self._plan.input_names)]
        overrides = loaded.type_overrides
        self._inputs = [_node_arg(v, overrides) for v in graph_inputs if v.name not in initializer_names]
        self._overridable = [_node_arg(v, overrides) for v in graph_inputs if v.name in initializer_names]
        self._outputs = [_node_arg(v, overrides) for v in graph.outputs]
        self._input_specs = {v.name: _input_spec(v, i) for i, v in enumerate(graph_inputs)}
        for name, tp in overrides.items():  # map-typed inputs onnx_ir could not hold
            if name in self._input_specs:
                kind = "map" if tp.WhichOneof("value") == "map_type" else "sequence"
                self._input_specs[name] = _InputSpec(name, self._input_specs[name].slot_index, kind, None, None,
                                                     _types.type_proto_string(tp))
        self._required_inputs = [v.name for v in graph_inputs if v.name not in initializer_names]
        self._required_names = frozenset(self._required_inputs)
        self._output_index = {name: i for i, name in enumerate(self._plan.output_names)}
        self._value_names = set(self._plan._slot_of)
        # BLAS threads during a run: intra_op_num_threads (0 = every core) unless the config entry
        # "onnxrt.blas_threads" says otherwise.
        blas = options._config.get("onnxrt.blas_threads")
        self._intra_op_threads = threads.resolve_num_threads(options.intra_op_num_threads)
        self._blas_threads = int(blas) if blas else self._intra_op_threads
        self._intermediate_plans: dict[frozenset[str], GraphPlan] = {}
        # requested output names -> (plan, positions), for requests that include intermediate values
        self._fetches: dict[tuple[str, ...], tuple[GraphPlan, list[int]]] = {}
        self._plans_lock = threading.Lock()
        self._metadata = ModelMetadata(
            producer_name=model.producer_name or "",
            graph_name=graph.name or "",
            domain=model.domain or "",
            description=model.doc_string or "",
            graph_description=graph.doc_string or "",
            # onnxruntime reports an unset model_version as INT64_MAX
            version=int(loaded.proto.model_version) if loaded.proto.HasField("model_version") else 2**63 - 1,
            custom_metadata_map=dict(model.metadata_props),
        )
        # Everything needed from the parsed protobuf has been copied out; dropping it frees the
        # protobuf's copy of the weights (the IR holds its own numpy arrays).
        loaded.proto = None  # type: ignore[assignment]
        memory.return_freed_memory()

    def _parallel_pool(self) -> Any:
        """The inter-op thread pool for ExecutionMode.ORT_PARALLEL (None when sequential)."""
        from onnxrt.options import ExecutionMode

        if int(self._sess_options.execution_mode) != int(ExecutionMode.ORT_PARALLEL):
            return None
        from concurrent.futures import ThreadPoolExecutor

        workers = int(self._sess_options.inter_op_num_threads) or (os.cpu_count() or 2)
        return ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="onnxrt-inter-op")

    def _apply_added_initializers(self, model: ir.Model) -> None:
        for name, ort_value in self._sess_options._initializers.items():
            array = ort_value.numpy() if isinstance(ort_value, OrtValue) else np.asarray(ort_value)
            value = model.graph.initializers.get(name)
            if value is None:
                raise InvalidArgument(f"add_initializer: the model has no initializer named '{name}'.")
            value.const_value = ir.tensor(array, name=name)

    def _optimize(self, model: ir.Model) -> None:
        optimizer.optimize(model, self._sess_options.graph_optimization_level)

    def _save_optimized(self, model: ir.Model, path: str) -> None:
        try:
            proto = ir.serde.serialize_model(model)
            loader.restore_set_aside_types(proto, self._loaded.type_overrides)
            if proto.ByteSize() > 1_900_000_000:
                onnx.save(proto, path, save_as_external_data=True, location=os.path.basename(path) + ".data")
            else:
                onnx.save(proto, path)
        except OSError as e:
            raise Fail(f"Failed to save the optimized model to '{path}': {e.strerror}") from None

    # -- queries ---------------------------------------------------------------------------

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        return list(self._overridable)

    def get_modelmeta(self) -> ModelMetadata:
        return self._metadata

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {name: dict(opts) for name, opts in zip(self._providers, self._provider_options)}

    def set_providers(self, providers: Sequence[str] | None = None, provider_options: Sequence[dict] | None = None) -> None:
        self._providers, self._provider_options = self._resolve_providers(providers, provider_options)
        self._create_session()

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def end_profiling(self) -> str:
        if self._profiler is None:
            return ""
        return self._profiler.write()

    def get_profiling_start_time_ns(self) -> int:
        return 0 if self._profiler is None else self._profiler.start_ns

    def disable_fallback(self) -> None:
        pass

    def enable_fallback(self) -> None:
        pass

    # -- running ---------------------------------------------------------------------------

    def _check_feed(self, spec: _InputSpec, value: Any) -> Any:
        if type(value) is np.ndarray and value.dtype == spec.dtype and value.shape == spec.fixed_shape:
            return value
        if isinstance(value, OrtValue):
            value = value.numpy()
        if spec.kind == "tensor":
            if not isinstance(value, np.ndarray):
                if value is None:
                    raise InvalidArgument(f"Input '{spec.name}' is None; expected {spec.type_string}.")
                try:
                    value = np.asarray(value, dtype=spec.dtype if spec.dtype != object else None)
                except (TypeError, ValueError) as e:
                    raise InvalidArgument(
                        f"Input '{spec.name}' could not be converted to {spec.type_string}: {e}"
                    ) from None
            if value.dtype != spec.dtype and spec.dtype is not None:
                if spec.dtype == object and value.dtype.kind in "US":
                    value = value.astype(object)
                else:
                    actual = _types.dtype_type_string(value.dtype) if value.dtype.kind not in "US" else "tensor(string)"
                    if actual == spec.type_string and value.dtype.kind in "US":
                        value = value.astype(object)
                    else:
                        raise InvalidArgument(
                            f"Unexpected input data type. Actual: ({actual}) , expected: ({spec.type_string})"
                        )
            dims = spec.dims
            if dims is not None:
                if value.ndim != len(dims):
                    raise InvalidArgument(
                        f"Invalid rank for input: {spec.name} Got: {value.ndim} Expected: {len(dims)} "
                        "Please fix either the inputs/outputs or the model."
                    )
                bad = [(i, g, e) for i, (g, e) in enumerate(zip(value.shape, dims)) if e is not None and g != e]
                if bad:
                    lines = "".join(f"\n index: {i} Got: {g} Expected: {e}" for i, g, e in bad)
                    raise InvalidArgument(
                        f"Got invalid dimensions for input: {spec.name} for the following indices{lines}\n"
                        " Please fix either the inputs/outputs or the model."
                    )
        elif spec.kind == "map":
            if not isinstance(value, dict):
                raise InvalidArgument(f"Input '{spec.name}' expects {spec.type_string}, a dict; got {type(value).__name__}.")
        elif spec.kind == "sequence":
            if not isinstance(value, list):
                raise InvalidArgument(f"Input '{spec.name}' expects {spec.type_string}, a list of arrays; got {type(value).__name__}.")
            value = [v.numpy() if isinstance(v, OrtValue) else v if isinstance(v, dict) else np.asarray(v) for v in value]
        return value

    def _feeds(self, input_feed: dict[str, Any]) -> list[Any]:
        if not isinstance(input_feed, dict):
            raise InvalidArgument(f"input_feed must be a dict of input name to value, got {type(input_feed).__name__}.")
        specs = self._input_specs
        feeds: list[Any] = [None] * len(specs)
        for name, value in input_feed.items():
            spec = specs.get(name)
            if spec is None:
                valid = ", ".join(self._required_inputs + [a.name for a in self._overridable])
                raise InvalidArgument(f"Invalid input name: {name} (valid input names: {valid})")
            feeds[spec.slot_index] = self._check_feed(spec, value)
        if not self._required_names <= input_feed.keys():
            missing = [n for n in self._required_inputs if n not in input_feed]
            raise ValueError(f"Required inputs ({missing}) are missing from input feed ({list(input_feed)}).")
        return feeds

    def _plan_for(self, output_names: Sequence[str] | None) -> tuple[GraphPlan, list[int] | None]:
        """The plan to run and the positions of the requested outputs in its results.

        Unlike onnxruntime, any value inside the graph can be fetched by name: a plan that keeps the
        requested intermediates alive is built on first request and cached.
        """
        if not output_names:
            return self._plan, None
        known = self._fetches.get(tuple(output_names))
        if known is not None:
            return known
        positions = []
        extras = []
        for name in output_names:
            pos = self._output_index.get(name)
            if pos is None:
                if name not in self._value_names:
                    raise InvalidArgument(f"Invalid output name:{name}")
                extras.append(name)
            positions.append(pos)
        if not extras:
            return self._plan, positions  # type: ignore[return-value]
        key = frozenset(extras)
        with self._plans_lock:
            plan = self._intermediate_plans.get(key)
            if plan is None:
                plan = GraphPlan(self._loaded.model.graph, self._plan_config, extra_outputs=sorted(key))
                plan.parallel_pool = self._plan.parallel_pool
                if self._profiler is not None:
                    self._profiler.instrument(plan)
                self._intermediate_plans[key] = plan
        index = {name: i for i, name in enumerate(plan.output_names)}
        found = (plan, [index[name] for name in output_names])
        if len(self._fetches) < 256:  # requests name a few fixed sets of values; do not grow unbounded
            self._fetches[tuple(output_names)] = found
        return found

    def _execute(self, output_names, input_feed, run_options) -> list[Any]:
        plan, positions = self._plan_for(output_names)
        feeds = self._feeds(input_feed)
        try:
            with threads.run_scope(self._intra_op_threads, blas=self._blas_threads):
                if self._profiler is not None:
                    outputs = self._profiler.run(plan, feeds, run_options)
                else:
                    outputs = plan.run(feeds, (), run_options)
        except Terminated:
            raise Fail("Exiting due to terminate flag being set to true.") from None
        if positions is not None:
            outputs = [outputs[i] for i in positions]
        return [self._detach(o, feeds) for o in outputs]

    @staticmethod
    def _detach(value: Any, feeds: list[Any]) -> Any:
        """Copy outputs that alias session weights (read-only) or the caller's own feeds."""
        if isinstance(value, np.ndarray):
            if not value.flags.writeable:
                return value.copy()
            if value.base is None:  # an array owning its memory aliases a feed only by being it
                for f in feeds:
                    if value is f:
                        return value.copy()
                return value
            for f in feeds:
                if isinstance(f, np.ndarray) and np.may_share_memory(value, f):
                    return value.copy()
        return value

    def run(self, output_names: Sequence[str] | None, input_feed: dict[str, Any], run_options: RunOptions | None = None) -> list[Any]:
        """Run the model: a list with one value per requested output (arrays, lists for sequences, dicts for maps)."""
        return self._execute(output_names, input_feed, run_options)

    def run_with_ort_values(self, output_names: Sequence[str] | None, input_dict_ort_values: dict[str, OrtValue], run_options: RunOptions | None = None) -> list[OrtValue]:
        outputs = self._execute(output_names, input_dict_ort_values, run_options)
        return [OrtValue(o) for o in outputs]

    def run_with_ortvaluevector(self, run_options, feed_names, feeds, fetch_names, fetches, fetch_devices) -> None:
        outputs = self._execute(fetch_names, dict(zip(feed_names, feeds)), run_options)
        fetches.extend(OrtValue(o) for o in outputs)
