"""The command line of one-shot architecture search, on ``LightningCLI`` (``python -m search.darts``).

``--config`` takes a YAML path or the bare name of a shipped config (``cifar.yaml``, ``quickstart``); every value
can be overridden with a dotted flag (``--trainer.max_epochs 1 --data.subset 512 --model.strategy_args.order 2``)
and ``--help`` lists them all. Before anything is written the model and the data are built and checked (one batch
through the supernet, the resume checkpoint read and matched); a bad input ends the program with one line on
stderr naming the culprit and exit status 2. Only then ``Trainer.fit`` runs and the run folder appears.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import sys
from argparse import ArgumentError
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.fabric.utilities.exceptions import MisconfigurationException

from search.callbacks import SearchOutputs
from configs import resolve_config_args
from configs.cli import DEBUG_ENV, check_links, fail, held_output, read_checkpoint
from configs.guard import Diverged, FiniteGuard
from search.checkpoint import setup_mismatch
from search.checks import check_epochs, check_trainer_strategy
from search.cost.objective import BudgetError
from search.module import SearchModule
from search.strategies import list_strategies, strategy_arguments



class InputError(ValueError):
    """A problem with what the user gave (config, flags, data, checkpoint): reported as one line."""


def _strategies_help() -> str:
    parts = []
    for name in list_strategies():
        args = ", ".join(f"{k}={p.default!r}" if p.default is not p.empty else k
                         for k, p in strategy_arguments(name).items())
        parts.append(f"{name}({args})")
    return ("Search strategies (--model.strategy NAME, their arguments as --model.strategy_args.ARG VALUE): "
            + "; ".join(parts) + f". Set {DEBUG_ENV}=1 for tracebacks instead of one-line errors.")


class SearchCLI(LightningCLI):
    """LightningCLI for ``SearchModule``: adds ``--resume``, the checkpoint (``--checkpoint.*``) and run-output
    (``--outputs.*``) callbacks, and feeds the data set's classes and channels into the supernet."""

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, attaching the parser to errors so that they can name the valid options."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            err.parser = parser  # type: ignore[attr-defined]
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--resume", type=Optional[str], default=None,
                            help="Continue the search from this checkpoint (.ckpt written by a search run); "
                                 "the resumed run gets a new run folder.")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": -1,
                             "checkpoint.every_n_epochs": 1, "checkpoint.save_on_train_epoch_end": True})
        parser.add_lightning_class_args(SearchOutputs, "outputs")
        parser.link_arguments("data.num_classes", "model.supernet.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.supernet.init_args.in_channels", apply_on="instantiate")


# ---- checks before anything is written -------------------------------------------------------------------------
def check_data(datamodule: LightningDataModule, model: SearchModule) -> tuple[int, ...]:
    """Build the data, check the search split and push one batch through the supernet (RNG state untouched);
    returns the shape of one image."""
    if not getattr(datamodule, "search_split", True):
        raise InputError("architecture search needs the two-way search split: set --data.search_split true")
    with torch.random.fork_rng(devices=[]):
        datamodule.prepare_data()
        datamodule.setup("fit")
        loaders = datamodule.train_dataloader()
        if not (isinstance(loaders, dict) and {"train", "val"} <= set(loaders)):
            raise InputError("the data module's train_dataloader() must return {'train': ..., 'val': ...} "
                             "(--data.search_split true)")
        for part, loader in (("weight-training", loaders["train"]), ("validation (architecture)", loaders["val"])):
            if len(loader.dataset) == 0:
                raise InputError(f"the {part} split is empty: raise --data.subset or move --data.train_portion "
                                 "away from 0 and 1")
        val = datamodule.val_dataloader()
        if len(val.dataset) == 0:
            raise InputError("the validation split is empty: raise --data.subset or lower --data.train_portion")
        x, y = next(iter(val))
        supernet = model.supernet
        was_training = supernet.training
        supernet.eval()
        try:
            with torch.no_grad():
                logits = supernet(x[:2], model.strategy.eval_weights(model.arch))
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"the supernet cannot process the data's images of shape {list(x.shape[1:])}: {first} "
                             "(fewer --model.supernet.layers or larger images)") from err
        finally:
            supernet.train(was_training)
        if int(y.max()) >= logits.shape[1]:
            raise InputError(f"label {int(y.max())} but the supernet has {logits.shape[1]} outputs")
    return tuple(x.shape[1:])


