"""The fused fast path of the DARTS search cell (same function as ``supernet.cells``, fewer and larger kernel calls,
less memory): registered as cell implementation ``fused`` (``DartsSearchNetwork(impl="fused")``, the default on CPU,
where it is measured 2.1-2.5x faster). Nothing outside this package imports it but ``supernet/__init__.py``, which
registers it."""
import torch

from supernet.fast.batch_norm import module_batch_norm
from supernet.fast.cell import fused_cell_forward
from supernet.impls import IMPLS, CellImpl


def fused_stem(stem: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The conv + BatchNorm stem on channels-last data with the fast path's BatchNorm."""
    return module_batch_norm(stem[1], stem[0](x.contiguous(memory_format=torch.channels_last)))


IMPLS.register("fused", CellImpl(cell=fused_cell_forward, stem=fused_stem))

__all__ = ["fused_cell_forward", "fused_stem"]
