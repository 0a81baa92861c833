"""Evaluators for spaces without a table: a cell trained from scratch (deterministic under its seed) and a cell
scored with a trained supernet's shared weights (equal to the supernet's own single-path forward)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from nasdata import DigitsDataModule
from retrain import build_network, count_macs, count_parameters
from search.discrete import (Budget, DartsCellSpace, NB201Space, RandomSearch, SharedWeightEvaluator,
                             TrainedEvaluator)
from search.strategies.paths import genotype_path
from search.strategies.probe import first_batches

SPACES = {"nb201": (NB201Space, 1), "darts": (lambda: DartsCellSpace(steps=2, multiplier=2), 3)}


@pytest.mark.parametrize("name", SPACES)
def test_trained_evaluator_is_deterministic_under_its_seed_and_sizes_the_standalone_network(name):
    make_space, layers = SPACES[name]
    space = make_space()
    data = DigitsDataModule(search_split=True, subset=128, batch_size=32)
    evaluator = TrainedEvaluator(data, epochs=1, channels=4, layers=layers, seed=0)
    evaluator.bind_space(space)
    cell = space.sample(np.random.default_rng(1))
    first, again = evaluator.evaluate(cell), evaluator.evaluate(cell)
    assert (first.metric, first.loss) == (again.metric, again.loss) and 0.0 <= first.metric <= 100.0
    other = TrainedEvaluator(data, epochs=1, channels=4, layers=layers, seed=1).evaluate(cell)
    assert other.loss != first.loss  # the seed is what makes it repeat
    real = build_network(cell, num_classes=10, in_channels=1)  # the retrain configuration
    assert first.params == pytest.approx(count_parameters(real) / 1e6)
    assert first.flops == pytest.approx(count_macs(real, 8, in_channels=1) / 1e6)
    result = RandomSearch().search(space, evaluator, Budget(evaluations=2), seed=0)
    assert len(result.history) == 2 and result.metric_name == "val_acc"


def test_trained_evaluator_refuses_bad_settings():
    data = DigitsDataModule(search_split=True, subset=64)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainedEvaluator(data, epochs=0)
    with pytest.raises(ValueError, match="search_split=True"):
        TrainedEvaluator(DigitsDataModule(search_split=False, subset=64))


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shared")
    command = [sys.executable, "-m", "search.spos", "--config", "nb201_spos.yaml", "--data", "nasdata.DigitsDataModule",
               "--data.subset", "96", "--data.batch_size", "8", "--data.num_workers", "0",
               "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
               "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(root / "runs"),
               "--model.supernet.init_args.channels", "4", "--model.supernet.init_args.cells_per_stage", "1",
               "--outputs.importance_batches", "0"]
    done = subprocess.run(command, cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (root / "runs").glob("*/version_0")
    return run


def test_shared_weight_evaluator_equals_the_supernets_own_single_path_forward(nb201_run):
    from search.cli import load_run

    space = NB201Space()
    evaluator = SharedWeightEvaluator(str(nb201_run), bn_batches=2, val_batches=2)
    model, data = load_run(nb201_run)
    supernet = model.supernet
    bn = first_batches(data.train_dataloader()["train"], 2)
    val = first_batches(data.val_dataloader(), 2)
    for seed in range(3):
        cell = space.sample(np.random.default_rng(seed))
        path = genotype_path(supernet, cell)
        for m in supernet.modules():  # PyTorch's cumulative average over the batches: the exact mean
            if isinstance(m, _BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        supernet.train()
        with torch.no_grad():
            for x, _ in bn:
                supernet(x, path)
            supernet.eval()
            correct = sum(int((supernet(x, path).argmax(1) == y).sum()) for x, y in val)
        expected = 100.0 * correct / sum(len(y) for _, y in val)
        assert evaluator.evaluate(cell).metric == pytest.approx(expected)


def test_shared_weight_evaluator_refuses_a_supernet_of_another_space(nb201_run):
    with pytest.raises(ValueError, match="searches the nb201 space, the discrete search the darts space"):
        SharedWeightEvaluator(str(nb201_run)).bind_space(DartsCellSpace())
