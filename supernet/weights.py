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
    """

    ops: Tensor
    edges: Tensor | None = None
    active: Tensor | None = None


ArchWeights = dict[str, CellWeights]
"""Weights per cell type, keyed by the network's ``cell_types`` (e.g. ``"normal"``, ``"reduce"``)."""
