"""Multi-seed one-shot search in one command: ``python -m search.seeds --config quickstart.yaml --seeds 0 1 2``.

Runs the search of the config once per seed, one after the other in this process (``search.cli.main`` with
``--seed_everything S``, the seed ``S`` given to every seeded part of the model as well -- the strategy's sampling
(GDAS, DrNAS, ...), the regularizers' noise (SDARTS-RS), the selection's edge order (DARTS-PT) -- and the run folder
``<save_dir>/<name>/seed_S``; the data split keeps its own seed, so every seed searches the same split), then writes
``<save_dir>/<name>/seeds_summary.json`` and prints it: each seed's genotype, how far the seeds agree edge by edge,
the cell they vote for (``consensus_genotype``, also written as ``<save_dir>/<name>/consensus.json``), and with
``--table nb201.csv`` (NAS-Bench-201 space) each genotype's CIFAR-10 test accuracy with mean ± sample std, and the
consensus cell's. Every other flag goes to the search (``python -m search.darts --help`` lists them). A seed whose
folder already holds ``genotype.json`` is reused, so a killed command picks up where it stopped; an unfinished seed
folder is removed and that seed run again.
"""
from __future__ import annotations

import inspect
import json
import shutil
import statistics
import sys
from argparse import ArgumentError
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.exceptions import MisconfigurationException

from ops import DartsGenotype, Genotype, NB201Genotype
from ops.jsonfile import write_json
from ops.topology import darts_node_edges
from configs.cli import EXIT_USAGE, one_line
from search import cli as search_cli
from search.nb201_table import NB201Table
from search.strategies import strategy_arguments

PROG = "python -m search.seeds"
SUMMARY_NAME = "seeds_summary.json"
CONSENSUS_NAME = "consensus.json"
MAX_SEED = 2**32 - 1
TABLE_DATASET, TABLE_SPLIT = "cifar10", "test"
_SET_HERE = ("--seed_everything", "--trainer.logger.init_args.version", "--model.strategy_args.seed",
             "--model.selection.init_args.seed")
_DEFAULT_LOGGER = "lightning.pytorch.loggers.CSVLogger"


class UsageError(ValueError):
    """Bad input to the multi-seed command: reported as one line, exit status 2."""


# ---- edge agreement ---------------------------------------------------------------------------------------------
def _choice_json(choice: Any) -> Any:
    return sorted([op, src] for op, src in choice) if isinstance(choice, frozenset) else choice


def edge_agreement(genotypes: Sequence[Genotype]) -> dict[str, Any]:
    """How far ``genotypes`` (one per seed, one space) agree.

    Per cell type and edge (NB201) or node (DARTS, compared as the set of its ``(op, input)`` edges): the most
    common choice and the fraction of genotypes that make it. Overall: ``all_agree`` slots on which every
    genotype agrees, out of ``slots``; ``mean`` the mean fraction.
    """
    if not genotypes:
        raise ValueError("edge_agreement needs at least one genotype")
    per_seed = [g.choices() for g in genotypes]
    layout = [(cell, [name for name, _ in slots]) for cell, slots in per_seed[0].items()]
    if any([(c, [n for n, _ in s]) for c, s in p.items()] != layout for p in per_seed):
        raise ValueError("the genotypes come from different search spaces or cell sizes")
    cells: dict[str, list[dict[str, Any]]] = {}
    fractions = []
    for cell, names in layout:
        cells[cell] = []
        for index, name in enumerate(names):
            choice, count = Counter(p[cell][index][1] for p in per_seed).most_common(1)[0]
            fractions.append(count / len(genotypes))
            cells[cell].append({"slot": name, "choice": _choice_json(choice), "agreement": fractions[-1]})
    return {"cells": cells, "all_agree": sum(f == 1.0 for f in fractions), "slots": len(fractions),
            "unit": genotypes[0].slot_unit, "mean": sum(fractions) / len(fractions)}


