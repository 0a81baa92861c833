"""Regularized evolution (Real et al., AAAI 2019): tournament selection, one mutation, the oldest dies."""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from search.discrete.loop import Proposal, Record, Strategy
from search.discrete.space import CategoricalSpace


class RegularizedEvolution(Strategy):
    """Aging evolution, asynchronous as in Real et al.: the first ``population_size`` trials are sampled cells;
    after that, whenever a worker is free it gets a mutated tournament winner of the cells evaluated so far, and
    each finished child joins the population as its oldest member dies. With one worker this is the sequential
    algorithm.

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

    def start(self, space: CategoricalSpace[Any], seed: int) -> None:
        self.space, self.rng = space, np.random.default_rng(seed)
        self.population: deque[Record[Any]] = deque()
        self.seeding = 0  # sampled cells of the initial population, in flight or alive

    def ask(self) -> Proposal[Any] | None:
        if self.seeding < self.population_size:
            self.seeding += 1
            return Proposal(self.space.sample(self.rng))
        if not self.population:
            return None  # the whole initial population is still in flight
        parent = self.tournament(self.population, self.rng)
        return Proposal(self.space.mutate(parent.cell, self.rng), parent.step)

    def reject(self, proposal: Proposal[Any]) -> None:
        if proposal.parent == -1:
            self.seeding -= 1

    def tell(self, proposal: Proposal[Any], record: Record[Any] | None) -> None:
        if record is None:
            self.reject(proposal)  # a failed initial cell leaves room for another sample
            return
        self.population.append(record)
        if len(self.population) > self.population_size:
            self.population.popleft()  # regularization: remove the oldest, not the worst

    def final_state(self) -> dict[str, Any]:
        return {"population": [r.step for r in self.population]}
