"""Collapse-resistant additions to alpha-based search: regularizers and perturbations of the architecture.

Each is a small object given to ``SearchModule(regularizers=[...])`` (in a config: a list of ``class_path`` entries
under ``model.regularizers``). They compose with every strategy whose architecture state is ``ArchParameters``
(DARTS 1st/2nd order, PC-DARTS, GDAS, DrNAS), because they act only at the two places such strategies share:

* ``penalty(arch)``: a term added to the validation loss of the architecture step (beta-decay);
* ``transform(weights, phase)``: a change of the architecture weights the supernet sees, in the architecture step
  (``"arch"``), the weight step (``"weight"``) and validation (``"eval"``) (random smoothing, auxiliary skip).

Schedules follow the epoch (``on_epoch_start``); randomness comes from a generator each object owns (identical on
every DDP rank, restored on resume through ``state_dict``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from ops import Registry
from search.rng import PicklesGenerator, load_generator_state, seeded_generator
from supernet import ArchParameters, ArchWeights

PHASES = ("arch", "weight", "eval")
SKIP_OP = "skip_connect"


def beta_decay_loss(alphas: Sequence[Tensor]) -> Tensor:
    """The beta-decay regularizer of beta-DARTS (Ye et al., CVPR 2022): the mean over edges of
    ``logsumexp(alpha_e)``, summed over cell types. Its gradient ``softmax(alpha_e) / E`` pushes the largest logits
    down hardest, so no op's ``alpha`` runs away from the others (β-DARTS code: ``mlc_loss``)."""
    return sum(torch.logsumexp(a, dim=-1).mean() for a in alphas)


def linear_ramp(epoch: int, max_epochs: int, start: float, end: float) -> float:
    """``start + (end - start) * epoch / (max_epochs - 1)``: ``start`` in the first epoch, ``end`` in the last."""
    if max_epochs <= 1:
        return end
    return start + (end - start) * min(epoch, max_epochs - 1) / (max_epochs - 1)


class ArchRegularizer:
    """Base class: by default no penalty, no transform, no state. Subclasses override what they need."""

    name = "regularizer"

    def check(self, supernet: nn.Module, arch: nn.Module, strategy: Any) -> None:
        """Raise a one-line ``ValueError`` if this cannot act on ``arch`` / ``supernet`` / ``strategy``."""
        if not isinstance(arch, ArchParameters):
            raise ValueError(f"--model.regularizers: {self.name} acts on architecture alphas; strategy "
                             f"{strategy.name!r} has none (use darts, pcdarts, gdas or drnas)")

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Update schedules at the start of a (0-based) epoch."""

    def penalty(self, arch: ArchParameters) -> Tensor | None:
        """A term added to the architecture step's validation loss (``None``: nothing)."""
        return None

    def transform(self, weights: ArchWeights, phase: str) -> ArchWeights:
        """The architecture weights the supernet sees in ``phase`` (one of ``PHASES``)."""
        return weights

    def state_dict(self) -> dict[str, Any]:
        """State a checkpoint must restore."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def check_nonnegative(owner: str, **values: float) -> None:
    """Raise one line naming ``owner`` and the key unless every value is a finite number >= 0."""
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{owner}: {key} must be a finite number >= 0, got {value!r}")


class BetaDecay(ArchRegularizer):
    """beta-DARTS: ``weight * beta_decay_loss(alphas)`` added to the validation loss, ``weight`` ramped linearly from
    ``weight_start`` in the first epoch to ``weight_end`` in the last.

    Defaults follow the beta-DARTS code (``weight = 50 * epoch / 100`` over its 50 search epochs: 0 -> 24.5),
    here stretched over however many epochs the search has.

    Args:
        weight_start: Regularization weight of the first epoch.
        weight_end: Regularization weight of the last epoch.
    """

    name = "beta_decay"

    def __init__(self, weight_start: float = 0.0, weight_end: float = 24.5) -> None:
        check_nonnegative("BetaDecay", weight_start=weight_start, weight_end=weight_end)
        self.weight_start, self.weight_end = float(weight_start), float(weight_end)
        self.weight = self.weight_start

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Ramp the weight."""
        self.weight = linear_ramp(epoch, max_epochs, self.weight_start, self.weight_end)

    def penalty(self, arch: ArchParameters) -> Tensor | None:
        """``weight * beta_decay_loss`` of every cell type's alphas."""
        if self.weight == 0.0:
            return None
        return self.weight * beta_decay_loss([arch.alphas[cell] for cell in arch.cell_types])

    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weight = float(state["weight"])


