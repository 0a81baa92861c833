"""Standalone DARTS-space networks built from a ``DartsGenotype``: the CIFAR and the ImageNet network.

Layout as in the DARTS paper's code: ``layers`` cells, reduction cells (channels doubled) at ``layers // 3`` and
``2 * layers // 3``, each cell preprocessing its two inputs (``FactorizedReduce`` for an input that comes from
before a reduction, else a 1x1 ``ReLUConvBN``), the auxiliary head after cell ``2 * layers // 3``, drop-path on
every op output except identities, global average pooling and a linear classifier. Input sizes are free:
pooling is adaptive.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ops import ConvBN, DartsGenotype, FactorizedReduce, ReLUConvBN, create_op
from ops.skeleton import darts_cells, darts_reductions
from retrain.layers import AuxiliaryHead, check_images, drop_path

Output = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class DartsCell(nn.Module):
    """One normal or reduction cell of a ``DartsGenotype`` with ``channels`` channels per node."""

    def __init__(self, genotype: DartsGenotype, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.indices = tuple(src for _, src in edges)
        self.ops = nn.ModuleList(
            create_op(name, channels, 2 if reduction and src < 2 else 1, True) for name, src in edges)
        # DARTS drops every path except the parameter-free identity (a stride-1 skip_connect).
        self.droppable = tuple(not isinstance(op, nn.Identity) for op in self.ops)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """The cell output: the concatenation of the ``concat`` nodes."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for step in range(len(self.ops) // 2):
            node = None
            for k in (2 * step, 2 * step + 1):
                h = self.ops[k](states[self.indices[k]])
                if self.droppable[k]:
                    h = drop_path(h, drop_prob, self.training)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class _DartsNetwork(nn.Module, ABC):
    """Shared cell stack, auxiliary head and classifier; subclasses define the stem."""

    stem_out: tuple[int, int]  # channels of (s0, s1) after the stem

    def _build_cells(self, genotype: DartsGenotype, channels: int, num_classes: int, layers: int,
                     auxiliary: bool, reduction_prev: bool, aux_stride: int, aux_bn: bool) -> None:
        if layers < 3:
            raise ValueError(f"layers must be >= 3 (reductions sit at layers//3 and 2*layers//3), got {layers}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.layers = layers
        self.auxiliary = auxiliary
        self.drop_path_prob = 0.0
        self.aux_position = darts_reductions(layers)[1]
        slots = darts_cells(layers, channels, self.stem_out, len(genotype.normal_concat), reduction_prev,
                            reduce_multiplier=len(genotype.reduce_concat))
        self.cells = nn.ModuleList()
        c_aux = c_prev = self.stem_out[1]
        for i, slot in enumerate(slots):
            cell = DartsCell(genotype, slot.c_prev_prev, slot.c_prev, slot.channels, slot.reduction,
                             slot.reduction_prev)
            self.cells.append(cell)
            c_prev = cell.multiplier * slot.channels
            if i == self.aux_position:
                c_aux = c_prev
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes, aux_stride, aux_bn) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self.num_features = c_prev

    @abstractmethod
    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two cell inputs ``(s0, s1)`` of the first cell."""

    def forward(self, x: torch.Tensor) -> Output:
        """Logits; in training mode with an auxiliary head, ``(logits, aux_logits)``."""
        check_images(x, self.in_channels, type(self).__name__)
        s0, s1 = self._stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_position and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        if aux_logits is not None:
            return logits, aux_logits
        return logits


class DartsNetworkCIFAR(_DartsNetwork):
    """The DARTS CIFAR network: stem conv3x3 + BN with ``3 * channels`` channels, then the cells."""

    def __init__(self, genotype: DartsGenotype, channels: int = 36, num_classes: int = 10, layers: int = 20,
                 auxiliary: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        c_stem = 3 * channels
        self.in_channels = in_channels
        self.stem = ConvBN(in_channels, c_stem)
        self.stem_out = (c_stem, c_stem)
        self._build_cells(genotype, channels, num_classes, layers, auxiliary, reduction_prev=False,
                          aux_stride=3, aux_bn=True)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s


class DartsNetworkImageNet(_DartsNetwork):
    """The DARTS ImageNet network: two stems (x4 and x8 down-sampling), then the cells."""

    def __init__(self, genotype: DartsGenotype, channels: int = 48, num_classes: int = 1000, layers: int = 14,
                 auxiliary: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels // 2), nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels))
        self.stem_out = (channels, channels)
        self._build_cells(genotype, channels, num_classes, layers, auxiliary, reduction_prev=True,
                          aux_stride=2, aux_bn=False)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)
