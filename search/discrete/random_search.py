"""Random search: evaluate uniformly sampled cells, keep the best."""
from __future__ import annotations

from typing import Any

import numpy as np

from search.discrete.loop import SearchLoop, Strategy


class RandomSearch(Strategy):
    """Uniform sampling of the space (with replacement), the NAS-Bench-201 paper's RS baseline."""

    name = "random_search"

    def _run(self, loop: SearchLoop[Any], seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        while not loop.exhausted:
            loop.evaluate(loop.space.sample(rng))
        return {}
