"""The bookkeeping every discrete strategy shares: budget, size limit, trials in flight, history, best cell.

A strategy proposes cells (``ask``) and learns the outcomes (``tell``); ``SearchLoop`` runs the trials on a worker
pool (``search.discrete.workers``: in-process by default, Ray for parallel workers), retries a failed trial once,
appends every proposal and every outcome to a journal as it happens (``search.discrete.journal``) and, on resume,
replays the journal through the strategy so that no finished trial runs again.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Literal, TypeVar

from search.discrete.evaluator import Evaluation, Evaluator
from search.discrete.pareto import pareto_front
from search.discrete.space import CategoricalSpace
from search.discrete.workers import SerialPool, WorkerDied

CellT = TypeVar("CellT")
MAX_ATTEMPTS = 2
"""A trial that fails is run once more, then recorded as failed."""


@dataclass(frozen=True)
class Budget:
    """When a search stops (whichever bound is reached first).

    Args:
        evaluations: Maximum number of trials (null: no bound); a failed trial counts.
        seconds: Maximum cost in seconds (null: no bound); needs an evaluator that charges seconds (the tabular one
            with ``seconds_per_eval``). An evaluation that would exceed it is not recorded, and the search stops.
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
class Proposal(Generic[CellT]):
    """A cell a strategy asks to evaluate."""

    cell: CellT
    parent: int = -1
    """History step of the cell this one was mutated from, -1 if sampled."""


@dataclass(frozen=True)
class Record(Generic[CellT]):
    """One evaluated cell."""

    step: int
    """Position in the history (0-based, order of completion)."""
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
    trial: int = -1
    """Order in which the cell was proposed (equals ``step`` with one worker)."""
    loss: float | None = None
    """Validation loss, where the evaluator measures one."""
    attempts: int = 1


@dataclass(frozen=True)
class Failure:
    """A trial that failed ``MAX_ATTEMPTS`` times (an exception in the evaluator, or its worker died)."""

    trial: int
    arch: str
    error: str
    attempts: int


@dataclass(frozen=True)
class Progress:
    """Where a running search stands, after each finished or failed trial."""

    done: int
    running: int
    failed: int
    budget: int | None
    """Trials the budget allows (``None``: bounded by seconds only)."""
    best: Record[Any] | None
    elapsed: float
    """Wall-clock seconds since this process started the search (a resume counts from the resume)."""
    record: Record[Any] | None
    """The trial just recorded; ``None`` when it failed."""
    finished_here: int = 0
    """Trials finished or failed in this process (``done + failed`` minus those replayed from the journal)."""

    @property
    def remaining(self) -> float | None:
        """Estimated wall-clock seconds left, from this process's pace; ``None`` without an evaluations bound or
        before a trial of this process finished."""
        if self.budget is None or self.finished_here == 0:
            return None
        return self.elapsed / self.finished_here * max(self.budget - self.done - self.failed, 0)


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
    failures: list[Failure] = field(default_factory=list)

    @property
    def best(self) -> Record[CellT] | None:
        """Highest-metric evaluated cell (the earliest proposed on ties); ``None`` if nothing was evaluated."""
        best: Record[CellT] | None = None
        for record in self.history:
            if best is None or record.metric > best.metric or (record.metric == best.metric and record.trial < best.trial):
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


class Strategy(ABC):
    """A discrete search strategy: ``ask`` for the next cell, ``tell`` it how a cell did.

    ``start`` resets its state for one search; everything random is drawn from the seed and the order of asks and
    tells, so a journal replayed in the same order gives the same state. With several workers a strategy is asked
    as soon as a worker is free; ``ask`` returns ``None`` when it must wait for an outcome first (a REINFORCE
    batch, an evolution population still in flight).
    """

    name: str = "strategy"

    def search(self, space: CategoricalSpace[CellT], evaluator: Evaluator, budget: Budget, *, seed: int = 0,
               limit: SizeLimit | None = None, on_record: Callable[[Record[CellT]], None] | None = None,
               **loop_options: Any) -> SearchResult[CellT]:
        """Run one search; the same ``seed`` gives the same history with one worker. ``loop_options`` go to
        ``SearchLoop`` (``pool``, ``journal``, ``on_progress``)."""
        return SearchLoop(space, evaluator, budget, limit, on_record, **loop_options).run(self, int(seed))

    @abstractmethod
    def start(self, space: CategoricalSpace[Any], seed: int) -> None:
        """Reset for a new search of ``space``."""

    @abstractmethod
    def ask(self) -> Proposal[Any] | None:
        """The next cell to evaluate, or ``None`` to wait for an outcome."""

    def reject(self, proposal: Proposal[Any]) -> None:
        """``proposal`` was over the size limit and will not be evaluated."""

    @abstractmethod
    def tell(self, proposal: Proposal[Any], record: Record[Any] | None) -> None:
        """The outcome of ``proposal``: its record, or ``None`` if the trial failed or fell outside the budget."""

    def final_state(self) -> dict[str, Any]:
        """The final state worth reporting."""
        return {}


