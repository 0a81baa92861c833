"""Command line of the discrete strategies (``python -m search.evolution`` and siblings): NAS-Bench-201 by table
lookup by default, any space with an ``--evaluator`` (a cell trained from scratch, a supernet's shared weights, your
own), trials on one worker or on Ray, every trial journaled so that a killed search resumes with ``--resume true``."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser

from ops import NB201Genotype, Registry
from configs import resolve_config_args
from configs.cli import fail
from search.discrete.darts_space import DartsCellSpace
from search.discrete.evaluator import Evaluator, TabularEvaluator
from search.discrete.evolution import RegularizedEvolution
from search.discrete.journal import Journal
from search.discrete.loop import Budget, Progress, SizeLimit, Strategy
from search.discrete.multiseed import summarize
from search.discrete.outputs import build_summary, write_run
from search.discrete.random_search import RandomSearch
from search.discrete.reinforce import Reinforce
from search.discrete.space import CategoricalSpace, NB201Space
from search.discrete.workers import make_pool
from search.nb201_table import LAYOUT_12, LAYOUT_200, NB201Table, size_column

STRATEGIES: Registry[tuple[type[Strategy], str]] = Registry("discrete search strategy")
"""Discrete search strategies by name: the class and a title for ``--help``."""
STRATEGIES.register("random_search", (RandomSearch, "random search (uniform sampling)"))
STRATEGIES.register("evolution", (RegularizedEvolution, "regularized evolution (Real et al. 2019)"))
STRATEGIES.register("reinforce", (Reinforce, "REINFORCE with a per-edge categorical policy"))
SPACES = {"nb201": NB201Space, "darts": DartsCellSpace}
_NEEDS_TABLE = f"pass --table PATH to a NAS-Bench-201 CSV (layout: {LAYOUT_200}), or an --evaluator"
JOURNAL = "journal.jsonl"


def build_parser(strategy: str) -> ArgumentParser:
    """The parser of ``python -m search.<strategy>``; every option has a help text."""
    cls, title = STRATEGIES[strategy]
    parser = ArgumentParser(prog=f"python -m search.{strategy}", exit_on_error=False,
                            description=f"Discrete {title}: NAS-Bench-201 by table lookup, or any space with an "
                                        "--evaluator.")
    parser.add_argument("--config", action=ActionConfigFile,
                        help="YAML config: a path, or the name of a shipped config (e.g. nb201_evolution.yaml).")
    parser.add_argument("--space", type=Literal["nb201", "darts"], default="nb201",
                        help="Cells searched: nb201 (an op per edge) or darts (two inputs and ops per node, normal "
                             "and reduction cell).")
    parser.add_argument("--evaluator", type=Optional[Evaluator], default=None,
                        help="How a cell is scored: class_path and init_args, e.g. search.discrete.TrainedEvaluator "
                             "or search.discrete.SharedWeightEvaluator; default: the --table lookup.")
    parser.add_argument("--table", type=Optional[str], default=None,
                        help=f"NAS-Bench-201 200-epoch CSV (layout: {LAYOUT_200}): the evaluator when none is given, "
                             "and the score of the best cells in the nb201 space.")
    parser.add_argument("--hp12_table", type=Optional[str], default=None,
                        help=f"NAS-Bench-201 12-epoch CSV, needed for *_12ep metrics (layout: {LAYOUT_12}).")
    parser.add_argument("--metric", type=str, default="cifar10_valid_12ep",
                        help="Table column searched on (higher is better), e.g. cifar10_valid_12ep, cifar10_valid; "
                             "with the table as evaluator.")
    parser.add_argument("--report_metric", type=Optional[str], default=None,
                        help="Table column reported for each best cell; default <dataset>_test (200-epoch test "
                             "accuracy).")
    parser.add_argument("--seconds_per_eval", type=Optional[float], default=None,
                        help="Simulated seconds charged per table lookup (the CSVs carry no training time); "
                             "needed for budget.seconds with the table.")
    parser.add_class_arguments(Budget, "budget")
    parser.add_class_arguments(SizeLimit, "limit")
    if cls is not RandomSearch:
        parser.add_class_arguments(cls, strategy)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="One search per seed, e.g. --seeds 0 1 2; mean ± std is printed over seeds.")
    parser.add_argument("--workers", type=int, default=1,
                        help="Trials run at once: 1 in this process; more on Ray (pip install -e \".[ray]\").")
    parser.add_argument("--ray_address", type=Optional[str], default=None,
                        help="Ray cluster to run the workers on (e.g. ray://head:10001 or auto); default: a local Ray.")
    parser.add_argument("--name", type=Optional[str], default=None, help="Run name (default: the strategy).")
    parser.add_argument("--out_dir", type=str, default="runs", help="Parent folder of the run folder <out_dir>/<name>.")
    parser.add_argument("--overwrite", type=bool, default=False, help="Replace an existing run folder.")
    parser.add_argument("--resume", type=bool, default=False,
                        help="Continue the search of an existing run folder from its journals: finished trials are "
                             "not run again.")
    parser.add_argument("--pareto_size", type=Literal["params", "flops"], default="params",
                        help="Size axis of the Pareto front: params or flops.")
    parser.add_argument("--log_every", type=int, default=10, help="Print progress every N trials (0: never).")
    return parser


def _space(cfg: Any, table: NB201Table | None) -> CategoricalSpace[Any]:
    """The space searched; in NAS-Bench-201, restricted to the cells a partial table holds (it scores the best)."""
    space = SPACES[cfg.space]()
    if cfg.space == "nb201" and table is not None and len(table) < space.size:
        space = space.restrict(NB201Genotype.from_arch_str(arch) for arch in table.archs)
        print(f"the table covers {len(table)} of {NB201Space().size} cells: searching within them", flush=True)
    return space


def _setup(strategy: str, cfg: Any, parser: ArgumentParser) -> dict[str, Any]:
    """Validate the parsed options and build what the search needs; bad input raises ValueError/FileNotFoundError."""
    if cfg.table is None and cfg.evaluator is None:
        raise ValueError(_NEEDS_TABLE)
    table = None if cfg.table is None else NB201Table(cfg.table, cfg.hp12_table)
    report_metric = None
    if table is not None and cfg.space == "nb201":
        dataset = TabularEvaluator(table, cfg.metric).dataset if cfg.evaluator is None else "cifar10"
        report_metric = cfg.report_metric or f"{dataset}_test"
        if report_metric not in table.metrics:
            raise ValueError(f"unknown report_metric {report_metric!r}; available: {', '.join(table.metrics)}")
    limit = SizeLimit(**cfg.limit.as_dict())
    budget = Budget(**cfg.budget.as_dict())
    if cfg.evaluator is None:
        assert table is not None
        evaluator: Evaluator = TabularEvaluator(table, cfg.metric, cfg.seconds_per_eval)
        sizes = zip(table.column(size_column("params_m", evaluator.dataset)),  # type: ignore[attr-defined]
                    table.column(size_column("flops_m", evaluator.dataset)))  # type: ignore[attr-defined]
        if not any(limit.allows(p, f) for p, f in sizes):
            raise ValueError(f"no cell of the table satisfies the size limit (max_params={limit.max_params} M, "
                             f"max_flops={limit.max_flops} M)")
        if budget.seconds is not None and cfg.seconds_per_eval is None:
            raise ValueError("budget.seconds needs --seconds_per_eval (the NAS-Bench-201 CSVs carry no training time)")
    cls = STRATEGIES[strategy][0]
    search = cls() if cls is RandomSearch else cls(**cfg[strategy].as_dict())
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds must be distinct, got {cfg.seeds}")
    if cfg.log_every < 0:
        raise ValueError(f"log_every must be >= 0, got {cfg.log_every}")
    if isinstance(cfg.workers, bool) or cfg.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.workers > 1 or cfg.ray_address is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            flag = f"--workers {cfg.workers}" if cfg.ray_address is None else f"--ray_address {cfg.ray_address}"
            raise ValueError(f"{flag} runs trials on Ray, which is not installed: pip install -e \".[ray]\"") from None
    run_dir = Path(cfg.out_dir) / (cfg.name or strategy)
    blocking = next((p for p in (Path(cfg.out_dir), *Path(cfg.out_dir).parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:  # checked before any search runs
        raise ValueError(f"--out_dir {cfg.out_dir}: {blocking} is a file, not a folder; pass another --out_dir")
    if cfg.resume and cfg.overwrite:
        raise ValueError("--resume true continues the run folder and --overwrite true replaces it; pass one")
    if run_dir.exists() and not (cfg.overwrite or cfg.resume):
        raise ValueError(f"run folder {run_dir} exists; pass --resume true to continue it, --overwrite true or "
                         "another --name")
    space = _space(cfg, table)
    if cfg.evaluator is not None:
        evaluator = parser.instantiate_classes(cfg).evaluator
    bind = getattr(evaluator, "bind_space", None)
    if bind is not None:
        bind(space)
    identity = {"strategy": strategy, "settings": {} if cls is RandomSearch else cfg[strategy].as_dict(),
                "space": cfg.space, "limit": cfg.limit.as_dict(),
                "evaluator": ({"table": cfg.table, "hp12_table": cfg.hp12_table, "metric": cfg.metric,
                               "seconds_per_eval": cfg.seconds_per_eval} if cfg.evaluator is None
                              else _plain(cfg.evaluator))}
    return {"table": table, "evaluator": evaluator, "budget": budget, "strategy": search, "run_dir": run_dir,
            "limit": limit, "report_metric": report_metric, "space": space, "identity": identity}


def _plain(value: Any) -> Any:
    """A parsed config section as plain JSON-ready data."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_line(label: str, p: Progress, metric: str) -> str:
    """``[label] 40/100 trials done, 2 running, 1 failed; best <metric> 91.20 (trial 33); 2m10s elapsed, ~3m15s left``."""
    total = "" if p.budget is None else f"/{p.budget}"
    best = "none yet" if p.best is None else f"{metric} {p.best.metric:.2f} (trial {p.best.trial})"
    left = "" if p.remaining is None else f", ~{_duration(p.remaining)} left"
    return (f"[{label}] {p.done}{total} trials done, {p.running} running, {p.failed} failed; best {best}; "
            f"{_duration(p.elapsed)} elapsed{left}")


