"""``SearchModule``: the one LightningModule of one-shot search. Each training step is an architecture step on
the validation batch, then a weight step on the training batch; the strategy object decides what both mean."""
from __future__ import annotations

import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.strategies import Strategy as TrainerStrategy
from torch import Tensor, nn
from torch.optim import SGD, Adam
from torch.optim.lr_scheduler import CosineAnnealingLR
from torchmetrics import MeanMetric

from ops import Genotype
from search.strategies import ArchStepContext, SearchStrategy, get_strategy

Batch = tuple[Tensor, Tensor]


def check_trainer_strategy(trainer_strategy: TrainerStrategy, strategy: SearchStrategy) -> None:
    """Raise a one-line ``ValueError`` if the Trainer's strategy cannot run ``strategy``.

    Supported: one device, or DDP (any start method). Strategies that leave supernet parameters unused in a
    step (sampling) need DDP's ``find_unused_parameters``.
    """
    if isinstance(trainer_strategy, DDPStrategy):
        find_unused = bool(getattr(trainer_strategy, "_ddp_kwargs", {}).get("find_unused_parameters", False))
        if strategy.unused_parameters and not find_unused:
            raise ValueError(f"search strategy {strategy.name!r} runs only part of the supernet per step; under DDP "
                             "use --trainer.strategy ddp_find_unused_parameters_true")
        return
    if not isinstance(trainer_strategy, SingleDeviceStrategy):
        raise ValueError(f"SearchModule runs on one device or with DDP (--trainer.strategy ddp); got "
                         f"{type(trainer_strategy).__name__}")


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
            ``num_edges``, ``num_ops``, ``candidates`` and ``space`` (see ``supernet.DartsSearchNetwork``).
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
    """

    def __init__(self, supernet: nn.Module, strategy: str = "darts", strategy_args: dict[str, Any] | None = None,
                 lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
                 grad_clip: float | None = 5.0, arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
                 arch_eps: float = 1e-8, arch_weight_decay: float = 1e-3, arch_start_epoch: int = 0) -> None:
        super().__init__()
        checks = [
            (lr > 0, f"--model.lr must be > 0, got {lr}"),
            (0 <= lr_min <= lr, f"--model.lr_min must be between 0 and --model.lr={lr}, got {lr_min}"),
            (momentum >= 0, f"--model.momentum must be >= 0, got {momentum}"),
            (weight_decay >= 0, f"--model.weight_decay must be >= 0, got {weight_decay}"),
            (grad_clip is None or grad_clip > 0, f"--model.grad_clip must be > 0 or null, got {grad_clip}"),
            (arch_lr > 0, f"--model.arch_lr must be > 0, got {arch_lr}"),
            (len(arch_betas) == 2 and all(0 <= b < 1 for b in arch_betas),
             f"--model.arch_betas must be two numbers in [0, 1), got {arch_betas}"),
            (arch_weight_decay >= 0, f"--model.arch_weight_decay must be >= 0, got {arch_weight_decay}"),
            (arch_start_epoch >= 0, f"--model.arch_start_epoch must be >= 0, got {arch_start_epoch}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        missing = [a for a in ("cell_types", "num_edges", "num_ops", "candidates", "space") if not hasattr(supernet, a)]
        if missing:
            raise ValueError(f"supernet {type(supernet).__name__} lacks {', '.join(missing)}; use a search network "
                             "from the supernet package")
        self.save_hyperparameters(ignore=["supernet"])
        self.automatic_optimization = False
        self.supernet = supernet
        self.strategy = get_strategy(strategy, **(strategy_args or {}))
        self.arch = self.strategy.build_arch(supernet)
        self.val_loss = MeanMetric()
        self.val_acc = MeanMetric()
        self._resume_rng: dict[str, Any] | None = None

    # ---- what the search found ----------------------------------------------------------------------------
    def genotype(self) -> Genotype:
        """The discrete architecture the current architecture state stands for."""
        return self.strategy.genotype(self.arch, self.supernet)

    def probabilities(self) -> dict[str, Tensor]:
        """Per cell type ``[num_edges, num_ops]`` op probabilities (detached)."""
        return self.strategy.probabilities(self.arch)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of ``x`` under the architecture weights used for evaluation."""
        return self.supernet(x, self.strategy.eval_weights(self.arch))

    # ---- Lightning hooks ----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Fail early on a Trainer strategy this search strategy cannot run under."""
        check_trainer_strategy(self.trainer.strategy, self.strategy)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[CosineAnnealingLR]]:
        """SGD on ``supernet.parameters()`` with a per-epoch cosine schedule; Adam on ``arch.parameters()``."""
        hp = self.hparams
        epochs = self.trainer.max_epochs if self.trainer is not None else None
        if epochs is None or epochs < 1:
            raise ValueError(f"the cosine learning-rate schedule spans --trainer.max_epochs; set it (got {epochs})")
        weights = SGD(self.supernet.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        schedule = CosineAnnealingLR(weights, T_max=epochs, eta_min=hp.lr_min)
        arch_params = list(self.arch.parameters())
        if not arch_params:
            return [weights], [schedule]
        arch = Adam(arch_params, lr=hp.arch_lr, betas=tuple(hp.arch_betas), eps=hp.arch_eps,
                    weight_decay=hp.arch_weight_decay)
        return [weights, arch], [schedule]

    def on_fit_start(self) -> None:
        """After a resume: put the random-number generators back in the state they had when the checkpoint was
        written. This is the last hook before Lightning draws the first epoch's data order, so a run resumed from
        an end-of-epoch checkpoint continues exactly like the uninterrupted run."""
        if self._resume_rng is not None:
            set_rng_states(self._resume_rng)
            self._resume_rng = None

    def on_train_epoch_start(self) -> None:
        """Let the strategy update its schedules (e.g. a temperature)."""
        self.strategy.on_epoch_start(self.current_epoch, int(self.trainer.max_epochs))

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> Tensor:
        """Architecture step on ``batch["val"]``, then weight step on ``batch["train"]``."""
        train_batch, val_batch = _split_batch(batch)
        optimizers = self.optimizers()
        weight_opt, arch_opt = (optimizers[0], optimizers[1]) if isinstance(optimizers, list) else (optimizers, None)

        # 1. architecture step (skipped during warm-up; never toggle requires_grad: DDP would fail)
        if self.current_epoch >= self.hparams.arch_start_epoch:
            context = ArchStepContext(
                supernet=self.supernet, arch=self.arch, optimizer=arch_opt, weight_optimizer=weight_opt.optimizer,
                train_batch=train_batch, val_batch=val_batch, criterion=F.cross_entropy,
                backward=self.manual_backward, reduce=self.reduce_mean,
                last_batch=batch_idx + 1 == self.trainer.num_training_batches)
            for name, value in self.strategy.arch_step(context).items():
                self.log(name, value, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(val_batch[1]))

        # 2. weight step
        x, y = train_batch
        logits = self.supernet(x, self.strategy.weights(self.arch))
        loss = F.cross_entropy(logits, y)
        weight_opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip is not None:
            self.clip_gradients(weight_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        weight_opt.step()

        accuracy = (logits.detach().argmax(dim=1) == y).float().mean()
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=len(y))
        self.log("train_acc", accuracy, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y))
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        """Step the cosine schedule (once per epoch, by hand: manual optimization)."""
        self.log("lr", self.lr_schedulers().get_last_lr()[0], on_epoch=True, sync_dist=True)
        self.lr_schedulers().step()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Loss and accuracy of the supernet on the architecture split (logged per epoch)."""
        x, y = batch
        logits = self(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.val_acc.update((logits.argmax(dim=1) == y).float())
        self.log("val_loss", self.val_loss, on_epoch=True, batch_size=len(y))
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the strategy's own state and the random-number generators next to the module state."""
        checkpoint["search_strategy"] = {"name": self.strategy.name, "state": self.strategy.state_dict()}
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the strategy's own state; the checkpoint must come from the same strategy."""
        saved = checkpoint.get("search_strategy")
        if saved is None:
            raise ValueError("the checkpoint holds no search-strategy state; it was not written by SearchModule")
        if saved["name"] != self.strategy.name:
            raise ValueError(f"the checkpoint was written by strategy {saved['name']!r}, this run uses "
                             f"{self.strategy.name!r}")
        self.strategy.load_state_dict(saved["state"])
        self._resume_rng = checkpoint.get("rng_states")

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


def rng_states() -> dict[str, Any]:
    """The global random-number generator states: Python, NumPy, torch CPU and (if present) CUDA."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, gauss),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` returned (CUDA only when the device count matches)."""
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _split_batch(batch: Any) -> tuple[Batch, Batch]:
    if not (isinstance(batch, dict) and {"train", "val"} <= set(batch)):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError("SearchModule needs training batches {'train': ..., 'val': ...} from a data module "
                         f"with search_split=True (--data.search_split true); got {got}")
    return batch["train"], batch["val"]
