"""How a search network (DARTS or NAS-Bench-201) evaluates its cells: ``reference`` (the readable per-op forward of
``supernet.cells``, as the original code) or an accelerated path registered here by its own package
(``supernet.fast`` registers ``fused``). The readable supernet imports no accelerated code: the network looks the
chosen path up by name once, when it is built (or switched with ``set_impl``), and hands the cells the resulting
object."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor, nn

from ops import ConvBN, Registry
from supernet.weights import CellWeights


class CellImpl(Protocol):
    """An accelerated path: ``cell`` replaces a ``DartsSearchCell``'s forward and ``nb201_cell`` an
    ``NB201SearchCell``'s, for dense mixing weights (sampled paths keep the reference forward); ``stem`` the
    stem's."""

    def cell(self, cell: nn.Module, s0: Tensor, s1: Tensor, weights: CellWeights) -> Tensor: ...

    def nb201_cell(self, cell: nn.Module, x: Tensor, weights: CellWeights) -> Tensor: ...

    def stem(self, stem: ConvBN, x: Tensor) -> Tensor: ...


IMPLS: Registry[Callable[..., CellImpl] | None] = Registry("cell implementation")
"""Factories of the accelerated paths by name, called with the network's path options (``recompute``,
``cpu_kernels``); ``reference`` (``None``) is the cells' own forward."""
IMPLS.register("reference", None)


def build_impl(impl: str, owner: str, **options: bool) -> CellImpl | None:
    """The path ``impl`` built with ``options`` (``None`` for ``reference``); an unknown name raises one line
    naming ``owner`` and the valid names."""
    if impl not in IMPLS:
        raise ValueError(f"{owner}: unknown impl {impl!r}; valid: {', '.join(IMPLS.names())}")
    factory = IMPLS.get(impl)
    return None if factory is None else factory(**options)
