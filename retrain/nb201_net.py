"""The NAS-Bench-201 network for an ``NB201Genotype``: the benchmark's macro skeleton around one cell.

Stem conv3x3 + BN, three stages of ``cells_per_stage`` cells with ``C, 2C, 4C`` channels separated by ResNet
basic blocks with stride 2, then BN -> ReLU -> global average pool -> linear. A cell is a DAG of 4 nodes;
node ``j`` sums ``op(node_i)`` over its incoming edges, node 3 is the output.
"""
from __future__ import annotations

import torch
from torch import nn

from ops import NB201_EDGES, ConvBN, NB201Genotype, ResNetBasicBlock, create_op
from ops.skeleton import nb201_stages
from retrain.layers import check_images, drop_path


class NB201Cell(nn.Module):
    """A NAS-Bench-201 cell with ``channels`` channels on every node."""

    def __init__(self, genotype: NB201Genotype, channels: int) -> None:
        super().__init__()
        self.edges = NB201_EDGES
        self.ops = nn.ModuleList(create_op(name, channels, 1, True) for name in genotype.edges)
        self.droppable = tuple(not isinstance(op, nn.Identity) for op in self.ops)

    def forward(self, x: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """Node 3 of the cell DAG."""
        nodes = [x]
        for target in (1, 2, 3):
            total = None
            for k, (src, dst) in enumerate(self.edges):
                if dst != target:
                    continue
                h = self.ops[k](nodes[src])
                if self.droppable[k]:
                    h = drop_path(h, drop_prob, self.training)
                total = h if total is None else total + h
            nodes.append(total)
        return nodes[3]


class NB201Network(nn.Module):
    """The NAS-Bench-201 macro network (``channels=16, cells_per_stage=5`` in the benchmark)."""

    def __init__(self, genotype: NB201Genotype, channels: int = 16, cells_per_stage: int = 5,
                 num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if cells_per_stage < 1:
            raise ValueError(f"NB201 network: cells per stage (layers) must be >= 1, got {cells_per_stage}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.drop_path_prob = 0.0
        self.in_channels = in_channels
        self.stem = ConvBN(in_channels, channels)
        blocks: list[nn.Module] = [
            NB201Cell(genotype, c_in) if c_in == c_out else ResNetBasicBlock(c_in, c_out, 2)
            for c_in, c_out in nb201_stages(channels, cells_per_stage)]
        c = 4 * channels
        self.cells = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.num_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        check_images(x, self.in_channels, type(self).__name__)
        x = self.stem(x)
        for block in self.cells:
            x = block(x, self.drop_path_prob) if isinstance(block, NB201Cell) else block(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(torch.flatten(x, 1))
