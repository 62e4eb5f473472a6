"""Execution providers: who runs which node.

``CPUExecutionProvider`` (numpy) is always present and is the fallback. The
partitioner gives each node to the first provider in the session's list that
has a kernel for it; today every kernel is a CPU kernel.
"""

from __future__ import annotations

CPU = "CPUExecutionProvider"

# Providers onnxrt knows by name; only those in AVAILABLE can run anything here.
ALL_PROVIDERS = [CPU, "CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider",
                 "DmlExecutionProvider", "CoreMLExecutionProvider"]
AVAILABLE = [CPU]


def get_available_providers() -> list[str]:
    return list(AVAILABLE)


def get_all_providers() -> list[str]:
    return list(ALL_PROVIDERS)
