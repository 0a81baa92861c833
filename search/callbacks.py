"""Run outputs of a search: genotypes per epoch and at the end, the architecture-weight history, pictures, summary.

The run folder is the Trainer's ``log_dir`` (``runs/<name>/version_<n>/`` with the shipped configs' CSVLogger),
shared with ``config.yaml`` (LightningCLI), ``metrics.csv`` (the logger) and ``checkpoints/`` (ModelCheckpoint)::

    genotype.json              the final genotype (ops.Genotype.load reads it)
    genotypes/epoch_XXX.json   the genotype after every epoch
    alphas.json                per epoch, per cell type, per edge, per op: the op probabilities (+ val_acc; with a
                               selection also ``alpha_probabilities``, the weights before its decisions)
    cell_normal.png            the final cells (cell_reduce.png too for the DARTS space)
    alphas.png                 how the op probabilities evolved, one small plot per edge, the kept op marked
    importance.json / .png     per edge and op, the supernet's accuracy drop without it (search.importance)
    cost.json                  with --model.cost: per epoch, the cell's predicted cost beside its real one
    command.txt                the command line that started the run
    report.html                all of it in one self-contained page (search.report)

Every rank measures the importance (its accuracies are pooled); only rank 0 writes. The history travels in
checkpoints, so a resumed run writes the whole of it. With a TensorBoard logger the op probabilities of every
epoch go there as histograms and the final pictures as images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from ops import DartsGenotype, Genotype
from ops.draw import draw_cell, plot_alpha_history
from ops.figures import plot_importance
from ops.jsonfile import write_json, write_text
from search.importance import op_importance, probe_set
from search.report import COMMAND, cost_line, oneshot_report, spread_line

HISTORY_VERSION = 1


class SearchOutputs(Callback):
    """Write the genotype after every epoch and at the end, the architecture-weight history and pictures of
    the found cells into the run folder, and print a summary when the search ends.

    Args:
        pictures: Draw the final cells and the weight history (PNG).
        summary: Print the genotype and the written files at the end.
        importance_batches: Validation batches the op importance is measured on at the end (0: not measured).
        report: Write ``report.html``.
    """

    def __init__(self, pictures: bool = True, summary: bool = True, importance_batches: int = 4,
                 report: bool = True) -> None:
        if isinstance(importance_batches, bool) or not isinstance(importance_batches, int) or importance_batches < 0:
            raise ValueError(f"--outputs.importance_batches must be an integer >= 0, got {importance_batches!r}")
        self.pictures = pictures
        self.summary = summary
        self.importance_batches = importance_batches
        self.report = report
        self.command: str | None = None  # the command line that started the run (set by search.cli)
        self.history: list[dict[str, Any]] = []
        self.run_dir: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # ``trainer.log_dir`` is a collective under DDP: every rank asks, once, here.
        self.run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the command line that started the run (``command.txt``)."""
        if trainer.is_global_zero and self.run_dir is not None and self.command:
            write_text(self.run_dir / COMMAND, self.command + "\n")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record this epoch's probabilities and genotype; rank 0 writes them."""
        genotype = pl_module.genotype()
        record: dict[str, Any] = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "probabilities": {cell: p.double().cpu().tolist() for cell, p in pl_module.probabilities().items()},
            "genotype": genotype.to_dict(),
        }
        if pl_module.selection is not None:  # the architecture weights themselves, before the selection's decisions
            record["alpha_probabilities"] = {cell: p.double().cpu().tolist()
                                             for cell, p in pl_module.strategy.probabilities(pl_module.arch).items()}
        for key in ("val_acc", "val_loss", "train_acc"):
            if key in trainer.callback_metrics:
                record[key] = float(trainer.callback_metrics[key])
        if pl_module.cost is not None and trainer.is_global_zero:
            record["cost"] = pl_module.cost.report(genotype, pl_module.arch)
        self.history = [r for r in self.history if r["epoch"] != record["epoch"]] + [record]
        if trainer.is_global_zero and self.run_dir is not None:
            self._write_history(pl_module)
            board = _tensorboard(trainer)
            if board is not None:
                for cell, p in record["probabilities"].items():
                    board.add_histogram(f"op_probabilities/{cell}", torch.tensor(p), record["epoch"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure the op importance (every rank); write the final genotype, the pictures and the report."""
        importance = None
        if self.importance_batches and self.run_dir is not None:
            probe = probe_set(trainer.datamodule.val_dataloader(), self.importance_batches, pl_module.device)
            importance = op_importance(pl_module.supernet, pl_module.eval_weights(), probe, pl_module.reduce_mean)
        if not trainer.is_global_zero or self.run_dir is None:
            return
        run = self.run_dir
        genotype = pl_module.genotype()
        run.mkdir(parents=True, exist_ok=True)
        genotype.save(run / "genotype.json")
        if self.history:
            self._write_history(pl_module)
        if importance is not None:
            write_importance(run, importance, pl_module, genotype, self.importance_batches, self.pictures)
        if self.pictures:
            self._draw(genotype, pl_module)
            board = _tensorboard(trainer)
            if board is not None:
                for picture in sorted(run.glob("*.png")):
                    board.add_image(f"pictures/{picture.stem}", _read_png(picture), trainer.global_step,
                                    dataformats="HWC")
        if self.report:
            if hasattr(trainer.logger, "save"):
                trainer.logger.save()  # flush metrics.csv for the curves
            oneshot_report(run)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the summary (after the progress bar has closed)."""
        if self.summary and trainer.is_global_zero and self.run_dir is not None:
            self._print_summary(trainer, pl_module.genotype())

    def _write_history(self, pl_module: L.LightningModule) -> None:
        run = self.run_dir
        for record in self.history:
            path = run / "genotypes" / f"epoch_{record['epoch']:03d}.json"
            if not path.exists():
                Genotype.from_dict(record["genotype"]).save(_ensure_parent(path))
        supernet = pl_module.supernet
        write_json(run / "alphas.json", {
            "format_version": HISTORY_VERSION,
            "description": "per epoch: per cell type, per edge, per op softmax probability of the architecture "
                           "weights after that epoch; ops in the order of 'candidates'",
            "strategy": pl_module.strategy.name,
            "space": supernet.space,
            "candidates": list(supernet.candidates),
            "cell_types": list(supernet.cell_types),
            "epochs": [{k: v for k, v in r.items() if k not in ("genotype", "cost")} for r in self.history],
        })
        costs = [{"epoch": r["epoch"], **r["cost"]} for r in self.history if "cost" in r]
        if costs:
            write_json(run / "cost.json", {
                "description": "per epoch: the cost model's prediction for the cell the search returns ('predicted', "
                               "per kind) beside the real cost of its standalone network ('real': params and "
                               "multiply-adds counted, latency measured), the expected cost under the architecture "
                               "distribution, the budget and its multiplier; params in M, flops in M multiply-adds, "
                               "latency in ms",
                "epochs": costs})

    def _draw(self, genotype: Genotype, pl_module: L.LightningModule) -> None:
        run = self.run_dir
        cells = ("normal", "reduce") if isinstance(genotype, DartsGenotype) else ("normal",)
        for cell in cells:
            draw_cell(genotype, cell, run / f"cell_{cell}.png")
        if self.history:
            plot_alpha_history([r["probabilities"] for r in self.history], pl_module.supernet.candidates,
                               run / "alphas.png", kept=pl_module.supernet.search_space.kept_ops(genotype))

    def _print_summary(self, trainer: L.Trainer, genotype: Genotype) -> None:
        last = self.history[-1] if self.history else {}
        accuracy = f", val_acc {last['val_acc']:.4f}" if "val_acc" in last else ""
        if last.get("probabilities"):
            accuracy += f".\nArchitecture: {spread_line(last['probabilities'])}"
        present = sorted(p.name + ("/" if p.is_dir() else "") for p in self.run_dir.iterdir())
        cost = f"\nCost: {cost_line(last['cost'])}" if "cost" in last else ""
        print(f"\nSearch finished after {trainer.current_epoch} epochs ({trainer.global_step} optimizer steps)"
              f"{accuracy}.\nGenotype: {genotype.to_text()}{cost}\nRun folder: {self.run_dir}\n"
              f"  files: {', '.join(p for p in present if not p.endswith('.tmp'))}", flush=True)

    def state_dict(self) -> dict[str, Any]:
        """The per-epoch history (saved in checkpoints)."""
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the per-epoch history of a resumed run."""
        self.history = list(state_dict.get("history", []))


def write_importance(run: Path, importance: tuple[float, dict[str, list[list[float]]]], pl_module: L.LightningModule,
                     genotype: Genotype, batches: int, picture: bool = True, checkpoint: str | None = None) -> None:
    """``importance.json`` (and ``importance.png``) from ``op_importance``'s result."""
    base, drops = importance
    supernet = pl_module.supernet
    probabilities = {cell: p.double().cpu().tolist() for cell, p in pl_module.probabilities().items()}
    write_json(run / "importance.json", {
        "description": "per cell type, per edge, per op: the supernet's validation accuracy (fraction) without that "
                       "op on that edge subtracted from its accuracy with every op ('accuracy'); ops in the order of "
                       "'candidates', edges in supernet order",
        "candidates": list(supernet.candidates), "batches": batches, "checkpoint": checkpoint,
        "accuracy": base, "drop": drops, "probabilities": probabilities, "genotype": genotype.to_dict()})
    if picture:
        plot_importance(probabilities, drops, supernet.candidates, run / "importance.png",
                        kept=supernet.search_space.kept_ops(genotype), base_accuracy=base)


def _tensorboard(trainer: L.Trainer) -> Any | None:
    """The ``SummaryWriter`` of the trainer's TensorBoard logger, if it has one."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _read_png(path: Path) -> Any:
    """A PNG as an ``[H, W, 3]`` float array."""
    from matplotlib.image import imread

    return imread(path)[..., :3]


def _ensure_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
