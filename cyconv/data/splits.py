"""Fixed, stratified splits that are the same on every machine and with every NumPy.

NumPy's random generators do not promise the same stream across versions, so a split that
every user must share is not drawn from them. Instead each example ``i`` gets the key
``splitmix64(i + salt)`` (a well-mixed 64-bit integer hash, pure integer arithmetic), and
within each class the examples, taken in key order, are dealt out to the parts: this is a
random-looking but fully determined shuffle. Each class is divided in the given
proportions (stratification), so every part has about the same class balance.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["splitmix64", "stratified_split"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values) -> np.ndarray:
    """The splitmix64 hash of each (non-negative) integer, as uint64 (wrapping arithmetic)."""
    z = np.asarray(values).astype(np.uint64) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def stratified_split(labels, fractions=(0.6, 0.2, 0.2), salt: int = 0) -> list[np.ndarray]:
    """Split example indices into parts with the given ``fractions``, class by class.

    For a class of ``n`` examples, part ``k > 0`` gets ``floor(fractions[k] * n + 0.5)`` of
    them and part 0 the rest. Returns one sorted int64 index array per part; the parts are
    disjoint and together hold every index. ``salt`` picks a different fixed shuffle.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"stratified_split: labels must be 1-d, got shape {labels.shape}")
    fractions = [float(f) for f in fractions]
    if not fractions or any(f < 0 for f in fractions) or \
            not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"stratified_split: fractions must be non-negative and add up to "
                         f"1, got {fractions}")
    keys = splitmix64(np.arange(len(labels), dtype=np.uint64) + np.uint64(salt))
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        members = members[np.argsort(keys[members], kind="stable")]
        sizes = [math.floor(f * len(members) + 0.5) for f in fractions[1:]]
        start = len(members) - sum(sizes)
        if start < 0:
            raise ValueError(f"stratified_split: class {value!r} has only {len(members)} "
                             f"examples, too few for the fractions {fractions}")
        parts[0].append(members[:start])
        for k, size in enumerate(sizes, start=1):
            parts[k].append(members[start:start + size])
            start += size
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
            for p in parts]
