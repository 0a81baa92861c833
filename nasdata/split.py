"""Deterministic split of a training set into a weight part and an architecture part."""
from __future__ import annotations

import numpy as np


def split_indices(n: int, train_portion: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into two disjoint, sorted index lists.

    The indices are permuted with ``numpy.random.default_rng(seed)`` (independent of any global RNG, so every
    DDP rank gets the same split); the first ``round(n * train_portion)`` of the permutation form the first
    part (weight training), the rest the second part (architecture / validation).

    Raises:
        ValueError: if ``n`` or ``seed`` is negative, ``train_portion`` is outside [0, 1], or a part would be empty.
    """
    if n < 0:
        raise ValueError(f"split_indices: n must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"split_indices: seed must be >= 0, got {seed} (--data.seed)")
    if not 0.0 <= train_portion <= 1.0:
        raise ValueError(f"train_portion must be between 0 and 1, got {train_portion} (--data.train_portion)")
    n_first = int(round(n * train_portion))
    if n_first == 0 or n_first == n:
        raise ValueError(
            f"search split of {n} training images with train_portion={train_portion} gives {n_first} for weights "
            f"and {n - n_first} for the architecture; both parts need at least 1 image: use 0 < "
            f"--data.train_portion < 1 and enough images (--data.subset >= 2)"
        )
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[:n_first].tolist()), sorted(order[n_first:].tolist())
