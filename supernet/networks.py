"""Search networks: weight-sharing supernets called as ``net(x, weights)`` with ``ArchWeights``."""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from ops import ConvBN, DartsSpace, NB201Space, Registry, ResNetBasicBlock, check_op, search_space
from ops.skeleton import darts_cells, nb201_stages
from supernet.cells import DartsSearchCell, NB201SearchCell
from supernet.impls import build_impl
from supernet.weights import ArchWeights, CellWeights


def _check_candidates(owner: str, candidates: Sequence[str]) -> tuple[str, ...]:
    candidates = tuple(candidates)
    if not candidates:
        raise ValueError(f"{owner}: candidates is empty")
    duplicates = sorted({c for c in candidates if candidates.count(c) > 1})
    if duplicates:
        raise ValueError(f"{owner}: candidates repeat {', '.join(duplicates)}")
    for name in candidates:
        check_op(name)
    return candidates


def _check_positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{owner}: {name} must be >= 1, got {value}")


def _cell_weights(weights: ArchWeights, cell: str, owner: str) -> CellWeights:
    if cell not in weights:
        raise ValueError(f"{owner}: weights lack cell type {cell!r} (got {', '.join(sorted(weights)) or 'none'})")
    return weights[cell]


class _SwitchesImpl(nn.Module):
    """The cell implementation of a search network (``supernet.impls``): ``impl``, its options, and ``set_impl``."""

    cells: nn.ModuleList

    def _build_impl(self, impl: str, recompute: bool, cpu_kernels: bool) -> None:
        self.fast = build_impl(impl, type(self).__name__, recompute=recompute, cpu_kernels=cpu_kernels)
        self.impl, self.recompute, self.cpu_kernels = impl, recompute, cpu_kernels

    def set_impl(self, impl: str, recompute: bool | None = None) -> "_SwitchesImpl":
        """Switch every search cell to the ``fused`` or the ``reference`` forward (and set ``recompute`` unless
        None); returns the network."""
        self._build_impl(impl, self.recompute if recompute is None else recompute, self.cpu_kernels)
        for cell in self.cells:
            if hasattr(cell, "fast"):
                cell.fast = self.fast
        return self

    def stem_forward(self, x: Tensor) -> Tensor:
        """The stem's output, through the accelerated path when there is one."""
        return self.stem(x) if self.fast is None else self.fast.stem(self.stem, x)


