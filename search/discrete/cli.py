"""Command line of the discrete strategies on NAS-Bench-201 (``python -m search.evolution`` and siblings)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser

from ops import NB201Genotype, Registry
from configs import resolve_config_args
from configs.cli import fail
from search.discrete.evaluator import TabularEvaluator
from search.discrete.evolution import RegularizedEvolution
from search.discrete.loop import Budget, Record, SizeLimit, Strategy
from search.discrete.multiseed import run_seeds, summarize
from search.discrete.outputs import build_summary, write_run
from search.discrete.random_search import RandomSearch
from search.discrete.reinforce import Reinforce
from search.discrete.space import NB201Space
from search.nb201_table import LAYOUT_12, LAYOUT_200, NB201Table, size_column

STRATEGIES: Registry[tuple[type[Strategy], str]] = Registry("discrete search strategy")
"""Discrete search strategies by name: the class and a title for ``--help``."""
STRATEGIES.register("random_search", (RandomSearch, "random search (uniform sampling)"))
STRATEGIES.register("evolution", (RegularizedEvolution, "regularized evolution (Real et al. 2019)"))
STRATEGIES.register("reinforce", (Reinforce, "REINFORCE with a per-edge categorical policy"))
_NEEDS_TABLE = f"pass --table PATH to a NAS-Bench-201 CSV (layout: {LAYOUT_200})"


def build_parser(strategy: str) -> ArgumentParser:
    """The parser of ``python -m search.<strategy>``; every option has a help text."""
    cls, title = STRATEGIES[strategy]
    parser = ArgumentParser(prog=f"python -m search.{strategy}", exit_on_error=False,
                            description=f"NAS-Bench-201 {title}, scored by table lookup.")
    parser.add_argument("--config", action=ActionConfigFile,
                        help="YAML config: a path, or the name of a shipped config (e.g. nb201_evolution.yaml).")
    parser.add_argument("--table", type=Optional[str], default=None,
                        help=f"NAS-Bench-201 200-epoch CSV, required (layout: {LAYOUT_200}).")
    parser.add_argument("--hp12_table", type=Optional[str], default=None,
                        help=f"NAS-Bench-201 12-epoch CSV, needed for *_12ep metrics (layout: {LAYOUT_12}).")
    parser.add_argument("--metric", type=str, default="cifar10_valid_12ep",
                        help="Table column searched on (higher is better), e.g. cifar10_valid_12ep, cifar10_valid.")
    parser.add_argument("--report_metric", type=Optional[str], default=None,
                        help="Column reported for each best cell; default <dataset>_test (200-epoch test accuracy).")
    parser.add_argument("--seconds_per_eval", type=Optional[float], default=None,
                        help="Simulated seconds charged per evaluation (the CSVs carry no training time); "
                             "needed for budget.seconds.")
    parser.add_class_arguments(Budget, "budget")
    parser.add_class_arguments(SizeLimit, "limit")
    if cls is not RandomSearch:
        parser.add_class_arguments(cls, strategy)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="One search per seed, e.g. --seeds 0 1 2; mean ± std is printed over seeds.")
    parser.add_argument("--name", type=Optional[str], default=None, help="Run name (default: the strategy).")
    parser.add_argument("--out_dir", type=str, default="runs", help="Parent folder of the run folder <out_dir>/<name>.")
    parser.add_argument("--overwrite", type=bool, default=False, help="Replace an existing run folder.")
    parser.add_argument("--pareto_size", type=Literal["params", "flops"], default="params",
                        help="Size axis of the Pareto front: params or flops.")
    parser.add_argument("--log_every", type=int, default=10, help="Print progress every N evaluations (0: never).")
    return parser


def _setup(strategy: str, cfg: Any) -> dict[str, Any]:
    """Validate the parsed options and build what the search needs; bad input raises ValueError/FileNotFoundError."""
    if cfg.table is None:
        raise ValueError(_NEEDS_TABLE)
    table = NB201Table(cfg.table, cfg.hp12_table)
    evaluator = TabularEvaluator(table, cfg.metric, cfg.seconds_per_eval)
    report_metric = cfg.report_metric or f"{evaluator.dataset}_test"
    if report_metric not in table.metrics:
        raise ValueError(f"unknown report_metric {report_metric!r}; available: {', '.join(table.metrics)}")
    limit = SizeLimit(**cfg.limit.as_dict())
    sizes = zip(table.column(size_column("params_m", evaluator.dataset)),
                table.column(size_column("flops_m", evaluator.dataset)))
    if not any(limit.allows(p, f) for p, f in sizes):
        raise ValueError(f"no cell of the table satisfies the size limit (max_params={limit.max_params} M, "
                         f"max_flops={limit.max_flops} M)")
    budget = Budget(**cfg.budget.as_dict())
    if budget.seconds is not None and cfg.seconds_per_eval is None:
        raise ValueError("budget.seconds needs --seconds_per_eval (the NAS-Bench-201 CSVs carry no training time)")
    cls = STRATEGIES[strategy][0]
    search = cls() if cls is RandomSearch else cls(**cfg[strategy].as_dict())
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds must be distinct, got {cfg.seeds}")
    if cfg.log_every < 0:
        raise ValueError(f"log_every must be >= 0, got {cfg.log_every}")
    run_dir = Path(cfg.out_dir) / (cfg.name or strategy)
    blocking = next((p for p in (Path(cfg.out_dir), *Path(cfg.out_dir).parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:  # checked before any search runs
        raise ValueError(f"--out_dir {cfg.out_dir}: {blocking} is a file, not a folder; pass another --out_dir")
    if run_dir.exists() and not cfg.overwrite:
        raise ValueError(f"run folder {run_dir} exists; pass --overwrite true or another --name")
    return {"table": table, "evaluator": evaluator, "budget": budget, "strategy": search, "run_dir": run_dir,
            "limit": limit, "report_metric": report_metric}


def main(strategy: str, argv: Sequence[str] | None = None) -> int:
    """Parse, search once per seed, write the run folder, print a summary. Returns the exit code."""
    parser = build_parser(strategy)
    prog = parser.prog
    try:
        cfg = parser.parse_args(resolve_config_args(list(sys.argv[1:] if argv is None else argv)))
        setup = _setup(strategy, cfg)
    except (ArgumentError, ValueError, FileNotFoundError) as err:
        return fail(prog, err, getattr(err, "parser", None))
    table, evaluator, report_metric = setup["table"], setup["evaluator"], setup["report_metric"]
    best_so_far: dict[int, float] = {}

    def progress(seed: int, record: Record[Any]) -> None:
        best = best_so_far[seed] = max(best_so_far.get(seed, float("-inf")), record.metric)
        if cfg.log_every and (record.step + 1) % cfg.log_every == 0:
            print(f"[{strategy} seed {seed}] {record.step + 1} evaluations, cost {record.total_cost:g} "
                  f"{evaluator.cost_unit}, best {cfg.metric} {best:.2f}", flush=True)

    space = NB201Space()
    if len(table) < space.size:
        space = space.restrict(NB201Genotype.from_arch_str(arch) for arch in table.archs)
        print(f"the table covers {len(table)} of {NB201Space().size} cells: searching within them", flush=True)
    report = {report_metric: lambda cell: table.value(cell, report_metric)}
    try:
        results = run_seeds(setup["strategy"], space, evaluator, setup["budget"], cfg.seeds,
                            setup["limit"], on_record=progress)
        aggregate = summarize(results, report)
    except ValueError as err:  # e.g. a size limit no cell satisfies
        return fail(prog, err, getattr(err, "parser", None))
    settings = {"strategy": strategy, "metric": cfg.metric, "report_metric": report_metric,
                "seeds": list(cfg.seeds), "table": str(table.path),
                "hp12_table": None if table.hp12_path is None else str(table.hp12_path)}
    summary = build_summary(results, aggregate, report, settings)
    run_dir: Path = setup["run_dir"]
    write_run(results, run_dir, summary, config_text=parser.dump(cfg, skip_none=False),
              size=cfg.pareto_size, size_limit=getattr(setup["limit"], f"max_{cfg.pareto_size}"),
              overwrite=cfg.overwrite)
    for r in results:
        best = r.best
        assert best is not None
        reported = table.value(best.cell, report_metric)
        print(f"seed {r.seed}: best {cfg.metric} {best.metric:.2f}, {report_metric} {reported:.2f}, "
              f"{best.params:.3f} M params, {best.flops:.1f} M FLOPs, {len(r.history)} evaluations, {best.arch}")
    stats = ", ".join(f"{k} {m:.2f} ± {s:.2f}" for k, (m, s) in aggregate.items())
    print(f"{strategy} over {len(results)} seed(s): {stats}")
    print(f"wrote {run_dir}")
    return 0
