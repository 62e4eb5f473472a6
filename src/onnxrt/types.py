"""ONNX element types and value types, and their numpy counterparts.

Every ONNX dtype maps to one numpy dtype: the exotic ones (bfloat16, float8,
int4/uint4, int2/uint2, float4, float6) come from ``ml_dtypes``, strings are
``object`` arrays of ``str``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

_ONNX_TO_NP: dict[int, np.dtype] = {}
for _name, _code in TensorProto.DataType.items():
    if _code == TensorProto.UNDEFINED:
        continue
    try:
        _ONNX_TO_NP[_code] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(_code))
    except Exception:  # a dtype this onnx/ml_dtypes pair cannot express
        pass

_NP_TO_ONNX: dict[np.dtype, int] = {}
for _code, _dt in _ONNX_TO_NP.items():
    _NP_TO_ONNX.setdefault(_dt, _code)

# onnxruntime's spelling of each element type inside 'tensor(...)'.
_TYPE_NAMES = {
    TensorProto.FLOAT: "float",
    TensorProto.UINT8: "uint8",
    TensorProto.INT8: "int8",
    TensorProto.UINT16: "uint16",
    TensorProto.INT16: "int16",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.STRING: "string",
    TensorProto.BOOL: "bool",
    TensorProto.FLOAT16: "float16",
    TensorProto.DOUBLE: "double",
    TensorProto.UINT32: "uint32",
    TensorProto.UINT64: "uint64",
    TensorProto.COMPLEX64: "complex64",
    TensorProto.COMPLEX128: "complex128",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.FLOAT8E4M3FN: "float8e4m3fn",
    TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz",
    TensorProto.FLOAT8E5M2: "float8e5m2",
    TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
    TensorProto.UINT4: "uint4",
    TensorProto.INT4: "int4",
    TensorProto.FLOAT4E2M1: "float4e2m1",
}
for _name, _code in TensorProto.DataType.items():
    if _code not in _TYPE_NAMES and _code != TensorProto.UNDEFINED:
        _TYPE_NAMES[_code] = _name.lower()


def np_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype that holds ONNX element type ``elem_type``."""
    try:
        return _ONNX_TO_NP[elem_type]
    except KeyError:
        raise ValueError(f"unsupported ONNX element type {elem_type}") from None


def onnx_elem_type(dtype: np.dtype | type) -> int:
    """The ONNX element type of a numpy dtype (``object`` means string)."""
    dt = np.dtype(dtype)
    if dt.kind in "US":
        return TensorProto.STRING
    try:
        return _NP_TO_ONNX[dt]
    except KeyError:
        raise ValueError(f"numpy dtype {dt} has no ONNX element type") from None


def elem_type_name(elem_type: int) -> str:
    """onnxruntime's name for an element type: 'float', 'int64', 'string', ..."""
    return _TYPE_NAMES.get(elem_type, f"unknown({elem_type})")


def tensor_type_string(elem_type: int) -> str:
    return f"tensor({elem_type_name(elem_type)})"


_DTYPE_OF_TYPE_STRING = {tensor_type_string(code): dt for code, dt in _ONNX_TO_NP.items()}


def dtype_of_type_string(type_string: str) -> np.dtype:
    """The numpy dtype of a tensor type string ('tensor(float)' -> float32); the inverse of
    ``tensor_type_string``. Other types (sequences, maps) raise ValueError."""
    try:
        return _DTYPE_OF_TYPE_STRING[type_string]
    except KeyError:
        raise ValueError(f"'{type_string}' is not a tensor type onnxrt knows") from None


def dtype_type_string(dtype: np.dtype) -> str:
    """'tensor(float)' for a numpy dtype."""
    return tensor_type_string(onnx_elem_type(dtype))


def type_proto_string(tp: onnx.TypeProto) -> str:
    """onnxruntime's type string for a TypeProto: 'tensor(float)', 'seq(tensor(int64))', 'map(string,tensor(float))'."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        return tensor_type_string(tp.tensor_type.elem_type)
    if which == "sparse_tensor_type":
        return f"sparse_tensor({elem_type_name(tp.sparse_tensor_type.elem_type)})"
    if which == "sequence_type":
        return f"seq({type_proto_string(tp.sequence_type.elem_type)})"
    if which == "map_type":
        key = elem_type_name(tp.map_type.key_type)
        return f"map({key},{type_proto_string(tp.map_type.value_type)})"
    if which == "optional_type":
        return f"optional({type_proto_string(tp.optional_type.elem_type)})"
    return "unknown"


def type_proto_shape(tp: onnx.TypeProto) -> list[int | str | None] | None:
    """Shape of a tensor TypeProto as onnxruntime's NodeArg reports it (ints, dim names, None)."""
    which = tp.WhichOneof("value")
    if which == "optional_type":
        return type_proto_shape(tp.optional_type.elem_type)
    if which not in ("tensor_type", "sparse_tensor_type"):
        return []
    tt = getattr(tp, which)
    if not tt.HasField("shape"):
        return []
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims
