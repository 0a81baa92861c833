"""Discrete (black-box) architecture search: random search, regularized evolution and REINFORCE over any
``CategoricalSpace`` with an ``Evaluator``: NAS-Bench-201 by table (``NB201Space``, ``TabularEvaluator``), and any
space (``DartsCellSpace`` too) by training cells from scratch (``TrainedEvaluator``) or with a trained supernet's
weights (``SharedWeightEvaluator``). Trials run in this process or on Ray workers (``make_pool``), journaled so that
a killed search resumes (``Journal``).

The two training evaluators load on first use (they bring Lightning in): a table search, and every Ray worker that
runs one, starts without it."""
from typing import Any

from search.discrete.evaluator import Evaluation, Evaluator, FunctionEvaluator, TabularEvaluator
from search.discrete.evolution import RegularizedEvolution
from search.discrete.journal import Journal
from search.discrete.loop import Budget, Failure, Progress, Proposal, Record, SearchLoop, SearchResult, SizeLimit, Strategy
from search.discrete.multiseed import mean_std, run_seeds, summarize
from search.discrete.pareto import pareto_front, plot_pareto
from search.discrete.random_search import RandomSearch
from search.discrete.reinforce import Reinforce
from search.discrete.space import CategoricalSpace, NB201Space
from search.discrete.darts_space import DartsCellSpace
from search.discrete.workers import RayPool, SerialPool, WorkerDied, make_pool

__all__ = [
    "Budget", "CategoricalSpace", "DartsCellSpace", "Evaluation", "Evaluator", "Failure", "FunctionEvaluator", "Journal",
    "NB201Space", "Progress", "Proposal", "RandomSearch", "RayPool", "Record", "RegularizedEvolution", "Reinforce",
    "SearchLoop", "SearchResult", "SerialPool", "SharedWeightEvaluator", "SizeLimit", "Strategy", "TabularEvaluator",
    "TrainedEvaluator", "WorkerDied", "make_pool", "mean_std", "pareto_front", "plot_pareto", "run_seeds", "summarize",
]

_TRAINING_EVALUATORS = ("SharedWeightEvaluator", "TrainedEvaluator")


def __getattr__(name: str) -> Any:
    """``TrainedEvaluator`` and ``SharedWeightEvaluator``, imported when first asked for."""
    if name in _TRAINING_EVALUATORS:
        from search.discrete import trained

        return getattr(trained, name)
    raise AttributeError(f"module 'search.discrete' has no attribute {name!r}")
