"""Checkpoints hold the whole search state: a run stopped after k steps and resumed ends like an uninterrupted one."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nasdata import DigitsDataModule
from search.callbacks import SearchOutputs
from search.module import SearchModule
from supernet import DartsSearchNetwork


BATCHES = 3  # 96 images: 48 + 48 in the search split, 3 batches of 16 per epoch


def _module(order: int) -> SearchModule:
    L.seed_everything(0)
    net = DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, num_classes=10, in_channels=1)
    return SearchModule(net, strategy_args={"order": order}, arch_lr=3e-2)


def _fit(module: SearchModule, root, max_steps: int = -1, ckpt_path=None) -> tuple[L.Trainer, SearchOutputs]:
    outputs = SearchOutputs(pictures=False, summary=False, importance_batches=0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, max_steps=max_steps, logger=False, default_root_dir=root,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[outputs, ModelCheckpoint(dirpath=root / "ckpt", save_last=True,
                                                            save_on_train_epoch_end=True)])
    # augmentation (random crops) and shuffling on: the random-number state must be restored too
    trainer.fit(module, DigitsDataModule(batch_size=16, subset=96, search_split=True), ckpt_path=ckpt_path)
    return trainer, outputs


def _state(module: SearchModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory):
    """Per order: the uninterrupted run and a run stopped after k global steps (its checkpoint on disk)."""
    root = tmp_path_factory.mktemp("resume")
    runs = {}
    for order in (1, 2):
        full = _module(order)
        trainer, outputs = _fit(full, root / f"full{order}")
        stopped = _module(order)
        k = 2 * BATCHES  # global steps of one epoch: stop at the epoch boundary
        first, _ = _fit(stopped, root / f"part{order}", max_steps=k)
        runs[order] = dict(full=full, trainer=trainer, outputs=outputs, stopped=stopped, first=first, k=k,
                           ckpt=root / f"part{order}" / "ckpt" / "last.ckpt", root=root)
    return runs


@pytest.mark.parametrize("order", [1, 2])
def test_resume_matches_uninterrupted_run(stopped_runs, order):
    r = stopped_runs[order]
    full, trainer, outputs = r["full"], r["trainer"], r["outputs"]
    assert trainer.global_step == 2 * 2 * BATCHES  # epochs x batches x (architecture + weight step)
    assert r["first"].global_step == r["k"] and r["first"].current_epoch == 1
    checkpoint = torch.load(r["ckpt"], weights_only=False)
    assert {"search_strategy", "rng_states", "optimizer_states", "lr_schedulers"} <= set(checkpoint)
    assert len(checkpoint["optimizer_states"]) == 2
    assert any(k.startswith("arch.alphas.") for k in checkpoint["state_dict"])
    assert not torch.equal(r["stopped"].arch.alphas["normal"], full.arch.alphas["normal"])  # really stopped early

    resumed = _module(order)
    second, resumed_outputs = _fit(resumed, r["root"] / f"resumed{order}", ckpt_path=r["ckpt"])
    assert second.global_step == 2 * 2 * BATCHES
    expected, got = _state(full), _state(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert resumed.genotype() == full.genotype()
    # the architecture history came back with the checkpoint and was continued
    assert [h["epoch"] for h in resumed_outputs.history] == [0, 1]
    assert resumed_outputs.history == outputs.history
    lr = [group["lr"] for group in second.optimizers[0].param_groups]
    assert lr == [group["lr"] for group in trainer.optimizers[0].param_groups]


def test_resume_without_rng_restore_differs(stopped_runs, monkeypatch):
    """The comparison above can fail: without restoring the data-order random state the runs diverge."""
    r = stopped_runs[1]
    monkeypatch.setattr("search.module.set_rng_states", lambda states: None)
    resumed = _module(1)
    torch.manual_seed(123)
    _fit(resumed, r["root"] / "resumed_norng", ckpt_path=r["ckpt"])
    assert not torch.equal(r["full"].arch.alphas["normal"], resumed.arch.alphas["normal"])
