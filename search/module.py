"""``SearchModule``: the one LightningModule of one-shot search. Each training step is an architecture step on
the validation batch, then a weight step on the training batch; the strategy object decides what both mean."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import SGD, Adam
from torch.optim.lr_scheduler import CosineAnnealingLR
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ops import Genotype
from search.checkpoint import load_search_state, save_search_state, set_rng_states
from search.checks import check_epochs, check_hyperparameters, check_supernet, check_trainer_strategy
from search.cost import CostObjective
from search.robust import ArchRegularizer
from search.selection import PerturbationSelection
from search.strategies import ArchStepContext, get_strategy, supernet_genotype
from supernet import ArchWeights

Batch = tuple[Tensor, Tensor]


class SearchModule(L.LightningModule):
    """One-shot architecture search of ``supernet`` with a search strategy (DARTS by default).

    Holds the supernet (trained by SGD with a cosine learning rate, stepped per epoch) and the strategy's
    architecture state in ``self.arch`` (trained by Adam). Expects training batches
    ``{"train": (x, y), "val": (x, y)}`` from two disjoint splits (a data module with ``search_split=True``)
    and validates on the architecture split. Everything -- supernet, architecture state, both optimizers,
    the scheduler and the strategy state -- is in the checkpoint, with the random-number generator states, so a
    run resumed from an end-of-epoch checkpoint continues exactly like the uninterrupted run.

    ``trainer.global_step`` counts optimizer steps: 2 per batch (architecture + weight), 1 during warm-up; mind
    it when setting ``max_steps`` or step-based checkpointing.

    Args:
        supernet: The weight-sharing network, called as ``supernet(x, weights)``; it needs ``cell_types``,
            ``num_edges``, ``num_ops``, ``candidates``, ``space``, ``search_space`` (an ``ops.SearchSpace``) and a
            linear ``classifier`` (its outputs are the classes the accuracies count; see
            ``supernet.DartsSearchNetwork``).
        strategy: Search strategy name (see ``search.strategies.list_strategies()``).
        strategy_args: Keyword arguments of the strategy, e.g. ``{order: 2}`` for 2nd-order DARTS.
        lr: Initial learning rate of the weights (SGD).
        lr_min: Final learning rate of the cosine schedule (reached at the last epoch).
        momentum: SGD momentum of the weights.
        weight_decay: Weight decay of the weights.
        grad_clip: Clip the weight gradients to this global norm (None: no clipping).
        arch_lr: Learning rate of the architecture parameters (Adam).
        arch_betas: Adam betas of the architecture parameters.
        arch_eps: Adam epsilon of the architecture parameters.
        arch_weight_decay: Weight decay of the architecture parameters.
        arch_start_epoch: Warm-up: no architecture steps before this (0-based) epoch; only weights train.
        regularizers: Regularizers and perturbations of the architecture (``search.robust``: beta-decay, the
            DARTS- auxiliary skip, SDARTS random smoothing); they compose with every alpha-based strategy.
        selection: Architecture selection by perturbation (``search.selection.PerturbationSelection``, DARTS-PT) as
            the final phase of the run; ``None``: the strategy's genotype rule.
        nesterov: Nesterov momentum for the weights (the GDAS authors' NAS-Bench-201 setting).
        weights_first: Take the weight step before the architecture step on each batch (the GDAS authors'
            NAS-Bench-201 loop) instead of after it (DARTS).
        clip_with_arch: Clip the weight step's gradients by the norm of the weights' and the architecture
            parameters' gradients together, as the GDAS authors' loop clips ``network.parameters()``.
    """

    def __init__(self, supernet: nn.Module, strategy: str = "darts", strategy_args: dict[str, Any] | None = None,
                 lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
                 grad_clip: float | None = 5.0, arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
                 arch_eps: float = 1e-8, arch_weight_decay: float = 1e-3, arch_start_epoch: int = 0,
                 regularizers: list[ArchRegularizer] | None = None, selection: PerturbationSelection | None = None,
                 nesterov: bool = False, weights_first: bool = False, clip_with_arch: bool = False,
                 cost: CostObjective | None = None) -> None:
        super().__init__()
        check_supernet(supernet)
        self.save_hyperparameters(ignore=["supernet", "regularizers", "selection", "cost"])
        check_hyperparameters(self.hparams)
        self.automatic_optimization = False
        self.supernet = supernet
        self.strategy = get_strategy(strategy, **(strategy_args or {}))
        self.arch = self.strategy.build_arch(supernet)
        self.regularizers = list(regularizers or [])
        for regularizer in self.regularizers:
            if not isinstance(regularizer, ArchRegularizer):
                raise ValueError(f"--model.regularizers: {type(regularizer).__name__} is not a search.robust regularizer")
            regularizer.check(supernet, self.arch, self.strategy)
        self.selection = selection
        if selection is not None:
            selection.check(supernet, self.arch, self.strategy)
        if cost is not None and not isinstance(cost, CostObjective):
            raise ValueError(f"--model.cost: {type(cost).__name__} is not a search.cost.CostObjective")
        self.cost = cost
        if cost is not None:
            cost.check(supernet, self.arch, self.strategy)
        num_classes = supernet.classifier.out_features
        if num_classes < 2:
            raise ValueError(f"the supernet has {num_classes} output class: a search needs at least 2 (every loss would "
                             "be 0 and the architecture would never move); does the data hold a single class?")
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss = MeanMetric()
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self._resume_rng: dict[str, Any] | None = None

    # ---- what the search found ----------------------------------------------------------------------------
    def genotype(self) -> Genotype:
        """The discrete architecture the current architecture state stands for (with a selection: the DARTS rule
        or NB201 argmax on the probabilities with the decisions taken so far; with a cost budget: brought within
        it by ``CostObjective.within_budget``)."""
        genotype = self.rule_genotype()
        return genotype if self.cost is None else self.cost.within_budget(genotype, self.probabilities())

    def rule_genotype(self) -> Genotype:
        """The genotype of the space's rule (or the selection's decisions), before any budget."""
        if self.selection is not None:
            return supernet_genotype(self.supernet, self.probabilities())
        return self.strategy.genotype(self.arch, self.supernet)

    def probabilities(self) -> dict[str, Tensor]:
        """Per cell type ``[num_edges, num_ops]`` op probabilities (detached; decided edges one-hot)."""
        probabilities = self.strategy.probabilities(self.arch)
        if self.selection is None:
            return probabilities
        return {cell: self.selection.project(cell, p) for cell, p in probabilities.items()}

    def forward(self, x: Tensor) -> Tensor:
        """Logits of ``x`` under the architecture weights used for evaluation."""
        return self.supernet(x, self.eval_weights())

    def eval_weights(self) -> ArchWeights:
        """The architecture weights the supernet is evaluated with (every transform applied)."""
        return self.transform(self.strategy.eval_weights(self.arch), "eval")

    def transform(self, weights: ArchWeights, phase: str) -> ArchWeights:
        """``weights`` after every regularizer's ``transform`` for ``phase`` (``arch``, ``weight`` or ``eval``)."""
        for regularizer in self.regularizers:
            weights = regularizer.transform(weights, phase)
        weights = weights if self.selection is None else self.selection.transform(weights, phase)
        if self.cost is not None and phase == "arch":
            self.cost.capture(weights)
        return weights

    def penalty(self) -> Tensor | None:
        """The sum of the regularizers' and the cost's penalties on the architecture state (``None`` if there is
        none)."""
        owners = [*self.regularizers, *([self.cost] if self.cost is not None else [])]
        terms = [t for t in (r.penalty(self.arch) for r in owners) if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    # ---- Lightning hooks ----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Fail early on a Trainer strategy this search strategy cannot run under, or too few epochs for the
        selection phase."""
        check_trainer_strategy(self.trainer.strategy, self.strategy)
        check_epochs(self.trainer.max_epochs, self.selection)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[CosineAnnealingLR]]:
        """SGD on ``supernet.parameters()`` with a per-epoch cosine schedule; Adam on ``arch.parameters()``."""
        hp = self.hparams
        epochs = self.trainer.max_epochs if self.trainer is not None else None
        if epochs is None or epochs < 1:
            raise ValueError(f"the cosine learning-rate schedule spans --trainer.max_epochs; set it (got {epochs})")
        weights = SGD(self.supernet.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                      nesterov=hp.nesterov)
        schedule = CosineAnnealingLR(weights, T_max=epochs, eta_min=hp.lr_min)
        arch_params = list(self.arch.parameters())
        if not arch_params:
            return [weights], [schedule]
        arch = Adam(arch_params, lr=hp.arch_lr, betas=tuple(hp.arch_betas), eps=hp.arch_eps,
                    weight_decay=hp.arch_weight_decay)
        return [weights, arch], [schedule]

    def on_fit_start(self) -> None:
        """Measure the cost model (with a cost objective); after a resume, put the random-number generators back in
        the state they had when the checkpoint was written. This is the last hook before Lightning draws the first
        epoch's data order, so a run resumed from an end-of-epoch checkpoint continues exactly like the
        uninterrupted run."""
        if self.cost is not None:
            self.build_cost()
        if self._resume_rng is not None:
            set_rng_states(self._resume_rng)
            self._resume_rng = None

    def build_cost(self) -> None:
        """Measure the cost model on this module's device, for the images of the data module (``in_channels``,
        ``image_size``) unless the CLI already measured it for the data's first batch."""
        assert self.cost is not None
        shape = self.cost.image_shape
        if shape is None:
            data = self.trainer.datamodule if self._trainer is not None else None
            size = getattr(data, "image_size", None) or self.cost.image_size
            if size is None:
                raise ValueError("--model.cost.image_size: the data module does not say its image size; set it")
            shape = (int(getattr(data, "in_channels", self.supernet.stem[0].in_channels)), int(size), int(size))
        self.cost.build(shape, self.device, self.reduce_mean, save=self.trainer.is_global_zero)

    def on_train_epoch_start(self) -> None:
        """Let the strategy update its schedules (e.g. a temperature)."""
        self.strategy.on_epoch_start(self.current_epoch, int(self.trainer.max_epochs))
        for regularizer in self.regularizers:
            regularizer.on_epoch_start(self.current_epoch, int(self.trainer.max_epochs))

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> Tensor:
        """Architecture step on ``batch["val"]``, then weight step on ``batch["train"]`` (the other way round with
        ``weights_first``); at the end of an epoch of the selection phase, a round of selection decisions."""
        train_batch, val_batch = _split_batch(batch)
        optimizers = self.optimizers()
        weight_opt, arch_opt = (optimizers[0], optimizers[1]) if isinstance(optimizers, list) else (optimizers, None)
        last_batch = batch_idx + 1 == self.trainer.num_training_batches
        if self.hparams.weights_first:
            loss = self._weight_step(weight_opt, train_batch)
            self._arch_step(weight_opt, arch_opt, train_batch, val_batch, last_batch)
        else:
            self._arch_step(weight_opt, arch_opt, train_batch, val_batch, last_batch)
            loss = self._weight_step(weight_opt, train_batch)
        if self.cost is not None and self.current_epoch >= self.hparams.arch_start_epoch:
            self.cost.update(self.rule_genotype())
            self.log("cost", self.cost.last_cost, on_step=True, on_epoch=True, batch_size=len(val_batch[1]))
            if self.cost.budget is not None:
                self.log("cost_multiplier", self.cost.multiplier, on_step=True, on_epoch=True,
                         batch_size=len(val_batch[1]))
        if self.selection is not None:
            self.selection.probe.add(val_batch)
            if last_batch:
                self._select()
        return loss

    def _arch_step(self, weight_opt: Any, arch_opt: Any, train_batch: Batch, val_batch: Batch,
                   last_batch: bool) -> None:
        """The strategy's architecture step (skipped during warm-up; never toggle requires_grad: DDP would fail)."""
        if self.current_epoch < self.hparams.arch_start_epoch:
            return
        context = ArchStepContext(
            supernet=self.supernet, arch=self.arch, optimizer=arch_opt, weight_optimizer=weight_opt.optimizer,
            train_batch=train_batch, val_batch=val_batch, criterion=F.cross_entropy,
            backward=self.manual_backward, reduce=self.reduce_mean, last_batch=last_batch,
            transform=lambda weights: self.transform(weights, "arch"), penalty=self.penalty)
        for name, value in self.strategy.arch_step(context).items():
            self.log(name, value, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(val_batch[1]))

    def _weight_step(self, weight_opt: Any, train_batch: Batch) -> Tensor:
        """One SGD step of the supernet weights on the training batch; returns the (detached) loss."""
        x, y = train_batch
        logits = self.supernet(x, self.transform(self.strategy.weights(self.arch), "weight"))
        loss = F.cross_entropy(logits, y)
        weight_opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip is not None:
            if self.hparams.clip_with_arch:
                nn.utils.clip_grad_norm_([*self.supernet.parameters(), *self.arch.parameters()],
                                         self.hparams.grad_clip)
            else:
                self.clip_gradients(weight_opt, gradient_clip_val=self.hparams.grad_clip,
                                    gradient_clip_algorithm="norm")
        weight_opt.step()

        self.train_acc.update(logits.detach(), y)
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=len(y))
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss.detach()

    def _select(self) -> None:
        """A round of perturbation-selection decisions on the epoch's last validation batches (every rank alike)."""
        assert self.selection is not None
        base = {cell: replace(w, ops=w.ops.detach()) for cell, w in self.eval_weights().items()}
        lines = self.selection.decide_round(
            self.current_epoch, int(self.trainer.max_epochs), base,
            self.selection.scorer(self.supernet, self.reduce_mean))
        if lines and self.trainer.is_global_zero:
            for line in lines:
                print(f"[selection, epoch {self.current_epoch}] {line}", flush=True)

    def on_train_epoch_end(self) -> None:
        """Step the cosine schedule (once per epoch, by hand: manual optimization)."""
        self.log("lr", self.lr_schedulers().get_last_lr()[0], on_epoch=True, sync_dist=True)
        self.lr_schedulers().step()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Loss and accuracy of the supernet on the architecture split (logged per epoch)."""
        x, y = batch
        logits = self(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.val_acc.update(logits, y)
        self.log("val_loss", self.val_loss, on_epoch=True, batch_size=len(y))
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the strategy's, regularizers' and selection's own state and the random-number generators."""
        save_search_state(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore them; the checkpoint must come from the same strategy and setup."""
        self._resume_rng = load_search_state(self, checkpoint)

    # ---- distributed helpers ------------------------------------------------------------------------------
    def reduce_mean(self, tensors: list[Tensor]) -> list[Tensor]:
        """All-reduce mean of ``tensors`` across processes in one call (identity on a single process)."""
        if self._trainer is None or self.trainer.world_size == 1 or not tensors:
            return tensors
        flat = torch.cat([t.reshape(-1) for t in tensors])
        flat = self.trainer.strategy.reduce(flat, reduce_op="mean")
        return [part.view_as(t) for part, t in zip(torch.split(flat, [t.numel() for t in tensors]), tensors)]

    def arch_fingerprint(self) -> float:
        """A float64 summary of the architecture parameters that differs when any of them differs
        (position-weighted sum); equal on every DDP rank when ranks are in sync."""
        flat = torch.cat([p.detach().double().reshape(-1) for p in self.arch.parameters()] or [torch.zeros(1)])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
        value = float((flat * weights.sqrt()).sum())
        return value if math.isfinite(value) else float("nan")


def _split_batch(batch: Any) -> tuple[Batch, Batch]:
    if not (isinstance(batch, dict) and {"train", "val"} <= set(batch)):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError("SearchModule needs training batches {'train': ..., 'val': ...} from a data module "
                         f"with search_split=True (--data.search_split true); got {got}")
    return batch["train"], batch["val"]