class RandomSmoothing(PicklesGenerator, ArchRegularizer):
    """SDARTS-RS (Chen & Hsieh, ICML 2020): the weight step sees the op probabilities plus uniform noise
    ``U(-epsilon, epsilon)``, clipped to [0, 1] and renormalized per edge (an edge left all zero gets 1 at its
    largest probability), so the supernet's weights are trained to do well in a neighbourhood of the architecture;
    the architecture step and validation see the clean probabilities.

    ``epsilon = epsilon_start + (epsilon_end - epsilon_start) * epoch / max_epochs``: the SmoothDARTS code
    (``train_search.py``: ``0.03 + (epsilon_alpha - 0.03) * epoch / epochs``, ``epsilon_alpha = 0.3``), which ends
    just short of ``epsilon_end``. The noise comes from a generator seeded with ``seed`` (the same on every rank).

    Args:
        epsilon_start: Noise amplitude of the first epoch.
        epsilon_end: Amplitude the schedule ramps towards.
        seed: Seed of the noise.
    """

    name = "random_smoothing"

    def __init__(self, epsilon_start: float = 0.03, epsilon_end: float = 0.3, seed: int = 0) -> None:
        check_nonnegative("RandomSmoothing", epsilon_start=epsilon_start, epsilon_end=epsilon_end)
        self.epsilon_start, self.epsilon_end = float(epsilon_start), float(epsilon_end)
        self.epsilon = self.epsilon_start
        self.generator = seeded_generator(seed)

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Ramp the noise amplitude."""
        self.epsilon = self.epsilon_start + (self.epsilon_end - self.epsilon_start) * epoch / max(max_epochs, 1)

    def transform(self, weights: ArchWeights, phase: str) -> ArchWeights:
        """Perturbed, renormalized op weights in the weight step; unchanged otherwise."""
        if phase != "weight" or self.epsilon == 0.0:
            return weights
        return {cell: replace(w, ops=smoothed(w.ops, self.epsilon, self.generator)) for cell, w in weights.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epsilon = float(state["epsilon"])
        load_generator_state(self.generator, state["generator"])


def smoothed(probabilities: Tensor, epsilon: float, generator: torch.Generator) -> Tensor:
    """``probabilities + U(-epsilon, epsilon)`` clipped to [0, 1], rows renormalized to sum 1; a row clipped to all
    zeros becomes one-hot at its largest entry (SmoothDARTS ``clip``)."""
    noise = torch.empty(probabilities.shape, dtype=torch.float32).uniform_(-epsilon, epsilon, generator=generator)
    # kept in the graph of the probabilities: under DDP every parameter of the module must receive a gradient
    noisy = (probabilities + noise.to(probabilities.device, probabilities.dtype)).clamp(0.0, 1.0)
    # a row clipped to all zeros falls back to one-hot (torch.where, not a data-dependent branch: no device sync)
    fallback = torch.zeros_like(noisy).scatter_(-1, probabilities.detach().argmax(-1, keepdim=True), 1.0)
    noisy = torch.where((noisy.sum(dim=-1, keepdim=True) == 0), fallback, noisy)
    total = noisy.sum(dim=-1, keepdim=True)
    return noisy / total


class AuxiliarySkip(ArchRegularizer):
    """DARTS- (Chu et al., ICLR 2021): every edge gets an auxiliary skip connection ``beta * skip(x)`` outside the
    architecture's competition, with ``beta`` decaying linearly from ``beta_start`` to 0 over the search, so the
    supernet no longer needs the ``skip_connect`` candidate to pass gradients and that candidate stops winning by
    default. Applied in every phase (it is part of the supernet, as in the DARTS- code).

    ``beta = beta_start * (max_epochs - epoch) / max_epochs`` (the DARTS- ``DecayScheduler``, linear mode, with
    ``T_max`` the number of epochs; it ends at ``beta_start / max_epochs``, not 0). The auxiliary skip is added to the
    mixing weight of the ``skip_connect`` candidate, which computes ``skip(x)`` on the same input: exact on every
    stride-1 edge (identity); on the stride-2 edges of a DARTS reduction cell the auxiliary path shares the
    candidate's ``FactorizedReduce`` where the DARTS- code builds a separate one. Needs strategies that run every op
    of an edge (darts, pcdarts, drnas): a sampled path does not compute the skip.

    Args:
        beta_start: The auxiliary coefficient of the first epoch (DARTS-: 1).
    """

    name = "auxiliary_skip"

    def __init__(self, beta_start: float = 1.0) -> None:
        check_nonnegative("AuxiliarySkip", beta_start=beta_start)
        self.beta_start = float(beta_start)
        self.beta = self.beta_start
        self.skip_index: int | None = None

    def check(self, supernet: nn.Module, arch: nn.Module, strategy: Any) -> None:
        super().check(supernet, arch, strategy)
        if getattr(strategy, "unused_parameters", False):
            raise ValueError(f"--model.regularizers: auxiliary_skip needs every op of an edge computed; strategy "
                             f"{strategy.name!r} runs a sampled path (use darts, pcdarts or drnas)")
        candidates = tuple(getattr(supernet, "candidates", ()))
        if SKIP_OP not in candidates:
            raise ValueError(f"--model.regularizers: auxiliary_skip adds to the {SKIP_OP!r} candidate, which the "
                             f"supernet lacks (candidates: {', '.join(candidates)})")
        self.skip_index = candidates.index(SKIP_OP)

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Decay the coefficient."""
        self.beta = self.beta_start * (max_epochs - epoch) / max(max_epochs, 1)

    def transform(self, weights: ArchWeights, phase: str) -> ArchWeights:
        """``beta`` added to the ``skip_connect`` weight of every edge, in every phase."""
        if self.skip_index is None or self.beta == 0.0:
            return weights
        out: ArchWeights = {}
        for cell, w in weights.items():
            bonus = torch.zeros_like(w.ops)
            bonus[:, self.skip_index] = self.beta
            out[cell] = replace(w, ops=w.ops + bonus)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])


REGULARIZERS: Registry[type[ArchRegularizer]] = Registry("regularizer")
"""The regularizers by name (in a config: ``class_path: search.robust.<Class>``)."""
for _cls in (BetaDecay, RandomSmoothing, AuxiliarySkip):
    REGULARIZERS.register(_cls.name, _cls)
