"""Building blocks and the cell vocabulary: primitives, the op registry and genotypes."""
from ops.genotype import NB201_EDGES, DartsGenotype, Genotype, NB201Genotype
from ops.primitives import DilConv, FactorizedReduce, ReLUConvBN, SepConv, Zero
from ops.spaces import SPACES, DartsSpace, NB201Space, SearchSpace
from ops.registry import OPS, SEARCH_SPACES, Registry, check_op, create_op, list_ops, register_op, search_space

__all__ = [
    "OPS", "Registry", "SPACES", "DartsSpace", "NB201Space", "SearchSpace", "DartsGenotype", "DilConv", "FactorizedReduce", "Genotype", "NB201Genotype", "NB201_EDGES",
    "ReLUConvBN", "SEARCH_SPACES", "SepConv", "Zero", "check_op", "create_op", "list_ops",
    "register_op", "search_space",
]
