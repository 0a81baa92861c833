"""One-shot search of the NAS-Bench-201 space on real CIFAR-10, scored by the NAS-Bench-201 table.

Each run searches the NB201 supernet with ``SearchModule`` and a Lightning ``Trainer`` (no CLI) on CIFAR-10 training
images, split in half (weights / architecture) as in the NAS-Bench-201 paper, and looks up the 200-epoch CIFAR-10 test
accuracy of the cell it returns (``NB201Table``). Methods (``METHODS``): DARTS 1st order ("DARTS-V1"), GDAS as the
NAS-Bench-201 authors ran it (edge sum, weights first, Nesterov, alphas clipped with the weights) and in its
selected-op form, beta-DARTS, DARTS-, DrNAS, SDARTS-RS, and DARTS / beta-DARTS / SDARTS-RS with perturbation
selection (DARTS-PT; ``_PT``: the validation loss on the whole architecture split, ``none`` never kept; ``_PT_V1``,
the first setting measured: accuracy on 10 batches, ``none`` allowed), several seeds each (the seed sets the
initial weights and alphas, the batch order, the strategies' sampling and the selection's edge order; SDARTS-RS's
smoothing noise keeps its default seed 0 in every run, as in every recorded result, where ``python -m search.seeds``
gives it the run's seed; the data split is fixed, as the benchmark's cifar10-valid split is). Each run also records
its op probabilities after every epoch (``epoch_probabilities``, before any selection).

The paper's search (C=16, N=5 cells per stage, 25k/25k images, 50-100 epochs, batch 64) costs GPU-hours; the defaults
here are sized so that every method can be run over three seeds on the 2-core development CPU in one sitting: C=8,
N=1, the first 10,000 training images (5,000 / 5,000), 8 epochs, batch 64: 79 steps per epoch, 632 steps, about 12
minutes per DARTS-like run on one core (two runs side by side). Earlier figures used 20,000 images and 12 epochs
(``--images 20000 --epochs 12``). With perturbation selection the last ``tune_epochs + 1 = 4`` of the 8 epochs are
its decision rounds. Optimizer settings are the paper's: weights SGD 0.025 cosine -> 0.001, momentum 0.9, wd 5e-4,
clip 5; alphas Adam 3e-4 (0.5, 0.999) wd 1e-3; each method's own constants are its code's (``search.robust``,
``search.strategies``), stretched over the epochs given. References printed beside the results: the table's median
over all 15,625 cells (90.75, what a random cell scores), the optimum (94.37) and the published full-scale results
(DARTS-V1 54.30: the collapse to the all-skip cell; GDAS 93.61 +- 0.09; DARTS- 93.80; DrNAS 94.36; beta-DARTS 94.36).

    python benchmarks/nb201_oneshot.py [--device cpu|cuda] [--methods darts beta_darts ...] [--seeds 0 1 2] [--jobs 2]
    python benchmarks/nb201_oneshot.py --epochs 1 --images 512            # a quick end-to-end check
    python benchmarks/nb201_oneshot.py --export-subset DIR                 # compact copy of data and table
    python benchmarks/nb201_oneshot.py --from-results RESULTS.json --consensus 3   # re-summarize saved runs

``--export-subset DIR`` writes ``DIR/cifar10_first<images>.npz`` (the first ``--images`` training images and
``--export-test`` test images, compressed) and ``DIR/nb201.csv``, small enough to ship to another machine; the
search then reads only those images (normalisation statistics come from them instead of all 50,000).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import shutil
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
PUBLISHED = {"darts": ("DARTS-V1", 54.30, 0.00), "gdas": ("GDAS", 93.61, 0.09), "gdas_v1": ("GDAS", 93.61, 0.09),
             "beta_darts": ("beta-DARTS", 94.36, 0.00), "darts_minus": ("DARTS-", 93.80, math.nan),
             "drnas": ("DrNAS", 94.36, 0.00)}  # as the robust-search issue lists them; none published for the others
LABELS = {"darts": "DARTS 1st order", "gdas": "GDAS", "gdas_v1": "GDAS (selected-op form)",
          "beta_darts": "beta-DARTS", "darts_minus": "DARTS-", "drnas": "DrNAS", "sdarts_rs": "SDARTS-RS",
          "beta_darts_pt": "beta-DARTS + PT",
          "sdarts_rs_pt": "SDARTS-RS + PT", "sdarts_rs_pt_v1": "SDARTS-RS + PT (acc, 10 batches, none kept)",
          # selection rules tried and removed again; their runs stay in results/nb201_oneshot.json
          "sdarts_rs_pt_span": "SDARTS-RS + PT (shortcuts last)",
          "sdarts_rs_pt_proj": "SDARTS-RS + PT (projection rule)",
          "darts_pt": "DARTS + PT", "spos": "SPOS (evolution over 100 cells)"}
_PT_V1 = {"tune_epochs": 3, "probe_batches": 10, "keep_none": True}  # accuracy on 10 probe batches, none allowed
_PT = {"tune_epochs": 3, "probe_batches": 79, "criterion": "loss"}  # the loss on the whole split (79 batches)
_GDAS_LOOP = {"nesterov": True, "weights_first": True, "clip_with_arch": True}  # the authors' NB201 loop
METHODS: dict[str, dict[str, Any]] = {
    # strategy, its arguments, regularizers (search.robust class name -> arguments), selection (arguments of
    # search.selection.PerturbationSelection) and SearchModule overrides
    "darts": {"strategy": "darts", "strategy_args": {"order": 1}},
    "gdas": {"strategy": "gdas", "strategy_args": {"edge_form": "sum"}, "module": _GDAS_LOOP},
    "gdas_v1": {"strategy": "gdas", "strategy_args": {"edge_form": "selected"}},
    "beta_darts": {"strategy": "darts", "strategy_args": {"order": 1}, "regularizers": {"BetaDecay": {}}},
    "darts_minus": {"strategy": "darts", "strategy_args": {"order": 1}, "regularizers": {"AuxiliarySkip": {}}},
    "drnas": {"strategy": "drnas"},
    "sdarts_rs": {"strategy": "darts", "strategy_args": {"order": 1}, "regularizers": {"RandomSmoothing": {}}},
    "darts_pt": {"strategy": "darts", "strategy_args": {"order": 1}, "selection": _PT_V1},
    "spos": {"strategy": "spos", "strategy_args": {"evaluations": 100, "epoch_evaluations": 0}},
    "sdarts_rs_pt": {"strategy": "darts", "strategy_args": {"order": 1}, "regularizers": {"RandomSmoothing": {}},
                     "selection": _PT},
    "sdarts_rs_pt_v1": {"strategy": "darts", "strategy_args": {"order": 1},
                        "regularizers": {"RandomSmoothing": {}}, "selection": _PT_V1},
    "beta_darts_pt": {"strategy": "darts", "strategy_args": {"order": 1}, "regularizers": {"BetaDecay": {}},
                      "selection": _PT_V1},
}
PAPER_SCALE = {"channels": 16, "cells": 5, "images": 50000, "epochs": 50, "batch_size": 64}
OPTIMUM = 94.37


@dataclass(frozen=True)
class SearchConfig:
    """The settings shared by every run of one benchmark invocation."""

    data: str
    table: str
    device: str
    channels: int
    cells: int
    images: int
    epochs: int
    batch_size: int
    val_batches: int
    workers: int
    threads: int
    arch_lr: float = 3e-4
    impl: str = "fused"


def _quiet() -> None:
    """Silence Lightning's banners and the warnings of tiny loaders (the benchmark prints its own lines)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def make_run(config: SearchConfig, method: str, seed: int, callbacks: list[Any], cost: Any = None
             ) -> tuple[Any, Any, Any]:
    """The ``SearchModule``, data module and ``Trainer`` of one run of ``method`` (seeded; not started), with the
    cost objective ``cost`` (``search.cost.CostObjective``) if given."""
    import lightning as L

    from nasdata import NpzDataModule
    from search import robust
    from search.module import SearchModule
    from search.selection import PerturbationSelection
    from search.strategies import strategy_arguments
    from supernet import NB201SearchNetwork

    _quiet()
    L.seed_everything(seed, verbose=False)
    spec = METHODS[method]
    strategy_args: dict[str, Any] = dict(spec.get("strategy_args", {}))
    if "seed" in strategy_arguments(spec["strategy"]):
        strategy_args["seed"] = seed
    regularizers = [getattr(robust, name)(**kwargs) for name, kwargs in spec.get("regularizers", {}).items()]
    selection = PerturbationSelection(**spec["selection"], seed=seed) if "selection" in spec else None
    supernet = NB201SearchNetwork(channels=config.channels, cells_per_stage=config.cells, num_classes=10,
                                  in_channels=3, impl=config.impl)
    module = SearchModule(supernet, strategy=spec["strategy"], strategy_args=strategy_args, regularizers=regularizers,
                          selection=selection, lr=0.025, lr_min=0.001,
                          momentum=0.9, weight_decay=5e-4, grad_clip=5.0, arch_lr=config.arch_lr, arch_betas=(0.5, 0.999),
                          arch_weight_decay=1e-3, cost=cost, **spec.get("module", {}))
    data = NpzDataModule(config.data, subset=config.images, search_split=True, train_portion=0.5,
                         batch_size=config.batch_size, num_workers=config.workers, seed=0)
    trainer = L.Trainer(accelerator=config.device, devices=1, max_epochs=config.epochs,
                        limit_val_batches=config.val_batches, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=callbacks)
    return module, data, trainer


