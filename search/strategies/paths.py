"""Single paths through a supernet (sampling strategies: ENAS, SPOS; selected cells): one-hot weights for a genotype
and the discrete cell space a supernet can run."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ops import SPACES, DartsSpace, Genotype
from search.discrete import NB201Space
from search.discrete.darts_space import DartsCellSpace
from supernet import ArchWeights, CellWeights

NONE_OP = "none"


def supernet_device(supernet: nn.Module) -> torch.device:
    """The device of the supernet's parameters (CPU for a parameter-free module)."""
    return next(iter(supernet.parameters()), torch.empty(0)).device


def one_hot_path(active: dict[str, Sequence[int]], num_ops: int, device: torch.device) -> ArchWeights:
    """``CellWeights`` running op ``active[cell][e]`` on edge ``e`` with weight 1 (``active`` kept on the CPU,
    so that the cells read it without a device synchronisation)."""
    out: ArchWeights = {}
    for cell, ops in active.items():
        index = torch.as_tensor(list(ops), dtype=torch.long)
        weights = torch.zeros(len(index), num_ops).scatter_(1, index.unsqueeze(1), 1.0)
        out[cell] = CellWeights(ops=weights.to(device), active=index)
    return out


def cell_space(supernet: nn.Module) -> DartsCellSpace | NB201Space:
    """The discrete space of the cells the supernet can run as single paths."""
    space = supernet.search_space
    space.check_single_paths("a discrete cell space")
    if isinstance(space, DartsSpace):
        return DartsCellSpace(space.cell_ops(), steps=space.steps, multiplier=space.multiplier)
    return NB201Space(space.cell_ops())


def genotype_active(genotype: Genotype, candidates: Sequence[str], num_edges: int) -> dict[str, list[int]]:
    """Per cell type, the index in ``candidates`` of the op each supernet edge runs for ``genotype``
    (``none`` on the edges a DARTS cell does not use): the ``edge_ops`` of the genotype's space."""
    return SPACES.get(genotype.space).for_edges(tuple(candidates), num_edges).edge_ops(genotype)


def genotype_path(supernet: nn.Module, genotype: Genotype, device: torch.device | None = None) -> ArchWeights:
    """Single-path weights that make ``supernet`` compute ``genotype`` (one-hot ops, ``active`` set)."""
    active = supernet.search_space.edge_ops(genotype)
    return one_hot_path(active, supernet.num_ops, supernet_device(supernet) if device is None else device)
