"""Discretization: architecture weights -> genotype (pure functions on tensors).

Ties are broken deterministically in favour of the lower index: the earlier input node when ranking
edges, the earlier op in ``candidates`` when picking an edge's op.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from torch import Tensor

from ops.genotype import NB201_EDGES, DartsGenotype, NB201Genotype
from ops.topology import darts_node_edges, darts_num_edges

NONE_OP = "none"


def _first_argmax(values: Sequence[float], allowed: Sequence[int]) -> int:
    """Index in ``allowed`` with the largest value; the lowest index wins ties."""
    best = allowed[0]
    for k in allowed[1:]:
        if values[k] > values[best]:
            best = k
    return best


def _check_matrix(weights: Tensor, rows: int, cols: int, what: str) -> list[list[float]]:
    if tuple(weights.shape) != (rows, cols):
        raise ValueError(f"{what}: expected weights of shape ({rows}, {cols}), got {tuple(weights.shape)}")
    return weights.detach().float().cpu().tolist()


def _darts_cell(matrix: list[list[float]], candidates: Sequence[str], steps: int) -> tuple[tuple[str, int], ...]:
    allowed = [k for k, name in enumerate(candidates) if name != NONE_OP] or list(range(len(candidates)))
    gene: list[tuple[str, int]] = []
    for edges in darts_node_edges(steps):
        rows = [matrix[e] for e in edges]
        best_ops = [_first_argmax(row, allowed) for row in rows]
        # Stable sort by descending strength: equal strengths keep the lower input index first.
        ranked = sorted(range(len(edges)), key=lambda j: -rows[j][best_ops[j]])
        gene.extend((candidates[best_ops[j]], j) for j in ranked[:2])
    return tuple(gene)


def discretize_darts(weights: Mapping[str, Tensor], candidates: Sequence[str], steps: int = 4,
                     multiplier: int = 4, edge_weights: Mapping[str, Tensor] | None = None) -> DartsGenotype:
    """The DARTS rule: per intermediate node keep the 2 incoming edges whose strongest non-``none`` op
    weight is highest, each with its argmax non-``none`` op (all ops if ``none`` is not a candidate).

    ``weights``: ``{"normal": [E, n_ops], "reduce": [E, n_ops]}`` mixing weights (softmax of alphas).
    ``edge_weights`` (PC-DARTS): ``{"normal": [E], "reduce": [E]}``, multiplied into each edge's op weights.
    Kept edges are listed strongest first (as the DARTS code does); concat = the last ``multiplier`` nodes.
    """
    candidates = tuple(candidates)
    if steps < 1 or not 1 <= multiplier <= steps:
        raise ValueError(f"discretize_darts: need steps >= 1 and 1 <= multiplier <= steps, got {steps}, {multiplier}")
    num_edges = darts_num_edges(steps)
    cells: dict[str, tuple[tuple[str, int], ...]] = {}
    for cell in ("normal", "reduce"):
        if cell not in weights:
            raise ValueError(f"discretize_darts: weights lack cell type {cell!r}")
        w = weights[cell]
        if edge_weights is not None:
            if cell not in edge_weights:
                raise ValueError(f"discretize_darts: edge_weights lack cell type {cell!r}")
            if tuple(edge_weights[cell].shape) != (num_edges,):
                raise ValueError(f"discretize_darts: {cell} edge weights must have shape ({num_edges},), "
                                 f"got {tuple(edge_weights[cell].shape)}")
            w = w * edge_weights[cell].to(w.dtype).unsqueeze(-1)
        matrix = _check_matrix(w, num_edges, len(candidates), f"discretize_darts {cell}")
        cells[cell] = _darts_cell(matrix, candidates, steps)
    concat = tuple(range(2 + steps - multiplier, 2 + steps))
    return DartsGenotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=concat)


def discretize_nb201(weights: Tensor, candidates: Sequence[str]) -> NB201Genotype:
    """Argmax op per edge (``none`` included) on ``[6, n_ops]`` weights, all 6 edges kept; lower index wins ties."""
    candidates = tuple(candidates)
    matrix = _check_matrix(weights, len(NB201_EDGES), len(candidates), "discretize_nb201")
    every = list(range(len(candidates)))
    return NB201Genotype(edges=tuple(candidates[_first_argmax(row, every)] for row in matrix))
