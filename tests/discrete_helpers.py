"""Evaluators for the trial tests, importable by a search subprocess (``PYTHONPATH=tests``) through ``--evaluator``."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from search.discrete import Evaluation, TabularEvaluator
from search.nb201_table import NB201Table


class SlowTable:
    """The 12-epoch table lookup, ``delay`` seconds per cell, each evaluated cell appended to the ``log`` file."""

    cost_unit = "evaluations"

    def __init__(self, table: str, hp12_table: str, log: str, delay: float = 0.05) -> None:
        self.table = TabularEvaluator(NB201Table(table, hp12_table), "cifar10_valid_12ep")
        self.metric_name = self.table.metric_name
        self.log, self.delay = Path(log), delay

    def bind_space(self, cell_space: Any) -> None:
        self.table.bind_space(cell_space)

    def size(self, cell: Any) -> tuple[float, float]:
        return self.table.size(cell)

    def evaluate(self, cell: Any) -> Evaluation:
        time.sleep(self.delay)
        with self.log.open("a") as handle:
            handle.write(cell.to_arch_str() + "\n")
        return self.table.evaluate(cell)


class Dies:
    """Scores the number of convolutions; the worker process exits (as if killed) on a cell whose first edge is
    ``none``: always, or only the first time (a marker file in ``folder`` remembers it across processes)."""

    metric_name, cost_unit = "convs", "evaluations"

    def __init__(self, folder: str, always: bool) -> None:
        self.folder, self.always = Path(folder), always

    def size(self, cell: Any) -> tuple[float, float]:
        return 0.0, 0.0

    def evaluate(self, cell: Any) -> Evaluation:
        if cell.edges[0] == "none":
            marker = self.folder / cell.to_arch_str().replace("|", "_")
            if self.always or not marker.exists():
                marker.touch()
                os._exit(1)
        return Evaluation(float(sum("conv" in e for e in cell.edges)), 0.0, 0.0, 1.0)
