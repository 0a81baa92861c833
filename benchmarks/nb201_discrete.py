"""RS, REA and REINFORCE on NAS-Bench-201 (CIFAR-10) against the NAS-Bench-201 paper's table.

Protocol of the paper (Dong & Yang, ICLR 2020, Table 5): each method searches on the 12-epoch CIFAR-10
validation accuracy (``cifar10_valid_12ep``) under 12,000 s of simulated training time and is scored by the
200-epoch CIFAR-10 test accuracy (``cifar10_test``) of the cell it returns; mean ± std over 500 runs.
Paper: RS 93.70 ± 0.36, REA 93.92 ± 0.30, REINFORCE 93.85 ± 0.37; optimum 94.37.

Budget mapping. The CSVs carry no training times, so a fixed simulated cost is charged per evaluation.
The benchmark's API records, for cell index 1 (0.80 M params, 114 M FLOPs) on cifar10-valid, 10.85 s per
training epoch and 3.75 s per validation pass; the paper's simulator charges ``train-all-time +
valid-per-time`` per candidate, so one 12-epoch evaluation costs 12 × 10.85 + 3.75 ≈ 134 s, and 12,000 s buy
floor(12000 / 134) = 89 evaluations (an evaluation that would overrun the budget is not made). Real per-cell
times vary with the cell, so the script also reports the score at about ±50 % of that count (``--sensitivity``).
Other differences from the paper: its simulator draws the 12-epoch accuracy of one random training seed,
the table here holds the mean over seeds; REA uses the paper's P = 10, S = 3; REINFORCE uses Adam with
lr 0.01 (NATS-Bench's setting) and baseline momentum 0.9.

    python benchmarks/nb201_discrete.py [--runs 500] [--table nb201.csv --hp12-table nb201_hp12.csv]
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from search.discrete import (Budget, NB201Space, RandomSearch, RegularizedEvolution, Reinforce, Strategy,
                             TabularEvaluator, mean_std, run_seeds)
from search.nb201_table import NB201Table

BENCHDATA = Path(__file__).resolve().parents[2] / "shared" / "benchdata"
PAPER = {"RS": (93.70, 0.36), "REA": (93.92, 0.30), "REINFORCE": (93.85, 0.37)}


def methods() -> dict[str, Strategy]:
    """The three methods with the paper's settings."""
    return {"RS": RandomSearch(), "REA": RegularizedEvolution(population_size=10, sample_size=3),
            "REINFORCE": Reinforce(lr=0.01, baseline_decay=0.9, optimizer="adam")}


def score(table: NB201Table, strategy: Strategy, evaluator: TabularEvaluator, budget: Budget,
          runs: int) -> tuple[float, float, float]:
    """Mean and std of the returned cells' 200-epoch CIFAR-10 test accuracy over seeds ``0..runs-1``; seconds."""
    start = time.perf_counter()
    results = run_seeds(strategy, NB201Space(), evaluator, budget, range(runs))
    mean, std = mean_std([table.value(r.best_cell, "cifar10_test") for r in results])
    return mean, std, time.perf_counter() - start


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, default=BENCHDATA / "nb201.csv", help="200-epoch NAS-Bench-201 CSV")
    parser.add_argument("--hp12-table", type=Path, default=BENCHDATA / "nb201_hp12.csv", help="12-epoch CSV")
    parser.add_argument("--runs", type=int, default=500, help="runs (seeds) per method")
    parser.add_argument("--budget-seconds", type=float, default=12000.0, help="simulated search budget")
    parser.add_argument("--seconds-per-eval", type=float, default=134.0, help="simulated cost of one evaluation")
    parser.add_argument("--sensitivity", type=int, default=100,
                        help="runs per method at ~0.67x and ~1.7x the evaluation count (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # REINFORCE's policy is 30 logits: extra threads only add synchronisation

    table = NB201Table(args.table, args.hp12_table)
    evaluator = TabularEvaluator(table, "cifar10_valid_12ep", seconds_per_eval=args.seconds_per_eval)
    evals = math.floor(args.budget_seconds / args.seconds_per_eval + 1e-9)
    print("NAS-Bench-201 CIFAR-10: search on cifar10_valid_12ep, score = 200-epoch cifar10_test of the returned cell")
    print(f"budget {args.budget_seconds:g} simulated s at {args.seconds_per_eval:g} s per 12-epoch evaluation "
          f"= {evals} evaluations per run; {args.runs} runs (seeds 0..{args.runs - 1}) per method")
    print(f"{'method':<10} {'ours':>15} {'paper':>15} {'time':>8}")
    budget = Budget(evaluations=None, seconds=args.budget_seconds)
    for name, strategy in methods().items():
        mean, std, secs = score(table, strategy, evaluator, budget, args.runs)
        paper = PAPER[name]
        print(f"{name:<10} {mean:>8.2f} ± {std:.2f} {paper[0]:>8.2f} ± {paper[1]:.2f} {secs:>7.1f}s", flush=True)
    print(f"optimum    {table.column('cifar10_test').max():>8.2f}")
    if args.sensitivity:
        counts = (round(evals / 1.5), evals, round(evals * 1.7))
        print(f"sensitivity to the evaluation count, {args.sensitivity} runs each "
              f"(cifar10_test mean ± std at {' / '.join(map(str, counts))} evaluations):")
        for name, strategy in methods().items():
            cells = [score(table, strategy, evaluator, Budget(evaluations=n), args.sensitivity)[:2] for n in counts]
            print(f"  {name:<10} " + " / ".join(f"{m:.2f} ± {s:.2f}" for m, s in cells), flush=True)


if __name__ == "__main__":
    main()
