"""Regularized evolution over NAS-Bench-201 with evaluators that do not look the answer up: each cell trained from
scratch on real CIFAR-10 (``TrainedEvaluator``), or scored with the weights of a trained SPOS supernet
(``SharedWeightEvaluator``); the cells found are then scored by the table.

Printed per seed: the found cell's table accuracy (200-epoch CIFAR-10 test), beside the random median (90.75) and the
optimum (94.37); the Kendall tau between the proxy score and the table over every cell evaluated; trials per hour.
The trained proxy's budget: the NB201 network at C=8, N=1 cell per stage, ``--epochs`` epochs on the first
``--images`` training images (half to train, half to score), batch 64, SGD 0.05 cosine.

    python benchmarks/discrete_trials.py --evaluator trained --seeds 0 1 2 --trials 50 [--workers 2]
    python benchmarks/discrete_trials.py --evaluator shared --run RUN_DIR --seeds 0 1 2 --trials 300

``RUN_DIR`` is a search run folder of ``python -m search.spos`` (its ``checkpoints/last.ckpt``); the figures in the
README used the NB201 CPU budget of ``benchmarks/nb201_oneshot.py`` (C=8, N=1, 10k images, 8 epochs).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasdata import NpzDataModule  # noqa: E402
from search.discrete import (Budget, NB201Space, RegularizedEvolution, SharedWeightEvaluator,  # noqa: E402
                             TrainedEvaluator, make_pool)
from search.nb201_table import NB201Table  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", choices=["trained", "shared"], required=True)
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "cifar10.npz")
    parser.add_argument("--table", type=Path, default=SHARED / "benchdata" / "nb201.csv")
    parser.add_argument("--run", type=Path, help="SPOS search run folder (shared-weight evaluator)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=50, help="trials per seed")
    parser.add_argument("--workers", type=int, default=1, help="1: in this process; more: Ray workers")
    parser.add_argument("--images", type=int, default=4000, help="trained: first N training images, split in half")
    parser.add_argument("--epochs", type=int, default=1, help="trained: epochs per cell")
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--sample", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = NB201Table(args.table)
    if args.evaluator == "trained":
        data = NpzDataModule(str(args.data), subset=args.images, search_split=True, batch_size=64, num_workers=0)
        evaluator = TrainedEvaluator(data, epochs=args.epochs, channels=8, layers=1)
        budget = f"C=8, N=1, {args.epochs} epoch(s) on {args.images // 2} images, scored on {args.images // 2}"
    else:
        evaluator = SharedWeightEvaluator(str(args.run))
        budget = f"SPOS supernet {args.run}, batch-norm statistics on 4 batches, accuracy on 20 validation batches"
    space = NB201Space()
    evaluator.bind_space(space)
    runs = []
    pool = make_pool(evaluator, args.workers)
    try:
        for seed in args.seeds:
            start = time.perf_counter()
            result = RegularizedEvolution(args.population, args.sample).search(
                space, evaluator, Budget(args.trials), seed=seed, pool=pool)
            seconds = time.perf_counter() - start
            cells = result.distinct()
            tau = kendalltau([r.metric for r in cells], [table.value(r.cell, "cifar10_test") for r in cells])[0]
            found = table.value(result.best_cell, "cifar10_test")
            runs.append({"seed": seed, "cell": result.best.arch, "proxy": result.best.metric, "test_acc": found,
                         "kendall_tau": float(tau), "distinct_cells": len(cells), "trials": len(result.history),
                         "failed": len(result.failures), "seconds": seconds,
                         "trials_per_hour": 3600 * (len(result.history) + len(result.failures)) / seconds})
            print(f"seed {seed}: {found:.2f}  {result.best.arch}  (proxy {result.best.metric:.2f}, tau {tau:.3f} "
                  f"over {len(cells)} cells, {runs[-1]['trials_per_hour']:.0f} trials/h)", flush=True)
    finally:
        pool.close()
    accs = [r["test_acc"] for r in runs]
    print(f"REA with the {args.evaluator} evaluator ({budget}), {args.trials} trials, {args.workers} worker(s): "
          f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs) if len(accs) > 1 else 0.0:.2f} (random median 90.75, optimum 94.37); "
          f"tau {statistics.mean(r['kendall_tau'] for r in runs):.3f}; "
          f"{statistics.mean(r['trials_per_hour'] for r in runs):.0f} trials/h")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "evaluator": args.evaluator, "budget": budget,
                                        "workers": args.workers, "trials": args.trials, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