def search_once(config: SearchConfig, method: str, seed: int) -> dict[str, Any]:
    """One search run; returns the found cell, its table accuracy, per-epoch cells and timing."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback

    from search.module import SearchModule
    from search.nb201_table import NB201Table

    _quiet()  # after the imports: importing Lightning sets its loggers' levels

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.backends.cudnn.benchmark = config.device == "cuda"  # fixed input sizes: let cuDNN pick kernels
    table = NB201Table(config.table)
    trace: list[str] = []
    probabilities: list[list[list[float]]] = []  # per epoch, the [6 edges][5 ops] op probabilities (before PT)
    clock: dict[str, float] = {}

    class EpochCells(Callback):
        """Record the cell the architecture stands for after every epoch, and the training time."""

        def on_train_start(self, trainer: L.Trainer, pl_module: SearchModule) -> None:
            clock["start"] = time.perf_counter()

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: SearchModule) -> None:
            trace.append(pl_module.genotype().to_arch_str())
            probabilities.append([[round(float(p), 5) for p in edge] for edge in pl_module.strategy.probabilities(pl_module.arch)["normal"]])
            val_acc = float(trainer.callback_metrics.get("val_acc", math.nan))
            print(f"  [{LABELS.get(method, method)} seed {seed}] epoch {len(trace)}/{config.epochs}: "
                  f"{table.accuracy(trace[-1], 'cifar10', 'test'):6.2f}  {trace[-1]}  (supernet val_acc "
                  f"{val_acc:.3f}, {time.perf_counter() - clock['start']:.0f} s)", flush=True)

        def on_train_end(self, trainer: L.Trainer, pl_module: SearchModule) -> None:
            clock["train"] = time.perf_counter() - clock["start"]

    module, data, trainer = make_run(config, method, seed, [EpochCells()])
    start = time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    cell = module.genotype().to_arch_str()
    metrics = trainer.callback_metrics
    return {
        "method": method, "seed": seed, "cell": cell, "test_acc": table.accuracy(cell, "cifar10", "test"),
        "epoch_cells": trace, "epoch_probabilities": probabilities, "epoch_test_acc": [table.accuracy(c, "cifar10", "test") for c in trace],
        "supernet_val_acc": float(metrics["val_acc"]) if "val_acc" in metrics else math.nan,
        "seconds": seconds, "train_seconds": clock["train"], "steps_per_epoch": trainer.num_training_batches,
        "global_step": trainer.global_step,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def export_subset(source: Path, table: Path, out_dir: Path, images: int, test_images: int) -> None:
    """Write the first ``images`` training and ``test_images`` test images (compressed) and the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with np.load(source, allow_pickle=False) as npz:
        arrays = {"x_train": npz["x_train"][:images], "y_train": npz["y_train"][:images],
                  "x_test": npz["x_test"][:test_images], "y_test": npz["y_test"][:test_images]}
    target = out_dir / f"cifar10_first{images}.npz"
    np.savez_compressed(target, **arrays)
    shutil.copyfile(table, out_dir / "nb201.csv")
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in (target, out_dir / "nb201.csv"))
    print(f"wrote {sizes} to {out_dir}")


