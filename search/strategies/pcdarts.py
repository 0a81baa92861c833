"""PC-DARTS (Xu et al., ICLR 2020): DARTS on a partial-channel supernet (1/K of the channels through the ops,
channel shuffle) with edge normalisation: per-node softmax betas that scale the edges and enter the genotype."""
from __future__ import annotations

from torch import Tensor, nn

from ops import Genotype
from search.strategies.base import register_strategy
from search.strategies.darts import DartsStrategy, supernet_genotype
from supernet import ArchParameters, MixedOp


def partial_channels(supernet: nn.Module) -> int:
    """The smallest ``partial_channels`` of the supernet's edges (1: full channels, or no MixedOp at all)."""
    return min((m.partial_channels for m in supernet.modules() if isinstance(m, MixedOp)), default=1)


@register_strategy("pcdarts")
class PCDartsStrategy(DartsStrategy):
    """PC-DARTS: the DARTS architecture step (1st order, as the paper) on alphas and edge betas.

    Partial channels are a property of the supernet (``partial_channels=K`` of ``DartsSearchNetwork`` /
    ``NB201SearchNetwork``; the paper uses K=4), so ``build_arch`` refuses a supernet built without them.
    ``probabilities`` are the op probabilities ``softmax(alpha)``; the genotype ranks each node's edges by op
    weight times the node-softmax of the betas (the paper's rule). On NB201 every edge is kept, so the betas
    cannot change the genotype there.

    Args:
        order: 1 (the paper) or 2 (unrolled, as DARTS).
        init_scale: alphas start as ``init_scale * randn`` (betas as ``1e-3 * randn``).
        r: 2nd order: finite-difference scale.
    """

    def build_arch(self, supernet: nn.Module) -> ArchParameters:
        """Alphas and edge betas per cell type; the supernet must have partial channels."""
        if partial_channels(supernet) <= 1:
            raise ValueError("PC-DARTS needs a partial-channel supernet: set "
                             "--model.supernet.init_args.partial_channels 4 (the paper's K)")
        return ArchParameters.for_network(supernet, init_scale=self.init_scale, edge_betas=True)

    def edge_weights(self, arch: nn.Module) -> dict[str, Tensor]:
        """Detached per-node softmax of the betas per cell type."""
        return {cell: arch.edge_weights(cell).detach() for cell in arch.cell_types}

    def genotype(self, arch: nn.Module, supernet: nn.Module) -> Genotype:
        """The DARTS rule on ``softmax(alpha) * edge_weights`` (NB201: argmax of ``softmax(alpha)``)."""
        return supernet_genotype(supernet, self.probabilities(arch), edge_weights=self.edge_weights(arch))
