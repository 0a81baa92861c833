"""NAS-Bench-201 one-shot search end to end: ``SearchModule`` + Lightning ``Trainer`` on a tiny NB201 supernet,
every registered search strategy on that supernet, and ``python -m search.darts --config nb201_darts.yaml``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from nasdata import DigitsDataModule
from ops import Genotype, NB201Genotype, search_space
from configs import resolve_config, shipped_configs
from search.module import SearchModule
from search.strategies import list_strategies
from supernet import NB201SearchNetwork

NB201_OPS = search_space("nb201")
REPO = Path(__file__).resolve().parents[1]

# Cheap settings per strategy (the defaults of SPOS/ENAS score hundreds of cells at the end of an epoch) and
# supernet options a strategy requires (PC-DARTS refuses a supernet without partial channels).
STRATEGY_ARGS: dict[str, dict[str, Any]] = {
    "spos": {"evaluations": 4, "epoch_evaluations": 0, "population_size": 2, "sample_size": 1, "probe_batches": 1},
    "enas": {"derive_samples": 2, "probe_batches": 1},
}
SUPERNET_ARGS: dict[str, dict[str, Any]] = {"pcdarts": {"partial_channels": 2}}


def _tiny_supernet(**kwargs: Any) -> NB201SearchNetwork:
    """C=4, one cell per stage, for the 8x8 grey digits."""
    return NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=10, in_channels=1, **kwargs)


def _fit(module: SearchModule, batches: int, epochs: int = 1) -> L.Trainer:
    """Search ``batches`` batches per epoch on the digits (search split, batch 8) on the CPU."""
    data = DigitsDataModule(batch_size=8, subset=64, search_split=True, seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, limit_train_batches=batches,
                        limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    return trainer


def _argmax_cell(alpha: torch.Tensor) -> NB201Genotype:
    """The NB201 rule written out independently: the argmax op of every edge, ``none`` included."""
    return NB201Genotype(edges=tuple(NB201_OPS[int(i)] for i in alpha.argmax(dim=-1)))


def test_darts_search_of_nb201_supernet_yields_argmax_cell() -> None:
    L.seed_everything(0)
    module = SearchModule(_tiny_supernet(), strategy="darts", arch_lr=3e-2)
    alpha_start = module.arch.alphas["normal"].detach().clone()
    weights_start = [p.detach().clone() for p in module.supernet.parameters()]
    trainer = _fit(module, batches=3)

    assert trainer.global_step == 6  # 3 batches x (architecture step + weight step)
    alpha = module.arch.alphas["normal"].detach()
    assert set(module.arch.alphas) == {"normal"} and alpha.shape == (6, len(NB201_OPS))
    assert (alpha - alpha_start).abs().max() > 1e-2  # the architecture trained (Adam lr 3e-2, 3 steps)
    assert any(not torch.equal(p, q) for p, q in zip(module.supernet.parameters(), weights_start))

    genotype = module.genotype()
    assert isinstance(genotype, NB201Genotype)
    assert genotype == _argmax_cell(alpha)
    assert NB201Genotype.from_arch_str(genotype.to_arch_str()) == genotype
    assert torch.isfinite(trainer.callback_metrics["val_acc"])


def _strategy_cases() -> list[Any]:
    """Every registered strategy (so the list grows with the registry), plus 2nd-order DARTS."""
    cases = [pytest.param(name, STRATEGY_ARGS.get(name, {}), id=name) for name in list_strategies()]
    return cases + [pytest.param("darts", {"order": 2}, id="darts-order2")]


@pytest.mark.parametrize(("name", "args"), _strategy_cases())
def test_every_strategy_runs_on_nb201_supernet(name: str, args: dict[str, Any]) -> None:
    L.seed_everything(0)
    module = SearchModule(_tiny_supernet(**SUPERNET_ARGS.get(name, {})), strategy=name, strategy_args=args)
    params_start = torch.cat([p.detach().reshape(-1).clone() for p in module.supernet.parameters()])
    arch_start = [p.detach().clone() for p in module.arch.parameters()]
    trainer = _fit(module, batches=2)

    assert trainer.current_epoch == 1
    params_end = torch.cat([p.detach().reshape(-1) for p in module.supernet.parameters()])
    assert torch.isfinite(params_end).all() and not torch.equal(params_start, params_end)
    if arch_start:  # strategies with architecture parameters (all but SPOS) must have stepped them
        assert any(not torch.equal(p, q) for p, q in zip(module.arch.parameters(), arch_start))
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    genotype = module.genotype()
    assert isinstance(genotype, NB201Genotype) and set(genotype.edges) <= set(NB201_OPS)
    probabilities = module.probabilities()
    assert set(probabilities) == {"normal"} and probabilities["normal"].shape == (6, len(NB201_OPS))
    torch.testing.assert_close(probabilities["normal"].sum(dim=-1), torch.ones(6, dtype=probabilities["normal"].dtype))


def test_shipped_nb201_darts_config_has_the_paper_settings() -> None:
    assert "nb201_darts.yaml" in shipped_configs()
    config = yaml.safe_load(resolve_config("nb201_darts").read_text())
    model, data = config["model"], config["data"]["init_args"]
    assert model["supernet"] == {"class_path": "supernet.NB201SearchNetwork",
                                 "init_args": {"channels": 16, "cells_per_stage": 5}}
    assert model["strategy"] == "darts" and model["strategy_args"]["order"] == 1
    expected = {"lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 5e-4, "grad_clip": 5.0,
                "arch_lr": 3e-4, "arch_betas": [0.5, 0.999], "arch_weight_decay": 1e-3}
    assert {k: model[k] for k in expected} == expected
    assert config["trainer"]["max_epochs"] == 50
    assert config["data"]["class_path"] == "nasdata.CIFAR10DataModule"
    assert (data["batch_size"], data["search_split"], data["train_portion"]) == (64, True, 0.5)


def test_cli_nb201_darts_writes_nb201_genotype(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    command = [
        sys.executable, "-m", "search.darts", "--config", "nb201_darts.yaml",
        "--data", "nasdata.DigitsDataModule", "--data.subset", "48", "--data.batch_size", "8",
        "--data.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(runs),
        "--model.supernet.init_args.channels", "4", "--model.supernet.init_args.cells_per_stage", "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NAS_DEBUG": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    run = runs / "darts_nb201_cifar10" / "version_0"
    raw = json.loads((run / "genotype.json").read_text())
    assert raw["space"] == "nb201"
    genotype = Genotype.load(run / "genotype.json")
    assert isinstance(genotype, NB201Genotype) and raw["arch"] == genotype.to_arch_str()
    assert genotype.to_arch_str() in done.stdout  # the summary prints the arch string

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["supernet"]["class_path"] == "supernet.NB201SearchNetwork"
    assert resolved["model"]["supernet"]["init_args"]["channels"] == 4

    history = json.loads((run / "alphas.json").read_text())
    assert history["space"] == "nb201" and history["cell_types"] == ["normal"]
    assert history["candidates"] == list(NB201_OPS) and len(history["epochs"]) == 1
    last = torch.tensor(history["epochs"][-1]["probabilities"]["normal"])
    assert last.shape == (6, len(NB201_OPS))
    assert _argmax_cell(last) == genotype  # the written weights and the written genotype agree
    assert Genotype.load(run / "genotypes" / "epoch_000.json") == genotype
    assert (run / "cell_normal.png").is_file() and (run / "alphas.png").is_file()
    assert not (run / "cell_reduce.png").exists()
    assert (run / "checkpoints" / "last.ckpt").is_file()
