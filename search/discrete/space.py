"""Discrete search spaces: a cell is a fixed-length tuple of categorical decisions.

``CategoricalSpace`` gives uniform sampling, one-decision mutation and the encoding a categorical policy
(REINFORCE) needs; a concrete space only maps decision tuples to and from its cell type. ``restrict`` limits a
space to a given set of cells (e.g. those of a partial benchmark table). ``NB201Space``
decides the op of each of the six edges. A DARTS cell space fits the same mould (decisions: the two inputs
and two ops of each intermediate node, for the normal and the reduction cell).
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Generic, Iterable, Sequence, TypeVar

import numpy as np

from ops import NB201_EDGES, NB201Genotype, search_space

CellT = TypeVar("CellT")


class CategoricalSpace(ABC, Generic[CellT]):
    """A space whose cells are tuples of categorical decisions; ``choices[i]`` is the size of decision ``i``."""

    name: str = "categorical"

    @property
    @abstractmethod
    def choices(self) -> tuple[int, ...]:
        """Number of options of each decision."""

    @abstractmethod
    def decode(self, decisions: Sequence[int]) -> CellT:
        """The cell with these decisions."""

    @abstractmethod
    def encode(self, cell: CellT) -> tuple[int, ...]:
        """The decisions of a cell (inverse of ``decode``); a cell outside the space raises ``ValueError``."""

    @abstractmethod
    def to_str(self, cell: CellT) -> str:
        """Text form of a cell (written to ``history.csv``)."""

    _allowed: np.ndarray | None = None  # (n_cells, n_decisions) decision tuples when restricted

    @property
    def size(self) -> int:
        """Number of cells in the space (of the allowed cells when restricted)."""
        if self._allowed is not None:
            return len(self._allowed)
        return int(np.prod(self.choices, dtype=np.int64))

    @property
    def allowed(self) -> np.ndarray | None:
        """Decision tuples of the allowed cells as an ``(n, n_decisions)`` array, ``None`` when unrestricted."""
        return None if self._allowed is None else self._allowed.copy()

    def restrict(self, cells: Iterable[CellT]) -> "CategoricalSpace[CellT]":
        """A copy of this space limited to ``cells`` (duplicates dropped, order kept)."""
        rows = list(dict.fromkeys(self.encode(cell) for cell in cells))
        if not rows:
            raise ValueError(f"cannot restrict space {self.name!r} to no cells")
        space = copy.copy(self)
        space._allowed = np.asarray(rows, dtype=np.int64)
        return space

    def sample(self, rng: np.random.Generator) -> CellT:
        """A uniformly drawn cell: each decision uniform, or one allowed cell uniform when restricted."""
        if self._allowed is not None:
            return self.decode(self._allowed[int(rng.integers(len(self._allowed)))].tolist())
        return self.decode([int(rng.integers(n)) for n in self.choices])

    def mutate(self, cell: CellT, rng: np.random.Generator) -> CellT:
        """Change one uniformly chosen decision to a different option, drawn uniformly.

        When restricted: a uniformly drawn allowed cell that differs in exactly one decision; a cell without
        such a neighbour is replaced by a uniform sample of the allowed cells.
        """
        decisions = list(self.encode(cell))
        if self._allowed is not None:
            neighbours = np.flatnonzero((self._allowed != np.asarray(decisions)).sum(axis=1) == 1)
            if len(neighbours) == 0:
                return self.sample(rng)
            return self.decode(self._allowed[int(neighbours[int(rng.integers(len(neighbours)))])].tolist())
        mutable = [i for i, n in enumerate(self.choices) if n > 1]
        if not mutable:
            raise ValueError(f"space {self.name!r} has no decision with more than one option to mutate")
        i = mutable[int(rng.integers(len(mutable)))]
        new = int(rng.integers(self.choices[i] - 1))
        decisions[i] = new + (new >= decisions[i])
        return self.decode(decisions)


class NB201Space(CategoricalSpace[NB201Genotype]):
    """The NAS-Bench-201 space: one op of ``ops`` per edge of ``NB201_EDGES`` (5^6 = 15,625 cells)."""

    name = "nb201"

    def __init__(self, ops: Sequence[str] | None = None) -> None:
        self.ops: tuple[str, ...] = tuple(ops) if ops is not None else search_space("nb201")
        if len(set(self.ops)) != len(self.ops) or not self.ops:
            raise ValueError(f"NB201Space ops must be distinct and non-empty, got {self.ops}")
        self._op_index = {op: i for i, op in enumerate(self.ops)}

    def uniform_edge_probabilities(self, candidates: Sequence[str]) -> dict[str, list[list[float]]]:
        """Per edge, the probability that a uniformly drawn cell runs each of ``candidates`` there."""
        row = [1.0 / len(self.ops) if op in self._op_index else 0.0 for op in candidates]
        return {"normal": [list(row) for _ in NB201_EDGES]}

    @property
    def choices(self) -> tuple[int, ...]:
        """Five ops for each of the six edges."""
        return (len(self.ops),) * len(NB201_EDGES)

    def decode(self, decisions: Sequence[int]) -> NB201Genotype:
        """``NB201Genotype`` whose edge ``i`` carries ``ops[decisions[i]]``."""
        if len(decisions) != len(NB201_EDGES):
            raise ValueError(f"an NB201 cell has {len(NB201_EDGES)} decisions, got {len(decisions)}")
        return NB201Genotype(edges=tuple(self.ops[int(d)] for d in decisions))

    def encode(self, cell: NB201Genotype) -> tuple[int, ...]:
        """Op index of each edge."""
        try:
            return tuple(self._op_index[op] for op in cell.edges)
        except KeyError as err:
            raise ValueError(f"cell {cell.to_arch_str()!r} uses op {err.args[0]!r} outside this space "
                             f"({', '.join(self.ops)})") from None

    def to_str(self, cell: NB201Genotype) -> str:
        """The arch string ``|op~0|+|op~0|op~1|+|...|``."""
        return cell.to_arch_str()

    def parse(self, text: str) -> NB201Genotype:
        """Cell from an arch string, checked to lie in this space."""
        cell = NB201Genotype.from_arch_str(text)
        self.encode(cell)
        return cell

