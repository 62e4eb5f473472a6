"""Read a model file with its large initializers' bytes going straight into numpy arrays.

Parsing a whole .onnx file with protobuf holds every weight twice before a session can use it: the
file's bytes, then protobuf's copy, then the arrays copied out of it (ViT-Base's 344 MB of weights
peaked at 739 MB over the interpreter, against onnxruntime's 380 MB). Here the file is walked at the
protobuf wire level instead: the ModelProto's fields are read as they are, except the main graph's
initializers whose ``raw_data`` is large. Those are parsed without it (name, type, dims) and their
bytes are read from the file into an array of their own, so a weight is in memory once.

Anything unexpected (wire types, encodings, a field seen twice, a size that does not match the dims)
makes :func:`read` return None, and the loader parses the file the ordinary way, which also reports
the errors.
"""

from __future__ import annotations

import math
import os
from typing import BinaryIO

import numpy as np
import onnx

# Field numbers (onnx.proto3)
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# Element types whose raw_data is the values' little-endian bytes, as numpy reads them.
_PLAIN: dict[int, np.dtype] = {
    onnx.TensorProto.FLOAT: np.dtype("<f4"),
    onnx.TensorProto.DOUBLE: np.dtype("<f8"),
    onnx.TensorProto.FLOAT16: np.dtype("<f2"),
    onnx.TensorProto.INT8: np.dtype("i1"),
    onnx.TensorProto.UINT8: np.dtype("u1"),
    onnx.TensorProto.INT16: np.dtype("<i2"),
    onnx.TensorProto.UINT16: np.dtype("<u2"),
    onnx.TensorProto.INT32: np.dtype("<i4"),
    onnx.TensorProto.UINT32: np.dtype("<u4"),
    onnx.TensorProto.INT64: np.dtype("<i8"),
    onnx.TensorProto.UINT64: np.dtype("<u8"),
    onnx.TensorProto.BOOL: np.dtype("?"),
}


class _Unexpected(Exception):
    """The file is not laid out the way this reader handles: fall back to a plain parse."""


def read(path: str, min_elements: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]] | None:
    """(the model without the raw data of the main graph's initializers with more than
    ``min_elements`` elements, {initializer name: its values}), or None to parse the file whole."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            model_parts: list[bytes] = []
            graph_parts: list[bytes] = []
            aside: dict[str, np.ndarray] = {}
            graphs = 0
            for number, wire, start, begin, end in _fields(f, 0, size):
                if number == _MODEL_GRAPH and wire == _LENGTH:
                    graphs += 1
                    fields = _fields(f, begin, end)
                    # an initializer of more than min_elements elements takes more bytes than that
                    if not any(n == _GRAPH_INITIALIZER and e - b > min_elements for n, _, _, b, e in fields):
                        return None  # no large initializer (weights in Constant nodes, or none)
                    for g_number, g_wire, g_start, g_begin, g_end in fields:
                        part = None
                        if g_number == _GRAPH_INITIALIZER and g_wire == _LENGTH:
                            part = _initializer(f, g_begin, g_end, min_elements, aside)
                        graph_parts.append(part if part is not None else _span(f, g_start, g_end))
                else:
                    model_parts.append(_span(f, start, end))
    except (_Unexpected, OSError):
        return None
    if graphs != 1 or not aside:
        return None
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(b"".join(model_parts))
        proto.graph.ParseFromString(b"".join(graph_parts))
    except Exception:
        return None
    return proto, aside


def _initializer(f: BinaryIO, begin: int, end: int, min_elements: int, aside: dict[str, np.ndarray]) -> bytes | None:
    """The initializer's field (tag, length, payload) without its raw data, its values read into
    ``aside``; None to keep it as it is in the file."""
    fields = _fields(f, begin, end)
    raw = [(b, e) for number, wire, _, b, e in fields if number == _TENSOR_RAW_DATA and wire == _LENGTH]
    if len(raw) != 1:
        return None
    header = b"".join(_span(f, s, e) for number, _, s, _, e in fields if number != _TENSOR_RAW_DATA)
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(header)
    except Exception:
        return None
    dtype = _PLAIN.get(tensor.data_type)
    count = math.prod(tensor.dims)
    data_begin, data_end = raw[0]
    if (dtype is None or tensor.data_location == onnx.TensorProto.EXTERNAL or not tensor.name
            or tensor.name in aside or count <= min_elements or count * dtype.itemsize != data_end - data_begin):
        return None
    values = np.empty(tuple(tensor.dims), dtype=dtype)
    f.seek(data_begin)
    if f.readinto(memoryview(values).cast("B")) != data_end - data_begin:
        raise _Unexpected("truncated raw_data")
    if not dtype.isnative:
        values = values.astype(dtype.newbyteorder("="))
    aside[tensor.name] = values
    return _key(_GRAPH_INITIALIZER, _LENGTH) + _varint_bytes(len(header)) + header


def _fields(f: BinaryIO, begin: int, end: int) -> list[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, payload start, payload end) of each field of the
    message stored in [begin, end) of the file; payloads are skipped, not read."""
    out = []
    f.seek(begin)
    pos = begin
    while pos < end:
        start = pos
        key, pos = _varint(f, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Unexpected("field number 0")
        if wire == _VARINT:
            _, pos = _varint(f, pos)
            payload = pos
        elif wire == _LENGTH:
            length, pos = _varint(f, pos)
            payload, pos = pos, pos + length
            f.seek(pos)
        elif wire in (_FIXED64, _FIXED32):
            payload, pos = pos, pos + (8 if wire == _FIXED64 else 4)
            f.seek(pos)
        else:  # groups: not in ONNX
            raise _Unexpected(f"wire type {wire}")
        if pos > end:
            raise _Unexpected("field past the end of its message")
        out.append((number, wire, start, payload, pos))
    return out


def _varint(f: BinaryIO, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = f.read(1)
        if not byte:
            raise _Unexpected("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        pos += 1
        if byte[0] < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _Unexpected("varint too long")


def _span(f: BinaryIO, begin: int, end: int) -> bytes:
    f.seek(begin)
    data = f.read(end - begin)
    if len(data) != end - begin:
        raise _Unexpected("truncated field")
    return data


def _key(number: int, wire: int) -> bytes:
    return _varint_bytes(number << 3 | wire)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
