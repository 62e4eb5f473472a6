"""Running one piece of test work on several threads at once."""

from __future__ import annotations

import threading
from typing import Callable


def run_concurrently(work: Callable[[int], None], threads: int = 4) -> None:
    """``work(i)`` on ``threads`` threads at once, i = 0 .. threads - 1; returns when all are done
    (the work records its own failures, which the test then asserts)."""
    started = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
