"""OrtValue: onnxruntime's handle on a value, backed here by a numpy array (or list/dict)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from onnxrt import types as _types
from onnxrt.errors import InvalidArgument


class _Capsule:
    """Lets ``np.from_dlpack`` read a bare DLPack capsule."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU


class OrtValue:
    def __init__(self, value: Any) -> None:
        self._value = value

    # -- constructors (onnxruntime's static methods) ------------------------------------
    @staticmethod
    def ortvalue_from_numpy(numpy_obj: np.ndarray, /, device_type: str = "cpu", device_id: int = 0, vendor_id: int = -1) -> "OrtValue":
        _check_device(device_type)
        array = np.asarray(numpy_obj)
        if array.dtype.kind == "U":
            array = array.astype(object)
        return OrtValue(array)

    @staticmethod
    def ortvalue_from_numpy_with_onnx_type(data: np.ndarray, /, onnx_element_type: int) -> "OrtValue":
        return OrtValue(np.asarray(data).view(_types.np_dtype(onnx_element_type)))

    @staticmethod
    def ortvalue_from_shape_and_type(
        shape: Sequence[int], element_type: Any, device_type: str = "cpu", device_id: int = 0, vendor_id: int = -1
    ) -> "OrtValue":
        _check_device(device_type)
        if isinstance(element_type, int) and not isinstance(element_type, bool):
            dtype = _types.np_dtype(element_type)
        else:
            dtype = np.dtype(element_type)
        return OrtValue(np.zeros(tuple(shape), dtype=dtype) if dtype != object else np.full(tuple(shape), "", dtype=object))

    @staticmethod
    def from_dlpack(data: Any, /, is_bool_tensor: bool = False) -> "OrtValue":
        source = data if hasattr(data, "__dlpack__") else _Capsule(data)
        array = np.from_dlpack(source)
        if is_bool_tensor and array.dtype == np.uint8:
            array = array.view(np.bool_)
        return OrtValue(array)

    # -- queries ------------------------------------------------------------------------
    def numpy(self) -> Any:
        return self._value

    def data_ptr(self) -> int:
        return int(self._array().ctypes.data)

    def shape(self) -> list[int]:
        return list(self._array().shape)

    def data_type(self) -> str:
        v = self._value
        if isinstance(v, np.ndarray):
            return _types.dtype_type_string(v.dtype)
        if isinstance(v, list):
            inner = _types.dtype_type_string(v[0].dtype) if v else "tensor(float)"
            return f"seq({inner})"
        if isinstance(v, dict):
            return "map"
        return "optional"

    def element_type(self) -> int:
        return _types.onnx_elem_type(self._array().dtype)

    def device_name(self) -> str:
        return "cpu"

    def has_value(self) -> bool:
        return self._value is not None

    def is_tensor(self) -> bool:
        return isinstance(self._value, np.ndarray)

    def is_tensor_sequence(self) -> bool:
        return isinstance(self._value, list)

    def is_sparse_tensor(self) -> bool:
        return False

    def tensor_size_in_bytes(self) -> int:
        return int(self._array().nbytes)

    def update_inplace(self, np_arr: np.ndarray) -> None:
        target = self._array()
        source = np.asarray(np_arr)
        if source.shape != target.shape or source.dtype != target.dtype:
            raise InvalidArgument(
                f"update_inplace: expected an array of shape {target.shape} and dtype {target.dtype}, "
                f"got {source.shape} {source.dtype}"
            )
        np.copyto(target, source)

    # -- DLPack -------------------------------------------------------------------------
    def to_dlpack(self) -> Any:
        return self._array().__dlpack__()

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        return self._array().__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)

    def _array(self) -> np.ndarray:
        if not isinstance(self._value, np.ndarray):
            raise InvalidArgument(f"This OrtValue holds a {type(self._value).__name__}, not a tensor.")
        return self._value

    def __repr__(self) -> str:
        return f"OrtValue({self.data_type()}, shape={list(self._value.shape) if self.is_tensor() else None})"


def _check_device(device_type: str) -> None:
    if str(device_type).lower() != "cpu":
        raise InvalidArgument(f"Unsupported device type '{device_type}': onnxrt allocates on 'cpu' only.")
