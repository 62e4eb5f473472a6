"""Kernel registry: (domain, op_type, since_version) -> kernel.

Two ways to register a kernel:

``@op("Relu", 14)``
    a plain function over numpy arrays. Its positional parameters are the node's
    inputs in schema order (``None`` for an omitted optional input); its keyword
    parameters are the node's attributes, named as in the ONNX spec, with schema
    defaults applied. It returns one value, or a ``tuple`` for several outputs
    (a ``list`` is a sequence value, never several outputs).

``@op_factory("Conv", 11)``
    a function called once per node at session construction with a
    :class:`KernelContext`; it returns the callable run for every inference. That is
    where weights are re-laid out, index tables made and fast paths chosen.

Lookup follows the ONNX rule: for a model importing opset N of a domain, the
kernel registered with the highest ``since_version <= N`` is used.
"""

from __future__ import annotations

import bisect
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

KernelFactory = Callable[["KernelContext"], Callable[..., Any]]

_registry: dict[tuple[str, str], list[tuple[int, KernelFactory]]] = {}


ML_DOMAIN = "ai.onnx.ml"


def normalize_domain(domain: str) -> str:
    """ONNX's default domain has two spellings, "" and "ai.onnx": one key for both."""
    return "" if domain in ("", "ai.onnx") else domain


@dataclass
class KernelContext:
    """What a kernel factory may know about its node at session construction."""

    op_type: str
    domain: str
    name: str
    opset: int  # the model's opset for this node's domain
    since_version: int  # of the kernel chosen
    attrs: dict[str, Any]  # parsed attributes, schema defaults applied
    num_inputs: int  # regular inputs (omitted optional ones included as positions)
    num_outputs: int
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    # Per input: the numpy value when the input is a constant (initializer that cannot be
    # overridden, or a Constant node's output), else None.
    const_inputs: list[Any] = field(default_factory=list)
    # Per input/output: the onnx_ir type (ir.TensorType, ir.SequenceType, ...) when known from the model or
    # shape inference, else None.
    input_types: list[Any] = field(default_factory=list)
    output_types: list[Any] = field(default_factory=list)
    # Number of outer-scope values appended after the regular inputs (control-flow ops).
    num_captured: int = 0
    session: Any = None  # the session's options/config view, for kernels that need it
    subplans: list[Any] = field(default_factory=list)  # planned bodies of GRAPH attributes, in order
    node: Any = None  # the onnx_ir node (function ops and Gradient read its attributes/graph)
    # Per output: whether the graph hands it to the caller (a graph output, or a value fetched by name).
    # A kernel may return another memory layout (a transposed view) only for outputs that are not.
    fetched_outputs: list[bool] = field(default_factory=list)

    @property
    def input_dtypes(self) -> list[np.dtype | None]:
        """numpy dtype per input when its type is a known tensor type, else None."""
        from onnxrt.runtime.values import ir_type_dtype

        return [ir_type_dtype(t) for t in self.input_types]

    @property
    def output_dtypes(self) -> list[np.dtype | None]:
        from onnxrt.runtime.values import ir_type_dtype

        return [ir_type_dtype(t) for t in self.output_types]

    def describe(self) -> str:
        return f"{self.op_type}({self.domain or 'ai.onnx'}, opset {self.opset}) node '{self.name}'"


def _plain_factory(fn: Callable[..., Any]) -> KernelFactory:
    sig = inspect.signature(fn)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    accepted = {
        name
        for name, p in sig.parameters.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }

    def factory(ctx: KernelContext) -> Callable[..., Any]:
        kwargs = ctx.attrs if takes_any else {k: v for k, v in ctx.attrs.items() if k in accepted}
        if not kwargs:
            return fn
        return functools.partial(fn, **kwargs)

    factory.__wrapped__ = fn  # type: ignore[attr-defined]
    factory.__name__ = getattr(fn, "__name__", "kernel")
    return factory


def _register(domain: str, op_type: str, since: int, factory: KernelFactory) -> None:
    entries = _registry.setdefault((normalize_domain(domain), op_type), [])
    for i, (v, _) in enumerate(entries):
        if v == since:
            entries[i] = (since, factory)
            return
    bisect.insort(entries, (since, factory), key=lambda e: e[0])


def op(op_type: str, *since_versions: int, domain: str = "") -> Callable[[Callable], Callable]:
    """Register a plain kernel function for ``op_type`` from each of ``since_versions``."""

    def deco(fn: Callable) -> Callable:
        factory = _plain_factory(fn)
        for since in since_versions or (1,):
            _register(domain, op_type, since, factory)
        return fn

    return deco


def op_factory(op_type: str, *since_versions: int, domain: str = "") -> Callable[[KernelFactory], KernelFactory]:
    """Register a kernel factory (called once per node) for ``op_type``."""

    def deco(factory: KernelFactory) -> KernelFactory:
        for since in since_versions or (1,):
            _register(domain, op_type, since, factory)
        return factory

    return deco


def lookup(domain: str, op_type: str, opset: int) -> tuple[int, KernelFactory] | None:
    """The (since_version, factory) that serves ``op_type`` at ``opset``, or None."""
    entries = _registry.get((normalize_domain(domain), op_type))
    if not entries:
        return None
    best = None
    for since, factory in entries:
        if since <= opset:
            best = (since, factory)
        else:
            break
    return best


# The inputs a kernel takes as parameters (a Conv's W and B, a Gemm's B and C, a Gather's table) and,
# when they are constant, prepares once at planning time: re-laid out, packed, transposed.
_WEIGHT_INPUTS: dict[tuple[str, str], tuple[int, ...]] = {
    ("", "Conv"): (1, 2), ("", "ConvTranspose"): (1, 2), ("", "Gemm"): (1, 2), ("", "MatMul"): (1,),
    ("", "BatchNormalization"): (1, 2, 3, 4), ("", "InstanceNormalization"): (1, 2),
    ("", "LayerNormalization"): (1, 2), ("", "PRelu"): (1,), ("", "Gather"): (0,),
    ("com.microsoft", "FusedConv"): (1, 2), ("com.microsoft", "FusedGemm"): (1, 2),
    ("com.microsoft", "FusedMatMul"): (1,),
}


def read_only_as_weights(values: Iterable[Any]) -> bool:
    """Whether the onnx_ir values have readers and every reader takes them as a parameter its kernel
    prepares when constant (a subgraph reading one by name is no use of it here)."""
    uses = [use for value in values for use in value.uses()]
    return bool(uses) and all(
        use.idx in _WEIGHT_INPUTS.get((normalize_domain(use.node.domain), use.node.op_type), ()) for use in uses)


def registered_ops() -> dict[tuple[str, str], list[int]]:
    """Every registered (domain, op_type) with its since-versions, for inspection tools."""
    return {key: [v for v, _ in entries] for key, entries in _registry.items()}


def as_array(value: Any, dtype: np.dtype | None = None) -> np.ndarray:
    """Wrap numpy scalars back into 0-d arrays (numpy ufuncs return scalars for 0-d inputs)."""
    if type(value) is np.ndarray and (dtype is None or value.dtype == dtype):
        return value
    return np.asarray(value, dtype=dtype)
