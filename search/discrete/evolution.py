"""Regularized evolution (Real et al., AAAI 2019): tournament selection, one mutation, the oldest dies."""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from search.discrete.loop import Record, SearchLoop, Strategy


class RegularizedEvolution(Strategy):
    """Aging evolution.

    Args:
        population_size: P, cells alive at a time (the NAS-Bench-201 paper uses 10).
        sample_size: S, contenders drawn uniformly (with replacement) from the population per tournament (paper: 3).
    """

    name = "evolution"

    def __init__(self, population_size: int = 10, sample_size: int = 3) -> None:
        if population_size < 1:
            raise ValueError(f"population_size must be >= 1, got {population_size}")
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size must be in 1..population_size ({population_size}), got {sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size

    def tournament(self, population: deque[Record[Any]], rng: np.random.Generator) -> Record[Any]:
        """Best of ``sample_size`` members drawn uniformly with replacement (the first drawn wins ties)."""
        contenders = [population[int(rng.integers(len(population)))] for _ in range(self.sample_size)]
        return max(contenders, key=lambda r: r.metric)

    def _run(self, loop: SearchLoop[Any], seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        population: deque[Record[Any]] = deque()
        while len(population) < self.population_size and not loop.exhausted:
            record = loop.evaluate(loop.space.sample(rng))
            if record is not None:
                population.append(record)
        while not loop.exhausted:
            parent = self.tournament(population, rng)
            child = loop.evaluate(loop.space.mutate(parent.cell, rng), parent=parent.step)
            if child is not None:
                population.append(child)
                population.popleft()  # regularization: remove the oldest, not the worst
        return {"population": [r.step for r in population]}
