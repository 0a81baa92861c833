"""The ``python -m retrain`` command: LightningCLI (``run=False``) around ``RetrainModule`` and a ``nasdata``
data module, plus ``--genotype``, ``--resume`` and ``--test_ckpt``.

Set-up mistakes (unknown config, bad genotype, wrong network for the data, bad option values, missing data or
checkpoint) end with one ``retrain: error: ...`` line on stderr and exit status 2, before anything is written.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from nasdata import ImageDataModule
from configs import resolve_config_args
from configs.cli import fail, held_output, read_checkpoint
from configs.guard import Diverged, FiniteGuard
from retrain.module import RetrainModule

PARSER_KWARGS = {"exit_on_error": False, "prog": "python -m retrain",
                 "description": "Train a found cell from scratch (the DARTS evaluation recipe) and test it."}
SETUP_ERRORS = (ArgumentError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, KeyError)


class RetrainCLI(LightningCLI):
    """LightningCLI with the genotype, resume and test-checkpoint options and the data -> model links."""

    def __init__(self, args: Sequence[str] | None = None) -> None:
        super().__init__(RetrainModule, ImageDataModule, subclass_mode_data=True, run=False, args=args,
                         save_config_kwargs={"overwrite": True}, parser_kwargs=PARSER_KWARGS,
                         auto_configure_optimizers=False, load_from_checkpoint_support=False)

    def parse_arguments(self, parser: LightningArgumentParser, args: Sequence[str] | None) -> None:
        """Parse ``args`` (default: the command line) with bare ``--config`` names resolved to shipped files."""
        self.config = parser.parse_args(resolve_config_args(sys.argv[1:] if args is None else list(args)))

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--genotype`` (required), ``--resume``, ``--test_ckpt`` and the data -> model links."""
        parser.add_argument("--genotype", type=str, required=True,
                            help="genotype.json of a search run, a zoo name (DARTS_V2, ...) or genotype text")
        parser.add_argument("--resume", type=str | None, default=None,
                            help="checkpoint to resume training from, or a run folder holding checkpoints/last.ckpt")
        parser.add_argument("--test_ckpt", type=Literal["last", "best", "none"], default="last",
                            help="weights evaluated on the test set after training: last, best or none")
        parser.link_arguments("genotype", "model.genotype")
        for key in ("num_classes", "in_channels", "image_size"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Find the ``--resume`` checkpoint before anything is built."""
        if self.config.resume is not None:
            self.config.resume = str(find_checkpoint(self.config.resume))

    def instantiate_classes(self) -> None:
        """Data and model first, then the resume check, then the Trainer (which may start writing)."""
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        if self.config.resume is not None:
            check_resume_matches(self.config.resume, self.model)
        logger = self.config_init.trainer.get("logger")
        if logger is None or logger is True:  # Lightning's default logger, but always CSV (metrics.csv): not
            # TensorBoard merely because tensorboard happens to be installed
            root = self.config_init.trainer.get("default_root_dir") or os.getcwd()
            self.trainer = self.instantiate_trainer(logger=CSVLogger(root, name="lightning_logs"))
        else:
            self.trainer = self.instantiate_trainer()


def check_run(cli: RetrainCLI) -> None:
    """What fails only once training starts, checked before anything is written: the epoch count, and the data
    (downloaded if asked, then loaded; the random-number state is left untouched)."""
    if cli.trainer.max_epochs is None or cli.trainer.max_epochs < 1:
        raise ValueError(f"--trainer.max_epochs must be >= 1 (the learning-rate schedule spans it), got "
                         f"{cli.trainer.max_epochs}")
    with torch.random.fork_rng(devices=[]):
        cli.datamodule.prepare_data()
        cli.datamodule.setup("fit")


def find_checkpoint(path: str) -> Path:
    """``path`` if it is a file, else ``path/checkpoints/last.ckpt`` or ``path/last.ckpt``."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / "checkpoints" / "last.ckpt", p / "last.ckpt"):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"--resume {path}: folder has no checkpoints/last.ckpt")
    if not p.is_file():
        raise FileNotFoundError(f"--resume {path}: no such checkpoint file or run folder")
    return p


def check_resume_matches(checkpoint: str, model: RetrainModule) -> None:
    """Raise ``ValueError`` if ``checkpoint`` is unreadable or was trained with another genotype."""
    saved = read_checkpoint(checkpoint).get("hyper_parameters", {}).get("genotype")
    if saved is None:
        raise ValueError(f"--resume {checkpoint}: not a retrain checkpoint (no genotype in its hyper-parameters)")
    if saved != model.genotype.to_text():
        raise ValueError(f"--resume {checkpoint} was trained with another genotype ({saved[:60]}...); pass that "
                         "--genotype or start a new run")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, build and check everything, then fit and test. Returns the exit status."""
    release = [True]
    try:
        with held_output(release):  # Lightning's messages appear only once the set-up has succeeded
            try:
                cli = RetrainCLI(argv)
                check_run(cli)
            except BaseException:
                release[0] = False
                raise
    except SETUP_ERRORS as err:
        return fail("retrain", err)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trainer.callbacks.insert(0, FiniteGuard("--model.lr (or --trainer.gradient_clip_val)"))
    try:
        trainer.fit(model, datamodule=data, ckpt_path=cli.config.resume)
    except Diverged as err:
        return fail("retrain", err)
    test_ckpt = cli.config.test_ckpt
    if test_ckpt == "none":
        return 0
    ckpt_path = None
    if test_ckpt == "best":
        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
            ckpt_path = callback.best_model_path
        else:
            model.print("--test_ckpt best: no best checkpoint (no ModelCheckpoint with a monitor); testing the last weights")
    trainer.test(model, datamodule=data, ckpt_path=ckpt_path)
    return 0
