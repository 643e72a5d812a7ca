"""One random number generator for the whole library, seeded by ``cyconv.manual_seed``.

Initialisation, dropout and data shuffling all draw from :func:`generator`, so that
``cyconv.manual_seed(n)`` makes a run reproducible.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["manual_seed", "generator"]

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed cyconv's generator (as ``torch.manual_seed``); returns it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """The generator every random operation in cyconv draws from."""
    return _generator
