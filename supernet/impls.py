"""How a DARTS search network evaluates its cells: ``reference`` (the readable per-op forward of ``supernet.cells``,
as the original DARTS) or an accelerated path registered here by its own package (``supernet.fast`` registers
``fused``). The readable supernet imports no accelerated code; it looks the chosen path up by name."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from ops import Registry


@dataclass(frozen=True)
class CellImpl:
    """An accelerated path: ``cell(cell_module, s0, s1, weights, recompute) -> Tensor`` replaces the cell's forward
    (for dense mixing weights; sampled paths keep the reference forward) and ``stem(stem_module, x) -> Tensor`` the
    stem's."""

    cell: Callable[..., Tensor]
    stem: Callable[[nn.Sequential, Tensor], Tensor]


IMPLS: Registry[CellImpl | None] = Registry("cell implementation")
"""The cell forwards by name; ``reference`` is the cells' own forward."""
IMPLS.register("reference", None)


def check_impl(impl: str, owner: str) -> CellImpl | None:
    """The registered path ``impl``; an unknown name raises one line naming ``owner`` and the valid names."""
    if impl not in IMPLS:
        raise ValueError(f"{owner}: unknown impl {impl!r}; valid: {', '.join(IMPLS.names())}")
    return IMPLS.get(impl)
