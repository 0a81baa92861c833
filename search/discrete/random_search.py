"""Random search: evaluate uniformly sampled cells, keep the best."""
from __future__ import annotations

from typing import Any

import numpy as np

from search.discrete.loop import Proposal, Record, Strategy
from search.discrete.space import CategoricalSpace


class RandomSearch(Strategy):
    """Uniform sampling of the space (with replacement), the NAS-Bench-201 paper's RS baseline. Its proposals do not
    depend on the outcomes, so any number of workers evaluates the same cells."""

    name = "random_search"

    def start(self, space: CategoricalSpace[Any], seed: int) -> None:
        self.space, self.rng = space, np.random.default_rng(seed)

    def ask(self) -> Proposal[Any]:
        return Proposal(self.space.sample(self.rng))

    def tell(self, proposal: Proposal[Any], record: Record[Any] | None) -> None:
        pass