class _ModelOnlyCLI(SearchCLI):
    """``SearchCLI`` that builds the model and the data of a config, no Trainer (nothing written)."""

    def instantiate_classes(self) -> None:
        """Model and data only."""
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")


def load_run(run_dir: str | os.PathLike, checkpoint: str | None = None) -> tuple[SearchModule, LightningDataModule]:
    """The model of a search run folder (built from its ``config.yaml``) with the weights and search state of
    ``checkpoint`` (default: the folder's ``checkpoints/last.ckpt``), and its data module, set up."""
    run = Path(run_dir)
    config = run / "config.yaml"
    if not config.is_file():
        raise InputError(f"{run}: no config.yaml; give the folder of a search run (runs/<name>/version_<n>)")
    path = checkpoint or str(run / "checkpoints" / "last.ckpt")
    if not Path(path).is_file():
        raise InputError(f"--checkpoint {path}: no such file")
    with held_output([False]), _argv("search", ["--config", str(config)]):
        cli = _ModelOnlyCLI(**_cli_kwargs())
    model, data = cli.model, cli.datamodule
    saved = check_checkpoint(path, model)
    model.load_state_dict(saved["state_dict"])
    model.on_load_checkpoint(saved)
    model.eval()
    data.setup("fit")
    if model.cost is not None:  # the budget the run's genotype is held to (latencies: the checkpoint's, if from here)
        model.cost.build((data.in_channels, data.image_size, data.image_size), "cpu", save=False, check_budget=False)
    return model, data


