"""Write a finished search to its run folder: per seed ``history.csv``, ``best_genotype.json``, ``trials.png``,
``pareto.png`` beside the seed's ``journal.jsonl``; one ``report.html``."""
from __future__ import annotations

import csv
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from ops.figures import plot_trials
from ops.jsonfile import write_json
from search.discrete.loop import SearchResult
from search.discrete.pareto import plot_pareto
from search.report import discrete_report


def write_history(result: SearchResult[Any], path: Path) -> None:
    """Every evaluated cell, in order of completion: step, arch, metric, params_m, flops_m, cost, total_cost, parent,
    trial (order of proposal), attempts."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "arch", result.metric_name, "params_m", "flops_m", "cost", "total_cost", "parent",
                         "trial", "attempts"])
        for r in result.history:
            writer.writerow([r.step, r.arch, f"{r.metric:.6f}", f"{r.params:.6f}", f"{r.flops:.6f}",
                             f"{r.cost:g}", f"{r.total_cost:g}", r.parent, r.trial, r.attempts])


def write_run(results: Sequence[SearchResult[Any]], run_dir: Path, summary: dict[str, Any], *,
              config_text: str = "", size: Literal["params", "flops"] = "params",
              size_limit: float | None = None) -> None:
    """Write all seeds into a temporary folder, then move each file into ``run_dir`` (one rename each), beside the
    seeds' journals.

    Per seed: ``history.csv``, ``best_genotype.json``, ``trials.png`` (every evaluation and the best so far),
    ``pareto.png`` (``size`` axis, ``size_limit`` marked) and ``pareto.csv`` (the front); at the top:
    ``summary.json``, ``config.yaml`` and ``report.html`` (all of it on one page, moved last).

    No file is ever half-written; a failure leaves ``run_dir`` as it was, the temporary folder removed.
    """
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.parent / f".{run_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for result in results:
            seed_dir = tmp / f"seed{result.seed}"
            seed_dir.mkdir()
            write_history(result, seed_dir / "history.csv")
            result.best_cell.save(seed_dir / "best_genotype.json")
            plot_trials([r.metric for r in result.history], seed_dir / "trials.png", result.metric_name,
                        f"{result.strategy}, seed {result.seed}: {len(result.history)} evaluations")
            plot_pareto([(r.metric, getattr(r, size)) for r in result.distinct()], seed_dir / "pareto.png",
                        metric_name=result.metric_name, size_name=f"{size} (M)", size_limit=size_limit,
                        title=f"{result.strategy}, seed {result.seed}")
            with (seed_dir / "pareto.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["arch", result.metric_name, f"{size}_m"])
                writer.writerows([r.arch, f"{r.metric:.6f}", f"{getattr(r, size):.6f}"] for r in result.pareto(size))
        write_json(tmp / "summary.json", summary, indent=2)
        if config_text:
            (tmp / "config.yaml").write_text(config_text)
        discrete_report(tmp, summary, config_text, size, title=f"Discrete search {run_dir.name}")
        files = sorted((f for f in tmp.rglob("*") if f.is_file()), key=lambda f: f.name == "report.html")
        for file in files:
            target = run_dir / file.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_summary(results: Sequence[SearchResult[Any]], aggregate: dict[str, tuple[float, float]],
                  report: dict[str, Callable[[Any], float]], settings: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready summary: the settings, each seed's best cell, and mean/std over seeds."""
    runs = []
    for r in results:
        best = r.best
        assert best is not None  # summarize() already rejected runs without a best cell
        entry = {"seed": r.seed, "best_arch": best.arch, "best_step": best.step, r.metric_name: best.metric,
                 "params_m": best.params, "flops_m": best.flops, "evaluations": len(r.history),
                 "total_cost": r.total_cost, "cost_unit": r.cost_unit, "rejected": r.n_rejected,
                 "failures": [asdict(f) for f in r.failures]}
        entry.update({name: fn(best.cell) for name, fn in report.items()})
        entry.update(r.extras)
        runs.append(entry)
    return {**settings, "runs": runs, "mean_std": {k: {"mean": m, "std": s} for k, (m, s) in aggregate.items()}}
