"""The random generator shared by the random ops; ``onnxrt.set_seed`` reseeds it."""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def generator(seed: float | None = None) -> np.random.Generator:
    """A generator for one node: seeded by the node's ``seed`` attribute when given."""
    if seed is not None:
        return np.random.default_rng(int(seed))
    return _rng


def set_seed(seed: int) -> None:
    global _rng
    _rng = np.random.default_rng(int(seed))
