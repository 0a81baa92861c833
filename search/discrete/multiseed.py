"""Run a strategy once per seed and aggregate the outcomes as mean and standard deviation."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from search.discrete.evaluator import Evaluator
from search.discrete.loop import Budget, Record, SearchResult, SizeLimit, Strategy
from search.discrete.space import CategoricalSpace


def run_seeds(strategy: Strategy, space: CategoricalSpace[Any], evaluator: Evaluator, budget: Budget,
              seeds: Iterable[int], limit: SizeLimit | None = None,
              on_record: Callable[[int, Record[Any]], None] | None = None) -> list[SearchResult[Any]]:
    """One ``strategy.search`` per seed; ``on_record(seed, record)`` sees every evaluation."""
    results = []
    for seed in seeds:
        hook = None if on_record is None else (lambda record, s=seed: on_record(s, record))
        results.append(strategy.search(space, evaluator, budget, seed=seed, limit=limit, on_record=hook))
    return results


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``ddof=0``, as ``numpy.std``), the NAS-Bench-201 convention."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("mean_std of no values")
    return float(arr.mean()), float(arr.std())


def summarize(results: Sequence[SearchResult[Any]],
              report: dict[str, Callable[[Any], float]] | None = None) -> dict[str, tuple[float, float]]:
    """Mean and std over runs of the best cell's search metric, of the evaluations spent, and of each
    ``report`` function (e.g. the 200-epoch test accuracy) of the best cell. A run without a best cell raises."""
    if not results:
        raise ValueError("summarize needs at least one result")
    for r in results:
        if r.best is None and r.failures:
            raise ValueError(f"{r.strategy} seed {r.seed}: all {len(r.failures)} trials failed, the last with "
                             f"{r.failures[-1].error}")
        if r.best is None:
            raise ValueError(f"{r.strategy} seed {r.seed} evaluated no cell within the size limit")
    out = {results[0].metric_name: mean_std([r.best.metric for r in results]),  # type: ignore[union-attr]
           "evaluations": mean_std([len(r.history) for r in results])}
    for name, fn in (report or {}).items():
        out[name] = mean_std([fn(r.best_cell) for r in results])
    return out
