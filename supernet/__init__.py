"""Weight-sharing supernets: MixedOp edges, search cells, search networks, architecture parameters and
the discretizer (the spaces' rules, from ``ops``). The supernet is a plain module called as ``net(x, weights)``."""
from ops.discretize import discretize_darts, discretize_nb201
from ops.spaces import discretize
from supernet.arch import ArchParameters, node_softmax
from supernet.cells import DartsSearchCell, NB201SearchCell
from supernet.mixed_op import MixedOp, channel_shuffle
from supernet.networks import SUPERNETS, DartsSearchNetwork, NB201SearchNetwork, build_supernet
from supernet.weights import ArchWeights, CellWeights

import supernet.fast  # noqa: E402,F401 -- registers the fused cell implementation

__all__ = [
    "ArchParameters", "ArchWeights", "CellWeights", "DartsSearchCell", "DartsSearchNetwork", "MixedOp",
    "NB201SearchCell", "NB201SearchNetwork", "SUPERNETS", "build_supernet",
    "channel_shuffle", "discretize", "discretize_darts", "discretize_nb201", "node_softmax",
]
