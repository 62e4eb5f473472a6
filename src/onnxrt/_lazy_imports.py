"""Deferred imports of heavy modules that onnxrt's dependencies import but a session never uses.

onnx_ir imports sympy (about 0.2 s, more than onnx's or onnxruntime's whole import) for arithmetic on
symbolic dimension expressions, which onnxrt does not do. Until something reads one of its
attributes, sympy (and onnx_ir's symbolic-shape parser, which reads sympy attributes at import time)
is a placeholder module in ``sys.modules``; the first attribute read imports the real module and
the placeholder takes on its contents, so code that does use sympy sees no difference.

(``importlib.util.LazyLoader`` does not do here: on Python 3.11 the ``import sympy`` statement
itself reads ``__spec__`` and that triggers the load.)
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any

_load_lock = threading.RLock()


class _DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module until one of its attributes is read."""

    def __getattr__(self, attribute: str) -> Any:
        with _load_lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
                try:
                    real = importlib.import_module(self.__name__)
                except BaseException:
                    sys.modules[self.__name__] = self
                    raise
                self.__dict__.update(real.__dict__)
            else:
                real = sys.modules.get(self.__name__) or importlib.import_module(self.__name__)
        return getattr(real, attribute)


def _defer(name: str, spec: importlib.machinery.ModuleSpec | None) -> None:
    if spec is None or name in sys.modules:
        return
    module = _DeferredModule(name)
    module.__spec__ = spec
    sys.modules[name] = module


def defer_sympy() -> None:
    """Defer importing sympy (and onnx_ir's symbolic-shape parser) to first use, unless already
    imported."""
    if "sympy" in sys.modules or "onnx_ir" in sys.modules:
        return
    ir_spec = importlib.util.find_spec("onnx_ir")
    if ir_spec is None or not ir_spec.submodule_search_locations:
        return
    shapes_spec = importlib.machinery.PathFinder.find_spec(
        "_symbolic_shapes", list(ir_spec.submodule_search_locations))
    if shapes_spec is None:
        return
    shapes_spec.name = "onnx_ir._symbolic_shapes"
    _defer("sympy", importlib.util.find_spec("sympy"))
    _defer("onnx_ir._symbolic_shapes", shapes_spec)
