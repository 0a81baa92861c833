"""Architecture parameters (DARTS alphas, PC-DARTS edge betas) kept in their own module."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ops import NB201_EDGES
from ops.topology import darts_node_edges
from supernet.weights import ArchWeights, CellWeights


def node_softmax(betas: Tensor, group_sizes: Sequence[int]) -> Tensor:
    """Softmax over consecutive groups of ``betas`` (one group per node's incoming edges), concatenated."""
    return torch.cat([g.softmax(dim=-1) for g in torch.split(betas, list(group_sizes), dim=-1)], dim=-1)


def _edge_groups(num_edges: int, steps: int | None) -> tuple[int, ...]:
    """Sizes of the per-node groups of incoming edges, in edge order."""
    if steps is not None:
        groups = tuple(len(edges) for edges in darts_node_edges(steps))
        if sum(groups) != num_edges:
            raise ValueError(f"steps={steps} means {sum(groups)} DARTS edges, but num_edges={num_edges}")
        return groups
    if num_edges == len(NB201_EDGES):
        targets = [dst for _, dst in NB201_EDGES]
        return tuple(targets.count(dst) for dst in sorted(set(targets)))
    raise ValueError(f"edge_betas need steps (DARTS cell) unless num_edges is {len(NB201_EDGES)} (NB201 cell); "
                     f"got num_edges={num_edges}")


class ArchParameters(nn.Module):
    """One ``[num_edges, num_ops]`` alpha per cell type (``init_scale * randn``, DARTS) and, with
    ``edge_betas``, one ``[num_edges]`` beta per cell type (``1e-3 * randn``, PC-DARTS edge normalisation).

    Edge betas are softmaxed per node over its incoming edges: ``edge_groups`` (``for_network`` takes them from the
    network's search space), else DARTS node ``i`` has ``2 + i`` edges (needs ``steps``) and a 6-edge cell is grouped
    by ``NB201_EDGES`` target node.
    """

    def __init__(self, cell_types: Sequence[str], num_edges: int, num_ops: int, init_scale: float = 1e-3,
                 edge_betas: bool = False, steps: int | None = None,
                 edge_groups: Sequence[int] | None = None) -> None:
        super().__init__()
        if not cell_types:
            raise ValueError("ArchParameters: cell_types is empty")
        if num_edges < 1 or num_ops < 1:
            raise ValueError(f"ArchParameters: num_edges and num_ops must be >= 1, got {num_edges} and {num_ops}")
        self.cell_types = tuple(cell_types)
        self.num_edges = num_edges
        self.num_ops = num_ops
        self.steps = steps
        self.alphas = nn.ParameterDict(
            {cell: nn.Parameter(init_scale * torch.randn(num_edges, num_ops)) for cell in self.cell_types})
        self.betas: nn.ParameterDict | None = None
        self.edge_groups: tuple[int, ...] | None = None
        if edge_betas:
            self.edge_groups = tuple(edge_groups) if edge_groups is not None else _edge_groups(num_edges, steps)
            if sum(self.edge_groups) != num_edges:
                raise ValueError(f"edge_groups {self.edge_groups} cover {sum(self.edge_groups)} edges, not {num_edges}")
            self.betas = nn.ParameterDict(
                {cell: nn.Parameter(1e-3 * torch.randn(num_edges)) for cell in self.cell_types})

    @classmethod
    def for_network(cls, net: nn.Module, **kwargs: Any) -> "ArchParameters":
        """Parameters shaped for a search network (its ``cell_types``, ``num_edges``, ``num_ops``; edge betas grouped
        by the nodes of its ``search_space``)."""
        space = getattr(net, "search_space", None)
        if space is not None:
            kwargs.setdefault("edge_groups", tuple(len(edges) for edges in space.node_edges()))
        return cls(net.cell_types, net.num_edges, net.num_ops, **kwargs)

    def op_weights(self, cell: str) -> Tensor:
        """``softmax(alpha)`` over the ops of each edge: ``[num_edges, num_ops]``."""
        return self.alphas[cell].softmax(dim=-1)

    def edge_weights(self, cell: str) -> Tensor:
        """Per-node softmax of the edge betas: ``[num_edges]``; raises if built without ``edge_betas``."""
        if self.betas is None or self.edge_groups is None:
            raise ValueError("edge_weights needs ArchParameters(..., edge_betas=True)")
        return node_softmax(self.betas[cell], self.edge_groups)

    def weights(self) -> ArchWeights:
        """The supernet's input: ``CellWeights`` (op softmax, and edge weights when betas exist) per cell type."""
        return {cell: CellWeights(ops=self.op_weights(cell),
                                  edges=self.edge_weights(cell) if self.betas is not None else None)
                for cell in self.cell_types}

    def probabilities(self) -> dict[str, Tensor]:
        """Detached ``softmax(alpha)`` per cell type, for logging the architecture history."""
        return {cell: self.op_weights(cell).detach() for cell in self.cell_types}
