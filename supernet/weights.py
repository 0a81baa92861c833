"""Architecture weights as the supernet consumes them: one ``CellWeights`` per cell type."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class CellWeights:
    """The architecture weights of one cell type.

    ``ops``: ``[num_edges, num_ops]`` mixing weights of each edge (e.g. ``softmax(alpha)``).
    ``edges``: optional ``[num_edges]`` PC-DARTS edge-normalisation weights; each edge's output is
    multiplied by its entry. ``active``: optional ``[num_edges]`` long tensor for sampling strategies
    (GDAS, ENAS, SPOS): only op ``active[e]`` runs on edge ``e`` and its output is ``ops[e, active[e]] * op(x)``.
    ``add_inactive`` (with ``active``; the GDAS form of the NAS-Bench-201 authors' code): the edge output also adds
    the weights of the ops that did not run, ``sum_{k != active[e]} ops[e, k]`` (zero-valued straight-through
    weights: the value is unchanged, but every op's weight receives a gradient).
    """

    ops: Tensor
    edges: Tensor | None = None
    active: Tensor | None = None
    add_inactive: bool = False


ArchWeights = dict[str, CellWeights]
"""Weights per cell type, keyed by the network's ``cell_types`` (e.g. ``"normal"``, ``"reduce"``)."""