# ---- consensus --------------------------------------------------------------------------------------------------
def consensus_genotype(genotypes: Sequence[Genotype],
                       probabilities: Sequence[dict[str, Sequence[Sequence[float]]]] | None = None,
                       candidates: Sequence[str] | None = None) -> Genotype:
    """The cell the seeds vote for: per NB201 edge the op most seeds chose; per DARTS node the two inputs most seeds
    keep, each with the op most of those seeds put there. Ties go to the larger summed op probability of the seeds'
    last epoch (``probabilities``: per seed, per cell type, ``[edge][op]`` in ``candidates`` order; after a
    perturbation selection these are one-hot, i.e. the votes again), then to the earliest seed's choice."""
    if not genotypes:
        raise ValueError("consensus_genotype needs at least one genotype")
    edge_agreement(genotypes)  # one space and cell size
    first = genotypes[0]

    def weight(seeds: Sequence[int], cell: str, edge: int, op: str) -> float:
        if probabilities is None or candidates is None or op not in candidates:
            return 0.0
        return sum(probabilities[s][cell][edge][list(candidates).index(op)] for s in seeds)

    def pick(votes: dict[Any, list[int]], score: Any) -> list[Any]:
        """Options by votes, then score, then the earliest seed that chose them."""
        return sorted(votes, key=lambda o: (-len(votes[o]), -score(o), min(votes[o])))

    if isinstance(first, NB201Genotype):
        edges = []
        for e in range(len(first.edges)):
            votes: dict[str, list[int]] = {}
            for s, g in enumerate(genotypes):
                votes.setdefault(g.edges[e], []).append(s)
            edges.append(pick(votes, lambda op: weight(range(len(genotypes)), "normal", e, op))[0])
        return NB201Genotype(edges=tuple(edges))
    cells = {}
    for cell in ("normal", "reduce"):
        node_edges = darts_node_edges(first.steps)
        pairs: list[tuple[str, int]] = []
        for node in range(first.steps):
            kept: dict[int, dict[str, list[int]]] = {}  # input -> op -> seeds
            for s, g in enumerate(genotypes):
                for op, src in getattr(g, cell)[2 * node:2 * node + 2]:
                    kept.setdefault(src, {}).setdefault(op, []).append(s)
            inputs = {src: [s for seeds in ops.values() for s in seeds] for src, ops in kept.items()}
            for src in pick(inputs, lambda j: max(weight(inputs[j], cell, node_edges[node][j], op)
                                                  for op in kept[j]))[:2]:
                edge = node_edges[node][src]
                pairs.append((pick(kept[src], lambda op: weight(kept[src][op], cell, edge, op))[0], src))
        cells[cell] = tuple(pairs)
    return DartsGenotype(normal=cells["normal"], normal_concat=first.normal_concat, reduce=cells["reduce"],
                         reduce_concat=first.reduce_concat)


# ---- summary ----------------------------------------------------------------------------------------------------
def mean_sample_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``); ``None`` where undefined (no values; std of one)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def last_probabilities(run_dir: Path) -> tuple[dict[str, Any] | None, list[str] | None]:
    """A run's op probabilities of its last epoch (before any selection's decisions) and its candidates, from its
    ``alphas.json`` (``None, None`` if it has none)."""
    try:
        history = json.loads((Path(run_dir) / "alphas.json").read_text())
        last = history["epochs"][-1]
        return last.get("alpha_probabilities") or last["probabilities"], history["candidates"]
    except (OSError, ValueError, KeyError, IndexError):
        return None, None


