"""Supernet fidelity: does the trained supernet rank cells the way training them would?

Sample cells of the supernet's space, run each as a single path with the shared weights -- batch-norm statistics
re-estimated for that cell on training batches first, then the validation accuracy in eval mode -- and compare
the ranking with a ground truth: Kendall's tau, Spearman's rho (torchmetrics) and the overlap of the top k. In the
NAS-Bench-201 space the ground truth is the table. The shared-weight evaluation (``shared_weight_accuracy``) is
the one a multi-trial search can use as its evaluator, too.

    python -m search.fidelity RUN_DIR --checkpoint RUN_DIR/checkpoints/last.ckpt --table nb201.csv --cells 100

writes ``fidelity.json`` and ``fidelity.png`` into the run folder (and refreshes its ``report.html``).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchmetrics.functional import kendall_rank_corrcoef, spearman_corrcoef

from ops import Genotype
from search.strategies.paths import genotype_path
from search.strategies.probe import first_batches

Batches = Sequence[tuple[Tensor, Tensor]]


@contextmanager
def reestimated_statistics(supernet: nn.Module) -> Iterator[None]:
    """Inside: every BatchNorm of ``supernet`` starts from empty running statistics, to be re-estimated by the
    caller's forward passes (``reestimate``); afterwards statistics, momenta and modes are put back."""
    norms = [m for m in supernet.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.training, m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in norms]
    try:
        yield
    finally:
        for m, (training, momentum, mean, var, count) in zip(norms, saved):
            m.training, m.momentum = training, momentum
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