def _describe(config: SearchConfig, methods: list[str], seeds: list[int]) -> str:
    half = config.images // 2
    steps = math.ceil(half / config.batch_size)
    scale = PAPER_SCALE
    return (f"NB201 one-shot search on CIFAR-10 ({config.data}), device {config.device}\n"
            f"  methods {', '.join(LABELS.get(m, m) for m in methods)}; seeds {seeds}\n"
            f"  scaled down from the paper (paper value in brackets): C={config.channels} [{scale['channels']}], "
            f"N={config.cells} cells per stage [{scale['cells']}], first {config.images} training images = "
            f"{config.images - half} weights / {half} architecture [{scale['images'] // 2} / "
            f"{scale['images'] // 2}], {config.epochs} epochs [{scale['epochs']}] of {steps} steps, batch "
            f"{config.batch_size} [{scale['batch_size']}]; per-epoch validation on {config.val_batches} batches; "
            f"{config.impl} cell path")


def _run_line(r: dict[str, Any]) -> str:
    trajectory = " ".join(f"{a:.1f}" for a in r["epoch_test_acc"])
    batches = max(1, r["steps_per_epoch"] * len(r["epoch_cells"]))
    return (f"{LABELS.get(r['method'], r['method']):<16} seed {r['seed']}  {r['test_acc']:6.2f}  {r['cell']}\n"
            f"{'':<16}   supernet val_acc {r['supernet_val_acc']:.3f}; {r['seconds']:.0f} s in all, "
            f"{r['train_seconds'] / batches:.2f} s per batch (architecture + weight step, validation included); "
            f"table acc of the cell after each epoch: {trajectory}")


