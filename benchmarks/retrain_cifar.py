"""Retrain published and random DARTS-space cells on the real CIFAR-10 in a CPU-sized budget.

Each cell trains with ``RetrainModule`` (the DARTS recipe, scaled down: fewer channels, cells, images and epochs;
images optionally area-downsampled) and is scored on the full 10,000-image test set. Prints the settings, then a
table of parameter count, multiply-adds and test accuracy per cell.

    python benchmarks/retrain_cifar.py                      # ~15 min of 2-core CPU per cell (5 cells)
    python benchmarks/retrain_cifar.py --preset quick       # ~3-5 min per cell
    python benchmarks/retrain_cifar.py --npz /path/cifar10.npz --genotypes DARTS_V2 runs/x/genotype.json
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasdata import NpzDataModule  # noqa: E402
from nasdata.arrays import ArraySplits  # noqa: E402
from ops import DartsGenotype, Genotype, search_space  # noqa: E402
from retrain.build import count_macs, count_parameters, resolve_genotype  # noqa: E402
from retrain.module import RetrainModule  # noqa: E402

DEFAULT_NPZ = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10.npz"
PRESETS: dict[str, dict[str, float]] = {
    # ~15 min per cell on 2 CPU cores (the slowest cell, NASNet, sets the pace)
    "full": {"channels": 16, "layers": 8, "image_size": 16, "train_subset": 25000, "epochs": 6, "lr": 0.05},
    # ~3-5 min per cell
    "quick": {"channels": 12, "layers": 5, "image_size": 16, "train_subset": 10000, "epochs": 5, "lr": 0.05},
}


def random_darts_genotype(rng: np.random.Generator, steps: int = 4) -> DartsGenotype:
    """A uniformly random DARTS-space cell pair: per node two distinct inputs, each with a non-``none`` op."""
    ops = [op for op in search_space("darts") if op != "none"]

    def cell() -> tuple[tuple[str, int], ...]:
        edges: list[tuple[str, int]] = []
        for node in range(2, steps + 2):
            for src in sorted(rng.choice(node, size=2, replace=False).tolist()):
                edges.append((str(rng.choice(ops)), int(src)))
        return tuple(edges)

    concat = tuple(range(2, steps + 2))
    return DartsGenotype(normal=cell(), normal_concat=concat, reduce=cell(), reduce_concat=concat)


class DownsampledNpz(NpzDataModule):
    """``NpzDataModule`` whose images are area-downsampled by an integer factor (32 -> 16 with factor 2)."""

    def __init__(self, path: str, factor: int = 1, **kwargs: object) -> None:
        super().__init__(path, **kwargs)
        self.factor = factor

    def load_arrays(self) -> ArraySplits:
        arrays = super().load_arrays()
        if self.factor == 1:
            return arrays
        f = self.factor

        def shrink(x: np.ndarray) -> np.ndarray:
            n, h, w, c = x.shape
            pooled = x.reshape(n, h // f, f, w // f, f, c).astype(np.float32).mean(axis=(2, 4))
            return np.round(pooled).astype(np.uint8)

        return ArraySplits(shrink(arrays.x_train), arrays.y_train, shrink(arrays.x_test), arrays.y_test)


def run_cell(name: str, genotype: Genotype, args: argparse.Namespace) -> dict[str, object]:
    """Train one cell and return its row of the table."""
    L.seed_everything(args.seed, verbose=False)
    data = DownsampledNpz(str(args.npz), factor=32 // args.image_size, batch_size=args.batch_size,
                          subset=args.train_subset, cutout=args.cutout, val_batch_size=500)
    model = RetrainModule(genotype.to_text(), num_classes=data.num_classes, in_channels=data.in_channels,
                          image_size=data.image_size, channels=args.channels, layers=args.layers, auxiliary=True,
                          drop_path_prob=args.drop_path, lr=args.lr, weight_decay=3e-4)
    trainer = L.Trainer(accelerator="cpu", max_epochs=args.epochs, gradient_clip_val=5.0, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    start = time.time()
    trainer.fit(model, datamodule=data)
    train_s = time.time() - start
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    total_s = time.time() - start
    row = {"name": name, "params_m": count_parameters(model.net) / 1e6,
           "macs_m": count_macs(model.net, args.image_size, data.in_channels) / 1e6,
           "test_acc": 100 * result["test_acc"], "train_min": train_s / 60, "total_min": total_s / 60,
           "genotype": genotype.to_text()}
    print(f"[{name}] test acc {row['test_acc']:.2f}%  params {row['params_m']:.3f}M  "
          f"train {row['train_min']:.1f} min  total {row['total_min']:.1f} min", flush=True)
    return row


def main() -> None:
    """Parse flags, retrain every cell, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help="CIFAR-10 .npz (x_train, y_train, x_test, y_test)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--genotypes", nargs="+", default=["DARTS_V2", "NASNet", "random", "random", "random"],
                        help="zoo names, genotype.json paths, genotype text, or 'random' (seeded)")
    parser.add_argument("--channels", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--image-size", type=int, choices=(8, 16, 32))
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--cutout", type=int, default=0)
    parser.add_argument("--drop-path", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, type(value)(value) if key != "lr" else float(value))
    if not args.npz.is_file():
        sys.exit(f"error: CIFAR-10 npz not found at {args.npz} (--npz)")
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    rng = np.random.default_rng(args.seed)
    cells: list[tuple[str, Genotype]] = []
    for spec in args.genotypes:
        if spec == "random":
            cells.append((f"random_{sum(n.startswith('random') for n, _ in cells)}", random_darts_genotype(rng)))
        else:
            cells.append((Path(spec).stem if spec.endswith(".json") else spec[:24], resolve_genotype(spec)))
    print(f"CIFAR-10 retrain benchmark ({args.npz}), shrunk from the DARTS recipe (C=36, 20 cells, 32x32, 50k "
          f"images, 600 epochs, cutout 16, drop-path 0.2) to: C={args.channels}, {args.layers} cells, "
          f"{args.image_size}x{args.image_size} images (area-downsampled), first {args.train_subset} training "
          f"images, {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr} cosine -> 0, momentum 0.9, "
          f"wd 3e-4, clip 5, aux 0.4, cutout {args.cutout}, drop-path {args.drop_path}; test on all 10,000 test "
          f"images; seed {args.seed}; {args.threads} threads", flush=True)
    rows = [run_cell(name, genotype, args) for name, genotype in cells]
    print("\n| cell | params (M) | MACs (M) | test acc (%) | train (min) | total (min) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['params_m']:.3f} | {r['macs_m']:.1f} | {r['test_acc']:.2f} | "
              f"{r['train_min']:.1f} | {r['total_min']:.1f} |")
    for r in rows:
        if str(r["name"]).startswith("random"):
            print(f"{r['name']}: {r['genotype']}")


if __name__ == "__main__":
    main()