def reestimate(supernet: nn.Module, path: dict, batches: Batches) -> None:
    """Set every BatchNorm's running statistics to the mean of the batch statistics of ``path`` on ``batches``
    (momentum ``1 / (i + 1)`` on batch ``i``: the exact running average, which the fused path computes too)."""
    norms = [m for m in supernet.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for m in norms:
        m.reset_running_stats()
        m.train()
    with torch.no_grad():
        for i, (x, _) in enumerate(batches):
            for m in norms:
                m.momentum = 1.0 / (i + 1)
            supernet(x, path)
    for m in norms:
        m.eval()


def shared_weight_accuracy(supernet: nn.Module, cells: Sequence[Genotype], train_batches: Batches,
                           val_batches: Batches) -> list[float]:
    """Per cell, the supernet's validation accuracy (%) with the shared weights, running statistics re-estimated
    for that cell on ``train_batches``; the supernet is left as it was."""
    was_training = supernet.training
    scores = []
    try:
        with reestimated_statistics(supernet), torch.no_grad():
            for cell in cells:
                path = genotype_path(supernet, cell)
                reestimate(supernet, path, train_batches)
                supernet.eval()
                correct = sum(int((supernet(x, path).argmax(1) == y).sum()) for x, y in val_batches)
                scores.append(100.0 * correct / sum(len(y) for _, y in val_batches))
    finally:
        supernet.train(was_training)
    return scores


@dataclass(frozen=True)
class Fidelity:
    """How well shared-weight accuracies rank cells against a ground truth."""

    cells: int
    kendall_tau: float
    spearman_rho: float
    top_k: int
    top_k_overlap: float  # fraction of the true top-k cells among the supernet's top-k

    def summary(self, truth: str = "the ground truth") -> str:
        """One line for logs and reports."""
        return (f"supernet vs {truth} over {self.cells} cells: Kendall tau {self.kendall_tau:.3f}, Spearman rho "
                f"{self.spearman_rho:.3f}, top-{self.top_k} overlap {self.top_k_overlap:.2f}")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def rank_fidelity(predicted: Sequence[float], truth: Sequence[float], top_k: int = 10) -> Fidelity:
    """Kendall's tau (tau-b), Spearman's rho and the top-``k`` overlap of ``predicted`` against ``truth``."""
    if len(predicted) != len(truth) or len(predicted) < 2:
        raise ValueError(f"fidelity needs two equally long score lists of >= 2 cells, got {len(predicted)} and "
                         f"{len(truth)}")
    x = torch.tensor(list(predicted), dtype=torch.float64)
    y = torch.tensor(list(truth), dtype=torch.float64)
    k = max(1, min(top_k, len(x)))
    top_pred = set(torch.argsort(-x, stable=True)[:k].tolist())
    top_true = set(torch.argsort(-y, stable=True)[:k].tolist())
    return Fidelity(cells=len(x), kendall_tau=float(kendall_rank_corrcoef(x, y, variant="b")),
                    spearman_rho=float(spearman_corrcoef(x, y)), top_k=k,
                    top_k_overlap=len(top_pred & top_true) / k)


def sample_cells(space: Any, count: int, seed: int) -> list[Genotype]:
    """``count`` distinct cells drawn uniformly from a discrete ``space`` (``search.strategies.paths.cell_space``)."""
    rng = np.random.default_rng(seed)
    cells: dict[str, Genotype] = {}
    for _ in range(100 * count):
        if len(cells) == count:
            break
        cell = space.sample(rng)
        cells.setdefault(cell.to_text(), cell)
    return list(cells.values())


def measure(run_dir: Path, table: Path, checkpoint: str | None = None, cells: int = 100, seed: int = 0,
            bn_batches: int = 4, val_batches: int = 8, top_k: int = 10) -> Fidelity:
    """Fidelity of a run's supernet (NAS-Bench-201 space) against the table's CIFAR-10 test accuracy; writes
    ``fidelity.json`` and ``fidelity.png`` into ``run_dir`` and refreshes its report."""
    from ops.figures import plot_fidelity
    from ops.jsonfile import write_json
    from search.cli import load_run
    from search.nb201_table import NB201Table
    from search.report import oneshot_report
    from search.strategies.paths import cell_space

    for name, value, low in (("--cells", cells, 2), ("--bn_batches", bn_batches, 1), ("--val_batches", val_batches, 1),
                             ("--top_k", top_k, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    model, data = load_run(run_dir, checkpoint)
    if model.supernet.space != "nb201":
        raise ValueError(f"{run_dir}: the supernet searches the {model.supernet.space!r} space; the ground truth "
                         "here is the NAS-Bench-201 table (for other spaces: search.fidelity.rank_fidelity)")
    bench = NB201Table(table)  # cells are drawn from the table's rows: uniform over the space for the whole table
    listed = cell_space(model.supernet).restrict([Genotype.parse(arch) for arch in bench.archs])
    sampled = sample_cells(listed, min(cells, listed.size), seed)
    train = data.train_dataloader()
    train = train["train"] if isinstance(train, dict) else train
    scores = shared_weight_accuracy(model.supernet, sampled, first_batches(train, bn_batches),
                                    first_batches(data.val_dataloader(), val_batches))
    truth = [bench.accuracy(cell, "cifar10", "test") for cell in sampled]
    result = rank_fidelity(scores, truth, top_k)
    line = result.summary("the NAS-Bench-201 table (CIFAR-10 test)")
    write_json(run_dir / "fidelity.json", {
        **result.to_dict(), "summary": line, "checkpoint": checkpoint, "seed": seed, "bn_batches": bn_batches,
        "val_batches": val_batches, "cells_scored": [{"arch": c.to_text(), "supernet": s, "table": t}
                                                     for c, s, t in zip(sampled, scores, truth)]})
    plot_fidelity(scores, truth, run_dir / "fidelity.png", title=line.replace(": ", ":\n", 1),
                  y_label="NAS-Bench-201 CIFAR-10 test accuracy (%)")
    if (run_dir / "genotype.json").is_file():
        oneshot_report(run_dir)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m search.fidelity RUN_DIR --table nb201.csv [...]``; exit 2 on bad input."""
    import argparse

    from configs.cli import fail

    parser = argparse.ArgumentParser(prog="python -m search.fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="folder of a search run (runs/<name>/version_<n>)")
    parser.add_argument("--table", type=Path, required=True, help="the NAS-Bench-201 table (nb201.csv)")
    parser.add_argument("--checkpoint", default=None, help="default: RUN_DIR/checkpoints/last.ckpt")
    parser.add_argument("--cells", type=int, default=100, help="distinct cells sampled uniformly")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--bn_batches", type=int, default=4, help="training batches re-estimating BatchNorm per cell")
    parser.add_argument("--val_batches", type=int, default=8, help="validation batches scoring each cell")
    parser.add_argument("--top_k", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        result = measure(args.run_dir, args.table, args.checkpoint, args.cells, args.seed, args.bn_batches,
                         args.val_batches, args.top_k)
    except (ValueError, FileNotFoundError, TypeError, KeyError) as err:
        return fail(parser.prog, err)
    print(result.summary("the NAS-Bench-201 table (CIFAR-10 test)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