class SearchLoop(Generic[CellT]):
    """Runs a strategy's trials under a budget and a size limit, recording the history.

    Every proposal within the size limit is evaluated and charged, repeats included (a real search would train a
    repeated cell again).

    Args:
        space, evaluator, budget, limit: What is searched, how a cell is scored, when to stop, which cells may run.
        on_record: Called with every record, in order.
        pool: Where trials run (default: ``SerialPool``, in this process, one at a time). A pool passed in stays
            open for the caller's next search (trials still in flight when the search ends are cancelled); the
            default one is closed at the end.
        journal: Where every proposal and outcome is appended; its events from an earlier run are replayed first.
        on_progress: Called after every finished or failed trial.
        max_rejections: Proposals over the size limit in a row before the search gives up.
    """

    def __init__(self, space: CategoricalSpace[CellT], evaluator: Evaluator, budget: Budget,
                 limit: SizeLimit | None = None, on_record: Callable[[Record[CellT]], None] | None = None, *,
                 pool: Any = None, journal: Any = None, on_progress: Callable[[Progress], None] | None = None,
                 max_rejections: int = 100_000) -> None:
        if budget.seconds is not None and evaluator.cost_unit != "seconds":
            raise ValueError(f"a budget in seconds needs an evaluator that charges seconds; this one counts "
                             f"{evaluator.cost_unit} (set seconds_per_eval)")
        bind = getattr(evaluator, "bind_space", None)
        if bind is not None:  # an evaluator that cannot score this space says so now
            bind(space)
        self.space, self.evaluator, self.budget = space, evaluator, budget
        self.limit = limit or SizeLimit()
        self.on_record, self.on_progress = on_record, on_progress
        self.pool = pool if pool is not None else SerialPool(evaluator)
        self._owns_pool = pool is None
        self.journal = journal
        self.max_rejections = max_rejections
        allowed = space.allowed
        if allowed is not None and (self.limit.max_params is not None or self.limit.max_flops is not None):
            if not any(self.feasible(space.decode(row.tolist())) for row in allowed):
                raise ValueError(f"none of the {len(allowed)} allowed cells is within the size limit "
                                 f"(max_params={self.limit.max_params}, max_flops={self.limit.max_flops})")
        self.history: list[Record[CellT]] = []
        self.failures: list[Failure] = []
        self.n_rejected = 0
        self._asked = 0
        self._stopped = False
        self._pending: dict[int, Proposal[CellT]] = {}
        self._attempts: dict[int, int] = {}
        self._queue: list[int] = []  # pending trials waiting for a free worker (retries, an earlier run's)

    @property
    def total_cost(self) -> float:
        """Cost spent so far."""
        return self.history[-1].total_cost if self.history else 0.0

    @property
    def exhausted(self) -> bool:
        """Whether no further trial may be proposed."""
        return self._stopped or (self.budget.evaluations is not None and self._asked >= self.budget.evaluations)

    def feasible(self, cell: CellT) -> bool:
        """Whether a cell is within the size limit."""
        return self.limit.allows(*self.evaluator.size(cell))

    def run(self, strategy: Strategy, seed: int) -> SearchResult[CellT]:
        """Replay the journal, then ask, run and tell until the budget is spent and no trial is in flight."""
        strategy.start(self.space, seed)
        start = time.perf_counter()
        for event in (self.journal.events if self.journal is not None else []):
            self._replay(strategy, event)
        if self.budget.evaluations is not None and self._asked > self.budget.evaluations:
            raise ValueError(f"the history {self.journal.path} already holds {self._asked} trials, more than "
                             f"budget.evaluations {self.budget.evaluations}; resume with a budget of at least "
                             f"{self._asked}")
        for trial in sorted(self._pending):  # in flight when the earlier run stopped
            if self._attempts.get(trial, 0) >= MAX_ATTEMPTS:  # it took the search process down each time
                self._conclude(strategy, trial, WorkerDied("the search process ended while it ran"))
            else:
                self._queue.append(trial)
        finished_before = len(self.history) + len(self.failures)
        try:
            while True:
                while self._queue and self.pool.free > 0:  # retries and trials of the earlier run first
                    self._submit(self._queue.pop(0))
                while not self.exhausted and self.pool.free > 0:
                    proposal = self._next_proposal(strategy)
                    if proposal is None:
                        break
                    trial = self._asked
                    self._log({"event": "ask", "trial": trial, "arch": self.space.to_str(proposal.cell),
                               "parent": proposal.parent})
                    self._pending[trial], self._asked = proposal, trial + 1
                    self._submit(trial)
                if not self._pending:
                    break
                if self.pool.running == 0:
                    raise RuntimeError(f"{strategy.name} waits for an outcome but no trial is running")
                trial, outcome = self.pool.next_result()
                if isinstance(outcome, BaseException) and self._attempts[trial] < MAX_ATTEMPTS:
                    self._queue.append(trial)
                    continue
                self._conclude(strategy, trial, outcome)
                if self.on_progress is not None:
                    self.on_progress(Progress(
                        len(self.history), self.pool.running, len(self.failures), self.budget.evaluations,
                        self._best(), time.perf_counter() - start,
                        self.history[-1] if self.history and self.history[-1].trial == trial else None,
                        len(self.history) + len(self.failures) - finished_before))
        finally:
            if self._owns_pool:
                self.pool.close()
            else:
                self.pool.cancel()
        return SearchResult(strategy.name, seed, self.evaluator.metric_name, self.evaluator.cost_unit,
                            list(self.history), self.n_rejected, strategy.final_state(), list(self.failures))

    def _submit(self, trial: int) -> None:
        """Start an attempt of ``trial``; the journal notes it, so an attempt that kills the process still counts."""
        self._attempts[trial] = self._attempts.get(trial, 0) + 1
        self._log({"event": "start", "trial": trial, "attempt": self._attempts[trial]})
        self.pool.submit(trial, self._pending[trial].cell)

    def _conclude(self, strategy: Strategy, trial: int, outcome: Evaluation | BaseException) -> None:
        """Journal and record the last attempt's outcome."""
        event = _outcome_event(trial, outcome, self._attempts.get(trial, 1))
        self._log(event)
        self._finish(strategy, event)

    def _best(self) -> Record[CellT] | None:
        return SearchResult("", 0, "", "", self.history).best

    def _next_proposal(self, strategy: Strategy) -> Proposal[CellT] | None:
        rejected_in_a_row = 0
        while True:
            proposal = strategy.ask()
            if proposal is None or self.feasible(proposal.cell):
                return proposal
            self.n_rejected += 1
            strategy.reject(proposal)
            rejected_in_a_row += 1
            if rejected_in_a_row >= self.max_rejections:
                raise ValueError(f"{self.max_rejections} proposals in a row exceeded the size limit "
                                 f"(max_params={self.limit.max_params}, max_flops={self.limit.max_flops}); loosen it")

    def _replay(self, strategy: Strategy, event: dict[str, Any]) -> None:
        kind, trial = event.get("event"), event.get("trial")
        if kind == "ask":
            proposal = self._next_proposal(strategy)
            arch = None if proposal is None else self.space.to_str(proposal.cell)
            if trial != self._asked or arch != event.get("arch"):
                raise ValueError(f"the history {self.journal.path} does not replay: trial {trial} was "
                                 f"{event.get('arch')}, this search proposes {arch}; it comes from another search")
            self._pending[self._asked] = proposal  # type: ignore[assignment]
            self._asked += 1
        elif kind in ("start", "done", "failed") and trial in self._pending:
            if kind == "start":
                self._attempts[trial] = int(event["attempt"])
            else:
                self._finish(strategy, event)
        else:
            raise ValueError(f"the history {self.journal.path} is damaged: a {kind!r} event for trial {trial}, "
                             "which is not in flight there")

    def _finish(self, strategy: Strategy, event: dict[str, Any]) -> None:
        trial = event["trial"]
        proposal = self._pending.pop(trial)
        arch = self.space.to_str(proposal.cell)
        if event["event"] == "failed":
            self.failures.append(Failure(trial, arch, event["error"], event["attempts"]))
            strategy.tell(proposal, None)
            return
        total = self.total_cost + event["cost"]
        if self.budget.seconds is not None and total > self.budget.seconds * (1 + 1e-12):
            self._stopped = True
            strategy.tell(proposal, None)
            return
        record = Record(len(self.history), proposal.cell, arch, event["metric"], event["params"], event["flops"],
                        event["cost"], total, proposal.parent, trial, event.get("loss"), event["attempts"])
        self.history.append(record)
        strategy.tell(proposal, record)
        if self.on_record is not None:
            self.on_record(record)

    def _log(self, event: dict[str, Any]) -> None:
        if self.journal is not None:
            self.journal.append(event)


def _outcome_event(trial: int, outcome: Evaluation | BaseException, attempts: int) -> dict[str, Any]:
    """The journal event of a finished trial: its evaluation, or the error of its last attempt."""
    if isinstance(outcome, BaseException):
        return {"event": "failed", "trial": trial, "error": f"{type(outcome).__name__}: {outcome}".splitlines()[0],
                "attempts": attempts}
    loss = outcome.loss if outcome.loss is None or math.isfinite(outcome.loss) else None
    return {"event": "done", "trial": trial, "metric": float(outcome.metric), "params": float(outcome.params),
            "flops": float(outcome.flops), "cost": float(outcome.cost), "loss": loss, "attempts": attempts}
