"""Hardware-aware one-shot search, measured: the cost model against the NAS-Bench-201 table, FLOPs-budgeted searches
scored by the table beside what an oracle would pick within the budget, and the latency prediction's error.

Three parts (each can be run alone):

* ``--check-table``: the cost model's params and FLOPs of every one of the 15,625 cells (one-hot architectures at
  the table's network, C=16, N=5, 32x32 CIFAR-10) against the table's ``params_m`` / ``flops_m`` columns.
* ``--budgets 0.25 0.5 0.75``: searches at the CPU budget of ``nb201_oneshot.py`` (C=8, N=1 supernet, the first
  10,000 images, 8 epochs; ``--method``, default SDARTS-RS) with ``CostObjective(kind="flops", budget=...)``, each
  budget a fraction of the dearest cell's FLOPs, over ``--seeds``: the found cell's FLOPs beside the budget, its
  table accuracy, and the best table accuracy of any cell within the budget.
* ``--latency-cells 20``: the latency model of the DARTS space (the CIFAR network, C=36, 20 cells, batch 1, 32x32)
  measured on this machine, and for that many random cells the predicted latency beside the measured latency of the
  built network: the prediction error.

    python benchmarks/nb201_cost.py --check-table
    python benchmarks/nb201_cost.py --budgets 0.25 0.5 0.75 --seeds 0 1 2 --jobs 2 --threads 1 --out results.json
    python benchmarks/nb201_cost.py --latency-cells 20 --threads 1
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nb201_oneshot import LABELS, METHODS, SHARED, SearchConfig, check_inputs, make_run  # noqa: E402


def nb201_model() -> Any:
    """The cost model (params, FLOPs) of the NAS-Bench-201 space at the table's network."""
    from ops import NB201Space
    from search.cost.model import CostModel, reference_genotype, standalone

    space = NB201Space()
    net = standalone(reference_genotype(space), "nb201", None, None, 10, 3)
    return CostModel.build(space, net, (3, 32, 32), ("params", "flops"))


def check_table(table_path: Path) -> dict[str, Any]:
    """Every cell's predicted params and FLOPs against the table."""
    from search.nb201_table import NB201Table

    table, model = NB201Table(table_path), nb201_model()
    worst = {"params": 0.0, "flops": 0.0}
    within = {"params": 0, "flops": 0}
    for index in range(len(table)):
        genotype = table.genotype(index)
        for kind, truth in (("params", table.params(genotype)), ("flops", table.flops(genotype))):
            error = abs(model.genotype_cost(genotype, kind) - truth) / truth
            worst[kind] = max(worst[kind], error)
            within[kind] += error <= 0.01
    return {"cells": len(table), "worst_relative_error": worst, "within_1_percent": within}


def search_within(config: SearchConfig, method: str, seed: int, budget: float) -> dict[str, Any]:
    """One FLOPs-budgeted search; the found cell, its FLOPs and table accuracy."""
    import torch

    from search.cost import CostObjective
    from search.nb201_table import NB201Table

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    cost = CostObjective(kind="flops", budget=budget)  # prices the table's network (C=16, N=5) at 32x32
    module, data, trainer = make_run(config, method, seed, [], cost=cost)
    start = time.perf_counter()
    trainer.fit(module, data)
    rule, found = module.rule_genotype(), module.genotype()
    table = NB201Table(config.table)
    return {"method": method, "seed": seed, "budget": budget, "cell": found.to_arch_str(),
            "flops": table.flops(found), "test_acc": table.accuracy(found, "cifar10", "test"),
            "rule_cell": rule.to_arch_str(), "rule_flops": table.flops(rule), "multiplier": cost.multiplier,
            "seconds": time.perf_counter() - start}


def oracle(table_path: Path, budget: float) -> tuple[float, str]:
    """The best table accuracy (and cell) among cells within ``budget`` MFLOPs."""
    from search.nb201_table import NB201Table

    table = NB201Table(table_path)
    flops, acc = table.column("flops_m"), table.column("cifar10_test")
    best = max((i for i in range(len(table)) if flops[i] <= budget), key=lambda i: acc[i])
    return float(acc[best]), table.arch(best)


