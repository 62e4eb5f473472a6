"""Conversions between ONNX IR values and the numpy values kernels see."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnx_ir as ir


def tensor_to_numpy(tensor: ir.TensorProtocol) -> np.ndarray:
    """A numpy array for an IR tensor; string tensors become object arrays of ``str``."""
    array = tensor.numpy()
    if tensor.dtype == ir.DataType.STRING:
        return strings_to_object(array)
    return array


def strings_to_object(array: np.ndarray) -> np.ndarray:
    if array.dtype == object and all(isinstance(s, str) for s in array.flat):
        return array
    out = np.empty(array.shape, dtype=object)
    flat = out.reshape(-1)
    for i, s in enumerate(array.reshape(-1)):
        flat[i] = s.decode("utf-8", errors="surrogateescape") if isinstance(s, bytes) else str(s)
    return out


def sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = onnx.numpy_helper.to_array(sparse.values)
    indices = onnx.numpy_helper.to_array(sparse.indices).astype(np.int64)
    dims = tuple(sparse.dims)
    dense = np.zeros(dims, dtype=values.dtype)
    if indices.ndim == 1:
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


def ir_type_dtype(type_: Any) -> np.dtype | None:
    """numpy dtype of a tensor IR type (None for sequences, maps, unknown)."""
    if isinstance(type_, ir.TensorType):
        try:
            return np.dtype(type_.dtype.numpy())
        except Exception:
            return None
    return None


def type_to_proto(type_: Any, shape: Any = None) -> onnx.TypeProto | None:
    """The onnx.TypeProto of an IR type (and shape), or None when unknown."""
    if type_ is None:
        return None
    try:
        proto = onnx.TypeProto()
        ir.serde.serialize_type_into(proto, type_)
        if shape is not None and isinstance(type_, ir.TensorType):
            ir.serde.serialize_shape_into(proto, shape)
        return proto
    except Exception:
        return None