def label_width(methods: list[str]) -> int:
    """Width of the method column: the longest label (or "random cell") and two spaces."""
    return max([len("random cell")] + [len(LABELS.get(m, m)) for m in methods]) + 2


def summary(results: list[dict[str, Any]], methods: list[str], random_median: float) -> str:
    """The comparison table: mean +- std per method beside the random-cell median and the paper's figures."""
    width = label_width(methods)
    lines = [f"{'method':<{width}}{'found cells (CIFAR-10 test %)':<34}{'published, full scale':<30}",
             "-" * (width + 64)]
    for method in methods:
        accs = [r["test_acc"] for r in results if r["method"] == method]
        if not accs:
            continue
        mean, std = mean_std(accs)
        name, p_mean, p_std = PUBLISHED.get(method, (method, math.nan, math.nan))
        published = "-" if math.isnan(p_mean) else f"{name} {p_mean:.2f}" + (
            "" if math.isnan(p_std) else f" +- {p_std:.2f}")
        lines.append(f"{LABELS.get(method, method):<{width}}{f'{mean:.2f} +- {std:.2f} (n={len(accs)})':<34}"
                     f"{published}")
    lines.append(f"{'random cell':<{width}}{f'{random_median:.2f} (median of the table)':<34}")
    lines.append(f"{'optimum':<{width}}{OPTIMUM:.2f}")
    return "\n".join(lines)


def consensus_lines(results: list[dict[str, Any]], methods: list[str], table: Any, size: int) -> str:
    """Per method, the table accuracy of the consensus cell (``search.seeds.consensus_genotype``: votes per edge,
    ties by the seeds' last op probabilities before any selection) of every ``size`` of its seeds, and of all."""
    import itertools

    from ops import NB201Genotype, search_space
    from search.seeds import consensus_genotype

    candidates = list(search_space("nb201"))

    def last_weights(group: Any) -> list[dict[str, Any]] | None:  # older results files did not record them
        return [{"normal": r["epoch_probabilities"][-1]} for r in group] \
            if all("epoch_probabilities" in r for r in group) else None

    def vote(group: Any) -> Any:
        cells = [NB201Genotype.from_arch_str(r["cell"]) for r in group]
        return consensus_genotype(cells, last_weights(group), candidates)

    width = label_width(methods)
    lines = [f"consensus cells of {size} seeds: every combination of the runs (they share runs, so they are not "
             f"independent), and the disjoint groups of {size} consecutive seeds (independent: one figure each)"]
    for method in methods:
        runs = sorted((r for r in results if r["method"] == method), key=lambda r: r["seed"])
        if len(runs) < size:
            continue
        accs = [table.accuracy(vote(group), "cifar10", "test") for group in itertools.combinations(runs, size)]
        every = vote(runs)
        mean, std = mean_std(accs)
        lines.append(f"{LABELS.get(method, method):<{width}}{len(accs)} combinations: {mean:.2f} +- {std:.2f}, worst "
                     f"{min(accs):.2f}; all {len(runs)} seeds: {table.accuracy(every, 'cifar10', 'test'):.2f} "
                     f"{every.to_arch_str()}")
        groups = [runs[i:i + size] for i in range(0, len(runs) - size + 1, size)]
        scored = [(g, vote(g)) for g in groups]
        accs = [table.accuracy(cell, "cifar10", "test") for _, cell in scored]
        mean, std = mean_std(accs)
        lines.append(f"{'':<{width}}{len(groups)} disjoint groups: {mean:.2f} +- {std:.2f}, worst {min(accs):.2f}")
        lines.extend(f"{'':<{width + 2}}seeds {', '.join(str(r['seed']) for r in g)}: {acc:.2f} {cell.to_arch_str()}"
                     for (g, cell), acc in zip(scored, accs))
    return "\n".join(lines)


