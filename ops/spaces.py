"""Search spaces as objects: the candidates, the cell topology, the genotype class and the discretization rule of
a space in one place, so that strategies, selection and discrete search ask the space instead of switching on its
name. ``DartsSpace`` (two cell types, ``steps`` nodes of two inputs each) and ``NB201Space`` (one cell type, six
fixed edges); a new space is one more subclass registered in ``SPACES``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

from torch import Tensor

from ops.discretize import NONE_OP, discretize_darts, discretize_nb201
from ops.genotype import NB201_EDGES, DartsGenotype, Genotype, NB201Genotype
from ops.registry import SEARCH_SPACES, Registry
from ops.topology import darts_node_edges, darts_num_edges


class SearchSpace(ABC):
    """A cell search space: ``candidates`` on every edge of ``num_edges`` edges per cell type."""

    name: ClassVar[str]
    genotype_class: ClassVar[type[Genotype]]
    cell_types: ClassVar[tuple[str, ...]]

    def __init__(self, candidates: Sequence[str] | None = None) -> None:
        self.candidates = tuple(candidates) if candidates is not None else SEARCH_SPACES.get(self.name)

    @property
    @abstractmethod
    def num_edges(self) -> int:
        """Edges per cell."""

    @classmethod
    def for_edges(cls, candidates: Sequence[str], num_edges: int) -> "SearchSpace":
        """The space of a supernet cell with ``num_edges`` edges over ``candidates``; raises if none fits."""
        space = cls(candidates)
        if space.num_edges != num_edges:
            raise ValueError(f"a {cls.name} cell has {space.num_edges} edges, the supernet cell {num_edges}")
        return space

    @abstractmethod
    def node_edges(self) -> list[list[int]]:
        """For each node that sums edges, the indices of its incoming edges (in edge order)."""

    @abstractmethod
    def discretize(self, weights: Mapping[str, Tensor], edge_weights: Mapping[str, Tensor] | None = None
                   ) -> Genotype:
        """The genotype the per-cell-type ``[num_edges, num_ops]`` op weights stand for (the space's rule)."""

    @abstractmethod
    def edge_ops(self, genotype: Genotype) -> dict[str, list[int]]:
        """Per cell type, the candidate index each edge runs for ``genotype`` (``none`` on unused edges)."""

    @abstractmethod
    def kept_ops(self, genotype: Genotype) -> dict[str, list[str | None]]:
        """Per cell type and edge, the op ``genotype`` keeps there (``None``: the edge is dropped)."""

    def cell_ops(self) -> tuple[str, ...]:
        """The candidates a discrete cell of this space may hold."""
        return self.candidates

    def check_single_paths(self, owner: str) -> None:
        """Raise a one-line ``ValueError`` if the supernet cannot run single cells of this space (``owner`` names
        who needs them)."""

    def pruned_nodes(self) -> list[int]:
        """Nodes (indices into ``node_edges``) whose inputs a discrete cell keeps only some of."""
        return []

    def index(self, op: str) -> int:
        """The position of candidate ``op``; other ops raise a one-line ``ValueError``."""
        if op not in self.candidates:
            raise ValueError(f"genotype op {op!r} is not a candidate of the supernet ({', '.join(self.candidates)})")
        return self.candidates.index(op)


class DartsSpace(SearchSpace):
    """The DARTS space: a normal and a reduction cell of ``steps`` intermediate nodes; node ``i`` sums edges from
    the two cell inputs and every earlier node (``2 + i`` edges), a discrete cell keeps two of them and never
    ``none``; the output concatenates the last ``multiplier`` nodes."""

    name = "darts"
    genotype_class = DartsGenotype
    cell_types = ("normal", "reduce")

    def __init__(self, candidates: Sequence[str] | None = None, steps: int = 4, multiplier: int = 4) -> None:
        super().__init__(candidates)
        self.steps, self.multiplier = steps, multiplier

    @property
    def num_edges(self) -> int:
        """``sum(2 + i for i < steps)`` (14 for 4 nodes)."""
        return darts_num_edges(self.steps)

    @classmethod
    def for_edges(cls, candidates: Sequence[str], num_edges: int) -> "DartsSpace":
        """The DARTS space whose cell has ``num_edges`` edges (``steps`` solved from it; concat of all nodes)."""
        steps = next((n for n in range(1, num_edges + 1) if darts_num_edges(n) >= num_edges), 0)
        if darts_num_edges(steps) != num_edges:
            raise ValueError(f"no DARTS cell has {num_edges} edges (a cell of n nodes has n (n + 3) / 2)")
        return cls(candidates, steps=steps, multiplier=steps)

    def edge(self, node: int, source: int) -> int:
        """The edge index of intermediate node ``node``'s input ``source``."""
        return darts_node_edges(node + 1)[node][source]

    def node_edges(self) -> list[list[int]]:
        """Node ``i`` (0-based intermediate node): edges ``edge(i, 0) .. edge(i, i + 1)``."""
        return darts_node_edges(self.steps)

    def pruned_nodes(self) -> list[int]:
        """Every node with more than two inputs."""
        return [i for i, edges in enumerate(self.node_edges()) if len(edges) > 2]

    def cell_ops(self) -> tuple[str, ...]:
        """All candidates but ``none``."""
        return tuple(op for op in self.candidates if op != NONE_OP)

    def check_single_paths(self, owner: str) -> None:
        """A single cell switches the edges it does not use off with ``none``, which must be a candidate."""
        if NONE_OP not in self.candidates:
            raise ValueError(f"{owner} on the DARTS space switches unused edges off with the 'none' op; add it to "
                             "--model.supernet.init_args.candidates")

    def discretize(self, weights: Mapping[str, Tensor], edge_weights: Mapping[str, Tensor] | None = None
                   ) -> DartsGenotype:
        """The DARTS rule (``ops.discretize.discretize_darts``)."""
        return discretize_darts(weights, self.candidates, self.steps, self.multiplier, edge_weights)

    def kept_ops(self, genotype: Genotype) -> dict[str, list[str | None]]:
        """Each kept ``(op, input)`` on its edge, ``None`` on the edges the cell drops."""
        if not isinstance(genotype, DartsGenotype) or genotype.steps != self.steps:
            raise ValueError(f"a DARTS-space supernet of {self.steps} nodes per cell cannot hold {genotype!r}")
        out: dict[str, list[str | None]] = {}
        for cell in self.cell_types:
            kept: list[str | None] = [None] * self.num_edges
            for k, (op, src) in enumerate(getattr(genotype, cell)):
                kept[self.edge(k // 2, src)] = op
            out[cell] = kept
        return out

    def edge_ops(self, genotype: Genotype) -> dict[str, list[int]]:
        """Each kept ``(op, input)`` on its edge, ``none`` everywhere else (needs ``none`` among the candidates)."""
        if not isinstance(genotype, DartsGenotype):
            raise ValueError(f"a DARTS-space supernet cannot run a {type(genotype).__name__}")
        self.check_single_paths("a single DARTS path")
        if genotype.steps != self.steps:
            raise ValueError(f"genotype has {genotype.steps} nodes per cell, which does not fit a supernet cell of "
                             f"{self.num_edges} edges")
        none = self.candidates.index(NONE_OP)
        out: dict[str, list[int]] = {}
        for cell in self.cell_types:
            active = [none] * self.num_edges
            for k, (op, src) in enumerate(getattr(genotype, cell)):
                node = k // 2
                edge = self.edge(node, src)
                if active[edge] != none:
                    raise ValueError(f"{cell} node {node + 2} takes input {src} twice; a supernet edge runs one op")
                active[edge] = self.index(op)
            out[cell] = active
        return out


class NB201Space(SearchSpace):
    """The NAS-Bench-201 space: one cell type of four nodes and the six edges of ``NB201_EDGES``, all kept; any
    candidate, ``none`` included, may sit on an edge."""

    name = "nb201"
    genotype_class = NB201Genotype
    cell_types = ("normal",)

    @property
    def num_edges(self) -> int:
        """6."""
        return len(NB201_EDGES)

    def node_edges(self) -> list[list[int]]:
        """Nodes 1, 2, 3: the edges ending there."""
        targets = sorted({dst for _, dst in NB201_EDGES})
        return [[e for e, (_, dst) in enumerate(NB201_EDGES) if dst == t] for t in targets]

    def discretize(self, weights: Mapping[str, Tensor], edge_weights: Mapping[str, Tensor] | None = None
                   ) -> NB201Genotype:
        """Argmax per edge (``ops.discretize.discretize_nb201``); edge weights cannot change an argmax."""
        if "normal" not in weights:
            raise ValueError("the NB201 rule needs weights['normal']")
        return discretize_nb201(weights["normal"], self.candidates)

    def kept_ops(self, genotype: Genotype) -> dict[str, list[str | None]]:
        """The op of each of the six edges (all kept)."""
        if not isinstance(genotype, NB201Genotype):
            raise ValueError(f"an NB201 supernet cannot hold a {type(genotype).__name__}")
        return {"normal": list(genotype.edges)}

    def edge_ops(self, genotype: Genotype) -> dict[str, list[int]]:
        """The op of each of the six edges."""
        if not isinstance(genotype, NB201Genotype):
            raise ValueError(f"an NB201 supernet cannot run a {type(genotype).__name__}")
        return {"normal": [self.index(op) for op in genotype.edges]}


SPACES: Registry[type[SearchSpace]] = Registry("search space", listing="known")
"""The search-space classes by name."""
SPACES.register(DartsSpace.name, DartsSpace)
SPACES.register(NB201Space.name, NB201Space)


def discretize(space: str, weights: Mapping[str, Tensor] | Tensor, candidates: Sequence[str],
               edge_weights: Mapping[str, Tensor] | None = None, **space_args: int) -> Genotype:
    """The rule of the space named ``space`` built with ``candidates`` and ``space_args`` (DARTS: ``steps``,
    ``multiplier``); a bare tensor is the weights of a single-cell-type space's cell."""
    cls = SPACES.get(space)
    if isinstance(weights, Tensor):
        weights = {cls.cell_types[0]: weights}
    return cls(candidates, **space_args).discretize(weights, edge_weights)
