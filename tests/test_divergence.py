"""A diverging run stops with one line and exit status 2, writes nothing from the non-finite state and names the
last finite checkpoint; checkpoints holding non-finite values are refused; every JSON file is strict."""
from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from configs.cli import read_checkpoint
from configs.guard import Diverged, FiniteGuard
from ops.jsonfile import write_json
from retrain.cli import main as retrain_main
from search.cli import main as search_main

SEARCH = ["--config", "quickstart.yaml", "--trainer.max_epochs", "2", "--data.subset", "64", "--data.batch_size", "16",
          "--model.supernet.channels", "4", "--model.supernet.layers", "3", "--model.supernet.steps", "2",
          "--model.supernet.multiplier", "2", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"]
RETRAIN = ["--config", "retrain_quick", "--model.channels", "4", "--model.layers", "3", "--data.subset", "16",
           "--data.batch_size", "8", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false", "--genotype", "DARTS_V2"]


@pytest.mark.parametrize("command, flags", [
    (search_main, ["--model.arch_lr", "1e38"]),
    (search_main, ["--model.lr", "1e30", "--model.grad_clip", "null"]),
    (retrain_main, ["--model.lr", "1e30", "--trainer.gradient_clip_val", "null"]),
])
def test_a_diverging_run_stops_with_one_line(command, flags, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert command(((SEARCH if command is search_main else RETRAIN) + flags)) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the run diverged:" in err[0] and ("is nan" in err[0] or "is inf" in err[0])
    assert ("--model.arch_lr" if command is search_main else "--model.lr") in err[0]
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert not written & {"genotype.json", "cell_normal.png", "alphas.png", "last.ckpt"}
    for path in tmp_path.rglob("*.json"):
        json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))


class _Diverges(L.LightningModule):
    """A linear model whose loss becomes NaN in epoch 1."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        return loss * math.nan if self.current_epoch == 1 else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_guard_names_the_last_finite_checkpoint(tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=-1)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[FiniteGuard("--model.lr"), checkpoints])
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    with pytest.raises(Diverged, match=r"the training loss is nan at epoch 1, batch 0 .* lower --model.lr") as err:
        trainer.fit(_Diverges(), data)
    assert f"last finite checkpoint: {tmp_path / 'last.ckpt'}" in str(err.value)
    kept = read_checkpoint(tmp_path / "last.ckpt")
    assert kept["epoch"] == 0 and all(torch.isfinite(v).all() for v in kept["state_dict"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]


def test_a_checkpoint_with_non_finite_values_is_refused(tmp_path):
    path = tmp_path / "nan.ckpt"
    torch.save({"state_dict": {"supernet.stem.0.weight": torch.tensor([1.0, math.nan])}}, path)
    with pytest.raises(ValueError, match=r"--resume .*nan.ckpt: the checkpoint holds non-finite values "
                                         r"\(supernet.stem.0.weight is nan\)"):
        read_checkpoint(path)


def test_json_is_strict(tmp_path):
    path = tmp_path / "alphas.json"
    with pytest.raises(ValueError, match="alphas.json: refusing to write non-strict JSON"):
        write_json(path, {"p": [0.5, math.nan]})
    assert not list(tmp_path.iterdir())
    write_json(path, {"p": [0.5, 0.25]})
    assert json.loads(path.read_text()) == {"p": [0.5, 0.25]}
