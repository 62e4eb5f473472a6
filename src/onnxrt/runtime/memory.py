"""``SessionOptions.enable_cpu_mem_arena``: freed memory is kept for the next run.

onnxruntime serves tensors from its own arena. onnxrt's values are numpy arrays, allocated with the C
library's malloc, and glibc's defaults hand large blocks straight back to the operating system when
they are freed: a block above the mmap threshold is unmapped, and free memory at the top of the heap
above the trim threshold is returned. The next run asks for the same sizes again, and every page of
them is faulted in and zeroed anew. On a model with large activations that is most of the gap to an
arena: ppocr_det at 640x640 took ~7 600 page faults per run and ran 164 ms instead of 144 ms.

With the arena on (the default, as in onnxruntime), the first session of the process raises glibc's
mmap threshold to its ceiling (32 MB on 64-bit) and its trim threshold to 1 GB, so blocks up to
32 MB come from the heap and stay there between runs. The settings are process-wide and cannot be
scoped to one session: a later session with the arena off leaves them as they are. Elsewhere than
glibc (musl, macOS, Windows) nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import threading
from typing import Any

_log = logging.getLogger("onnxrt.memory")

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's ceiling for the mmap threshold on 64-bit (4 MiB * sizeof(long)); mallopt refuses more
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

_lock = threading.Lock()
_state: bool | None = None  # None: not tried yet; then whether the settings are in place


def keep_freed_memory() -> bool:
    """Configure glibc's malloc to keep freed blocks of up to 32 MB for reuse (once per process).
    Returns whether the settings are in place."""
    global _state
    with _lock:
        if _state is None:
            _state = _configure_glibc()
        return _state


def _glibc(name: str, argtypes: list) -> Any:
    """glibc's function ``name`` through ctypes (returning int), or None elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


def _configure_glibc() -> bool:
    mallopt = _glibc("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _log.debug("malloc keeps freed blocks up to %d MB: %s", MMAP_THRESHOLD >> 20, ok)
    return ok


def return_freed_memory() -> bool:
    """Hand the heap's free pages back to the operating system (glibc's malloc_trim).

    Once a session has dropped the parsed protobuf, its copy of the weights is free heap memory, but
    with the arena's settings (and glibc's own when the weights came from the heap) it stays resident:
    ViT-Base's session held 711 MB where its weights are 344 MB. Returns whether it ran."""
    malloc_trim = _glibc("malloc_trim", [ctypes.c_size_t])
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True
