"""Run outputs of a search: genotypes per epoch and at the end, the architecture-weight history, pictures, summary.

The run folder is the Trainer's ``log_dir`` (``runs/<name>/version_<n>/`` with the shipped configs' CSVLogger),
shared with ``config.yaml`` (LightningCLI), ``metrics.csv`` (the logger) and ``checkpoints/`` (ModelCheckpoint)::

    genotype.json              the final genotype (ops.Genotype.load reads it)
    genotypes/epoch_XXX.json   the genotype after every epoch
    alphas.json                per epoch, per cell type, per edge, per op: the op probabilities (+ val_acc)
    cell_normal.png            the final cells (cell_reduce.png too for the DARTS space)
    alphas.png                 how the op probabilities evolved, one small plot per edge

Only rank 0 writes. The history travels in checkpoints, so a resumed run writes the whole of it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from ops import DartsGenotype, Genotype
from ops.draw import draw_cell, plot_alpha_history
from ops.jsonfile import write_json

HISTORY_VERSION = 1


class SearchOutputs(Callback):
    """Write the genotype after every epoch and at the end, the architecture-weight history and pictures of
    the found cells into the run folder, and print a summary when the search ends.

    Args:
        pictures: Draw the final cells and the weight history (PNG).
        summary: Print the genotype and the written files at the end.
    """

    def __init__(self, pictures: bool = True, summary: bool = True) -> None:
        self.pictures = pictures
        self.summary = summary
        self.history: list[dict[str, Any]] = []
        self.run_dir: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # ``trainer.log_dir`` is a collective under DDP: every rank asks, once, here.
        self.run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record this epoch's probabilities and genotype; rank 0 writes them."""
        genotype = pl_module.genotype()
        record: dict[str, Any] = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "probabilities": {cell: p.double().cpu().tolist() for cell, p in pl_module.probabilities().items()},
            "genotype": genotype.to_dict(),
        }
        for key in ("val_acc", "val_loss", "train_acc"):
            if key in trainer.callback_metrics:
                record[key] = float(trainer.callback_metrics[key])
        self.history = [r for r in self.history if r["epoch"] != record["epoch"]] + [record]
        if trainer.is_global_zero and self.run_dir is not None:
            self._write_history(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the final genotype and the pictures; print the summary."""
        if not trainer.is_global_zero or self.run_dir is None:
            return
        run = self.run_dir
        genotype = pl_module.genotype()
        run.mkdir(parents=True, exist_ok=True)
        genotype.save(run / "genotype.json")
        if self.history:
            self._write_history(pl_module)
        if self.pictures:
            self._draw(genotype, pl_module)

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
            "epochs": [{k: v for k, v in r.items() if k != "genotype"} for r in self.history],
        })

    def _draw(self, genotype: Genotype, pl_module: L.LightningModule) -> None:
        run = self.run_dir
        cells = ("normal", "reduce") if isinstance(genotype, DartsGenotype) else ("normal",)
        for cell in cells:
            draw_cell(genotype, cell, run / f"cell_{cell}.png")
        if self.history:
            plot_alpha_history([r["probabilities"] for r in self.history], pl_module.supernet.candidates,
                               run / "alphas.png")

    def _print_summary(self, trainer: L.Trainer, genotype: Genotype) -> None:
        last = self.history[-1] if self.history else {}
        accuracy = f", val_acc {last['val_acc']:.4f}" if "val_acc" in last else ""
        present = sorted(p.name + ("/" if p.is_dir() else "") for p in self.run_dir.iterdir())
        print(f"\nSearch finished after {trainer.current_epoch} epochs ({trainer.global_step} optimizer steps)"
              f"{accuracy}.\nGenotype: {genotype.to_text()}\nRun folder: {self.run_dir}\n"
              f"  files: {', '.join(p for p in present if not p.endswith('.tmp'))}", flush=True)

    def state_dict(self) -> dict[str, Any]:
        """The per-epoch history (saved in checkpoints)."""
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the per-epoch history of a resumed run."""
        self.history = list(state_dict.get("history", []))


def _ensure_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
