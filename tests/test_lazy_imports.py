"""importing onnxrt leaves sympy unimported until someone reads one of its attributes."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_onnxrt_defers_sympy_and_sympy_still_works():
    out = _run("""
        import sys
        import onnxrt, onnx_ir as ir
        print("loaded_after_import", "sympy.core" in sys.modules)
        print(ir.SymbolicDim("N") + 1)  # onnx_ir's expression arithmetic loads sympy on demand
        import sympy
        from sympy import Rational
        print(Rational(1, 3), sympy.Max(2, 5))
    """)
    assert out.split() == ["loaded_after_import", "False", "N", "+", "1", "1/3", "5"]


def test_submodule_import_before_any_attribute_loads_the_real_package():
    out = _run("""
        import onnxrt
        import sympy.core
        import sympy
        print(sympy.Integer(7) + 1)
    """)
    assert out.strip() == "8"
