"""``RetrainModule``: train a found cell from scratch (the DARTS evaluation recipe) with Lightning.

Loss = cross-entropy (optionally label-smoothed) + ``auxiliary_weight`` x the auxiliary head's loss; the
drop-path probability ramps linearly, ``drop_path_prob * epoch / max_epochs``, set at each epoch start; SGD with
a cosine (CIFAR) or per-epoch step (ImageNet) schedule. Gradient clipping is the Trainer's
``gradient_clip_val``. Metrics are torchmetrics (synchronised across DDP ranks by themselves).
"""
from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ops import Genotype, NB201Genotype
from retrain.build import NETWORK_KINDS, build_network, count_macs, count_parameters, resolve_genotype


class RetrainModule(L.LightningModule):
    """Train the network of one genotype.

    Args:
        genotype: the cell: a ``genotype.json`` path, a zoo name (``DARTS_V2``) or genotype text. It is stored
            in the checkpoint as text, so a checkpoint does not depend on the file.
        num_classes: classifier outputs (linked from the data module by the CLI).
        in_channels: image channels (linked from the data module by the CLI).
        image_size: image side in pixels (linked from the data module; used for the FLOPs count and checks).
        kind: ``cifar`` or ``imagenet`` DARTS network, or ``nb201`` (an NB201 genotype with ``cifar`` builds it too).
        channels: initial channels; ``None`` = the published value of the network kind.
        layers: number of cells (NB201: cells per stage); ``None`` = the published value.
        auxiliary: use the auxiliary head after cell ``2 * layers // 3``.
        auxiliary_weight: weight of the auxiliary loss.
        drop_path_prob: final drop-path probability; it grows linearly from 0 over the epochs.
        lr: initial SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (on all parameters, as in DARTS).
        lr_schedule: ``cosine`` (annealed to ``lr_min`` over ``max_epochs``) or ``step`` (x ``lr_gamma`` per epoch).
        lr_min: final learning rate of the cosine schedule.
        lr_gamma: per-epoch decay of the step schedule.
        label_smoothing: label smoothing of the training loss (0.1 in the DARTS ImageNet recipe).
        top5: also report top-5 accuracy.
    """

    def __init__(self, genotype: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 kind: Literal["cifar", "imagenet", "nb201"] = "cifar", channels: int | None = None,
                 layers: int | None = None, auxiliary: bool = True, auxiliary_weight: float = 0.4,
                 drop_path_prob: float = 0.2, lr: float = 0.025, momentum: float = 0.9, weight_decay: float = 3e-4,
                 lr_schedule: Literal["cosine", "step"] = "cosine", lr_min: float = 0.0, lr_gamma: float = 0.97,
                 label_smoothing: float = 0.0, top5: bool = False) -> None:
        super().__init__()
        geno: Genotype = resolve_genotype(genotype)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes} (the CLI takes it from the data module: "
                             "its labels must span at least 2 classes)")
        smallest = NETWORK_KINDS.get(kind).min_image_size if kind in NETWORK_KINDS else 1
        if image_size < smallest:
            raise ValueError(f"the {kind} network needs images of at least {smallest}x{smallest} (it down-samples "
                             f"32x), the data gives {image_size}x{image_size}: use kind cifar (retrain_cifar.yaml) "
                             "for small images or a larger --data.image_size")
        if isinstance(geno, NB201Genotype) and auxiliary:
            raise ValueError("the NB201 network has no auxiliary head: set auxiliary false (--model.auxiliary false)")
        if lr_schedule not in ("cosine", "step"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'step', got {lr_schedule!r}")
        for name, value, ok in (("lr", lr, lr > 0), ("momentum", momentum, momentum >= 0),
                                ("weight_decay", weight_decay, weight_decay >= 0), ("lr_min", lr_min, 0 <= lr_min <= lr),
                                ("lr_gamma", lr_gamma, 0 < lr_gamma <= 1)):
            if not ok:
                limit = {"lr": "> 0", "lr_min": f"in [0, lr={lr}]", "lr_gamma": "in (0, 1]"}.get(name, ">= 0")
                raise ValueError(f"--model.{name} must be {limit}, got {value}")
        for name, value, ok in (("auxiliary_weight", auxiliary_weight, auxiliary_weight >= 0),
                                ("drop_path_prob", drop_path_prob, 0.0 <= drop_path_prob < 1.0),
                                ("label_smoothing", label_smoothing, 0.0 <= label_smoothing < 1.0)):
            if not ok:
                raise ValueError(f"{name} must be {'>= 0' if name == 'auxiliary_weight' else 'in [0, 1)'}, got {value}")
        self.net = build_network(geno, num_classes, channels, layers, auxiliary, 0.0, kind, in_channels)
        self.save_hyperparameters()
        self.hparams["genotype"] = geno.to_text()
        self.genotype = geno
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.top5 = top5 and num_classes >= 5
        self.metrics = nn.ModuleDict({
            f"{stage}_{name}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
            for stage in ("train", "val", "test") for name, k in (("acc", 1), ("acc_top5", 5))
            if k == 1 or self.top5})

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The network's output (``(logits, aux_logits)`` in training with the auxiliary head)."""
        return self.net(x)

    def current_drop_path_prob(self) -> float:
        """``drop_path_prob * epoch / max_epochs`` (the full value when the Trainer has no epoch limit)."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if not max_epochs or max_epochs < 1:
            return float(self.hparams.drop_path_prob)
        return float(self.hparams.drop_path_prob) * self.current_epoch / max_epochs

    def summary(self) -> str:
        """One line: parameters (auxiliary head excluded) and multiply-adds of one image."""
        hp = self.hparams
        params = count_parameters(self.net)
        macs = count_macs(self.net, hp.image_size, hp.in_channels)
        return (f"network {type(self.net).__name__}: {params / 1e6:.3f}M parameters (auxiliary head excluded), "
                f"{macs / 1e6:.1f}M multiply-adds per {hp.in_channels}x{hp.image_size}x{hp.image_size} image; "
                f"genotype {self.genotype.to_text()}")

    def on_fit_start(self) -> None:
        """Print the size of the network (rank 0 only)."""
        if self.trainer.is_global_zero:
            self.print(self.summary())

    def on_train_epoch_start(self) -> None:
        """Ramp the drop-path probability linearly over the epochs (as DARTS does)."""
        self.net.drop_path_prob = self.current_drop_path_prob()
        self.log("drop_path_prob", self.net.drop_path_prob, on_step=False, on_epoch=True, sync_dist=True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Main loss plus the weighted auxiliary loss."""
        x, y = batch
        out = self.net(x)
        logits, aux_logits = out if isinstance(out, tuple) else (out, None)
        loss = self.criterion(logits, y)
        if aux_logits is not None:
            loss = loss + self.hparams.auxiliary_weight * self.criterion(aux_logits, y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=y.shape[0])
        self._log_accuracy("train", logits, y)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Loss and accuracy on the evaluation set."""
        self._evaluate("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Loss and accuracy on the test set."""
        self._evaluate("test", batch)

    def _evaluate(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=y.shape[0])
        self._log_accuracy(stage, logits, y)

    def _log_accuracy(self, stage: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        for name in ("acc", "acc_top5"):
            key = f"{stage}_{name}"
            if key in self.metrics:
                metric = self.metrics[key]
                metric(logits.detach(), y)
                self.log(key, metric, on_step=False, on_epoch=True, prog_bar=name == "acc", batch_size=y.shape[0])

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD with the cosine or per-epoch step schedule (stepped once per epoch)."""
        hp = self.hparams
        optimizer = torch.optim.SGD(self.net.parameters(), lr=hp.lr, momentum=hp.momentum,
                                    weight_decay=hp.weight_decay)
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if hp.lr_schedule == "cosine":
            max_epochs = self.trainer.max_epochs if self._trainer is not None else None
            if not max_epochs or max_epochs < 1:
                raise ValueError("the cosine schedule needs --trainer.max_epochs >= 1")
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=hp.lr_min)
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=hp.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
