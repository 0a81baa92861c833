"""``python -m retrain``: a genotype.json trains, resumes and tests; shipped recipes; one-line errors on bad input."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ops.zoo import get_genotype
from retrain.build import count_parameters
from retrain.cli import RetrainCLI, main
from retrain.module import RetrainModule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec.*")

TINY = ["--config", "retrain_quick", "--model.channels", "4", "--model.layers", "3", "--data.subset", "16",
        "--data.batch_size", "8", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]



def _versions(root: Path) -> list[Path]:
    return sorted((root / "lightning_logs").glob("version_*"))


def test_genotype_json_trains_resumes_and_tests(tmp_path: Path, capfd: pytest.CaptureFixture,
                                               caplog: pytest.LogCaptureFixture) -> None:
    geno = get_genotype("PC_DARTS")
    path = tmp_path / "genotype.json"
    geno.save(path)
    root = tmp_path / "runs"
    common = TINY + ["--genotype", str(path), "--trainer.default_root_dir", str(root)]
    assert main(common + ["--trainer.max_steps", "1"]) == 0
    out = capfd.readouterr().out
    assert "parameters (auxiliary head excluded)" in out and "multiply-adds per 1x8x8 image" in out
    assert "test_acc" in out
    (first,) = _versions(root)
    assert (first / "config.yaml").is_file() and (first / "metrics.csv").is_file()
    last = first / "checkpoints" / "last.ckpt"
    restored = RetrainModule.load_from_checkpoint(last)
    assert restored.genotype == geno and restored.hparams.genotype == geno.to_text()
    assert torch.load(last, weights_only=False)["global_step"] == 1

    with caplog.at_level(logging.INFO):
        assert main(common + ["--trainer.max_steps", "2", "--resume", str(first)]) == 0
    assert f"Restored all states from the checkpoint at {last}" in caplog.text
    second = _versions(root)[-1]
    assert torch.load(second / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2


def test_shipped_recipes(tmp_path: Path) -> None:
    cifar = RetrainCLI(["--config", "retrain_cifar", "--genotype", "DARTS_V2",
                        "--trainer.default_root_dir", str(tmp_path / "c")])
    hp = cifar.model.hparams
    assert (cifar.trainer.max_epochs, cifar.trainer.gradient_clip_val) == (600, 5.0)
    assert (cifar.datamodule.batch_size, cifar.datamodule.cutout) == (96, 16)
    assert (hp.channels, hp.layers, hp.auxiliary_weight, hp.drop_path_prob) == (36, 20, 0.4, 0.2)
    assert (hp.lr, hp.lr_schedule, hp.lr_min, hp.momentum, hp.weight_decay) == (0.025, "cosine", 0.0, 0.9, 3e-4)
    assert count_parameters(cifar.model.net) == 3_349_342  # DARTS: 3.3M

    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / "imagenet" / split / label).mkdir(parents=True)
    imagenet = RetrainCLI(["--config", "retrain_imagenet", "--genotype", "DARTS_V2", "--data.root",
                           str(tmp_path / "imagenet"), "--trainer.default_root_dir", str(tmp_path / "i")])
    hp = imagenet.model.hparams
    assert (imagenet.trainer.max_epochs, imagenet.datamodule.batch_size, imagenet.datamodule.image_size) == (250, 128, 224)
    assert (hp.kind, hp.channels, hp.layers, hp.lr, hp.lr_schedule, hp.lr_gamma) == ("imagenet", 48, 14, 0.1, "step", 0.97)
    assert (hp.weight_decay, hp.label_smoothing, hp.top5, hp.num_classes) == (3e-5, 0.1, True, 2)
    assert not (tmp_path / "c").exists() and not (tmp_path / "i").exists()


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Name -> (arguments, text the error line must contain)."""
    corrupt = tmp / "corrupt.json"
    corrupt.write_text('{"format_version": 1, "space": "darts", "normal": [')
    unknown_op = tmp / "unknown_op.json"
    data = get_genotype("DARTS_V2").to_dict()
    data["normal"][0][0] = "warp_conv"
    unknown_op.write_text(json.dumps(data))
    one_class = tmp / "one_class.npz"
    rng = np.random.default_rng(0)
    np.savez(one_class, x_train=rng.integers(0, 255, (8, 8, 8), dtype=np.uint8), y_train=np.zeros(8, np.int64),
             x_test=rng.integers(0, 255, (4, 8, 8), dtype=np.uint8), y_test=np.zeros(4, np.int64))
    for split in ("train", "val"):
        for label in ("a", "b"):
            (tmp / "imagenet" / split / label).mkdir(parents=True, exist_ok=True)
    quick = ["--config", "retrain_quick"]
    return {
        "missing file": (quick + ["--genotype", str(tmp / "nope.json")], "genotype file not found"),
        "corrupt file": (quick + ["--genotype", str(corrupt)], "is not valid JSON"),
        "wrong space": (quick + ["--genotype", "DARTS_V2", "--model.kind", "nb201"], "needs a genotype of the 'nb201' space"),
        "unregistered op": (quick + ["--genotype", str(unknown_op)], "unknown op 'warp_conv'; registered ops:"),
        "one class": (quick + ["--genotype", "DARTS_V2", "--data", "nasdata.NpzDataModule", "--data.path",
                               str(one_class)], "num_classes must be >= 2, got 1"),
        "imagenet on 32x32": (["--config", "retrain_imagenet", "--genotype", "DARTS_V2", "--data.root",
                               str(tmp / "imagenet"), "--data.image_size", "32"], "at least 64x64"),
        "layers < 3": (quick + ["--genotype", "DARTS_V2", "--model.layers", "2"], "layers must be an integer >= 3"),
        "unknown config": (["--config", "retrain_mars", "--genotype", "DARTS_V2"], "shipped: "),
        "no genotype": (quick, "--genotype is required"),
        "bad value": (quick + ["--genotype", "DARTS_V2", "--model.channels", "many"], "--model.channels"),
        "missing checkpoint": (quick + ["--genotype", "DARTS_V2", "--resume", str(tmp / "x.ckpt")], "--resume"),
    }


