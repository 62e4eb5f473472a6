import os
from pathlib import Path

# onnx's backend runner writes generated inputs for the light models under ONNX_HOME: keep them in the
# repo's (ignored) cache folder rather than the user's home.
os.environ.setdefault("ONNX_HOME", str(Path(__file__).resolve().parents[1] / ".cache" / "onnx_home"))
