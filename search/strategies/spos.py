"""Single-path one-shot (SPOS; Guo et al., ECCV 2020): train the supernet on uniformly sampled single paths,
then pick the cell by a discrete search (regularized evolution or random search) scored with the shared weights."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ops import Genotype
from search.discrete import Budget, FunctionEvaluator, RandomSearch, RegularizedEvolution
from search.strategies.base import ArchStepContext, SearchStrategy, register_strategy
from search.strategies.paths import cell_space, genotype_path
from search.strategies.probe import ProbeSet, SelectsCell
from search.rng import seeded_generator
from supernet import ArchWeights

SELECTIONS = ("evolution", "random")


class NoArchitecture(nn.Module):
    """The architecture state of SPOS: nothing to learn (no parameters, so no architecture optimizer)."""


def uniform_decisions(choices: tuple[int, ...], generator: torch.Generator) -> list[int]:
    """One uniformly drawn option per decision (``choices[i]`` options for decision ``i``)."""
    u = torch.rand(len(choices), generator=generator, dtype=torch.float64).tolist()
    return [min(int(x * n), n - 1) for x, n in zip(u, choices)]


@register_strategy("spos")
class SposStrategy(SelectsCell, SearchStrategy):
    """SPOS over the cells of the supernet's space.

    Training: every weight step runs one cell drawn uniformly from the discrete space the final search explores
    (``search.discrete``): NB201: one op per edge; DARTS: per node two distinct inputs and an op (not ``none``)
    for each, all other edges ``none`` -- the supernet is trained on exactly the cells it will be asked to rank.
    Selection: at the last batch of every epoch a discrete search (``selection``) scores cells by their accuracy
    on the epoch's last ``probe_batches`` validation batches with the shared weights, pooled over ranks; BatchNorm
    uses batch statistics (no recalibration, running statistics untouched). The final epoch spends ``evaluations``
    cells, earlier ones ``epoch_evaluations`` (0: none) for the per-epoch genotypes. Before the first selection
    the genotype is a fixed cell drawn with ``seed``. ``probabilities`` are the uniform sampling distribution.

    Args:
        selection: ``evolution`` (regularized evolution) or ``random`` (random search).
        evaluations: Cells scored at the end of the last epoch.
        epoch_evaluations: Cells scored at the end of every earlier epoch.
        population_size: Evolution: population (aging).
        sample_size: Evolution: tournament size.
        probe_batches: Validation batches a cell is scored on.
        seed: Seed of path sampling and of the discrete search (the same on every rank).
    """

    unused_parameters = True

    def __init__(self, selection: str = "evolution", evaluations: int = 1000, epoch_evaluations: int = 20,
                 population_size: int = 50, sample_size: int = 10, probe_batches: int = 4, seed: int = 0) -> None:
        if selection not in SELECTIONS:
            raise ValueError(f"SPOS selection must be one of {', '.join(SELECTIONS)}, got {selection!r} "
                             "(--model.strategy_args.selection)")
        if evaluations < 1 or epoch_evaluations < 0:
            raise ValueError(f"SPOS needs evaluations >= 1 and epoch_evaluations >= 0, got {evaluations}, "
                             f"{epoch_evaluations}")
        self.selection, self.evaluations, self.epoch_evaluations = selection, evaluations, epoch_evaluations
        self.evolution = RegularizedEvolution(population_size, sample_size)
        self.probe = ProbeSet(probe_batches)
        self.seed = seed
        self.generator = seeded_generator(seed)
        self.selected: Genotype | None = None
        self.selected_score: float | None = None
        self.epoch, self.max_epochs = 0, 1
        self.space: Any = None
        self.supernet: nn.Module | None = None

    def build_arch(self, supernet: nn.Module) -> NoArchitecture:
        """Nothing to learn; remembers the supernet's discrete cell space."""
        self.space = cell_space(supernet)
        self.supernet = supernet
        return NoArchitecture()

    def _supernet(self) -> nn.Module:
        if self.supernet is None:
            raise RuntimeError("SPOS: build_arch(supernet) has not been called")
        return self.supernet

    def weights(self, arch: nn.Module) -> ArchWeights:
        """A uniformly drawn cell as a single path."""
        cell = self.space.decode(uniform_decisions(self.space.choices, self.generator))
        return genotype_path(self._supernet(), cell)

    def eval_weights(self, arch: nn.Module) -> ArchWeights:
        """The selected cell as a single path (consumes no randomness)."""
        return genotype_path(self._supernet(), self.genotype(arch, self._supernet()))

    def arch_step(self, ctx: ArchStepContext) -> dict[str, Tensor]:
        """Record the validation batch; at the end of an epoch, select the cell."""
        self.probe.add(ctx.val_batch)
        final = self.epoch >= self.max_epochs - 1
        budget = self.evaluations if final else self.epoch_evaluations
        if not ctx.last_batch or budget == 0:
            return {}
        return {"selected_acc": torch.tensor(self.select(ctx, budget), device=ctx.val_batch[1].device)}

    def select(self, ctx: ArchStepContext, budget: int) -> float:
        """Run the discrete search over ``budget`` cells on the probe batches; keep the best. Returns its score."""
        scores: dict[str, float] = {}

        def probe_accuracy(cell: Genotype) -> float:
            key = self.space.to_str(cell)
            if key not in scores:  # the score is a deterministic function of the cell here
                scores[key] = self.probe.accuracies(ctx.supernet, [genotype_path(ctx.supernet, cell)], ctx.reduce)[0]
            return scores[key]

        searcher = self.evolution if self.selection == "evolution" else RandomSearch()
        result = searcher.search(self.space, FunctionEvaluator(probe_accuracy, metric_name="probe_acc"),
                                 Budget(evaluations=budget), seed=self.seed + self.epoch)
        self.selected, self.selected_score = result.best_cell, float(result.best.metric)
        return self.selected_score

    def probabilities(self, arch: nn.Module) -> dict[str, Tensor]:
        """The uniform sampling distribution per edge (DARTS: ``none`` = the edge is unused)."""
        rows = self.space.uniform_edge_probabilities(self._supernet().candidates)
        return {cell: torch.tensor(values) for cell, values in rows.items()}

    def genotype(self, arch: nn.Module, supernet: nn.Module) -> Genotype:
        """The selected cell; before the first selection a fixed cell drawn with ``seed``."""
        if self.selected is not None:
            return self.selected
        return self.space.decode(uniform_decisions(self.space.choices, seeded_generator(self.seed)))

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Track the epoch (the final one gets the full budget); cells are compared on this epoch's batches."""
        self.epoch, self.max_epochs = epoch, max_epochs
        self.probe.clear()
