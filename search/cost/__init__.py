"""Hardware-aware search: the cost model of a space (params, FLOPs, measured latency), and the cost objective."""
from search.cost.latency import LatencyMeter
from search.cost.model import COST_KINDS, CostModel, top2_inclusion
from search.cost.objective import CostObjective

__all__ = ["COST_KINDS", "CostModel", "CostObjective", "LatencyMeter", "top2_inclusion"]
