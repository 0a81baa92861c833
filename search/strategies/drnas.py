"""DrNAS (Chen et al., ICLR 2021): each edge's op weights are a sample of a Dirichlet distribution whose
concentration is learned; reparameterized samples carry the gradient to the concentration."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Dirichlet, kl_divergence

from search.strategies.base import ArchStepContext, register_strategy
from search.strategies.darts import DartsStrategy, first_order_step
from search.rng import PicklesGenerator, load_generator_state, seeded_generator
from supernet import ArchWeights, CellWeights

REGULARIZATIONS = ("l2", "kl")


def concentration(alpha: Tensor) -> Tensor:
    """The Dirichlet concentration of DrNAS: ``elu(alpha) + 1`` (positive, ~1 at the ``1e-3 * randn`` start)."""
    return F.elu(alpha) + 1.0


def dirichlet_sample(concentration: Tensor, generator: torch.Generator) -> Tensor:
    """One reparameterized Dirichlet sample per row, drawn on the CPU from ``generator`` (the same on every rank,
    resumable), moved back to the concentration's device; differentiable in the concentration."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        sample = Dirichlet(concentration.cpu()).rsample()
        generator.set_state(torch.get_rng_state())
    return sample.to(concentration.device)


def dirichlet_kl(concentration: Tensor) -> Tensor:
    """``sum_e KL(Dir(concentration_e) || Dir(1))``: DrNAS's ``kl`` regularizer, towards the uniform prior."""
    prior = Dirichlet(torch.ones_like(concentration))
    return kl_divergence(Dirichlet(concentration), prior).sum()


@register_strategy("drnas")
class DrNasStrategy(PicklesGenerator, DartsStrategy):
    """DrNAS: the supernet mixes every edge's ops with a fresh sample of ``Dirichlet(elu(alpha) + 1)`` in the
    architecture step and in the weight step (as the DrNAS code, which samples in every forward); validation uses the
    Dirichlet mean (no randomness). Alphas learn by the 1st-order gradient through the reparameterized samples.

    Regularization, as the DrNAS code's ``reg_type``: ``l2`` (its default) is plain weight decay on the alphas,
    i.e. ``--model.arch_weight_decay`` (DrNAS: 1e-3, the shipped default), no extra term; ``kl`` adds
    ``reg_scale * sum KL(Dir(elu(alpha) + 1) || Dir(1))`` to the validation loss (set arch weight decay to 0 then,
    as their code does). ``probabilities`` are the Dirichlet means, whose per-edge argmax is that of ``softmax(alpha)``
    (the DrNAS genotype); in the DARTS space edges are ranked by those means. DrNAS's progressive channel widening
    and op pruning are not part of this strategy.

    Args:
        init_scale: alphas start as ``init_scale * randn``.
        regularization: ``l2`` or ``kl``.
        reg_scale: Weight of the ``kl`` term (DrNAS: 1e-3).
        seed: Seed of the Dirichlet samples (the same on every rank).
    """

    def __init__(self, init_scale: float = 1e-3, regularization: str = "l2", reg_scale: float = 1e-3,
                 seed: int = 0) -> None:
        if regularization not in REGULARIZATIONS:
            raise ValueError(f"DrNAS regularization must be one of {', '.join(REGULARIZATIONS)}, got "
                             f"{regularization!r} (--model.strategy_args.regularization)")
        if not reg_scale >= 0:
            raise ValueError(f"DrNAS reg_scale must be >= 0, got {reg_scale} (--model.strategy_args.reg_scale)")
        super().__init__(order=1, init_scale=init_scale)
        self.regularization = regularization
        self.reg_scale = float(reg_scale)
        self.generator = seeded_generator(seed)

    def weights(self, arch: nn.Module) -> ArchWeights:
        """A Dirichlet sample per edge, per cell type."""
        return {cell: CellWeights(ops=dirichlet_sample(concentration(arch.alphas[cell]), self.generator))
                for cell in arch.cell_types}

    def eval_weights(self, arch: nn.Module) -> ArchWeights:
        """The Dirichlet means (deterministic)."""
        return {cell: CellWeights(ops=self._mean(arch, cell)) for cell in arch.cell_types}

    def probabilities(self, arch: nn.Module) -> dict[str, Tensor]:
        """Detached Dirichlet means per cell type."""
        return {cell: self._mean(arch, cell).detach() for cell in arch.cell_types}

    @staticmethod
    def _mean(arch: nn.Module, cell: str) -> Tensor:
        conc = concentration(arch.alphas[cell])
        return conc / conc.sum(dim=-1, keepdim=True)

    def arch_step(self, ctx: ArchStepContext) -> dict[str, Tensor]:
        """One Adam step of the alphas on the validation loss of a sampled supernet (+ the KL term)."""
        return first_order_step(ctx, lambda: self.weights(ctx.arch), lambda: self._kl(ctx.arch))

    def _kl(self, arch: nn.Module) -> Tensor | None:
        if self.regularization != "kl" or self.reg_scale == 0.0:
            return None
        return self.reg_scale * sum(dirichlet_kl(concentration(arch.alphas[c])) for c in arch.cell_types)

    def state_dict(self) -> dict[str, Any]:
        """The sampling generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        load_generator_state(self.generator, state["generator"])
