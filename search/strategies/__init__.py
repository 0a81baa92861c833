"""Search strategies: the pieces of a one-shot method that ``SearchModule`` delegates to (see ``base``)."""
from search.strategies.base import (
    ArchStepContext,
    SearchStrategy,
    get_strategy,
    get_strategy_class,
    list_strategies,
    register_strategy,
    strategy_arguments,
)
from search.strategies.darts import DartsStrategy, supernet_genotype
from search.strategies.drnas import DrNasStrategy
from search.strategies.enas import EnasStrategy
from search.strategies.gdas import GdasStrategy
from search.strategies.pcdarts import PCDartsStrategy
from search.strategies.spos import SposStrategy

__all__ = [
    "ArchStepContext", "DartsStrategy", "SearchStrategy", "get_strategy", "get_strategy_class",
    "list_strategies", "register_strategy", "strategy_arguments", "supernet_genotype",
]
