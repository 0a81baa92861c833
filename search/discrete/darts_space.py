"""The DARTS cell space as categorical decisions: for the normal and the reduction cell, for each intermediate
node ``i``, an unordered pair of two distinct inputs among nodes ``0 .. i + 1`` and an op for each of the two.

Uniform sampling of the decisions gives every pair of inputs the same chance and every op the same chance, so
``sample`` draws uniformly from the cells a DARTS genotype can describe (two distinct inputs per node).
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

from ops import DartsGenotype, search_space
from ops.topology import darts_node_edges
from search.discrete.space import CategoricalSpace

CELL_TYPES = ("normal", "reduce")


def darts_ops() -> tuple[str, ...]:
    """The DARTS candidate ops a discrete cell can use (all but ``none``)."""
    return tuple(op for op in search_space("darts") if op != "none")


class DartsCellSpace(CategoricalSpace[DartsGenotype]):
    """DARTS cells with ``steps`` intermediate nodes whose output concatenates the last ``multiplier`` nodes.

    Decisions, per cell type (normal, then reduce) and node: input-pair index into ``pairs(node)`` (pairs
    ``(a, b)`` with ``a < b``), op of input ``a``, op of input ``b``. Sampling, mutation and ``restrict`` come
    from ``CategoricalSpace``.

    Args:
        ops: Op names a cell edge may carry (default: the DARTS ops without ``none``).
        steps: Intermediate nodes per cell.
        multiplier: Intermediate nodes concatenated into the cell output (the last ones).
    """

    name = "darts"

    def __init__(self, ops: Sequence[str] | None = None, steps: int = 4, multiplier: int = 4) -> None:
        self.ops: tuple[str, ...] = tuple(ops) if ops is not None else darts_ops()
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"DartsCellSpace ops must be distinct and non-empty, got {self.ops}")
        if steps < 1 or not 1 <= multiplier <= steps:
            raise ValueError(f"DartsCellSpace needs steps >= 1 and 1 <= multiplier <= steps, got {steps}, {multiplier}")
        self.steps = steps
        self.multiplier = multiplier
        self.concat = tuple(range(2 + steps - multiplier, 2 + steps))
        self._pairs = [tuple(combinations(range(len(edges)), 2)) for edges in darts_node_edges(steps)]
        self._op_index = {op: k for k, op in enumerate(self.ops)}

    def pairs(self, node: int) -> tuple[tuple[int, int], ...]:
        """The input pairs of intermediate node ``node`` (0-based), in decision order."""
        return self._pairs[node]

    def uniform_edge_probabilities(self, candidates: Sequence[str]) -> dict[str, list[list[float]]]:
        """Per cell type and supernet edge, the probability that a uniformly drawn cell runs each of ``candidates``
        there: ``none`` is the edge going unused (needs ``none`` among the candidates)."""
        candidates = tuple(candidates)
        ops = [candidates.index(op) for op in self.ops]
        none = candidates.index("none")
        rows: list[list[float]] = []
        for node, edges in enumerate(darts_node_edges(self.steps)):
            pairs = self._pairs[node]
            for j in range(len(edges)):
                used = sum(j in pair for pair in pairs) / len(pairs)
                row = [0.0] * len(candidates)
                for k in ops:
                    row[k] = used / len(ops)
                row[none] = 1.0 - used
                rows.append(row)
        return {cell: [list(r) for r in rows] for cell in CELL_TYPES}

    @property
    def choices(self) -> tuple[int, ...]:
        """Per cell type and node: number of input pairs, ops, ops."""
        n = len(self.ops)
        return tuple(c for _ in CELL_TYPES for node in range(self.steps) for c in (len(self._pairs[node]), n, n))

    def decode(self, decisions: Sequence[int]) -> DartsGenotype:
        """The genotype with these decisions; edges of a node are listed by increasing input."""
        if len(decisions) != len(self.choices):
            raise ValueError(f"a DARTS cell pair with {self.steps} nodes has {len(self.choices)} decisions, "
                             f"got {len(decisions)}")
        cells: dict[str, list[tuple[str, int]]] = {}
        it = iter(int(d) for d in decisions)
        for cell in CELL_TYPES:
            edges: list[tuple[str, int]] = []
            for node in range(self.steps):
                a, b = self._pairs[node][next(it)]
                edges += [(self.ops[next(it)], a), (self.ops[next(it)], b)]
            cells[cell] = edges
        return DartsGenotype(normal=tuple(cells["normal"]), normal_concat=self.concat,
                             reduce=tuple(cells["reduce"]), reduce_concat=self.concat)

    def encode(self, cell: DartsGenotype) -> tuple[int, ...]:
        """The decisions of ``cell``; a cell outside this space raises ``ValueError``."""
        out: list[int] = []
        for name in CELL_TYPES:
            edges, concat = getattr(cell, name), getattr(cell, f"{name}_concat")
            if len(edges) != 2 * self.steps or tuple(concat) != self.concat:
                raise ValueError(f"{name} cell has {len(edges) // 2} nodes and concat {list(concat)}; this space "
                                 f"has {self.steps} nodes and concat {list(self.concat)}")
            for node in range(self.steps):
                (op_a, a), (op_b, b) = sorted(edges[2 * node:2 * node + 2], key=lambda e: e[1])
                if a == b:
                    raise ValueError(f"{name} node {node + 2} takes input {a} twice; this space needs two distinct inputs")
                for op in (op_a, op_b):
                    if op not in self._op_index:
                        raise ValueError(f"{name} node {node + 2} uses op {op!r} outside this space "
                                         f"({', '.join(self.ops)})")
                out += [self._pairs[node].index((a, b)), self._op_index[op_a], self._op_index[op_b]]
        return tuple(out)

    def to_str(self, cell: DartsGenotype) -> str:
        """The DARTS text form ``Genotype(normal=[...], ...)``."""
        return cell.to_text()
