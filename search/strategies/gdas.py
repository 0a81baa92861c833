"""GDAS (Dong & Yang, CVPR 2019): one op per edge sampled by a hard Gumbel-softmax with a straight-through
gradient; only the sampled op runs, in the architecture step and in the weight step alike."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ops import Genotype, NB201Space
from search.strategies.base import ArchStepContext, SearchStrategy, register_strategy
from search.strategies.darts import first_order_step, supernet_genotype
from search.rng import PicklesGenerator, load_generator_state, seeded_generator
from supernet import ArchParameters, ArchWeights, CellWeights


def gumbel_hard(alpha: Tensor, tau: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Hard straight-through Gumbel-softmax over the last dimension of ``alpha``.

    ``soft = softmax((log_softmax(alpha) + g) / tau)`` with Gumbel noise ``g = -log(E)``, ``E ~ Exp(1)`` drawn
    from ``generator`` (on the CPU); returns ``(one_hot(argmax) - soft.detach() + soft, argmax)``: the value is
    one-hot, the gradient is that of ``soft``, so it reaches every entry of ``alpha`` through the softmax Jacobian.
    """
    exponential = torch.empty(alpha.shape, dtype=torch.float32).exponential_(generator=generator)
    gumbel = -exponential.clamp_min(torch.finfo(torch.float32).tiny).log()
    soft = ((alpha.log_softmax(dim=-1) + gumbel.to(alpha.device, alpha.dtype)) / tau).softmax(dim=-1)
    index = soft.detach().argmax(dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return hard - soft.detach() + soft, index


EDGE_FORMS = ("auto", "sum", "selected")


def tau_schedule(epoch: int, epochs: int, tau_max: float, tau_min: float) -> float:
    """GDAS's linear annealing: ``tau_max - (tau_max - tau_min) * epoch / (epochs - 1)`` (``tau_max`` if one epoch)."""
    if epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * min(epoch, epochs - 1) / (epochs - 1)


@register_strategy("gdas")
class GdasStrategy(PicklesGenerator, SearchStrategy):
    """GDAS: alphas as in DARTS; every forward of a training step samples one op per edge with
    ``gumbel_hard`` (temperature ``tau``, annealed linearly from ``tau_max`` to ``tau_min`` over the epochs) and
    runs only that op. Validation runs the argmax op of every edge; the genotype is the DARTS rule on
    ``softmax(alpha)``.

    ``edge_form`` chooses between the two forms of the authors' code (D-X-Y/AutoDL-Projects): ``sum``, the
    NAS-Bench-201 cell's ``sum_k (h_k * op_k(x) if k == sampled else h_k)`` (the zero-valued straight-through
    weights of the ops that did not run are added too, so every alpha gets a gradient on every step: the form
    behind the published NB201 figure 93.61), and ``selected``, their DARTS-space cell's ``h_sampled *
    op_sampled(x)`` (and their NB201 "GDAS v1"). ``auto`` (default) picks ``sum`` for the NB201 space and
    ``selected`` for the DARTS space, as their code does.

    Args:
        tau_max: Temperature of the first epoch (GDAS: 10).
        tau_min: Temperature of the last epoch (GDAS: 0.1).
        init_scale: alphas start as ``init_scale * randn``.
        seed: Seed of the Gumbel noise (the same on every rank, so ranks sample the same ops).
        edge_form: ``auto``, ``sum`` or ``selected`` (see above).
    """

    unused_parameters = True

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1, init_scale: float = 1e-3, seed: int = 0,
                 edge_form: str = "auto") -> None:
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"GDAS needs 0 < tau_min <= tau_max, got tau_min={tau_min}, tau_max={tau_max} "
                             "(--model.strategy_args.tau_min / tau_max)")
        if edge_form not in EDGE_FORMS:
            raise ValueError(f"GDAS edge_form must be one of {', '.join(EDGE_FORMS)}, got {edge_form!r} "
                             "(--model.strategy_args.edge_form)")
        self.edge_form = edge_form
        self.add_inactive = edge_form == "sum"
        self.tau_max, self.tau_min = float(tau_max), float(tau_min)
        self.init_scale = init_scale
        self.tau = self.tau_max
        self.generator = seeded_generator(seed)

    def build_arch(self, supernet: nn.Module) -> ArchParameters:
        """``[num_edges, num_ops]`` alphas per cell type of ``supernet``; settles ``edge_form="auto"``."""
        if self.edge_form == "auto":
            self.add_inactive = isinstance(supernet.search_space, NB201Space)
        return ArchParameters.for_network(supernet, init_scale=self.init_scale)

    def weights(self, arch: nn.Module) -> ArchWeights:
        """One Gumbel-sampled op per edge (``active``) with straight-through one-hot weights."""
        out: ArchWeights = {}
        for cell in arch.cell_types:
            hard, index = gumbel_hard(arch.alphas[cell], self.tau, self.generator)
            out[cell] = CellWeights(ops=hard, active=index.cpu(), add_inactive=self.add_inactive)
        return out

    def eval_weights(self, arch: nn.Module) -> ArchWeights:
        """The argmax op of every edge, weight 1 (no noise: validation consumes no randomness)."""
        out: ArchWeights = {}
        for cell in arch.cell_types:
            index = arch.alphas[cell].detach().argmax(dim=-1)
            out[cell] = CellWeights(ops=torch.zeros_like(arch.alphas[cell]).scatter_(-1, index.unsqueeze(-1), 1.0),
                                    active=index.cpu())
        return out

    def arch_step(self, ctx: ArchStepContext) -> dict[str, Tensor]:
        """One Adam step of the alphas on the validation loss of a sampled path (straight-through gradient)."""
        metrics = first_order_step(ctx, lambda: self.weights(ctx.arch))
        return {**metrics, "tau": torch.tensor(self.tau, device=metrics["arch_loss"].device)}

    def probabilities(self, arch: nn.Module) -> dict[str, Tensor]:
        """Detached ``softmax(alpha)`` per cell type."""
        return arch.probabilities()

    def genotype(self, arch: nn.Module, supernet: nn.Module) -> Genotype:
        """The DARTS rule (or the NB201 argmax) on ``softmax(alpha)``."""
        return supernet_genotype(supernet, self.probabilities(arch))

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Anneal the temperature."""
        self.tau = tau_schedule(epoch, max_epochs, self.tau_max, self.tau_min)

    def state_dict(self) -> dict[str, Any]:
        """Temperature and the Gumbel generator's state."""
        return {"tau": self.tau, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.tau = float(state["tau"])
        load_generator_state(self.generator, state["generator"])
