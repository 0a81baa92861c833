"""RetrainModule: drop-path ramp, learning-rate schedules, auxiliary loss, metrics, checkpoint round trip."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.nn import functional as F

from nasdata import DigitsDataModule
from retrain.module import RetrainModule

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*", "ignore:.*self.log.*")



class Recorder(L.Callback):
    """Drop-path probability and learning rate seen by the first batch of each epoch."""

    def __init__(self) -> None:
        self.drop: list[float] = []
        self.lr: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: RetrainModule, batch: object, batch_idx: int) -> None:
        if batch_idx == 0:
            self.drop.append(module.net.drop_path_prob)
            self.lr.append(trainer.optimizers[0].param_groups[0]["lr"])


def _fit(tmp_path, epochs: int, **model_kwargs: object) -> tuple[L.Trainer, RetrainModule, Recorder]:
    L.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=8, subset=16)
    model = RetrainModule("DARTS_V2", num_classes=10, in_channels=1, image_size=8, channels=4, layers=3,
                          **model_kwargs)
    recorder = Recorder()
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, limit_train_batches=1, limit_val_batches=1,
                        limit_test_batches=1, gradient_clip_val=5.0, callbacks=[recorder], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    return trainer, model, recorder


def test_drop_path_ramp_cosine_schedule_and_metrics(tmp_path) -> None:
    trainer, model, rec = _fit(tmp_path, 4, drop_path_prob=0.2, lr=0.1, lr_min=0.0, top5=True)
    assert rec.drop == pytest.approx([0.0, 0.05, 0.1, 0.15])  # 0.2 * epoch / max_epochs
    assert rec.lr == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    fit_metrics = dict(trainer.callback_metrics)
    for key in ("train_loss_epoch", "train_acc", "val_loss", "val_acc", "val_acc_top5", "drop_path_prob"):
        assert key in fit_metrics, key
    assert fit_metrics["val_acc_top5"] >= fit_metrics["val_acc"]
    assert fit_metrics["drop_path_prob"] == pytest.approx(0.15)
    trainer.test(model, datamodule=trainer.datamodule, verbose=False)
    assert {"test_loss", "test_acc", "test_acc_top5"} <= set(trainer.callback_metrics)


def test_step_schedule(tmp_path) -> None:
    _, _, rec = _fit(tmp_path, 3, lr=0.1, lr_schedule="step", lr_gamma=0.97, drop_path_prob=0.0)
    assert rec.lr == pytest.approx([0.1, 0.097, 0.1 * 0.97 ** 2])
    assert rec.drop == [0.0, 0.0, 0.0]


def test_training_loss_adds_the_weighted_auxiliary_loss() -> None:
    torch.manual_seed(0)
    model = RetrainModule("DARTS_V2", num_classes=10, in_channels=1, image_size=8, channels=4, layers=3,
                          auxiliary=True, auxiliary_weight=0.4, drop_path_prob=0.0, label_smoothing=0.1)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    model.train()
    logits, aux = model(x)
    expected = (F.cross_entropy(logits, y, label_smoothing=0.1)
                + 0.4 * F.cross_entropy(aux, y, label_smoothing=0.1))
    torch.testing.assert_close(model.training_step((x, y), 0), expected)
    model.eval()
    assert model(x).shape == (6, 10)


def test_checkpoint_stores_the_genotype_text(tmp_path) -> None:
    trainer, model, _ = _fit(tmp_path, 1)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = RetrainModule.load_from_checkpoint(path)
    assert restored.hparams.genotype.startswith("Genotype(normal=")
    assert restored.genotype == model.genotype
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(restored.eval()(x), model.eval()(x))


def test_summary_reports_parameters_without_the_auxiliary_head() -> None:
    model = RetrainModule("NB201_BEST", num_classes=10, image_size=32, auxiliary=False)
    line = model.summary()
    assert "1.073M parameters" in line and "153.3M multiply-adds" in line and "\n" not in line


def test_module_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="at least 64x64"):
        RetrainModule("DARTS_V2", image_size=32, kind="imagenet", channels=4, layers=3)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        RetrainModule("DARTS_V2", num_classes=1)
    with pytest.raises(ValueError, match=r"drop_path_prob must be in \[0, 1\), got 1.5"):
        RetrainModule("DARTS_V2", channels=4, layers=3, drop_path_prob=1.5)
    with pytest.raises(ValueError, match="lr_schedule"):
        RetrainModule("DARTS_V2", channels=4, layers=3, lr_schedule="linear")