class DartsSearchNetwork(_SwitchesImpl):
    """The DARTS search network: stem (conv 3x3 + BN, ``stem_multiplier * channels``), ``layers`` search
    cells with reductions at ``layers // 3`` and ``2 * layers // 3`` (channels double there), global
    average pooling and a linear classifier. ``forward(x, weights)`` takes ``{"normal": ..., "reduce": ...}``.

    ``impl="fused"`` (default) evaluates the cells with ``supernet.fast.cell`` (channels-last, work shared by the
    edges leaving a node, batched convolutions); ``impl="reference"`` computes every candidate op separately,
    as the original DARTS. Both compute the same function with the same parameters (one ``state_dict``).
    ``recompute`` and ``cpu_kernels`` are the fused path's options (``supernet.fast.FusedCells``: recompute the
    convolutions in the backward pass for a fraction of the activation memory at ~15 % more step time; its own CPU
    kernels or PyTorch's). ``set_impl`` switches the path of a built network."""

    space = "darts"
    cell_types = ("normal", "reduce")

    def __init__(self, channels: int = 16, layers: int = 8, steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, num_classes: int = 10, in_channels: int = 3,
                 candidates: Sequence[str] = search_space("darts"), partial_channels: int = 1,
                 impl: str = "fused", recompute: bool = True, cpu_kernels: bool = True) -> None:
        super().__init__()
        owner = "DartsSearchNetwork"
        self._build_impl(impl, recompute, cpu_kernels)
        _check_positive(owner, channels=channels, steps=steps, multiplier=multiplier,
                        stem_multiplier=stem_multiplier, num_classes=num_classes, in_channels=in_channels,
                        partial_channels=partial_channels)
        if layers < 3:
            raise ValueError(f"{owner}: layers={layers} is too few cells for two reduction cells (need >= 3)")
        if multiplier > steps:
            raise ValueError(f"{owner}: multiplier={multiplier} exceeds steps={steps} (cannot concat more nodes than exist)")
        if channels % partial_channels:
            raise ValueError(f"{owner}: channels={channels} is not divisible by partial_channels={partial_channels}")
        self.candidates = _check_candidates(owner, candidates)
        self.search_space = DartsSpace(self.candidates, steps, multiplier)
        self.num_ops = len(self.candidates)
        self.steps = steps
        self.multiplier = multiplier
        self.num_edges = self.search_space.num_edges

        c_stem = stem_multiplier * channels
        self.stem = ConvBN(in_channels, c_stem)
        slots = darts_cells(layers, channels, (c_stem, c_stem), multiplier)
        cells = [DartsSearchCell(steps, multiplier, slot.c_prev_prev, slot.c_prev, slot.channels, slot.reduction,
                                 slot.reduction_prev, self.candidates, partial_channels, self.fast)
                 for slot in slots]
        c_prev = multiplier * slots[-1].channels
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: Tensor, weights: ArchWeights) -> Tensor:
        """Logits ``[N, num_classes]`` of images ``x`` under architecture weights ``weights``."""
        normal = _cell_weights(weights, "normal", "DartsSearchNetwork")
        reduce = _cell_weights(weights, "reduce", "DartsSearchNetwork")
        s0 = s1 = self.stem_forward(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(self.global_pooling(s1).flatten(1))


class NB201SearchNetwork(_SwitchesImpl):
    """The NAS-Bench-201 search network: conv 3x3 + BN stem, three stages of ``cells_per_stage`` search cells
    (``C``, ``2C``, ``4C`` channels) joined by stride-2 ResNet basic blocks, then BN -> ReLU -> global
    average pooling -> linear. ``forward(x, weights)`` takes ``{"normal": ...}``.

    ``impl``, ``recompute``, ``cpu_kernels``: the cells' path, as in ``DartsSearchNetwork`` (``fused``: the edges
    leaving a node share their ReLU, one convolution per kernel size over all of them, one BatchNorm call, nothing
    for ``none``; ``reference``: every op on its own, as the NAS-Bench-201 authors' code). The stem and the cells
    run channels-last on the fused path; the cells hand the ResNet blocks their input's memory format."""

    space = "nb201"
    cell_types = ("normal",)

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10, in_channels: int = 3,
                 candidates: Sequence[str] = search_space("nb201"), partial_channels: int = 1,
                 impl: str = "fused", recompute: bool = True, cpu_kernels: bool = True) -> None:
        super().__init__()
        owner = "NB201SearchNetwork"
        self._build_impl(impl, recompute, cpu_kernels)
        _check_positive(owner, channels=channels, cells_per_stage=cells_per_stage, num_classes=num_classes,
                        in_channels=in_channels, partial_channels=partial_channels)
        if channels % partial_channels:
            raise ValueError(f"{owner}: channels={channels} is not divisible by partial_channels={partial_channels}")
        self.candidates = _check_candidates(owner, candidates)
        self.search_space = NB201Space(self.candidates)
        self.num_ops = len(self.candidates)
        self.stem = ConvBN(in_channels, channels)
        blocks: list[nn.Module] = [
            NB201SearchCell(c_in, self.candidates, partial_channels, self.fast) if c_in == c_out
            else ResNetBasicBlock(c_in, c_out, 2)
            for c_in, c_out in nb201_stages(channels, cells_per_stage)]
        c_prev = 4 * channels
        self.cells = nn.ModuleList(blocks)
        self.num_edges = self.cells[0].num_edges
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU())
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: Tensor, weights: ArchWeights) -> Tensor:
        """Logits ``[N, num_classes]`` of images ``x`` under architecture weights ``weights``."""
        normal = _cell_weights(weights, "normal", "NB201SearchNetwork")
        out = self.stem_forward(x)
        for block in self.cells:
            out = block(out, normal) if isinstance(block, NB201SearchCell) else block(out)
        out = self.global_pooling(self.lastact(out))
        return self.classifier(out.flatten(1))


SUPERNETS: Registry[type[nn.Module]] = Registry("search space", listing="known")
"""The search network of each space."""
SUPERNETS.register("darts", DartsSearchNetwork)
SUPERNETS.register("nb201", NB201SearchNetwork)


def build_supernet(space: str, **kwargs: Any) -> DartsSearchNetwork | NB201SearchNetwork:
    """Build the search network of ``space`` (``darts`` or ``nb201``) with its constructor's keyword arguments."""
    return SUPERNETS.get(space)(**kwargs)
