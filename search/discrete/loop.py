"""The bookkeeping every discrete strategy shares: budget, size limit, history, best cell."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Literal, TypeVar

from search.discrete.evaluator import Evaluator
from search.discrete.pareto import pareto_front
from search.discrete.space import CategoricalSpace

CellT = TypeVar("CellT")


@dataclass(frozen=True)
class Budget:
    """When a search stops (whichever bound is reached first).

    Args:
        evaluations: Maximum number of evaluated cells (null: no bound).
        seconds: Maximum simulated cost in seconds (null: no bound); needs ``seconds_per_eval``, as the
            NAS-Bench-201 CSVs carry no training times. An evaluation that would exceed it is not made.
    """

    evaluations: int | None = 100
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.evaluations is None and self.seconds is None:
            raise ValueError("the budget needs evaluations or seconds (or both); neither was given")
        if self.evaluations is not None and self.evaluations < 1:
            raise ValueError(f"budget evaluations must be >= 1, got {self.evaluations}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"budget seconds must be > 0, got {self.seconds}")


@dataclass(frozen=True)
class SizeLimit:
    """Size budget: cells above either bound are rejected before evaluation (not charged) and never become the best.

    Args:
        max_params: Maximum parameters in millions (null: no bound).
        max_flops: Maximum multiply-adds in millions (null: no bound).
    """

    max_params: float | None = None
    max_flops: float | None = None

    def allows(self, params: float, flops: float) -> bool:
        """Whether a cell of this size is within the budget."""
        return ((self.max_params is None or params <= self.max_params)
                and (self.max_flops is None or flops <= self.max_flops))


@dataclass(frozen=True)
class Record(Generic[CellT]):
    """One evaluated cell."""

    step: int
    """Position in the history (0-based)."""
    cell: CellT
    arch: str
    """Text form of the cell."""
    metric: float
    params: float
    flops: float
    cost: float
    total_cost: float
    """Cost spent up to and including this evaluation."""
    parent: int = -1
    """Step of the cell this one was mutated from, -1 if sampled."""


@dataclass
class SearchResult(Generic[CellT]):
    """History and outcome of one search run."""

    strategy: str
    seed: int
    metric_name: str
    cost_unit: str
    history: list[Record[CellT]]
    n_rejected: int = 0
    """Cells proposed but rejected by the size limit (not evaluated, not charged)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Strategy-specific final state (REA population, REINFORCE policy probabilities)."""

    @property
    def best(self) -> Record[CellT] | None:
        """Highest-metric evaluated cell (earliest on ties); ``None`` if nothing was evaluated."""
        best: Record[CellT] | None = None
        for record in self.history:
            if best is None or record.metric > best.metric:
                best = record
        return best

    @property
    def best_cell(self) -> CellT:
        """The best cell (an ``NB201Genotype`` in the NB201 space)."""
        if self.best is None:
            raise ValueError(f"{self.strategy} (seed {self.seed}) evaluated no cell within the size limit")
        return self.best.cell

    best_genotype = best_cell

    @property
    def total_cost(self) -> float:
        """Cost spent by the whole run."""
        return self.history[-1].total_cost if self.history else 0.0

    def pareto(self, size: Literal["params", "flops"] = "params") -> list[Record[CellT]]:
        """Distinct evaluated cells (first evaluation of each) not dominated in (higher metric, smaller ``size``),
        by increasing size."""
        cells = self.distinct()
        return [cells[i] for i in pareto_front([(r.metric, getattr(r, size)) for r in cells])]

    def distinct(self) -> list[Record[CellT]]:
        """The first evaluation of each distinct cell, in history order."""
        return list({r.arch: r for r in reversed(self.history)}.values())[::-1]


class SearchLoop(Generic[CellT]):
    """Evaluates proposed cells under a budget and a size limit, recording the history.

    Every proposal within the size limit is evaluated and charged, repeats included (a real search would
    train a repeated cell again). ``exhausted`` turns true when the next evaluation would exceed the budget.
    """

    def __init__(self, space: CategoricalSpace[CellT], evaluator: Evaluator, budget: Budget,
                 limit: SizeLimit | None = None, on_record: Callable[[Record[CellT]], None] | None = None,
                 max_rejections: int = 100_000) -> None:
        if budget.seconds is not None and evaluator.cost_unit != "seconds":
            raise ValueError(f"a budget in seconds needs an evaluator that charges seconds; this one counts "
                             f"{evaluator.cost_unit} (set seconds_per_eval)")
        self.space, self.evaluator, self.budget = space, evaluator, budget
        self.limit = limit or SizeLimit()
        self.on_record = on_record
        self.max_rejections = max_rejections
        allowed = space.allowed
        if allowed is not None and (self.limit.max_params is not None or self.limit.max_flops is not None):
            if not any(self.feasible(space.decode(row.tolist())) for row in allowed):
                raise ValueError(f"none of the {len(allowed)} allowed cells is within the size limit "
                                 f"(max_params={self.limit.max_params}, max_flops={self.limit.max_flops})")
        self.history: list[Record[CellT]] = []
        self.n_rejected = 0
        self._rejected_in_a_row = 0
        self._stopped = False

    @property
    def total_cost(self) -> float:
        """Cost spent so far."""
        return self.history[-1].total_cost if self.history else 0.0

    @property
    def exhausted(self) -> bool:
        """Whether the budget is spent."""
        return self._stopped or (self.budget.evaluations is not None and len(self.history) >= self.budget.evaluations)

    def feasible(self, cell: CellT) -> bool:
        """Whether a cell is within the size limit."""
        return self.limit.allows(*self.evaluator.size(cell))

    def evaluate(self, cell: CellT, parent: int = -1) -> Record[CellT] | None:
        """Evaluate ``cell`` and record it; ``None`` if it is over the size limit or the budget is spent."""
        if self.exhausted:
            return None
        if not self.feasible(cell):
            self.n_rejected += 1
            self._rejected_in_a_row += 1
            if self._rejected_in_a_row >= self.max_rejections:
                raise ValueError(f"{self.max_rejections} proposals in a row exceeded the size limit "
                                 f"(max_params={self.limit.max_params}, max_flops={self.limit.max_flops}); loosen it")
            return None
        self._rejected_in_a_row = 0
        ev = self.evaluator.evaluate(cell)
        total = self.total_cost + ev.cost
        if self.budget.seconds is not None and total > self.budget.seconds * (1 + 1e-12):
            self._stopped = True
            return None
        record = Record(len(self.history), cell, self.space.to_str(cell), ev.metric, ev.params, ev.flops,
                        ev.cost, total, parent)
        self.history.append(record)
        if self.on_record is not None:
            self.on_record(record)
        return record

    def result(self, strategy: str, seed: int, **extras: Any) -> SearchResult[CellT]:
        """Package the history."""
        return SearchResult(strategy, seed, self.evaluator.metric_name, self.evaluator.cost_unit,
                            list(self.history), self.n_rejected, dict(extras))


class Strategy(ABC):
    """A discrete search strategy: proposes cells to a ``SearchLoop`` until the budget is spent."""

    name: str = "strategy"

    def search(self, space: CategoricalSpace[CellT], evaluator: Evaluator, budget: Budget, *, seed: int = 0,
               limit: SizeLimit | None = None,
               on_record: Callable[[Record[CellT]], None] | None = None) -> SearchResult[CellT]:
        """Run one search; the same ``seed`` gives the same history (all randomness is drawn from it)."""
        loop = SearchLoop(space, evaluator, budget, limit, on_record)
        extras = self._run(loop, int(seed))
        return loop.result(self.name, int(seed), **extras)

    @abstractmethod
    def _run(self, loop: SearchLoop[Any], seed: int) -> dict[str, Any]:
        """Propose cells until ``loop.exhausted``; return the final state worth reporting."""
