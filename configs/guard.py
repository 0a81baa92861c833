"""Stop a run the moment it diverges, and refuse checkpoints of runs that did.

``FiniteGuard`` (a Lightning callback, first in the Trainer's list) checks the training loss and the
architecture parameters after every step and every parameter and buffer at the end of every epoch -- before any
other callback writes a checkpoint, a genotype or a picture from that state -- and raises ``Diverged`` with one
line naming what went non-finite, where, the last finite checkpoint and the flag to change. The search and
retrain command lines print that line and exit with status 2.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor


class Diverged(RuntimeError):
    """A run stopped because its loss or its state stopped being finite."""


def first_non_finite(tensors: Iterable[tuple[str, Tensor]]) -> tuple[str, str] | None:
    """``(name, "nan" | "inf")`` of the first floating-point tensor holding a non-finite value, or ``None``."""
    for name, tensor in tensors:
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name, "nan" if bool(torch.isnan(tensor).any()) else "inf"
    return None


class FiniteGuard(Callback):
    """Raise ``Diverged`` when the training loss, the architecture parameters (``pl_module.arch``, each step) or
    any parameter or buffer (each epoch end) is non-finite.

    Args:
        hint: The flags to change, for the message (e.g. ``--model.lr or --model.arch_lr``).

    The per-step check is one ``isfinite`` over the loss and the architecture parameters (a few hundred numbers);
    the full scan runs once per epoch.
    """

    def __init__(self, hint: str) -> None:
        self.hint = hint

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        watched = [("the training loss", loss)] if torch.is_tensor(loss) else []
        arch = getattr(pl_module, "arch", None)
        if isinstance(arch, torch.nn.Module):
            watched += [(f"architecture parameter {n}", p) for n, p in arch.named_parameters()]
        bad = first_non_finite(watched)
        if bad is not None:
            self._stop(trainer, bad, f"epoch {trainer.current_epoch}, batch {batch_idx}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = [*pl_module.named_parameters(), *pl_module.named_buffers()]
        bad = first_non_finite(state)
        if bad is not None:
            self._stop(trainer, bad, f"the end of epoch {trainer.current_epoch}")

    def _stop(self, trainer: L.Trainer, bad: tuple[str, str], where: str) -> None:
        name, kind = bad
        kept = getattr(trainer.checkpoint_callback, "last_model_path", "") or ""
        last = f"last finite checkpoint: {kept}" if kept and Path(kept).is_file() else "no checkpoint was written"
        raise Diverged(f"the run diverged: {name} is {kind} at {where} (global step {trainer.global_step}); "
                       f"lower {self.hint}; nothing was written from the non-finite state; {last}")


def check_finite_checkpoint(checkpoint: dict[str, Any], path: str | Path, flag: str) -> None:
    """Raise one line if the checkpoint's ``state_dict`` holds a non-finite value (a diverged run wrote it)."""
    bad = first_non_finite(checkpoint.get("state_dict", {}).items())
    if bad is not None:
        raise ValueError(f"{flag} {path}: the checkpoint holds non-finite values ({bad[0]} is {bad[1]}); it was "
                         "written by a run that diverged: resume from an earlier checkpoint")