@pytest.mark.parametrize("case", ["missing file", "corrupt file", "wrong space", "unregistered op", "one class",
                                  "imagenet on 32x32", "layers < 3", "unknown config", "no genotype", "bad value",
                                  "missing checkpoint"])
def test_bad_input_gives_one_line_and_writes_nothing(case: str, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    args, expected = _bad_inputs(tmp_path)[case]
    root = tmp_path / "runs"
    assert main(args + ["--trainer.default_root_dir", str(root)]) == 2
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("retrain: error: ") and expected in lines[0]
    assert not root.exists()


@pytest.mark.parametrize("case", ["missing file", "imagenet on 32x32"])
def test_bad_input_exit_status_of_the_command(case: str, tmp_path: Path) -> None:
    args, expected = _bad_inputs(tmp_path)[case]
    root = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "retrain", *args, "--trainer.default_root_dir", str(root)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not root.exists()


def test_config_names_resolve_to_shipped_files(tmp_path: Path) -> None:
    from configs import resolve_config, resolve_config_args, shipped_configs

    assert {"retrain_cifar.yaml", "retrain_imagenet.yaml", "retrain_quick.yaml"} <= set(shipped_configs())
    shipped = resolve_config("retrain_quick")
    assert shipped.is_file() and shipped == resolve_config("retrain_quick.yaml")
    own = tmp_path / "retrain_quick.yaml"
    own.write_text("seed_everything: 1\n")
    assert resolve_config(str(own)) == own
    assert resolve_config_args(["-c", "retrain_quick", "--config=retrain_cifar", "--x", "1"]) == [
        "-c", str(shipped), f"--config={resolve_config('retrain_cifar')}", "--x", "1"]
    with pytest.raises(FileNotFoundError, match="retrain_cifar.yaml"):
        resolve_config(str(tmp_path / "missing.yaml"))
