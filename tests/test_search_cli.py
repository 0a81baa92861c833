"""``python -m search.darts``: config parsing, a tiny run with its outputs, resume, and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from configs import resolve_config, shipped_configs
from ops import Genotype
from search.cli import build_cli, main


ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", "quickstart.yaml", "--trainer.max_epochs", "1", "--data.subset", "64", "--data.batch_size", "16",
        "--model.supernet.channels", "4", "--model.supernet.layers", "3", "--model.supernet.steps", "2",
        "--model.supernet.multiplier", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--outputs.pictures", "true"]


def test_cifar_config_has_the_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--config", "cifar.yaml"])  # parsed and instantiated, not run
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    net = model.supernet
    assert type(data).__name__ == "CIFAR10DataModule" and data.batch_size == 64
    assert data.search_split and data.train_portion == 0.5
    assert (net.num_edges, len(net.cells), net.steps, net.multiplier, net.num_ops) == (14, 8, 4, 4, 8)
    assert net.cells[0].preprocess1[1].out_channels == 16 and net.stem[0].out_channels == 48
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
    assert trainer.max_epochs == 50 and cli.config.seed_everything == 0
    hp = model.hparams
    assert (hp.lr, hp.lr_min, hp.momentum, hp.weight_decay, hp.grad_clip) == (0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (hp.arch_lr, tuple(hp.arch_betas), hp.arch_weight_decay) == (3e-4, (0.5, 0.999), 1e-3)
    assert model.strategy.name == "darts" and model.strategy.order == 1 and model.strategy.init_scale == 1e-3
    assert not any(tmp_path.iterdir())  # building the run writes nothing


def test_tiny_run_writes_outputs_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(TINY + ["--trainer.logger.init_args.name", "tiny", "--outputs.importance_batches", "0"]) == 0
    run = tmp_path / "runs" / "tiny" / "version_0"
    out = capsys.readouterr().out
    assert "Genotype(normal=" in out and str(Path("runs") / "tiny" / "version_0") in out
    for name in ("config.yaml", "genotype.json", "genotypes/epoch_000.json", "alphas.json", "cell_normal.png",
                 "cell_reduce.png", "alphas.png", "metrics.csv", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    genotype = Genotype.load(run / "genotype.json")
    assert genotype == Genotype.load(run / "genotypes" / "epoch_000.json") and genotype.steps == 2
    history = json.loads((run / "alphas.json").read_text())
    assert history["cell_types"] == ["normal", "reduce"] and len(history["candidates"]) == 8
    (epoch,) = history["epochs"]
    assert epoch["global_step"] == 4  # 2 batches x (architecture + weight step)
    normal = torch.tensor(epoch["probabilities"]["normal"])
    assert normal.shape == (5, 8) and torch.allclose(normal.sum(1), torch.ones(5), atol=1e-6)
    assert 0.0 <= epoch["val_acc"] <= 1.0
    assert "val_acc" in (run / "metrics.csv").read_text().splitlines()[0]
    assert "channels: 4" in (run / "config.yaml").read_text()

    assert main(TINY + ["--trainer.logger.init_args.name", "tiny", "--trainer.max_epochs", "2",
                        "--outputs.importance_batches", "0", "--resume", str(run / "checkpoints" / "last.ckpt")]) == 0
    resumed = json.loads((tmp_path / "runs" / "tiny" / "version_1" / "alphas.json").read_text())
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1]
    assert resumed["epochs"][0] == epoch
    assert (tmp_path / "runs" / "tiny" / "version_1" / "genotypes" / "epoch_001.json").is_file()


BAD = [
    (["--model.strategy", "bogus"], ["unknown strategy 'bogus'", "darts"]),
    (["--model.strategy_args.order", "3"], ["order must be 1 or 2"]),
    (["--model.strategy_args.foo", "1"], ["'foo'", "order"]),
    (["--model.strategy_args.hvp", "taylor"], ["--model.strategy_args.hvp", "finite_difference, forward_difference, exact", "'taylor'"]),
    (["--model.supernet.candidates", "[none,bogus_op]"], ["unknown op 'bogus_op'", "sep_conv_3x3"]),
    (["--model.foo", "1"], ["--model.foo", "arch_lr"]),
    (["--model.supernet.chanels", "4"], ["chanels", "channels"]),
    (["--model.supernet.multiplier", "5"], ["multiplier=5"]),
    (["--model.supernet.layers", "2"], ["layers=2"]),
    (["--data.train_portion", "1.0"], ["0 for the architecture", "--data.train_portion"]),
    (["--data.search_split", "false"], ["--data.search_split"]),
    (["--trainer.max_epochs", "x"], ["--trainer.max_epochs", "'x'"]),
    (["--resume", "missing.ckpt"], ["missing.ckpt", "no such checkpoint"]),
    (["--resume", "corrupt.ckpt"], ["corrupt.ckpt", "not a readable checkpoint"]),
    (["--config", "nope.yaml"], ["'nope.yaml'", "quickstart.yaml"]),
    (["--config", "bad.yaml"], ["model.foo", "valid under model"]),
    # robust search: unknown regularizer, bad coefficients, methods on strategies they cannot act on
    (["--model.regularizers+=search.robust.Nope"], ["--model.regularizers", "search.robust.Nope"]),
    (["--model.regularizers+=search.robust.BetaDecay", "--model.regularizers.weight_end", "-1"],
     ["weight_end must be a finite number >= 0"]),
    (["--model.regularizers+=search.robust.BetaDecay", "--model.regularizers.weight_end", "abc"],
     ["--model.regularizers.weight_end", "expected a float", "'abc'"]),
    (["--model.strategy", "gdas", "--model.strategy_args", "{}", "--model.regularizers+=search.robust.AuxiliarySkip"],
     ["auxiliary_skip", "sampled path"]),
    (["--model.strategy", "spos", "--model.strategy_args", "{}",
      "--model.selection", "search.selection.PerturbationSelection"], ["--model.selection", "has none"]),
    (["--model.selection", "search.selection.PerturbationSelection", "--model.selection.tune_epochs", "5"],
     ["--model.selection.tune_epochs 5", "--trainer.max_epochs > 5"]),
    (["--model.strategy", "drnas", "--model.strategy_args", "{regularization: l1}"], ["l2, kl"]),
    (["--model.strategy", "gdas", "--model.strategy_args", "{edge_form: both}"], ["auto, sum, selected"]),
    # input that would make the run meaningless
    (["--data.cutout", "100"], ["--data.cutout 100", "side 8", "< 8"]),
    (["--model.arch_start_epoch", "5"], ["--model.arch_start_epoch 5", "--trainer.max_epochs 1", "< 1"]),
    (["--model.supernet.init_args.num_classes", "1"], ["--model.supernet.init_args.num_classes 1 conflicts", "10"]),
    (["--model.supernet.init_args.in_channels", "2"], ["--model.supernet.init_args.in_channels 2 conflicts", "1"]),
    (["--data.subset", "100000"], ["--data.subset 100000", "at most 1437"]),
    (["--data", "nasdata.NpzDataModule", "--data.path", "one_class.npz"], ["1 output class", "at least 2", "single class"]),
]


@pytest.mark.parametrize("extra,needles", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_gives_one_line(tmp_path, monkeypatch, capsys, extra, needles):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x80\x04not a checkpoint")
    (tmp_path / "bad.yaml").write_text("model:\n  foo: 1\n")
    images = np.random.default_rng(0).integers(0, 255, (64, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "one_class.npz", x_train=images, y_train=np.zeros(64, np.int64), x_test=images[:8],
             y_test=np.zeros(8, np.int64))
    status = main(TINY + extra)
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(os.path.basename(sys.argv[0])) and "error:" in lines[0], captured.err
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "runs").exists()


def test_bad_input_subprocess(tmp_path):
    """A real process: exit status 2 and nothing on stderr but the error (Lightning's own messages held back)."""
    extra, needle = ["--data.subset", "1"], "--data.subset"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "search.darts", *TINY, *extra], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m search.darts: error:") and needle in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_successful_run_prints_no_deprecation_warnings(tmp_path):
    """A real process: the config library's deprecation notices about Lightning's use of it stay silent."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("JSONARGPARSE_DEPRECATION_WARNINGS", None)
    proc = subprocess.run([sys.executable, "-m", "search.darts", *TINY, "--outputs.pictures", "false",
                           "--outputs.importance_batches", "1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stderr


def test_help_documents_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--resume", "--model.strategy", "--model.strategy_args", "--model.lr", "--model.arch_lr",
                 "--model.arch_start_epoch", "--model.supernet", "--data", "--trainer.max_epochs",
                 "--checkpoint.every_n_epochs", "--outputs.pictures", "darts(order=1"):
        assert flag in out, flag


SEARCH_CONFIGS = [name for name in shipped_configs()  # the one-shot ones; discrete searches have no model
                  if "model" in yaml.safe_load(resolve_config(name).read_text()) and not name.startswith("retrain")
                  and name != "quickstart.yaml"]


@pytest.mark.parametrize("name", SEARCH_CONFIGS)
def test_every_shipped_search_config_builds(name, tmp_path, monkeypatch):
    """Each one-shot config (its regularizers and selection objects included) parses and instantiates; nothing is
    written. The data is swapped for the bundled digits, so nothing is downloaded."""
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--config", name, "--data", "nasdata.DigitsDataModule", "--data.search_split", "true"])
    assert cli.model.strategy.name == yaml.safe_load(resolve_config(name).read_text())["model"]["strategy"]
    assert cli.trainer.max_epochs >= 1 and not any(tmp_path.iterdir())
