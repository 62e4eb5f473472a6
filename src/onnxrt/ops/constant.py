"""Constant, Identity: values that exist before any arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxrt.errors import InvalidGraph
from onnxrt.ops.registry import KernelContext, op, op_factory

_VALUE_ATTRS = ("value", "sparse_value", "value_float", "value_floats", "value_int", "value_ints",
                "value_string", "value_strings")


@op_factory("Constant", 1, 9, 11, 12, 13, 19, 21, 23, 24, 25)
def constant(ctx: KernelContext):
    given = [a for a in _VALUE_ATTRS if a in ctx.attrs]
    if len(given) != 1:
        raise InvalidGraph(f"{ctx.describe()}: exactly one value attribute is required, got {given or 'none'}.")
    name = given[0]
    raw = ctx.attrs[name]
    if name in ("value", "sparse_value"):
        value = np.asarray(raw)
    elif name == "value_float":
        value = np.array(raw, dtype=np.float32)
    elif name == "value_floats":
        value = np.array(raw, dtype=np.float32).reshape(-1)
    elif name == "value_int":
        value = np.array(raw, dtype=np.int64)
    elif name == "value_ints":
        value = np.array(raw, dtype=np.int64).reshape(-1)
    elif name == "value_string":
        value = np.array(raw, dtype=object)
    else:
        value = np.array(raw, dtype=object).reshape(-1)
    value.flags.writeable = False

    def constant_value() -> np.ndarray:
        return value

    return constant_value


@op("Identity", 1)
def identity(input: Any) -> Any:  # noqa: A002 - ONNX input name
    return input