def check_inputs(parser: argparse.ArgumentParser, methods: list[str], data: Path, table: Path) -> None:
    """Exit through ``parser.error`` on an unknown method or a missing data or table file."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    for path, flag in ((data, "--data"), (table, "--table")):
        if not path.is_file():
            parser.error(f"{flag} {path}: no such file")


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run every method x seed, print each run and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "cifar10.npz",
                        help="CIFAR-10 .npz (x_train, y_train, x_test, y_test)")
    parser.add_argument("--table", type=Path, default=SHARED / "benchdata" / "nb201.csv",
                        help="NAS-Bench-201 200-epoch table")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"methods: {', '.join(METHODS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--channels", type=int, default=8, help="C of the supernet (paper: 16)")
    parser.add_argument("--cells", type=int, default=1, help="N, search cells per stage (paper: 5)")
    parser.add_argument("--images", type=int, default=10000, help="first N training images, split in half")
    parser.add_argument("--epochs", type=int, default=8, help="search epochs (paper: 50)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--val-batches", type=int, default=20, help="validation batches per epoch (supernet acc)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per loader")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--arch-lr", type=float, default=3e-4,
                        help="Adam learning rate of the architecture (paper: 3e-4 over 50 epochs of 391 steps)")
    parser.add_argument("--impl", choices=("fused", "reference"), default="fused",
                        help="the supernet's cell path (supernet.impls; the same function, reference is slower)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (separate processes)")
    parser.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    parser.add_argument("--export-subset", type=Path, default=None, metavar="DIR",
                        help="write a compact copy of the first --images training images and the table; exit")
    parser.add_argument("--export-test", type=int, default=1000, help="test images in the exported subset")
    parser.add_argument("--consensus", type=int, default=0, metavar="K",
                        help="also score the consensus cell of every K seeds of a method (search.seeds)")
    parser.add_argument("--from-results", type=Path, default=None, metavar="JSON",
                        help="print the summary (and --consensus) of a results file written by --out; no search")
    args = parser.parse_args(argv)

    if args.export_subset is not None:
        export_subset(args.data, args.table, args.export_subset, args.images, args.export_test)
        return 0
    from search.nb201_table import NB201Table

    if args.from_results is not None:
        if not args.from_results.is_file():
            parser.error(f"--from-results {args.from_results}: no such file")
        saved = json.loads(args.from_results.read_text())
        results = saved["results"]
        methods = list(dict.fromkeys(r["method"] for r in results))
        print(summary(results, methods, saved["random_median"]))
        if args.consensus:
            print(consensus_lines(results, methods, NB201Table(args.table), args.consensus))
        return 0
    check_inputs(parser, args.methods, args.data, args.table)
    if args.images < 2 or args.epochs < 1 or args.jobs < 1:
        parser.error("need --images >= 2, --epochs >= 1 and --jobs >= 1")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device available")

    config = SearchConfig(data=str(args.data), table=str(args.table), device=args.device, channels=args.channels,
                          cells=args.cells, images=args.images, epochs=args.epochs, batch_size=args.batch_size,
                          val_batches=args.val_batches, workers=args.workers, threads=args.threads,
                          arch_lr=args.arch_lr, impl=args.impl)
    random_median = float(np.median(NB201Table(args.table).column("cifar10_test")))
    print(_describe(config, args.methods, args.seeds), flush=True)
    runs = [(m, s) for m in args.methods for s in args.seeds]
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    if args.jobs == 1:
        for method, seed in runs:
            results.append(search_once(config, method, seed))
            print(_run_line(results[-1]), flush=True)
    else:
        context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = [pool.submit(search_once, config, method, seed) for method, seed in runs]
            for future in as_completed(futures):
                results.append(future.result())
                print(_run_line(results[-1]), flush=True)
    results.sort(key=lambda r: (args.methods.index(r["method"]), r["seed"]))
    print(f"\n{len(runs)} runs in {time.perf_counter() - start:.0f} s wall on {args.device} "
          f"({args.jobs} at a time)\n" + summary(results, args.methods, random_median), flush=True)
    if args.consensus:
        print(consensus_lines(results, args.methods, NB201Table(args.table), args.consensus), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"config": asdict(config), "random_median": random_median,
                                        "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
