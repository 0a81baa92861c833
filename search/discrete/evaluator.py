"""Evaluators: what a discrete search strategy asks about a cell.

An evaluator returns the search metric (higher is better), the cell's size (params and FLOPs, millions)
and the cost of the evaluation. ``size`` must be cheap: a size budget is checked before a cell is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from search.nb201_table import NB201Table, metric_dataset


@dataclass(frozen=True)
class Evaluation:
    """Result of evaluating one cell."""

    metric: float
    """Search metric, higher is better (an accuracy in % for the tabular evaluator)."""
    params: float
    """Parameters, millions."""
    flops: float
    """Multiply-adds, millions."""
    cost: float
    """Cost of this evaluation, in the evaluator's ``cost_unit``."""
    loss: float | None = None
    """Validation loss, where the evaluator measures one (a trained cell)."""


@runtime_checkable
class Evaluator(Protocol):
    """What the strategies need: ``evaluate`` a cell, its ``size`` without evaluating, the metric's name.

    An evaluator may also have ``bind_space(cell_space)``: every search calls it with the space searched (so it may
    be called again with the same space), and it raises ``ValueError`` for a space it cannot score. To run on Ray workers an evaluator must pickle.
    """

    metric_name: str
    cost_unit: str

    def evaluate(self, cell: Any) -> Evaluation:
        """Evaluate a cell."""

    def size(self, cell: Any) -> tuple[float, float]:
        """``(params, flops)`` in millions, without evaluating."""


class TabularEvaluator:
    """Evaluates NAS-Bench-201 cells by table lookup.

    Args:
        table: the benchmark table.
        metric: accuracy column used as the search signal, e.g. ``cifar10_valid_12ep`` (see ``table.metrics``).
        seconds_per_eval: simulated training time charged per evaluation. The published CSV layouts carry no
            per-cell training time, so without it the cost is one evaluation (``cost_unit == "evaluations"``).
    """

    def __init__(self, table: NB201Table, metric: str = "cifar10_valid", seconds_per_eval: float | None = None) -> None:
        if metric not in table.metrics:
            needs_hp12 = metric.endswith("_12ep") and table.hp12_path is None
            hint = " (12-epoch metrics need the hp12 table)" if needs_hp12 else ""
            raise ValueError(f"unknown metric {metric!r}{hint}; available: {', '.join(table.metrics)}")
        if seconds_per_eval is not None and not seconds_per_eval > 0:
            raise ValueError(f"seconds_per_eval must be positive, got {seconds_per_eval}")
        self.table = table
        self.metric_name = metric
        self.dataset = metric_dataset(metric)
        self.seconds_per_eval = seconds_per_eval
        self.cost_unit = "evaluations" if seconds_per_eval is None else "seconds"

    def bind_space(self, cell_space: Any) -> None:
        """The table scores NAS-Bench-201 cells only."""
        if cell_space.name != "nb201":
            raise ValueError(f"the NAS-Bench-201 table scores cells of the nb201 space, not of the {cell_space.name} "
                             "space; pass an --evaluator (e.g. search.discrete.TrainedEvaluator)")

    def size(self, cell: Any) -> tuple[float, float]:
        """Params and FLOPs (millions) of the network for the metric's dataset."""
        return self.table.params(cell, self.dataset), self.table.flops(cell, self.dataset)

    def evaluate(self, cell: Any) -> Evaluation:
        """Look the cell up."""
        params, flops = self.size(cell)
        cost = 1.0 if self.seconds_per_eval is None else float(self.seconds_per_eval)
        return Evaluation(self.table.value(cell, self.metric_name), params, flops, cost)


class FunctionEvaluator:
    """Evaluator from plain functions (a proxy score, a trained-from-scratch run, a test fixture).

    Args:
        metric_fn: ``cell -> metric`` (higher is better).
        size_fn: ``cell -> (params, flops)``; zeros when omitted.
        cost_fn: ``cell -> cost``; one evaluation when omitted.
        metric_name: name shown in logs and ``history.csv``.
        cost_unit: unit of ``cost_fn``.
    """

    def __init__(self, metric_fn: Callable[[Any], float], size_fn: Callable[[Any], tuple[float, float]] | None = None,
                 cost_fn: Callable[[Any], float] | None = None, metric_name: str = "metric",
                 cost_unit: str = "evaluations") -> None:
        self.metric_fn, self.size_fn, self.cost_fn = metric_fn, size_fn, cost_fn
        self.metric_name, self.cost_unit = metric_name, cost_unit

    def size(self, cell: Any) -> tuple[float, float]:
        """``size_fn(cell)`` or ``(0.0, 0.0)``."""
        if self.size_fn is None:
            return 0.0, 0.0
        params, flops = self.size_fn(cell)
        return float(params), float(flops)

    def evaluate(self, cell: Any) -> Evaluation:
        """Call the functions."""
        params, flops = self.size(cell)
        cost = 1.0 if self.cost_fn is None else float(self.cost_fn(cell))
        return Evaluation(float(self.metric_fn(cell)), params, flops, cost)
