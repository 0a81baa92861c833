"""The DARTS cell topology, written once: intermediate node ``i`` (0-based) sums one edge from each of the two cell
inputs and each earlier node, ``2 + i`` edges, numbered node after node, input after input."""
from __future__ import annotations


def darts_node_edges(steps: int) -> list[list[int]]:
    """For each of ``steps`` intermediate nodes, the indices of its incoming edges; edge ``k`` of node ``i`` comes
    from node ``k`` (0 and 1 are the cell inputs)."""
    out, first = [], 0
    for i in range(steps):
        out.append(list(range(first, first + 2 + i)))
        first += 2 + i
    return out


def darts_num_edges(steps: int) -> int:
    """Edges of a DARTS cell with ``steps`` intermediate nodes (14 for 4)."""
    return steps * (steps + 3) // 2