def main(strategy: str, argv: Sequence[str] | None = None) -> int:
    """Parse, search once per seed, write the run folder, print a summary. Returns the exit code."""
    parser = build_parser(strategy)
    prog = parser.prog
    try:
        cfg = parser.parse_args(resolve_config_args(list(sys.argv[1:] if argv is None else argv)))
        setup = _setup(strategy, cfg, parser)
        run_dir: Path = setup["run_dir"]
        identity = setup["identity"]
        journals = [Journal(run_dir / f"seed{seed}" / JOURNAL, {**identity, "seed": seed}, resume=True)
                    for seed in cfg.seeds] if cfg.resume else []  # read and checked; nothing written yet
        pool = make_pool(setup["evaluator"], cfg.workers, cfg.ray_address)
    except (ArgumentError, ValueError, FileNotFoundError) as err:
        return fail(prog, err, getattr(err, "parser", None))
    if not cfg.resume:  # every input checked and the workers up: now the old folder may go
        if cfg.overwrite:
            shutil.rmtree(run_dir, ignore_errors=True)
        journals = [Journal(run_dir / f"seed{seed}" / JOURNAL, {**identity, "seed": seed}) for seed in cfg.seeds]
    table, evaluator, report_metric = setup["table"], setup["evaluator"], setup["report_metric"]
    results = []
    try:
        for seed, journal in zip(cfg.seeds, journals):
            finished = sum(e["event"] in ("done", "failed") for e in journal.events)
            if journal.events:
                print(f"[{strategy} seed {seed}] resuming: {finished} finished trials from {journal.path}", flush=True)

            def progress(p: Progress, seed: int = seed) -> None:
                if cfg.log_every and (p.done + p.failed) % cfg.log_every == 0:
                    print(progress_line(f"{strategy} seed {seed}", p, evaluator.metric_name), flush=True)

            results.append(setup["strategy"].search(setup["space"], evaluator, setup["budget"], seed=seed,
                                                    limit=setup["limit"], pool=pool, journal=journal,
                                                    on_progress=progress))
            journal.close()
        report = {} if report_metric is None else {report_metric: lambda cell: table.value(cell, report_metric)}
        aggregate = summarize(results, report)
    except ValueError as err:  # a size limit no cell satisfies, a journal of another search
        return fail(prog, err, getattr(err, "parser", None))
    finally:
        pool.close()
    settings = {"strategy": strategy, "space": cfg.space, "metric": evaluator.metric_name,
                "report_metric": report_metric, "seeds": list(cfg.seeds), "workers": cfg.workers,
                "table": None if table is None else str(table.path),
                "hp12_table": None if table is None or table.hp12_path is None else str(table.hp12_path)}
    summary = build_summary(results, aggregate, report, settings)
    write_run(results, run_dir, summary, config_text=parser.dump(cfg, skip_none=False),
              size=cfg.pareto_size, size_limit=getattr(setup["limit"], f"max_{cfg.pareto_size}"))
    for r in results:
        best = r.best
        assert best is not None
        scored = "" if report_metric is None else f", {report_metric} {table.value(best.cell, report_metric):.2f}"
        failed = f", {len(r.failures)} failed" if r.failures else ""
        print(f"seed {r.seed}: best {evaluator.metric_name} {best.metric:.2f}{scored}, {best.params:.3f} M params, "
              f"{best.flops:.1f} M FLOPs, {len(r.history)} evaluations{failed}, {best.arch}")
    stats = ", ".join(f"{k} {m:.2f} ± {s:.2f}" for k, (m, s) in aggregate.items())
    print(f"{strategy} over {len(results)} seed(s): {stats}")
    print(f"wrote {run_dir}")
    return 0
