"""Architecture selection by perturbation (DARTS-PT; Wang et al., ICLR 2021), after any alpha-based supernet search.

The magnitude of ``alpha`` says little about how much the supernet relies on an op (skip connections win on
magnitude while contributing little). DARTS-PT decides edge by edge instead: on the chosen edge, remove each
candidate in turn (its mixing weight set to 0, the others left as they are) and keep the op whose removal costs the
supernet the most validation accuracy; the edge is then fixed to that op (one-hot) and the supernet is fine-tuned
before the next decision. In the DARTS space the topology is chosen the same way afterwards: for each node, the
incoming edge whose removal hurts least is dropped until two remain.

Here the selection is the final phase of the search run (``SearchModule(selection=PerturbationSelection(...))``):
the last ``tune_epochs + 1`` epochs each end with a round in which the decisions due (spread evenly over the rounds,
see ``due``) are taken on the epoch's last ``probe_batches`` validation batches; the epochs between are the
fine-tuning (weights and the undecided alphas keep
training; the weights' cosine schedule is near its end there, 0.001-0.003, where DARTS-PT fine-tunes at a constant
0.0025). Edge order is random (``seed``, the same on every rank: DARTS-PT's ``edge_decision random``); accuracies are
pooled over DDP ranks, so every rank takes the same decisions. BatchNorm uses batch statistics, as DARTS-PT.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ops.discretize import NONE_OP
from search.importance import without_op
from search.strategies.probe import ProbeSet
from search.rng import PicklesGenerator, load_generator_state, seeded_generator
from supernet import ArchParameters, ArchWeights

CRITERIA = ("accuracy", "loss")
Decision = tuple[str, str, int]
"""``("op", cell, edge)`` or ``("topology", cell, node)``."""
Scorer = Callable[[list[ArchWeights]], list[float]]
"""The supernet's score (higher is better: accuracy, or minus the loss) under each of a list of architecture
weights (pooled over ranks)."""


def due(total: int, rounds: int, round_index: int) -> int:
    """How many of ``total`` decisions are due by round ``round_index`` of ``rounds`` when they are spread evenly
    from the first round to the last (decision ``j`` at round ``floor(j * (rounds - 1) / (total - 1))``): 6 decisions
    over 25 rounds fall at rounds 0, 4, 9, 14, 19 and 24 (DARTS-PT: every 5 epochs, the last at the end); with more
    decisions than rounds several share a round. Everything is due by the last round."""
    if round_index >= rounds - 1 or total <= 1:
        return total
    return sum(1 for j in range(total) if (j * (rounds - 1)) // (total - 1) <= round_index)


def worst_removal(scores: list[float]) -> int:
    """Index of the lowest score (the removal that hurts most); the lowest index wins ties."""
    return min(range(len(scores)), key=lambda k: (scores[k], k))


def best_removal(scores: list[float]) -> int:
    """Index of the highest score (the removal that hurts least); the lowest index wins ties."""
    return min(range(len(scores)), key=lambda k: (-scores[k], k))


class PerturbationSelection(PicklesGenerator):
    """DARTS-PT as the last phase of a search (see the module docstring).

    Args:
        tune_epochs: Fine-tuning epochs between the first and the last round of decisions; the phase takes the last
            ``tune_epochs + 1`` epochs of the run, so ``--trainer.max_epochs`` must exceed it. DARTS-PT: 5 epochs
            between decisions, i.e. 25 on NAS-Bench-201 (6 edges) and 80 in the DARTS space.
        probe_batches: Validation batches each candidate removal is scored on (DARTS-PT: the whole validation split).
        topology: DARTS space: also choose each node's two inputs by perturbation (DARTS-PT); otherwise the DARTS
            rule ranks the inputs.
        seed: Seed of the random edge order.
        criterion: What a removal costs the supernet: validation ``accuracy`` (DARTS-PT's default, ``proj_crit
            acc``) or validation ``loss`` (its ``proj_crit loss``), which is less noisy on few probe batches.
        keep_none: Let ``none`` be kept where the space allows it (NAS-Bench-201; the DARTS space never keeps it).
            Off by default, unlike the DARTS-PT code: removing ``none`` leaves the supernet unchanged, so its score
            is the unperturbed one and it is kept exactly when removing any other op *helps* -- when the edge's
            output is better scaled down, which says nothing about which op the edge should hold. Measured at
            the CPU budget this put ``none`` on the 0->3 edge, where every top cell has ``skip_connect``.
    """

    def __init__(self, tune_epochs: int = 5, probe_batches: int = 10, topology: bool = True, seed: int = 0,
                 criterion: Literal["accuracy", "loss"] = "accuracy", keep_none: bool = False) -> None:
        if not isinstance(tune_epochs, int) or tune_epochs < 0:
            raise ValueError(f"--model.selection.tune_epochs must be an integer >= 0, got {tune_epochs!r}")
        if criterion not in CRITERIA:
            raise ValueError(f"--model.selection.criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        self.criterion = criterion
        self.keep_none = bool(keep_none)
        self.tune_epochs = tune_epochs
        self.topology = bool(topology)
        self.probe = ProbeSet(probe_batches)
        self.generator = seeded_generator(seed)
        self.fixed: dict[str, dict[int, int]] = {}
        self.removed: dict[str, list[int]] = {}
        self.pending: list[Decision] | None = None
        self.total = 0
        self.allowed: tuple[int, ...] = ()
        self.candidates: tuple[str, ...] = ()
        self.node_inputs: list[list[int]] = []
        self.pruned_nodes: list[int] = []

    # ---- set-up ---------------------------------------------------------------------------------------------------
    def check(self, supernet: nn.Module, arch: nn.Module, strategy: Any) -> None:
        """Refuse what DARTS-PT cannot select on (no alphas, a strategy that runs sampled paths); take the ops and
        the topology to decide from the supernet's search space."""
        if not isinstance(arch, ArchParameters):
            raise ValueError(f"--model.selection: perturbation selection needs architecture alphas; strategy "
                             f"{strategy.name!r} has none (use darts, pcdarts or drnas)")
        if getattr(strategy, "unused_parameters", False):
            raise ValueError(f"--model.selection: perturbation selection removes one op from a supernet that mixes "
                             f"them all; strategy {strategy.name!r} runs sampled paths (use darts, pcdarts or drnas)")
        space = supernet.search_space
        self.candidates = tuple(space.candidates)
        self.node_inputs = space.node_edges()
        self.pruned_nodes = space.pruned_nodes() if self.topology else []
        # the ops a discrete cell may hold: DARTS never keeps `none`, NAS-Bench-201 cells may (see keep_none)
        self.allowed = tuple(space.index(op) for op in space.cell_ops() if self.keep_none or op != NONE_OP)
        if not self.allowed:
            raise ValueError("--model.selection: the supernet has no candidate op a discrete cell may hold")
        for cell in arch.cell_types:
            self.fixed.setdefault(cell, {})
            self.removed.setdefault(cell, [])
        if self.pending is None:
            self.pending = self._plan(arch.cell_types, arch.num_edges)
            self.total = len(self.pending)

    def _plan(self, cell_types: tuple[str, ...], num_edges: int) -> list[Decision]:
        """Every op decision, in random edge order per cell type and interleaved across cell types (DARTS-PT
        projects the normal and the reduction cell in the same round), then the topology decisions."""
        orders = {cell: torch.randperm(num_edges, generator=self.generator).tolist() for cell in cell_types}
        plan: list[Decision] = [("op", cell, orders[cell][i]) for i in range(num_edges) for cell in cell_types]
        for cell in cell_types if self.pruned_nodes else ():
            order = torch.randperm(len(self.pruned_nodes), generator=self.generator).tolist()
            plan.extend(("topology", cell, self.pruned_nodes[i]) for i in order)
        return plan

    def first_epoch(self, max_epochs: int) -> int:
        """The epoch that ends with the first round of decisions."""
        return max_epochs - self.tune_epochs - 1

    # ---- what the supernet sees -----------------------------------------------------------------------------------
    def transform(self, weights: ArchWeights, phase: str = "eval") -> ArchWeights:
        """Decided edges one-hot at their op, removed edges zero, the others as given (every phase)."""
        if not any(self.fixed.values()) and not any(self.removed.values()):
            return weights
        return {cell: replace(w, ops=self.project(cell, w.ops)) for cell, w in weights.items()}

    def project(self, cell: str, ops: Tensor) -> Tensor:
        """``ops`` (``[num_edges, num_ops]``) with this cell type's decisions applied."""
        fixed, removed = self.fixed.get(cell, {}), self.removed.get(cell, [])
        if not fixed and not removed:
            return ops
        keep = torch.ones_like(ops)
        chosen = torch.zeros_like(ops)
        for edge, op in fixed.items():
            keep[edge] = 0.0
            chosen[edge, op] = 1.0
        for edge in removed:
            keep[edge] = 0.0
            chosen[edge] = 0.0
        return ops * keep + chosen

    # ---- decisions ------------------------------------------------------------------------------------------------
    def decide_round(self, epoch: int, max_epochs: int, base: ArchWeights, score: Scorer) -> list[str]:
        """Take the decisions due by this epoch (see ``due``); return one line per decision taken. ``base``: the
        evaluation weights with every transform applied; ``score``: see ``Scorer``."""
        if not self.pending or epoch < self.first_epoch(max_epochs):
            return []
        total = self.total
        count = due(total, self.tune_epochs + 1, epoch - self.first_epoch(max_epochs)) - (total - len(self.pending))
        lines = []
        for _ in range(max(count, 0)):
            kind, cell, index = self.pending.pop(0)
            lines.append(self._decide_op(cell, index, base, score) if kind == "op"
                         else self._decide_topology(cell, index, base, score))
            base = self.transform(base)
        return lines

    def _decide_op(self, cell: str, edge: int, base: ArchWeights, score: Scorer) -> str:
        scores = score([without_op(base, cell, edge, k) for k in self.allowed])
        pick = self.allowed[worst_removal(scores)]
        self.fixed[cell][edge] = pick
        sign = -1.0 if self.criterion == "loss" else 1.0
        without = ", ".join(f"{self.candidates[k]} {sign * a:.3f}" for k, a in zip(self.allowed, scores))
        return f"{cell} edge {edge}: {self.candidates[pick]} (supernet {self.criterion} without each op: {without})"

    def scorer(self, supernet: nn.Module, reduce: Callable[[list[Tensor]], list[Tensor]]) -> Scorer:
        """The ``Scorer`` of this selection's criterion on its probe batches."""
        sign = -1.0 if self.criterion == "loss" else 1.0
        return lambda paths: [sign * v for v in self.probe.scores(supernet, paths, reduce, self.criterion)]

    def _decide_topology(self, cell: str, node: int, base: ArchWeights, score: Scorer) -> str:
        remaining = [e for e in self.node_inputs[node] if e not in self.removed[cell]]
        dropped = []
        while len(remaining) > 2:
            trials = []
            for edge in remaining:
                ops = base[cell].ops.clone()
                ops[edge] = 0.0
                trials.append({**base, cell: replace(base[cell], ops=ops)})
            edge = remaining.pop(best_removal(score(trials)))
            self.removed[cell].append(edge)
            dropped.append(edge)
            base = self.transform(base)
        return f"{cell} node {node}: drop input edges {dropped}, keep {remaining}"

    @property
    def done(self) -> bool:
        """True when every decision has been taken."""
        return self.pending is not None and not self.pending

    # ---- checkpoint -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Decisions taken and pending, and the generator state."""
        return {"fixed": {c: {str(e): k for e, k in f.items()} for c, f in self.fixed.items()},
                "removed": {c: list(r) for c, r in self.removed.items()},
                "pending": None if self.pending is None else [list(d) for d in self.pending], "total": self.total,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.fixed = {c: {int(e): int(k) for e, k in f.items()} for c, f in state["fixed"].items()}
        self.removed = {c: [int(e) for e in r] for c, r in state["removed"].items()}
        pending = state["pending"]
        self.pending = None if pending is None else [(str(a), str(b), int(c)) for a, b, c in pending]
        self.total = int(state["total"])
        load_generator_state(self.generator, state["generator"])