def latency_error(cells: int, seed: int, repeats: int) -> dict[str, Any]:
    """Predicted vs measured latency (batch 1) of random DARTS cells' CIFAR networks on this machine."""
    import torch

    from ops import DartsSpace
    from search.cost import CostModel, LatencyMeter
    from search.cost.model import reference_genotype, standalone

    space = DartsSpace()
    meter = LatencyMeter("cpu", batch_size=1, repeats=repeats, warmup=3, cache=None)
    start = time.perf_counter()
    net = standalone(reference_genotype(space), "cifar", None, None, 10, 3)
    model = CostModel.build(space, net, (3, 32, 32), ("params", "flops", "latency"), meter)
    build_seconds = time.perf_counter() - start
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(cells):
        weights = {c: torch.rand(space.num_edges, len(space.candidates), generator=generator) for c in space.cell_types}
        genotype = space.discretize(weights)
        built = standalone(genotype, "cifar", None, None, 10, 3)
        rows.append({"genotype": genotype.to_text(), "predicted_ms": model.genotype_cost(genotype, "latency"),
                     "measured_ms": meter.time(built, (3, 32, 32)),
                     "mflops": model.genotype_cost(genotype, "flops")})
    errors = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
    return {"device": meter.header["device"], "build_seconds": build_seconds, "ops_timed": len(meter.entries),
            "cells": rows, "mean_abs_error": statistics.fmean(errors), "max_abs_error": max(errors),
            "fixed_ms": model.fixed["latency"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "cifar10.npz")
    parser.add_argument("--table", type=Path, default=SHARED / "benchdata" / "nb201.csv")
    parser.add_argument("--check-table", action="store_true", help="all 15,625 cells against the table")
    parser.add_argument("--budgets", nargs="*", type=float, default=[],
                        help="FLOPs budgets as fractions of the dearest cell's (e.g. 0.25 0.5 0.75)")
    parser.add_argument("--method", default="sdarts_rs", help=f"one-shot method, of {', '.join(METHODS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--latency-cells", type=int, default=0, help="random DARTS cells for the latency error")
    parser.add_argument("--latency-repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    check_inputs(parser, [args.method], args.data, args.table)
    if not (args.check_table or args.budgets or args.latency_cells):
        parser.error("nothing to do: give --check-table, --budgets and/or --latency-cells")
    if any(not 0 < b <= 1 for b in args.budgets):
        parser.error(f"--budgets are fractions in (0, 1] of the dearest cell's FLOPs, got {args.budgets}")
    out: dict[str, Any] = {}
    if args.check_table:
        result = out["check_table"] = check_table(args.table)
        print(f"cost model vs the NAS-Bench-201 table, {result['cells']} cells: worst relative error params "
              f"{result['worst_relative_error']['params']:.1e}, FLOPs {result['worst_relative_error']['flops']:.1e}; "
              f"within 1%: {result['within_1_percent']['params']} / {result['within_1_percent']['flops']}", flush=True)
    if args.budgets:
        import torch

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        largest = nb201_model().extreme("flops", largest=True)[0]
        budgets = [round(fraction * largest, 2) for fraction in args.budgets]
        config = SearchConfig(data=str(args.data), table=str(args.table), device="cpu", channels=8, cells=1,
                              images=args.images, epochs=args.epochs, batch_size=64, val_batches=20, workers=0,
                              threads=args.threads)
        print(f"FLOPs-budgeted {LABELS.get(args.method, args.method)} on NB201 (C=8, N=1 supernet, first "
              f"{args.images} images, {args.epochs} epochs), seeds {args.seeds}; budgets "
              f"{', '.join(f'{b:g}' for b in budgets)} MFLOPs of the dearest cell's {largest:.2f}", flush=True)
        runs = [(config, args.method, seed, budget) for budget in budgets for seed in args.seeds]
        results = []
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(search_within, *run) for run in runs]
            for future in as_completed(futures):
                r = future.result()
                results.append(r)
                print(f"  budget {r['budget']:g} seed {r['seed']}: {r['test_acc']:.2f} at {r['flops']:.2f} MFLOPs "
                      f"{r['cell']} (the rule's own cell: {r['rule_flops']:.2f} MFLOPs; multiplier "
                      f"{r['multiplier']:.3g}; {r['seconds']:.0f} s)", flush=True)
        print(f"\n{'budget MFLOPs':>14}{'found MFLOPs (each seed)':>34}{'table acc (each seed)':>30}"
              f"{'mean':>8}{'oracle within budget':>22}")
        summary = []
        for budget in budgets:
            mine = sorted((r for r in results if r["budget"] == budget), key=lambda r: r["seed"])
            best, best_cell = oracle(args.table, budget)
            accs = [r["test_acc"] for r in mine]
            summary.append({"budget": budget, "found_flops": [r["flops"] for r in mine], "test_acc": accs,
                            "mean": statistics.fmean(accs), "oracle": best, "oracle_cell": best_cell})
            found = " ".join(f"{r['flops']:.1f}" for r in mine)
            scored = " ".join(f"{a:.2f}" for a in accs)
            print(f"{budget:>14.2f}{found:>34}{scored:>30}{statistics.fmean(accs):>8.2f}{best:>22.2f}")
        out["budgets"] = {"runs": sorted(results, key=lambda r: (r["budget"], r["seed"])), "summary": summary,
                          "largest_mflops": largest, "method": args.method, "images": args.images,
                          "epochs": args.epochs}
    if args.latency_cells:
        import torch

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        from search.fidelity import rank_fidelity

        result = out["latency"] = latency_error(args.latency_cells, 0, args.latency_repeats)
        predicted = [r["predicted_ms"] for r in result["cells"]]
        measured = [r["measured_ms"] for r in result["cells"]]
        print(f"\nlatency of the DARTS CIFAR network (C=36, 20 cells, batch 1, 32x32) on {result['device']}: "
              f"{result['ops_timed']} op shapes timed in {result['build_seconds']:.0f} s (fixed part "
              f"{result['fixed_ms']:.1f} ms)")
        for r in result["cells"]:
            print(f"  predicted {r['predicted_ms']:7.2f} ms  measured {r['measured_ms']:7.2f} ms  "
                  f"({r['mflops']:.0f} MFLOPs)")
        print(f"mean absolute error {100 * result['mean_abs_error']:.1f}%, max {100 * result['max_abs_error']:.1f}%; "
              f"Kendall tau predicted vs measured {rank_fidelity(predicted, measured).kendall_tau:.3f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
