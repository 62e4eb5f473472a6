"""Public import path for the float16 converter: ``from onnxrt.float16 import convert_float_to_float16``."""

from onnxrt.tools.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

__all__ = ["convert_float_to_float16", "DEFAULT_OP_BLOCK_LIST"]