def build_summary(runs: Sequence[dict[str, Any]], genotypes: Sequence[Genotype],
                  table: NB201Table | None = None) -> dict[str, Any]:
    """The summary of a multi-seed command: ``runs`` (one dict per seed with ``seed``, ``run_dir``, ``reused``)
    completed with each genotype (its text) and, given an NB201 ``table``, its CIFAR-10 test accuracy (``None``
    for a cell not in the table), the edge agreement, the consensus cell (ties broken by the runs' last op
    probabilities where every run has them), and the accuracies' mean and sample std."""
    metric = f"{TABLE_DATASET}_{TABLE_SPLIT}"
    out_runs = []
    for run, genotype in zip(runs, genotypes):
        record = {**run, "genotype": genotype.to_text()}
        if table is not None:
            if not isinstance(genotype, NB201Genotype):
                raise ValueError("--table needs NAS-Bench-201 genotypes")
            record[metric] = table.accuracy(genotype, TABLE_DATASET, TABLE_SPLIT) if genotype in table else None
        out_runs.append(record)
    read = [last_probabilities(r["run_dir"]) for r in runs]
    usable = all(p is not None for p, _ in read) and len({tuple(c) for _, c in read}) == 1
    consensus = consensus_genotype(genotypes, [p for p, _ in read] if usable else None, read[0][1] if usable else None)
    summary: dict[str, Any] = {"space": genotypes[0].space, "seeds": [r["seed"] for r in runs], "runs": out_runs,
                               "agreement": edge_agreement(genotypes), "consensus": {"genotype": consensus.to_text()}}
    if table is not None:
        found = [r[metric] for r in out_runs if r[metric] is not None]
        mean, std = mean_sample_std(found)
        summary["table"] = {"path": str(table.path), "metric": metric, "mean": mean, "std": std, "n": len(found),
                            "not_in_table": [r["seed"] for r in out_runs if r[metric] is None]}
        summary["consensus"][metric] = table.accuracy(consensus, TABLE_DATASET, TABLE_SPLIT) \
            if consensus in table else None
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as printed: one line per seed, the agreement per cell type, the table statistics."""
    n = len(summary["runs"])
    lines = []
    for run in summary["runs"]:
        accuracy = ""
        if "table" in summary:
            value = run[summary["table"]["metric"]]
            accuracy = " (not in the table)" if value is None else f" ({summary['table']['metric']} {value:.2f}%)"
        lines.append(f"seed {run['seed']}{' [reused]' if run['reused'] else ''}: {run['genotype']}{accuracy}")
    agreement = summary["agreement"]
    lines.append(f"edge agreement over {n} seed{'s' * (n != 1)}: all agree on {agreement['all_agree']} of "
                 f"{agreement['slots']} {agreement['unit']} (mean {agreement['mean']:.2f})")
    for cell, slots in agreement["cells"].items():
        parts = [f"{s['slot']} {round(s['agreement'] * n)}/{n}" for s in slots]
        lines.append(f"  {cell}: " + ", ".join(parts))
    consensus = summary.get("consensus")
    if consensus:
        value = consensus.get(summary["table"]["metric"]) if "table" in summary else None
        accuracy = f" ({summary['table']['metric']} {value:.2f}%)" if value is not None else ""
        lines.append(f"consensus of the {n} seeds (votes per edge): {consensus['genotype']}{accuracy}")
    if "table" in summary:
        table = summary["table"]
        if table["mean"] is None:
            lines.append(f"{table['metric']}: no genotype is in {table['path']}")
        else:
            spread = "" if table["std"] is None else f" ± {table['std']:.2f}"
            missing = f", seeds {table['not_in_table']} not in the table" if table["not_in_table"] else ""
            lines.append(f"{table['metric']}: {table['mean']:.2f}{spread}% (mean ± sample std over "
                         f"{table['n']} seeds{missing})")
    return "\n".join(lines)


# ---- command line -----------------------------------------------------------------------------------------------
def parse_seeds(values: Sequence[str]) -> list[int]:
    """``--seeds`` values: distinct integers in 0..2**32-1; anything else raises ``UsageError``."""
    allowed = f"allowed: one or more distinct integers 0..{MAX_SEED}, e.g. --seeds 0 1 2"
    if not values:
        raise UsageError(f"--seeds needs at least one value; {allowed}")
    seeds = []
    for value in values:
        try:
            seed = int(value)
        except ValueError:
            raise UsageError(f"--seeds: {value!r} is not an integer; {allowed}") from None
        if not 0 <= seed <= MAX_SEED:
            raise UsageError(f"--seeds: {seed} is {'negative' if seed < 0 else 'too large'}; {allowed}")
        seeds.append(seed)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UsageError(f"--seeds: {', '.join(map(str, repeated))} given twice; {allowed}")
    return seeds


def split_args(argv: Sequence[str]) -> tuple[list[str] | None, str | None, list[str]]:
    """Take ``--seeds V...`` and ``--table PATH`` out of ``argv``; the rest is for the search."""
    seeds: list[str] | None = None
    table: str | None = None
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--seeds" or arg.startswith("--seeds="):
            if seeds is not None:
                raise UsageError("--seeds is given twice; give all seeds once, e.g. --seeds 0 1 2")
            seeds = [arg.split("=", 1)[1]] if "=" in arg else []
            while "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("--"):
                i += 1
                seeds.append(args[i])
        elif arg == "--table" or arg.startswith("--table="):
            if table is not None:
                raise UsageError("--table is given twice; allowed: one NAS-Bench-201 CSV path")
            if "=" in arg:
                table = arg.split("=", 1)[1]
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                i += 1
                table = args[i]
            else:
                raise UsageError("--table needs a value: the path of a NAS-Bench-201 CSV (nb201.csv)")
        else:
            if arg.split("=", 1)[0] in _SET_HERE:
                raise UsageError(f"{arg.split('=', 1)[0]} is set per seed by --seeds; drop it")
            rest.append(arg)
        i += 1
    return seeds, table, rest


def _logger_args(config: Any) -> tuple[Path, Any]:
    """The parent folder of the seed folders, and ``seed -> flags`` giving a seed its run folder ``seed_S``."""
    logger = config.trainer.logger
    if logger is None or isinstance(logger, bool):  # logging off or Lightning's default: a CSVLogger of our own
        save_dir = config.trainer.default_root_dir or "runs"
        parent = Path(save_dir) / "search"

        def flags(seed: int) -> list[str]:
            spec = {"class_path": _DEFAULT_LOGGER, "init_args": {"save_dir": str(save_dir), "name": "search",
                                                                 "version": f"seed_{seed}"}}
            return ["--trainer.logger", json.dumps(spec)]
        return parent, flags
    if not hasattr(logger, "class_path"):
        raise UsageError("--trainer.logger: a multi-seed run needs one logger (e.g. CSVLogger), not a list")
    module, _, name = logger.class_path.rpartition(".")
    params = inspect.signature(getattr(import_module(module), name)).parameters
    if not {"save_dir", "name", "version"} <= set(params):
        raise UsageError(f"--trainer.logger {logger.class_path} takes no save_dir/name/version; "
                         f"allowed: a logger that does, e.g. {_DEFAULT_LOGGER}")
    init = logger.init_args
    parent = Path(init.save_dir) / (init.name or "")
    return parent, lambda seed: ["--trainer.logger.init_args.version", f"seed_{seed}"]


def _seed_flags(config: Any) -> Callable[[int], list[str]]:
    """``seed -> flags`` that hand the run's seed to every seeded part of the model: the strategy (if it takes a
    ``seed``), each regularizer and the selection whose ``init_args`` hold a ``seed`` (the list of regularizers is
    passed whole, as the config and the other flags made it, with only the seeds changed)."""
    takes_seed = "seed" in strategy_arguments(config.model.strategy)
    regularizers = [r.as_dict() for r in config.model.regularizers or []]
    seeded_regularizers = any("seed" in (r.get("init_args") or {}) for r in regularizers)
    selection = config.model.selection
    seeded_selection = selection is not None and "seed" in (getattr(selection, "init_args", None) or {})

    def flags(seed: int) -> list[str]:
        out = ["--model.strategy_args.seed", str(seed)] if takes_seed else []
        if seeded_regularizers:
            given = [{**r, "init_args": {**r["init_args"], "seed": seed}} if "seed" in (r.get("init_args") or {})
                     else r for r in regularizers]
            out += ["--model.regularizers", json.dumps(given)]
        if seeded_selection:
            out += ["--model.selection.init_args.seed", str(seed)]
        return out
    return flags


def _space(config: Any) -> str:
    module, _, name = config.model.supernet.class_path.rpartition(".")
    return getattr(getattr(import_module(module), name), "space", "?")


def _finished(run_dir: Path, space: str) -> Genotype | None:
    """The final genotype of a finished seed folder, or ``None``; a genotype of another space raises."""
    path = run_dir / "genotype.json"
    if not path.is_file():
        return None
    try:
        genotype = Genotype.load(path)
    except ValueError as err:
        raise UsageError(f"{err}; remove {run_dir} to run that seed again") from None
    if genotype.space != space:
        raise UsageError(f"{path} holds a {genotype.space} genotype, this config searches the {space} space; "
                         "use another --trainer.logger.init_args.name or save_dir")
    return genotype


def _prepare(argv: Sequence[str]) -> dict[str, Any]:
    """Check every input before anything runs or is written; bad input raises ``UsageError``."""
    seed_values, table_path, rest = split_args(argv)
    if seed_values is None:
        raise UsageError("--seeds is required; allowed: one or more distinct integers, e.g. --seeds 0 1 2")
    seeds = parse_seeds(seed_values)
    if table_path is not None and not Path(table_path).is_file():
        raise UsageError(f"--table {table_path}: no such file; allowed: a NAS-Bench-201 CSV (nb201.csv)")
    try:
        config = search_cli.parse_config(rest, PROG)
    except (ArgumentError, MisconfigurationException, ValueError, TypeError, FileNotFoundError, KeyError) as err:
        raise UsageError(one_line(err, getattr(err, "parser", None))) from None
    space = _space(config)
    table = None
    if table_path is not None:
        if space != NB201Genotype.space:
            raise UsageError(f"--table is for the NAS-Bench-201 space only; this config searches the {space} "
                             "space (supernet.NB201SearchNetwork configs, e.g. nb201_darts.yaml)")
        try:
            table = NB201Table(table_path)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(f"--table {table_path}: {err}") from None
    try:
        seed_flags = _seed_flags(config)
    except ValueError as err:
        raise UsageError(str(err)) from None
    parent, logger_flags = _logger_args(config)
    finished = {seed: _finished(parent / f"seed_{seed}", space) for seed in seeds}
    return {"seeds": seeds, "rest": rest, "table": table, "parent": parent, "logger_flags": logger_flags,
            "seed_flags": seed_flags, "finished": finished, "space": space}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the search once per seed and write and print the summary; return the exit status (2: bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(f"usage: {PROG} --config CONFIG --seeds S [S ...] [--table nb201.csv] [search flags]\n\n{__doc__}")
        return 0
    try:
        setup = _prepare(argv)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    seeds, parent = setup["seeds"], setup["parent"]
    runs, genotypes = [], []
    for position, seed in enumerate(seeds, start=1):
        run_dir = parent / f"seed_{seed}"
        genotype = setup["finished"][seed]
        if genotype is not None:
            print(f"[seed {seed}, {position}/{len(seeds)}] reused the finished run {run_dir}", flush=True)
        else:
            if run_dir.exists():
                print(f"[seed {seed}] removing the unfinished run folder {run_dir}", flush=True)
                shutil.rmtree(run_dir)
            print(f"[seed {seed}, {position}/{len(seeds)}] searching into {run_dir}", flush=True)
            args = [*setup["rest"], "--seed_everything", str(seed), *setup["logger_flags"](seed),
                    *setup["seed_flags"](seed)]
            status = search_cli.main(args, prog=PROG)
            if status != 0:
                return status
            genotype = _finished(run_dir, setup["space"])
            if genotype is None:
                print(f"{PROG}: error: seed {seed}: the search wrote no {run_dir / 'genotype.json'}", file=sys.stderr)
                return 1
        runs.append({"seed": seed, "run_dir": str(run_dir), "reused": setup["finished"][seed] is not None})
        genotypes.append(genotype)
    summary = {**build_summary(runs, genotypes, setup["table"]), "search_args": setup["rest"]}
    path = parent / SUMMARY_NAME
    write_json(path, summary)
    Genotype.parse(summary["consensus"]["genotype"]).save(parent / CONSENSUS_NAME)
    print(format_summary(summary) + f"\nwrote {path} and {parent / CONSENSUS_NAME}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