def check_checkpoint(path: str, model: SearchModule) -> dict[str, Any]:
    """The resume checkpoint must exist, be readable and hold this model's state (same keys and shapes);
    returns it."""
    checkpoint = read_checkpoint(path)
    if "search_strategy" not in checkpoint:
        raise InputError(f"--resume {path}: not a checkpoint of a search run (no state_dict / search_strategy)")
    saved_strategy = checkpoint["search_strategy"].get("name")
    if saved_strategy != model.strategy.name:
        raise InputError(f"--resume {path}: written by strategy {saved_strategy!r}, this run uses "
                         f"{model.strategy.name!r}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or extra:
        culprit = f"lacks {missing[0]}" if missing else f"has unexpected {extra[0]}"
        raise InputError(f"--resume {path}: the checkpoint does not match this model ({culprit}; "
                         f"{len(missing)} missing, {len(extra)} unexpected keys): same --model settings?")
    problem = setup_mismatch(model, checkpoint)
    if problem is not None:
        raise InputError(f"--resume {path}: {problem}")
    wrong = [k for k in expected if expected[k] != saved[k]]
    if wrong:
        raise InputError(f"--resume {path}: {wrong[0]} has shape {saved[wrong[0]]} in the checkpoint, "
                         f"{expected[wrong[0]]} in this model: same --model settings?")
    return checkpoint


def check_trainer(trainer: Trainer, model: SearchModule) -> None:
    """Settings the search cannot run with."""
    if trainer.max_epochs is None or trainer.max_epochs < 1:
        raise InputError(f"--trainer.max_epochs must be >= 1 (the cosine schedule spans it), got {trainer.max_epochs}")
    check_trainer_strategy(trainer.strategy, model.strategy)
    if model.hparams.arch_start_epoch >= trainer.max_epochs and any(True for _ in model.arch.parameters()):
        raise InputError(f"--model.arch_start_epoch {model.hparams.arch_start_epoch} leaves no architecture step "
                         f"in --trainer.max_epochs {trainer.max_epochs}: use a value < {trainer.max_epochs}")
    check_epochs(trainer.max_epochs, model.selection)


# ---- entry point ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _argv(prog: str, args: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = [prog, *args]
    try:
        yield
    finally:
        sys.argv = saved


def _cli_kwargs() -> dict[str, Any]:
    """The LightningCLI settings shared by ``build_cli`` and ``parse_config``."""
    return dict(model_class=SearchModule, datamodule_class=LightningDataModule, subclass_mode_data=True, run=False,
                auto_configure_optimizers=False, seed_everything_default=0,
                trainer_defaults={"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                             "init_args": {"save_dir": "runs", "name": "search"}}},
                parser_kwargs={"exit_on_error": False, "description": __doc__.split("\n\n")[0],
                               "epilog": _strategies_help()})


def build_cli(args: Sequence[str], prog: str = "search") -> SearchCLI:
    """Parse ``args`` (``--config`` names resolved) and instantiate data, model and trainer (``run=False``)."""
    args = resolve_config_args(list(args))
    with _argv(prog, args):
        return SearchCLI(**_cli_kwargs())


class _ParseOnlyCLI(SearchCLI):
    """``SearchCLI`` that stops after parsing: nothing is instantiated, nothing written."""

    def instantiate_classes(self) -> None:
        """Skip building model, data and trainer."""


def parse_config(args: Sequence[str], prog: str = "search") -> Any:
    """The search configuration of ``args`` as the CLI parses it (``--config`` names resolved), without building
    anything; Lightning's messages are held back. Parse errors raise as in ``build_cli``."""
    args = resolve_config_args(list(args))
    with held_output([False]), _argv(prog, args):
        return _ParseOnlyCLI(**_cli_kwargs()).config


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run a search from command-line arguments; return the exit status (0 on success, 2 on bad input)."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0] or "search")
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    cli = None
    release = [True]
    try:
        with held_output(release):
            try:
                cli = build_cli(args, prog)
                model, data, trainer = cli.model, cli.datamodule, cli.trainer
                check_trainer(trainer, model)
                supernet_args = (cli.config.model.get("supernet") or {}).get("init_args") or {}
                image_shape = check_data(data, model)
                check_links("--model.supernet.init_args", supernet_args, type(model.supernet),
                            {"num_classes": data.num_classes, "in_channels": data.in_channels})
                resume = cli.config.get("resume")
                if resume:
                    check_checkpoint(resume, model)
                if model.cost is not None:  # a budget below the cheapest cell fails here, before the run starts;
                    # measured latencies only after the ranks have averaged them (at fit start)
                    model.cost.build(image_shape, trainer.strategy.root_device, save=False,
                                     check_budget=model.cost.kind != "latency" or trainer.world_size == 1)
            except BaseException:
                release[0] = debug  # bad input: only the one-line error below (everything with NAS_DEBUG=1)
                raise
    except (InputError, ValueError, TypeError, FileNotFoundError, ArgumentError, MisconfigurationException,
            KeyError) as err:
        if debug:
            raise
        return fail(prog, err, getattr(cli, "parser", None) or getattr(err, "parser", None))
    trainer.callbacks.insert(0, FiniteGuard("--model.lr or --model.arch_lr"))
    for callback in trainer.callbacks:
        if isinstance(callback, SearchOutputs):
            callback.command = " ".join(shlex.quote(a) for a in [*prog.split(), *args])
    try:
        trainer.fit(model, datamodule=data, ckpt_path=resume or None)
    except (Diverged, BudgetError) as err:
        if debug:
            raise
        return fail(prog, err)
    return 0


def run_strategy(strategy: str, argv: Sequence[str] | None = None) -> int:
    """The ``python -m search.<strategy>`` entry points: ``main`` with ``--model.strategy <strategy>`` last, so each
    entry runs its own strategy whatever the config says (a config made for another strategy fails on its
    ``strategy_args`` with one line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return main([*args, "--model.strategy", strategy], prog=f"python -m search.{strategy}")
