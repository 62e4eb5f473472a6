"""Where onnxruntime users import the exception classes from."""

from onnxrt.errors import *  # noqa: F401,F403
from onnxrt.errors import __all__  # noqa: F401
