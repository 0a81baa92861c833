"""What ``SearchModule`` refuses before it trains: bad hyperparameters, a supernet it cannot drive, a Trainer
strategy the search strategy cannot run under, too few epochs for the selection phase. Each raises one line."""
from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.strategies import Strategy as TrainerStrategy
from torch import nn

from search.strategies import SearchStrategy

SUPERNET_ATTRIBUTES = ("cell_types", "num_edges", "num_ops", "candidates", "space", "search_space", "classifier")
"""What ``SearchModule`` reads from a supernet besides calling it."""


def check_hyperparameters(hp: dict[str, Any]) -> None:
    """Raise a one-line ``ValueError`` naming the flag of the first out-of-range ``SearchModule`` argument."""
    lr, betas = hp["lr"], hp["arch_betas"]
    checks = [
        (lr > 0, f"--model.lr must be > 0, got {lr}"),
        (0 <= hp["lr_min"] <= lr, f"--model.lr_min must be between 0 and --model.lr={lr}, got {hp['lr_min']}"),
        (hp["momentum"] >= 0, f"--model.momentum must be >= 0, got {hp['momentum']}"),
        (hp["weight_decay"] >= 0, f"--model.weight_decay must be >= 0, got {hp['weight_decay']}"),
        (hp["grad_clip"] is None or hp["grad_clip"] > 0, f"--model.grad_clip must be > 0 or null, got {hp['grad_clip']}"),
        (hp["arch_lr"] > 0, f"--model.arch_lr must be > 0, got {hp['arch_lr']}"),
        (len(betas) == 2 and all(0 <= b < 1 for b in betas),
         f"--model.arch_betas must be two numbers in [0, 1), got {betas}"),
        (hp["arch_weight_decay"] >= 0, f"--model.arch_weight_decay must be >= 0, got {hp['arch_weight_decay']}"),
        (hp["arch_start_epoch"] >= 0, f"--model.arch_start_epoch must be >= 0, got {hp['arch_start_epoch']}"),
        (not hp["nesterov"] or hp["momentum"] > 0, "--model.nesterov needs --model.momentum > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def check_supernet(supernet: nn.Module) -> None:
    """Raise if ``supernet`` lacks what ``SearchModule`` reads (``SUPERNET_ATTRIBUTES``)."""
    missing = [a for a in SUPERNET_ATTRIBUTES if not hasattr(supernet, a)]
    if missing:
        raise ValueError(f"supernet {type(supernet).__name__} lacks {', '.join(missing)}; use a search network "
                         "from the supernet package")


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


def check_epochs(max_epochs: int | None, selection: Any) -> None:
    """Raise if a perturbation selection (``tune_epochs + 1`` final epochs) does not fit in ``max_epochs``."""
    if selection is not None and (max_epochs is None or max_epochs <= selection.tune_epochs):
        raise ValueError(f"--model.selection.tune_epochs {selection.tune_epochs} needs --trainer.max_epochs "
                         f"> {selection.tune_epochs} (the selection takes the last tune_epochs + 1 epochs)")
