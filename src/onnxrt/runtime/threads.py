"""Intra-op parallelism: BLAS thread control and a shared thread pool for large numpy work.

numpy releases the GIL inside ufunc loops and BLAS calls, so plain Python threads can keep several
cores busy on one op. Two mechanisms are used:

* BLAS (OpenBLAS behind numpy) gets **one** thread while a session runs, by default. Measured on the
  2-core development machine shared with other work: OpenBLAS's own threads spin-wait for each other,
  and as soon as a core is taken by another process a 2-thread GEMM became 10-30x slower than a
  1-thread one (e.g. 128x768 @ 768x768: 1.3 ms with 1 thread, 64 ms with 2). Threads of our own pool
  block instead of spinning, so they degrade gracefully.
* Large GEMMs (conv, MatMul) and large elementwise work are split along an outer axis over a shared
  ``ThreadPoolExecutor`` sized from ``SessionOptions.intra_op_num_threads`` (0 = every core this
  process may use), each part writing into its slice of a preallocated output.

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

import numpy as np

# Below this many output elements an elementwise op runs on the calling thread: handing work to a
# pool thread costs ~20-50 us, which only pays off for arrays of a few hundred thousand floats.
ELEMENTWISE_MIN_SIZE = 1 << 18
# Below this many multiply-adds a GEMM is not split (a 64x576x3136 conv GEMM is ~1.2e8).
GEMM_MIN_MACS = 1 << 24


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


@contextlib.contextmanager
def run_scope(intra_op_num_threads: int | None = 0, blas: int = 1) -> Iterator[int]:
    """Around one session run: BLAS limited to ``blas`` threads, intra-op splitting over the
    resolved thread count for kernels running in this thread. Yields the resolved count."""
    n = resolve_num_threads(intra_op_num_threads)
    previous = getattr(_state, "num_threads", None)
    _state.num_threads = n
    _blas.enter(blas)
    try:
        yield n
    finally:
        _blas.leave()
        if previous is None:
            del _state.num_threads
        else:
            _state.num_threads = previous


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


def _split_axis(shape: tuple[int, ...]) -> int:
    """The first axis long enough to split into one chunk per worker."""
    n = current_num_threads()
    for axis, d in enumerate(shape):
        if d >= n:
            return axis
    return 0


def parallel_elementwise(fn: Callable[..., Any], out: np.ndarray, *inputs: np.ndarray,
                         min_size: int = ELEMENTWISE_MIN_SIZE) -> np.ndarray:
    """``fn(*inputs, out=out)`` with the work split along the leading axes over the shared pool.

    ``inputs`` must broadcast to ``out.shape`` (each is sliced where it has the full extent of the
    split axis); ``fn`` must be elementwise. Small arrays, or when only one worker is configured,
    run in one call.
    """
    n = current_num_threads()
    if n <= 1 or out.size < min_size or out.ndim == 0:
        fn(*inputs, out=out)
        return out
    # Split along the first axis that has at least n entries, keeping the axes before it whole:
    # collapse them into one by iterating chunks of the flattened leading part when possible.
    axis = _split_axis(out.shape)
    lead = out.shape[:axis]
    if lead and any(d > 1 for d in lead):
        fn(*inputs, out=out)  # leading axes we cannot slice through cheaply
        return out
    ndim = out.ndim
    views = []
    for x in inputs:
        x = np.asarray(x) if not isinstance(x, np.ndarray) else x
        off = ndim - x.ndim
        views.append((x, axis - off if axis >= off and x.shape[axis - off] == out.shape[axis] else None))

    def part(sl: slice) -> None:
        idx_out = (slice(None),) * axis + (sl,)
        args = []
        for x, ax in views:
            args.append(x if ax is None else x[(slice(None),) * ax + (sl,)])
        fn(*args, out=out[idx_out])

    parallel_for(part, out.shape[axis], n)
    return out


def parallel_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, min_macs: int = GEMM_MIN_MACS) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` for 2-D ``a`` (M, K) and ``b`` (K, N), split over the pool along
    the larger of M and N when the product is big enough to pay for the hand-off."""
    n = current_num_threads()
    M, K = a.shape
    N = b.shape[1]
    if n <= 1 or M * K * N < min_macs:
        np.matmul(a, b, out=out)
        return out
    if N >= M:
        parallel_for(lambda sl: np.matmul(a, b[:, sl], out=out[:, sl]), N, n)
    else:
        parallel_for(lambda sl: np.matmul(a[sl], b, out=out[sl]), M, n)
    return out
