"""Two-process CPU DDP search runs: every rank must end with bit-identical alphas and one genotype."""
from __future__ import annotations

import hashlib

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from nasdata import DigitsDataModule
from search.module import SearchModule
from supernet import DartsSearchNetwork



class RankAgreement(Callback):
    """After every epoch compare each rank's alphas, supernet weights and genotype with the other rank's (gathered
    inside the workers) and report through ``callback_metrics``, which ``ddp_spawn`` hands back to the parent."""

    def on_train_start(self, trainer, pl_module):
        self.start = torch.cat([p.detach().reshape(-1).clone() for p in pl_module.arch.parameters()])

    def on_train_epoch_end(self, trainer, pl_module):
        alphas = torch.cat([p.detach().reshape(-1) for p in pl_module.arch.parameters()])
        weights = torch.cat([p.detach().reshape(-1) for p in pl_module.supernet.parameters()])
        text = pl_module.genotype().to_text()
        digest = torch.tensor(int(hashlib.sha256(text.encode()).hexdigest()[:15], 16), dtype=torch.int64)
        metrics, epoch = trainer.callback_metrics, trainer.current_epoch
        for name, value in (("alphas", alphas), ("weights", weights), ("genotype", digest)):
            gathered = pl_module.all_gather(value)
            assert gathered.shape[0] == 2
            metrics[f"{name}_equal_{epoch}"] = torch.tensor(float(torch.equal(gathered[0], gathered[1])))
            if name == "alphas":
                metrics[f"alpha_rank_diff_{epoch}"] = (gathered[0] - gathered[1]).abs().max().double()
        metrics[f"alphas_moved_{epoch}"] = (alphas - self.start).abs().max().double()
        metrics[f"order_{epoch}"] = torch.tensor(float(pl_module.strategy.order))
        metrics["world_size"] = torch.tensor(float(trainer.world_size))
        metrics["global_step"] = torch.tensor(float(trainer.global_step))
        fingerprint = torch.tensor(pl_module.arch_fingerprint(), dtype=torch.float64)
        metrics[f"fp_min_{epoch}"] = trainer.strategy.reduce(fingerprint.clone(), reduce_op="min")
        metrics[f"fp_max_{epoch}"] = trainer.strategy.reduce(fingerprint.clone(), reduce_op="max")


class OrderSchedule(SearchModule):
    """All code paths in one spawned run: 1st-order DARTS in epoch 0, 2nd order (finite-difference Hessian-vector
    product, central and one-sided on alternate steps) in epoch 1, 2nd order with the exact product in epoch 2, and
    in epoch 3 a negative control -- 2nd order with the gradients made outside ``manual_backward`` left
    unsynchronised."""

    def on_train_epoch_start(self):
        self.strategy.order = 1 if self.current_epoch == 0 else 2
        self.strategy.hvp = "exact" if self.current_epoch == 2 else "finite_difference"
        super().on_train_epoch_start()

    def on_train_batch_start(self, batch, batch_idx):
        if self.current_epoch == 1:
            self.strategy.hvp = ("finite_difference", "forward_difference")[batch_idx % 2]
        return super().on_train_batch_start(batch, batch_idx)

    def reduce_mean(self, tensors):
        return tensors if self.current_epoch == 3 else super().reduce_mean(tensors)


def _ddp_run(module_class: type[SearchModule], epochs: int) -> dict[str, float]:
    L.seed_everything(0)
    net = DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, num_classes=10, in_channels=1)
    module = module_class(net, strategy_args={"order": 2}, arch_lr=3e-2)
    # 64 images: 32 + 32 in the search split, 16 + 16 per rank, 2 batches of 8 per rank and epoch
    data = DigitsDataModule(batch_size=8, subset=64, search_split=True)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=epochs,
                        limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[RankAgreement()])
    trainer.fit(module, data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_ddp_ranks_hold_identical_alphas_and_genotype_first_and_second_order():
    m = _ddp_run(OrderSchedule, epochs=4)
    assert m["world_size"] == 2
    assert m["global_step"] == 16  # 4 epochs x 2 batches x (architecture step + weight step)
    for epoch, order in ((0, 1), (1, 2), (2, 2)):
        assert m[f"order_{epoch}"] == order
        assert m[f"alphas_moved_{epoch}"] > 1e-4  # the architecture did train
        assert m[f"alphas_equal_{epoch}"] == 1.0 and m[f"alpha_rank_diff_{epoch}"] == 0.0
        assert m[f"weights_equal_{epoch}"] == 1.0
        assert m[f"genotype_equal_{epoch}"] == 1.0
        assert m[f"fp_min_{epoch}"] == m[f"fp_max_{epoch}"]
    # the checks have teeth: without all-reducing the autograd.grad gradients (epoch 3) the ranks drift apart
    assert m["order_3"] == 2
    assert m["alphas_equal_3"] == 0.0 and m["alpha_rank_diff_3"] > 0.0
    assert m["fp_min_3"] != m["fp_max_3"]
