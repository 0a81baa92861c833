"""Building blocks and the cell vocabulary: primitives, registries, search spaces and genotypes."""
from ops.genotype import NB201_EDGES, DartsGenotype, Genotype, NB201Genotype
from ops.primitives import ConvBN, DilConv, FactorizedReduce, PoolBN, ReLUConvBN, ResNetBasicBlock, SepConv, Zero
from ops.registry import OPS, SEARCH_SPACES, Registry, check_op, create_op, list_ops, register_op, search_space
from ops.spaces import SPACES, DartsSpace, NB201Space, SearchSpace

__all__ = [
    "ConvBN", "DartsGenotype", "DartsSpace", "DilConv", "FactorizedReduce", "Genotype", "NB201Genotype", "NB201Space",
    "NB201_EDGES", "OPS", "PoolBN", "ReLUConvBN", "Registry", "ResNetBasicBlock", "SEARCH_SPACES", "SPACES", "SearchSpace",
    "SepConv", "Zero", "check_op", "create_op", "list_ops", "register_op", "search_space",
]
