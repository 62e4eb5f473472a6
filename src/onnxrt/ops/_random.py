"""The random generator shared by the random ops; ``onnxrt.set_seed`` reseeds it."""

from __future__ import annotations

import numpy as np

# made on first use: numpy.random is a 10 ms import that models without random ops need not pay
_rng: np.random.Generator | None = None


def generator(seed: float | None = None) -> np.random.Generator:
    """A generator for one node: seeded by the node's ``seed`` attribute when given."""
    global _rng
    if seed is not None:
        return np.random.default_rng(int(seed))
    if _rng is None:
        _rng = np.random.default_rng()
    return _rng


def set_seed(seed: int) -> None:
    global _rng
    _rng = np.random.default_rng(int(seed))
