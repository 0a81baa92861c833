"""The fused fast path of the search cells (same function as ``supernet.cells``, fewer and larger kernel calls, less
memory): registered as cell implementation ``fused`` (``DartsSearchNetwork(impl="fused")`` and
``NB201SearchNetwork(impl="fused")``, the default; ``benchmarks/step_speed.py`` measures it). Nothing outside this
package imports it but ``supernet/__init__.py``, which registers it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ops import ConvBN
from supernet.fast.batch_norm import module_batch_norm
from supernet.fast.cell import fused_cell_forward, fused_nb201_cell_forward
from supernet.impls import IMPLS
from supernet.weights import CellWeights


@dataclass(frozen=True)
class FusedCells:
    """The fused path with its options.

    Args:
        recompute: Each convolution stage keeps only its input (and BatchNorm statistics) for the backward pass and
            recomputes its two convolutions there (``supernet.fast.stage``): a fraction of the activation memory
            for ~15 % more step time.
        cpu_kernels: On the CPU, this package's depthwise-convolution backward (``dwconv``) and blocked BatchNorm
            statistics (``batch_norm``); False: PyTorch's own kernels, as on every other device.
    """

    recompute: bool = True
    cpu_kernels: bool = True

    def cell(self, cell: nn.Module, s0: Tensor, s1: Tensor, weights: CellWeights) -> Tensor:
        """The cell's output (``fused_cell_forward``)."""
        return fused_cell_forward(cell, s0, s1, weights, self.recompute, self.cpu_kernels)

    def nb201_cell(self, cell: nn.Module, x: Tensor, weights: CellWeights) -> Tensor:
        """The NAS-Bench-201 cell's output (``fused_nb201_cell_forward``)."""
        return fused_nb201_cell_forward(cell, x, weights, self.recompute, self.cpu_kernels)

    def stem(self, stem: ConvBN, x: Tensor) -> Tensor:
        """The conv + BatchNorm stem on channels-last data with the fast path's BatchNorm."""
        return module_batch_norm(stem.bn, stem.conv(x.contiguous(memory_format=torch.channels_last)),
                                 self.cpu_kernels)


IMPLS.register("fused", FusedCells)

__all__ = ["FusedCells", "fused_cell_forward", "fused_nb201_cell_forward"]
