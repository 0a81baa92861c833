"""SearchModule and the strategy registry on one process: warm-up, schedule, checkpoint contents, clear errors."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from nasdata import DigitsDataModule
from search.checks import check_trainer_strategy
from search.module import SearchModule
from search.strategies import DartsStrategy, get_strategy, list_strategies
from search.strategies.darts import sgd_settings
from supernet import DartsSearchNetwork, NB201SearchNetwork



def _net(**kw) -> DartsSearchNetwork:
    return DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, num_classes=10, in_channels=1, **kw)


def _trainer(epochs: int, **kw) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def _data(subset: int = 64) -> DigitsDataModule:
    return DigitsDataModule(batch_size=16, subset=subset, search_split=True)


def test_registry_errors_name_the_valid_choices():
    assert "darts" in list_strategies()
    with pytest.raises(ValueError, match=r"unknown strategy 'nope'.*valid: .*darts") as info:
        get_strategy("nope")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"no argument 'ordr'.*valid: order, init_scale, r"):
        get_strategy("darts", ordr=2)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        get_strategy("darts", order=3)
    assert get_strategy("darts", order=2).order == 2


def test_warm_up_skips_the_architecture_step_and_schedule_is_cosine():
    L.seed_everything(0)
    module = SearchModule(_net(), arch_start_epoch=1, lr=0.1, lr_min=0.01)
    start = {k: v.clone() for k, v in module.arch.state_dict().items()}
    weights = module.supernet.classifier.weight.detach().clone()
    trainer = _trainer(1)
    trainer.fit(module, _data())
    assert trainer.global_step == 2  # 2 batches, weight steps only
    assert all(torch.equal(start[k], v) for k, v in module.arch.state_dict().items())
    assert not torch.equal(weights, module.supernet.classifier.weight)
    assert "val_acc" in trainer.callback_metrics and "arch_loss" not in trainer.callback_metrics

    module = SearchModule(_net(), lr=0.1, lr_min=0.01)
    trainer = _trainer(3)
    trainer.fit(module, _data())
    assert trainer.global_step == 3 * 2 * 2
    assert module.lr_schedulers().last_epoch == 3
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert math.isclose(lr, 0.01)  # eta_min reached after max_epochs steps of the schedule
    epoch_lr = float(trainer.callback_metrics["lr"])  # the lr used in the last epoch
    assert math.isclose(epoch_lr, 0.01 + 0.09 * (1 + math.cos(math.pi * 2 / 3)) / 2, rel_tol=1e-6)


def test_checkpoint_holds_the_whole_search_state(tmp_path):
    L.seed_everything(0)
    module = SearchModule(_net(), strategy_args={"order": 2})
    trainer = _trainer(1, default_root_dir=tmp_path)
    trainer.fit(module, _data())
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    ckpt = torch.load(tmp_path / "x.ckpt", weights_only=False)
    assert ckpt["search_strategy"]["name"] == "darts" and "rng_states" in ckpt
    adam, sgd = ckpt["optimizer_states"][1], ckpt["optimizer_states"][0]
    assert len(adam["state"]) == 2 and all("exp_avg" in s for s in adam["state"].values())
    assert all("momentum_buffer" in s for s in sgd["state"].values())
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 1
    assert torch.equal(ckpt["state_dict"]["arch.alphas.normal"], module.arch.alphas["normal"])
    assert ckpt["hyper_parameters"]["strategy_args"] == {"order": 2}


def test_nb201_supernet_runs_with_darts_strategy():
    L.seed_everything(0)
    net = NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=10, in_channels=1)
    module = SearchModule(net, strategy_args={"order": 2})
    _trainer(1, limit_train_batches=1, limit_val_batches=1).fit(module, _data())
    assert module.genotype().space == "nb201" and len(module.genotype().edges) == 6


def test_module_rejects_batches_without_a_search_split():
    module = SearchModule(_net())
    trainer = _trainer(1)
    data = DigitsDataModule(batch_size=16, subset=64, search_split=False)
    with pytest.raises(ValueError, match="search_split"):
        trainer.fit(module, data)


class _Sampling(DartsStrategy):
    unused_parameters = True
    name = "sampling-test"


def test_sampling_strategies_need_find_unused_parameters_under_ddp():
    check_trainer_strategy(SingleDeviceStrategy(torch.device("cpu")), _Sampling())
    check_trainer_strategy(DDPStrategy(), DartsStrategy())
    check_trainer_strategy(DDPStrategy(find_unused_parameters=True), _Sampling())
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true") as info:
        check_trainer_strategy(DDPStrategy(), _Sampling())
    assert "\n" not in str(info.value)


def test_second_order_needs_plain_sgd():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert sgd_settings(torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4)) == (0.1, 0.9, 1e-4)
    with pytest.raises(ValueError, match="SGD"):
        sgd_settings(torch.optim.Adam(p))
    with pytest.raises(ValueError, match="Nesterov"):
        sgd_settings(torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))


@pytest.mark.parametrize("kwargs,needle", [({"lr": 0}, "--model.lr"), ({"lr_min": 1.0}, "--model.lr_min"),
                                           ({"arch_start_epoch": -1}, "--model.arch_start_epoch"),
                                           ({"grad_clip": 0}, "--model.grad_clip")])
def test_bad_hyperparameters_name_the_flag(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SearchModule(_net(), **kwargs)
