"""Discrete search: spaces, strategies, budgets, Pareto front, multi-seed summary and the CLI."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ops import Genotype, NB201Genotype, search_space
from configs import resolve_config, resolve_config_args, shipped_configs
from search.discrete import (Budget, FunctionEvaluator, NB201Space, RandomSearch, RegularizedEvolution, Reinforce,
                             SearchLoop, SizeLimit, TabularEvaluator, mean_std, pareto_front, plot_pareto, run_seeds,
                             summarize)
from search.discrete.cli import main
from search.discrete.reinforce import policy, sample_cell
from search.nb201_table import NB201Table

DATA = Path(__file__).parent / "data"
EXCERPT, HP12 = DATA / "nb201_excerpt.csv", DATA / "nb201_hp12_excerpt.csv"
OPS = search_space("nb201")


def conv_count(cell: NB201Genotype) -> float:
    """A synthetic metric over the full space: more convolutions is better, 3x3 slightly more."""
    return sum((op == "nor_conv_3x3") * 1.1 + (op == "nor_conv_1x1") for op in cell.edges)


def synthetic() -> FunctionEvaluator:
    return FunctionEvaluator(conv_count, size_fn=lambda c: (conv_count(c), 2 * conv_count(c)), metric_name="convs")


@pytest.fixture(scope="module")
def table() -> NB201Table:
    return NB201Table(EXCERPT, HP12)


def history(result) -> list[tuple[str, float]]:
    return [(r.arch, r.metric) for r in result.history]


# ------------------------------------------------------------------------------------------------ space
def test_space_sample_and_mutate() -> None:
    space, rng = NB201Space(), np.random.default_rng(0)
    assert space.size == 5 ** 6 and space.choices == (5,) * 6
    seen = set()
    for _ in range(300):
        cell = space.sample(rng)
        child = space.mutate(cell, rng)
        assert sum(a != b for a, b in zip(cell.edges, child.edges)) == 1
        assert space.decode(space.encode(cell)) == cell
        seen.update(cell.edges)
    assert seen == set(OPS)
    with pytest.raises(ValueError, match="outside this space"):
        space.encode(NB201Genotype(edges=("sep_conv_3x3",) * 6))


def test_restricted_space_stays_inside(table: NB201Table) -> None:
    cells = [NB201Genotype.from_arch_str(a) for a in table.archs]
    space, rng = NB201Space().restrict(cells), np.random.default_rng(1)
    assert space.size == len(cells)
    allowed = set(cells)
    for _ in range(200):
        cell = space.sample(rng)
        child = space.mutate(cell, rng)
        assert cell in allowed and child in allowed


# ------------------------------------------------------------------------------------------ strategies
@pytest.mark.parametrize("strategy", [RandomSearch(), RegularizedEvolution(10, 3), Reinforce(lr=0.05)])
def test_strategies_are_deterministic_under_a_seed(strategy) -> None:
    run = lambda seed: strategy.search(NB201Space(), synthetic(), Budget(60), seed=seed)  # noqa: E731
    first, again, other = run(3), run(3), run(4)
    assert len(first.history) == 60
    assert history(first) == history(again)
    assert history(first) != history(other)
    assert first.best.metric == max(m for _, m in history(first))
    assert isinstance(first.best_genotype, NB201Genotype)


def test_evolution_keeps_population_and_removes_the_oldest() -> None:
    population = 8
    result = RegularizedEvolution(population, 4).search(NB201Space(), synthetic(), Budget(200), seed=0)
    assert result.extras["population"] == list(range(200 - population, 200))
    for record in result.history[:population]:
        assert record.parent == -1
    for record in result.history[population:]:  # parents come from the `population` most recent cells only
        assert record.step - population <= record.parent < record.step
        parent = result.history[record.parent]
        assert sum(a != b for a, b in zip(parent.cell.edges, record.cell.edges)) == 1
    random_best = RandomSearch().search(NB201Space(), synthetic(), Budget(200), seed=0).best.metric
    assert result.best.metric > random_best  # selection pressure works on this easy metric


def test_evolution_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolution(population_size=3, sample_size=4)


def test_reinforce_raises_the_probability_of_the_rewarded_op() -> None:
    evaluator = FunctionEvaluator(lambda c: 100.0 * (c.edges[0] == "nor_conv_3x3"))
    result = Reinforce(lr=0.05).search(NB201Space(), evaluator, Budget(150), seed=0)
    probs = np.asarray(result.extras["probs"])
    assert probs.shape == (6, 5) and np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0, OPS.index("nor_conv_3x3")] > 0.8
    assert probs[1:].max() < 0.5  # edges the reward ignores stay spread out
    late = [r.cell.edges[0] == "nor_conv_3x3" for r in result.history[-30:]]
    assert sum(late) > 20


def _log_p(logits: np.ndarray, valid: np.ndarray, cell: np.ndarray, cells: np.ndarray | None) -> float:
    """Brute-force log-probability of ``cell`` under the (optionally conditioned) policy."""
    z = np.where(valid, logits, -np.inf)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    joint = lambda c: log_probs[np.arange(len(c)), c].sum()  # noqa: E731
    if cells is None:
        return joint(cell)
    return joint(cell) - np.log(sum(np.exp(joint(c)) for c in cells))


@pytest.mark.parametrize("restricted", [False, True])
def test_reinforce_log_prob_of_the_drawn_cell(restricted: bool) -> None:
    # The policy's log-probability of the cell it draws (what the policy gradient differentiates) equals a
    # brute-force computation, conditioned on the allowed cells in a restricted space; draws follow the policy.
    rng = np.random.default_rng(1)
    valid = np.arange(4)[None, :] < np.array([4, 3, 2])[:, None]  # decisions with 4, 3 and 2 options
    logits = np.where(valid, rng.normal(size=valid.shape), 0.0)
    cells = np.array([[0, 0, 0], [1, 2, 1], [3, 1, 0], [3, 2, 1], [2, 0, 1]]) if restricted else None
    dist = policy(torch.tensor(logits), torch.tensor(valid))
    generator = torch.Generator().manual_seed(0)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(2000):
        cell, log_p = sample_cell(dist, None if cells is None else torch.tensor(cells), generator)
        assert math.isclose(float(log_p), _log_p(logits, valid, cell.numpy(), cells), abs_tol=1e-9)
        counts[tuple(cell.tolist())] = counts.get(tuple(cell.tolist()), 0) + 1
    if restricted:
        assert set(counts) <= {tuple(c) for c in cells}
    top = max(counts, key=counts.get)
    assert abs(counts[top] / 2000 - math.exp(_log_p(logits, valid, np.array(top), cells))) < 0.04


# ---------------------------------------------------------------------------------- budgets and limits
def test_seconds_budget_stops_before_overrun() -> None:
    evaluator = FunctionEvaluator(conv_count, cost_fn=lambda c: 3.0, cost_unit="seconds")
    result = RandomSearch().search(NB201Space(), evaluator, Budget(evaluations=None, seconds=10.0), seed=0)
    assert len(result.history) == 3 and result.total_cost == 9.0
    with pytest.raises(ValueError, match="seconds"):
        RandomSearch().search(NB201Space(), synthetic(), Budget(evaluations=None, seconds=10.0))
    with pytest.raises(ValueError, match="neither"):
        Budget(evaluations=None, seconds=None)


def test_size_limit_rejects_large_cells(table: NB201Table) -> None:
    space = NB201Space().restrict(NB201Genotype.from_arch_str(a) for a in table.archs)
    evaluator = TabularEvaluator(table, "cifar10_valid_12ep")
    free = RandomSearch().search(space, evaluator, Budget(300), seed=0)
    limited = RandomSearch().search(space, evaluator, Budget(300), seed=0, limit=SizeLimit(max_params=0.4))
    assert free.best.params > 0.4
    assert limited.n_rejected > 0 and len(limited.history) == 300
    assert all(r.params <= 0.4 for r in limited.history) and limited.best.params <= 0.4
    flops = RegularizedEvolution().search(space, evaluator, Budget(100), seed=0, limit=SizeLimit(max_flops=50.0))
    assert all(r.flops <= 50.0 for r in flops.history)
    with pytest.raises(ValueError, match="none of the 48 allowed cells is within the size limit"):
        RandomSearch().search(space, evaluator, Budget(5), limit=SizeLimit(max_params=0.01))
    loop = SearchLoop(NB201Space(), synthetic(), Budget(5), SizeLimit(max_params=-1.0), max_rejections=100)
    with pytest.raises(ValueError, match="100 proposals in a row exceeded the size limit"):
        loop.run(RandomSearch(), seed=0)


def test_tabular_evaluator(table: NB201Table) -> None:
    best = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    ev = TabularEvaluator(table, "cifar100_valid_12ep", seconds_per_eval=134.0).evaluate(best)
    assert ev.metric == pytest.approx(60.2) and ev.cost == 134.0
    assert ev.params == table.params(best, "cifar100") and ev.flops == table.flops(best, "cifar100")
    with pytest.raises(ValueError, match="unknown metric 'cifar10_acc'"):
        TabularEvaluator(table, "cifar10_acc")


# ------------------------------------------------------------------------------------------ Pareto front
def test_pareto_front_on_hand_made_points(tmp_path: Path) -> None:
    points = [(90, 1.0), (85, 0.5), (92, 2.0), (80, 0.6), (85, 0.5), (92, 3.0), (70, 0.1), (91, 2.0), (60, 0.1)]
    # by hand: (70, 0.1) beats (60, 0.1); (85, 0.5) twice; (80, 0.6) loses to (85, 0.5); (90, 1.0);
    # (92, 2.0) beats (91, 2.0) and (92, 3.0)
    assert pareto_front(points) == [6, 1, 4, 0, 2]
    assert pareto_front([]) == []
    plot_pareto(points, tmp_path / "front.png", size_limit=2.5)
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_result_pareto_is_over_distinct_cells() -> None:
    result = RandomSearch().search(NB201Space(), synthetic(), Budget(300), seed=1)
    front = result.pareto("params")
    assert len({r.arch for r in front}) == len(front)
    for r in front:  # nothing evaluated dominates a front cell
        assert not any(o.metric >= r.metric and o.params <= r.params and (o.metric, o.params) != (r.metric, r.params)
                       for o in result.history)
    sizes = [r.params for r in front]
    assert sizes == sorted(sizes) and [r.metric for r in front] == sorted(r.metric for r in front)


# ---------------------------------------------------------------------------------------------- seeds
def test_run_seeds_and_summary() -> None:
    results = run_seeds(RandomSearch(), NB201Space(), synthetic(), Budget(20), [0, 1, 2])
    assert [r.seed for r in results] == [0, 1, 2]
    summary = summarize(results, {"double": lambda c: 2 * conv_count(c)})
    bests = [r.best.metric for r in results]
    assert summary["convs"] == pytest.approx((np.mean(bests), np.std(bests)))
    assert summary["double"][0] == pytest.approx(2 * np.mean(bests))
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)


# -------------------------------------------------------------------------------------------------- CLI
def test_resolve_config(tmp_path: Path) -> None:
    assert {"nb201_random.yaml", "nb201_evolution.yaml", "nb201_reinforce.yaml"} <= set(shipped_configs())
    assert resolve_config("nb201_evolution.yaml").is_file()
    assert resolve_config("nb201_evolution") == resolve_config("nb201_evolution.yaml")
    own = tmp_path / "mine.yaml"
    own.write_text("seeds: [1]\n")
    assert resolve_config(str(own)) == own
    with pytest.raises(FileNotFoundError, match="nb201_evolution.yaml"):
        resolve_config("no_such_config.yaml")
    assert resolve_config_args(["--config=nb201_random", "--x", "1"])[0].endswith("configs/nb201_random.yaml")


DISCRETE_CONFIGS = [name for name in shipped_configs()
                    if "model" not in yaml.safe_load(resolve_config(name).read_text())
                    and not name.startswith("retrain")]


@pytest.mark.parametrize("name", DISCRETE_CONFIGS)
def test_every_shipped_discrete_config_parses(name: str) -> None:
    """Each discrete-search config parses with the parser of its strategy (the strategy section it holds), and its
    evaluator section names a class of the library; nothing is built (no download, no run folder)."""
    import importlib

    from search.discrete.cli import STRATEGIES, build_parser

    raw = yaml.safe_load(resolve_config(name).read_text())
    strategy = next((s for s in STRATEGIES if s in raw), "random_search")
    cfg = build_parser(strategy).parse_args(resolve_config_args(["--config", name]))
    assert cfg.space in ("nb201", "darts") and cfg.seeds
    if raw.get("evaluator") is not None:
        module, _, cls = cfg.evaluator.class_path.rpartition(".")
        assert hasattr(importlib.import_module(module), cls)


def cli_args(out: Path, *extra: str) -> list[str]:
    return ["--table", str(EXCERPT), "--hp12_table", str(HP12), "--out_dir", str(out), "--log_every", "0", *extra]


@pytest.mark.parametrize("strategy, config", [("random_search", "nb201_random.yaml"),
                                              ("evolution", "nb201_evolution.yaml"),
                                              ("reinforce", "nb201_reinforce.yaml")])
def test_cli_end_to_end(tmp_path: Path, strategy: str, config: str, capsys) -> None:
    code = main(strategy, ["--config", config, *cli_args(tmp_path, "--name", "run", "--seeds", "0", "1",
                                                         "--budget.seconds", "2000")])
    assert code == 0
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and set(summary["mean_std"]) >= {"cifar10_valid_12ep", "cifar10_test"}
    for entry in summary["runs"]:
        seed_dir = run / f"seed{entry['seed']}"
        rows = list(csv.DictReader((seed_dir / "history.csv").open()))
        assert len(rows) == entry["evaluations"] == 14  # floor(2000 / 134)
        assert max(float(r["cifar10_valid_12ep"]) for r in rows) == pytest.approx(entry["cifar10_valid_12ep"])
        assert Genotype.load(seed_dir / "best_genotype.json").to_arch_str() == entry["best_arch"]
        assert (seed_dir / "pareto.png").stat().st_size > 0 and (seed_dir / "trials.png").stat().st_size > 0
        assert entry["best_arch"] in (run / "report.html").read_text()
    page = (run / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # per seed: its trial history and Pareto front
    assert "Resolved config" in page
    assert "± " in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folder left


@pytest.mark.parametrize("argv, message", [
    (["--foo", "1"], "unrecognized arguments: --foo"),
    (["--metric", "cifar10_top1"], "unknown metric 'cifar10_top1'"),
    (["--evolution.sample_size", "50"], "sample_size"),
    (["--limit.max_params", "0.01"], "size limit"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, argv: list[str], message: str, capsys) -> None:
    assert main("evolution", cli_args(tmp_path / "runs", *argv)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_cli_requires_table_and_known_config_keys(tmp_path: Path, capsys) -> None:
    assert main("random_search", ["--out_dir", str(tmp_path)]) == 2
    assert "pass --table PATH" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget:\n  evaluation: 5\n")
    assert main("random_search", ["--config", str(bad), *cli_args(tmp_path)]) == 2
    assert "evaluation" in capsys.readouterr().err
    assert main("random_search", ["--table", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_cli_module_entry_point(tmp_path: Path, capsys) -> None:
    cmd = [sys.executable, "-m", "search.evolution", "--config", "nb201_evolution", *cli_args(tmp_path),
           "--budget.evaluations", "12", "--budget.seconds", "null"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "nb201_evolution" / "seed2" / "history.csv").is_file()
    assert main("evolution", cmd[3:]) == 2  # the run folder now exists
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err


def test_a_table_search_starts_without_lightning() -> None:
    """Table searches (and the Ray workers that run their trials) do not pay Lightning's import; the training
    evaluators still come from the package when asked for."""
    code = ("import sys, search.discrete, search.discrete.cli; assert 'lightning' not in sys.modules; "
            "from search.discrete import TrainedEvaluator; assert 'lightning' in sys.modules; "
            "print(TrainedEvaluator.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "search.discrete.trained"
