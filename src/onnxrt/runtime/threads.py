"""Intra-op parallelism: BLAS thread control and a shared thread pool for large numpy work.

numpy releases the GIL inside ufunc loops and BLAS calls, so plain Python threads can keep several
cores busy on one op. Two mechanisms are used:

* BLAS (OpenBLAS behind numpy) gets the session's intra-op thread count while a run is in flight
  (the session config entry ``onnxrt.blas_threads`` overrides it), and a GEMM is one BLAS call:
  measured on the 2-core development machine, OpenBLAS's own threading gives 1.85-2.1x on the conv
  and transformer GEMM shapes, where splitting the GEMM over the pool gave 0.9-1.6x (and with BLAS
  threaded too, oversubscribed the cores).
* Large elementwise work and blocked kernels (depthwise conv, tree ensembles, multi-pass
  elementwise functions) are split along an outer axis over a shared ``ThreadPoolExecutor`` sized
  from ``SessionOptions.intra_op_num_threads`` (0 = every core this process may use), each part
  writing into its slice of a preallocated output.

threadpoolctl's limits are process-global, so :func:`run_scope` counts the runs in flight: the first
one sets the BLAS thread count, the last one to leave restores what it was. The session calls it
around ``run``::

    with threads.run_scope(session_options.intra_op_num_threads):
        outputs = plan.run(feeds)
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator


# Below this many output elements an elementwise op runs on the calling thread: handing work to a
# pool thread costs ~20-50 us, which only pays off for arrays of a few hundred thousand floats.
ELEMENTWISE_MIN_SIZE = 1 << 18


def available_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_num_threads(intra_op_num_threads: int | None) -> int:
    """SessionOptions.intra_op_num_threads -> worker count (0 or None = every available core)."""
    if intra_op_num_threads is None:
        return available_cores()
    n = int(intra_op_num_threads)
    if n < 0:
        raise ValueError(f"intra_op_num_threads must be >= 0 (0 = all cores), got {n}")
    return available_cores() if n == 0 else n


# ---------------------------------------------------------------------------------------------
# BLAS threads


class _Blas:
    """Lazily found BLAS libraries (threadpoolctl scans loaded libraries once: a few ms)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._libs: list[Any] | None = None
        self._active = 0
        self._saved: list[int] = []
        self._changed = False

    def libs(self) -> list[Any]:
        if self._libs is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # threadpoolctl missing: BLAS keeps its own setting
                self._libs = []
            else:
                self._libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        return self._libs

    def current(self) -> list[int]:
        return [lib.get_num_threads() for lib in self.libs()]

    def set(self, n: int) -> None:
        for lib in self.libs():
            lib.set_num_threads(int(n))

    def enter(self, n: int) -> None:
        with self._lock:
            if self._active == 0:
                self._saved = self.current()
                # setting (and later restoring) costs a few microseconds a run: only when it changes
                self._changed = any(m != n for m in self._saved)
            self._active += 1
            if self._changed:
                self.set(n)

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._changed:
                for lib, n in zip(self.libs(), self._saved):
                    lib.set_num_threads(n)


_blas = _Blas()


def blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the loaded BLAS libraries (``filepath``, ``internal_api``, ...)."""
    return _blas.libs()


def blas_num_threads() -> list[int]:
    """Thread counts of the loaded BLAS libraries (empty when threadpoolctl finds none)."""
    return _blas.current()


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit BLAS to ``n`` threads inside the block, restoring the previous count afterwards."""
    if n < 1:
        raise ValueError(f"BLAS thread count must be >= 1, got {n}")
    _blas.enter(n)
    try:
        yield
    finally:
        _blas.leave()


# ---------------------------------------------------------------------------------------------
# shared pool


_state = threading.local()
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def executor(num_threads: int) -> ThreadPoolExecutor | None:
    """The shared pool with at least ``num_threads - 1`` workers (the caller is the other one)."""
    global _pool, _pool_size
    if num_threads <= 1:
        return None
    with _pool_lock:
        if _pool is None or _pool_size < num_threads - 1:
            old = _pool
            _pool_size = num_threads - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="onnxrt-intra-op")
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def current_num_threads() -> int:
    """Worker count for intra-op splitting in the calling thread (1 outside :func:`run_scope`)."""
    return getattr(_state, "num_threads", 1)


class run_scope:  # noqa: N801 - used as a context manager, like the contextlib functions here
    """Around one session run: BLAS limited to ``blas`` threads, intra-op splitting over the
    resolved thread count for kernels running in this thread; ``with`` gives the resolved count.

    A class rather than a generator-based context manager: it runs around every session run, and
    contextlib's generator costs ~2 us of that."""

    __slots__ = ("num_threads", "blas", "previous")

    def __init__(self, intra_op_num_threads: int | None = 0, blas: int = 1) -> None:
        self.num_threads = resolve_num_threads(intra_op_num_threads)
        self.blas = blas

    def __enter__(self) -> int:
        _blas.enter(self.blas)
        self.previous = getattr(_state, "num_threads", None)
        _state.num_threads = self.num_threads
        return self.num_threads

    def __exit__(self, *exc: object) -> None:
        _blas.leave()
        if self.previous is None:
            del _state.num_threads
        else:
            _state.num_threads = self.previous


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Set the intra-op worker count for kernels called in this thread (tests, benchmarks)."""
    previous = getattr(_state, "num_threads", None)
    _state.num_threads = max(1, int(n))
    try:
        yield
    finally:
        if previous is None:
            del _state.num_threads
        else:
            _state.num_threads = previous


def _chunks(length: int, parts: int) -> list[slice]:
    step = -(-length // parts)
    return [slice(i, min(i + step, length)) for i in range(0, length, step)]


def parallel_for(fn: Callable[[slice], Any], length: int, parts: int | None = None) -> None:
    """Call ``fn(slice)`` over ``range(length)`` split into contiguous chunks, one per worker; the
    calling thread does the first chunk. Exceptions from any chunk are re-raised."""
    n = min(parts or current_num_threads(), length)
    pool = executor(n) if n > 1 else None
    if pool is None:
        fn(slice(0, length))
        return
    chunks = _chunks(length, n)
    futures = [pool.submit(fn, c) for c in chunks[1:]]
    try:
        fn(chunks[0])
    finally:
        for f in futures:
            f.result()
