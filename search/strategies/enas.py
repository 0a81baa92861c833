"""ENAS (Pham et al., ICML 2018), micro search: an LSTM controller samples cells; the supernet trains on one
sampled cell per batch; the controller learns by REINFORCE from the sampled cell's validation accuracy."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ops import Genotype
from search.strategies.base import ArchStepContext, SearchStrategy, register_strategy
from search.strategies.controller import EnasController, reinforce_gradients
from search.strategies.probe import ProbeSet, SelectsCell, batch_statistics
from search.rng import seeded_generator
from supernet import ArchWeights


@register_strategy("enas")
class EnasStrategy(SelectsCell, SearchStrategy):
    """ENAS micro search with ``EnasController`` (see there for the decisions and the logit squashing).

    Every batch: the controller samples a cell and gets ``reward = accuracy of that cell on the validation batch
    (pooled over all ranks) + entropy_weight * entropy``; one REINFORCE step (moving-average baseline) with the
    architecture optimizer (Adam, beta1 = 0, eps = 1e-3 in the paper). Then the supernet trains on one freshly
    sampled cell. Child forwards for rewards use batch statistics and leave BatchNorm running statistics alone.

    At the last batch of every epoch ``derive_samples`` cells are sampled and compared on the epoch's last
    ``probe_batches`` validation batches with the shared weights; the best becomes the genotype (and what
    per-epoch validation evaluates). Before that the genotype is the controller's greedy decode.

    Args:
        lstm_size: LSTM units (the paper: 64).
        tanh_constant: Logits are ``tanh_constant * tanh(logits)`` (1.10); null switches the squashing off.
        op_tanh_reduce: Op logits use ``tanh_constant / op_tanh_reduce`` (2.5).
        temperature: Logits are divided by it before squashing (null: not used, as in micro search).
        entropy_weight: Weight of the sampled decisions' entropy in the reward (1e-4).
        baseline_decay: Decay of the moving-average reward baseline (0.99).
        derive_samples: Cells sampled to pick the genotype at the end of an epoch (ENAS derives from 10).
        probe_batches: Validation batches those cells are compared on.
        seed: Seed of the sampling generator (the same on every rank, so ranks sample the same cells).
    """

    unused_parameters = True

    def __init__(self, lstm_size: int = 64, tanh_constant: float | None = 1.10, op_tanh_reduce: float = 2.5,
                 temperature: float | None = None, entropy_weight: float = 1e-4, baseline_decay: float = 0.99,
                 derive_samples: int = 10, probe_batches: int = 4, seed: int = 0) -> None:
        if entropy_weight < 0 or not 0 <= baseline_decay < 1 or derive_samples < 1:
            raise ValueError("ENAS needs entropy_weight >= 0, 0 <= baseline_decay < 1 and derive_samples >= 1 "
                             f"(--model.strategy_args), got {entropy_weight}, {baseline_decay}, {derive_samples}")
        self.controller_args: dict[str, Any] = {"lstm_size": lstm_size, "tanh_constant": tanh_constant,
                                                "op_tanh_reduce": op_tanh_reduce, "temperature": temperature}
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.derive_samples = derive_samples
        self.probe = ProbeSet(probe_batches)
        self.generator = seeded_generator(seed)
        self.selected: Genotype | None = None
        self.selected_score: float | None = None

    def build_arch(self, supernet: nn.Module) -> EnasController:
        """The LSTM controller for the supernet's space."""
        supernet.search_space.check_single_paths("ENAS")
        return EnasController.for_supernet(supernet, **self.controller_args)

    def weights(self, arch: nn.Module) -> ArchWeights:
        """One cell sampled from the controller, as a single path."""
        with torch.no_grad():
            return arch.path(arch(generator=self.generator).decisions)

    def eval_weights(self, arch: nn.Module) -> ArchWeights:
        """The selected cell (the greedy decode before the first selection); consumes no randomness."""
        return arch.genotype_path(self.genotype(arch, None))

    def arch_step(self, ctx: ArchStepContext) -> dict[str, Tensor]:
        """One REINFORCE step of the controller; at the end of the epoch, also select the genotype."""
        if ctx.optimizer is None:
            raise RuntimeError("ENAS needs an architecture optimizer for the controller")
        controller, (x, y) = ctx.arch, ctx.val_batch
        self.probe.add(ctx.val_batch)
        sample = controller(generator=self.generator)
        with batch_statistics(ctx.supernet):
            correct = (ctx.supernet(x, controller.path(sample.decisions)).argmax(dim=1) == y).sum().double()
        total = torch.full((1,), float(len(y)), dtype=torch.float64, device=correct.device)
        correct, total = ctx.reduce([correct.reshape(1), total])
        grads, metrics = reinforce_gradients(controller, sample, (correct / total).squeeze(0),
                                             self.entropy_weight, self.baseline_decay)
        grads = ctx.reduce(grads)  # equal on every rank already; the mean keeps them bit-identical regardless
        ctx.optimizer.zero_grad()
        for param, grad in zip(controller.parameters(), grads):
            param.grad = grad.to(param.dtype)
        ctx.optimizer.step()
        if ctx.last_batch:
            metrics["selected_acc"] = torch.tensor(self.select(ctx), device=correct.device)
        return metrics

    def select(self, ctx: ArchStepContext) -> float:
        """Sample ``derive_samples`` cells, keep the most accurate on the probe batches; return its accuracy."""
        controller = ctx.arch
        with torch.no_grad():
            cells = [controller.genotype(controller(generator=self.generator).decisions)
                     for _ in range(self.derive_samples)]
        scores = self.probe.accuracies(ctx.supernet, [controller.genotype_path(g) for g in cells], ctx.reduce)
        best = max(range(len(cells)), key=lambda i: (scores[i], -i))
        self.selected, self.selected_score = cells[best], scores[best]
        return scores[best]

    def probabilities(self, arch: nn.Module) -> dict[str, Tensor]:
        """The controller's op probabilities per edge (``EnasController.op_probabilities``)."""
        return arch.op_probabilities()

    def genotype(self, arch: nn.Module, supernet: nn.Module | None) -> Genotype:
        """The selected cell, or the controller's greedy decode before the first selection."""
        if self.selected is not None:
            return self.selected
        with torch.no_grad():
            return arch.genotype(arch().decisions)

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Cells are compared on batches of the current epoch only."""
        self.probe.clear()
