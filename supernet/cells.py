"""Search cells: the DARTS cell (two inputs, ``steps`` intermediate nodes) and the NAS-Bench-201 cell."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ops import NB201_EDGES, FactorizedReduce, ReLUConvBN
from ops.topology import darts_node_edges
from supernet.impls import CellImpl
from supernet.mixed_op import MixedOp
from supernet.weights import CellWeights

def _check_cell_weights(weights: CellWeights, num_edges: int, num_ops: int, cell: str) -> list[int] | None:
    """Validate shapes; return ``active`` as a list of ints (one host sync per cell) or None."""
    if weights.ops.shape != (num_edges, num_ops):
        raise ValueError(f"{cell}: op weights must have shape ({num_edges}, {num_ops}), got {tuple(weights.ops.shape)}")
    if weights.edges is not None and weights.edges.shape != (num_edges,):
        raise ValueError(f"{cell}: edge weights must have shape ({num_edges},), got {tuple(weights.edges.shape)}")
    if weights.active is None:
        return None
    if weights.active.shape != (num_edges,):
        raise ValueError(f"{cell}: active must have shape ({num_edges},), got {tuple(weights.active.shape)}")
    return [int(a) for a in weights.active.tolist()]


class DartsSearchCell(nn.Module):
    """The DARTS search cell.

    Inputs ``s0`` (two cells back) and ``s1`` (previous cell) are preprocessed to ``channels``; each of the
    ``steps`` intermediate nodes sums all earlier nodes through one ``MixedOp`` each (edge order: for node
    ``i``, inputs ``j = 0 .. i + 1``); the output concatenates the last ``multiplier`` intermediate nodes.
    In a reduction cell the edges leaving the two inputs have stride 2.

    ``fast``: an accelerated forward (``supernet.impls``, e.g. the fused path) on the same modules and parameters,
    used for dense mixing weights; ``None`` or ``weights.active`` given (sampling strategies run one op per edge):
    this class's own forward.
    """

    def __init__(self, steps: int, multiplier: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool, candidates: Sequence[str],
                 partial_channels: int = 1, fast: CellImpl | None = None) -> None:
        super().__init__()
        self.fast = fast
        self.steps = steps
        self.multiplier = multiplier
        self.reduction = reduction
        self.num_ops = len(candidates)
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.node_edges = darts_node_edges(steps)
        self.edges = nn.ModuleList(
            MixedOp(channels, 2 if reduction and j < 2 else 1, candidates, partial_channels)
            for edges in self.node_edges for j in range(len(edges)))

    @property
    def num_edges(self) -> int:
        """Number of MixedOp edges (14 for 4 steps)."""
        return len(self.edges)

    def forward(self, s0: Tensor, s1: Tensor, weights: CellWeights) -> Tensor:
        """Run the cell with mixing weights ``weights.ops`` (and optional edge weights / active ops)."""
        cell = "reduce" if self.reduction else "normal"
        active = _check_cell_weights(weights, self.num_edges, self.num_ops, cell)
        if self.fast is not None and active is None:
            return self.fast.cell(self, s0, s1, weights)
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for edges in self.node_edges:  # edge k of a node reads node k
            total = 0
            for e, h in zip(edges, states):
                out = self.edges[e](h, weights.ops[e], None if active is None else active[e], weights.add_inactive)
                if weights.edges is not None:
                    out = weights.edges[e] * out
                total = total + out
            states.append(total)
        return torch.cat(states[-self.multiplier:], dim=1)


class NB201SearchCell(nn.Module):
    """The NAS-Bench-201 search cell: 4 nodes, node ``j`` sums ``edge(i -> j)(node_i)`` over ``i < j``,
    edges in ``NB201_EDGES`` order, output node 3. All ops have stride 1 and no affine BatchNorm.

    ``fast``: an accelerated forward (``supernet.impls``) used for dense mixing weights, as in ``DartsSearchCell``."""

    def __init__(self, channels: int, candidates: Sequence[str], partial_channels: int = 1,
                 fast: CellImpl | None = None) -> None:
        super().__init__()
        self.fast = fast
        self.num_ops = len(candidates)
        self.edges = nn.ModuleList(
            MixedOp(channels, 1, candidates, partial_channels, pool_bn=False) for _ in NB201_EDGES)

    @property
    def num_edges(self) -> int:
        """Number of edges (6)."""
        return len(self.edges)

    def forward(self, x: Tensor, weights: CellWeights) -> Tensor:
        """Run the cell with mixing weights ``weights.ops`` (and optional edge weights / active ops)."""
        active = _check_cell_weights(weights, self.num_edges, self.num_ops, "normal")
        if self.fast is not None and active is None:
            return self.fast.nb201_cell(self, x, weights)
        nodes: list[Tensor | int] = [x, 0, 0, 0]
        for e, (src, dst) in enumerate(NB201_EDGES):
            out = self.edges[e](nodes[src], weights.ops[e], None if active is None else active[e],
                                weights.add_inactive)
            if weights.edges is not None:
                out = weights.edges[e] * out
            nodes[dst] = nodes[dst] + out
        return nodes[3]
