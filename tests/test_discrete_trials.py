"""Discrete searches as trials: retried once then recorded when they fail, run on several Ray workers with the same
outcome as one worker where the strategy allows it, journaled so that a search killed with SIGKILL resumes without
running a finished trial again, and bad input refused in one line."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops import NB201Genotype
from search.discrete import (Budget, FunctionEvaluator, Journal, NB201Space, Progress, RandomSearch,
                             RegularizedEvolution, Reinforce, SearchLoop, SerialPool)
from search.discrete.cli import main, progress_line

DATA = Path(__file__).parent / "data"
EXCERPT, HP12 = DATA / "nb201_excerpt.csv", DATA / "nb201_hp12_excerpt.csv"
ROOT = Path(__file__).resolve().parents[1]


def convs(cell) -> float:
    return float(sum("conv" in e for e in cell.edges)) + 0.01 * sum(len(e) for e in cell.edges)


def test_a_failing_trial_is_retried_once_then_recorded_and_the_search_goes_on() -> None:
    calls: dict[str, int] = {}

    def flaky(cell) -> float:
        arch = cell.to_arch_str()
        calls[arch] = calls.get(arch, 0) + 1
        if cell.edges[0] == "none":
            raise RuntimeError("out of memory")  # every time: recorded as failed
        if cell.edges[0] == "skip_connect" and calls[arch] == 1:
            raise RuntimeError("flaky node")  # the first time only: the retry succeeds
        return convs(cell)

    result = RegularizedEvolution(5, 2).search(NB201Space(), FunctionEvaluator(flaky), Budget(60), seed=0)
    assert len(result.history) + len(result.failures) == 60  # a failed trial is charged
    assert result.failures and all(f.attempts == 2 and f.error == "RuntimeError: out of memory" and "|none~0|" in f.arch
                                   for f in result.failures)
    retried = [r for r in result.history if r.arch.startswith("|skip_connect~0|")]
    assert retried and all(r.attempts == 2 for r in retried if calls[r.arch] >= 2)
    assert {r.trial for r in result.history} | {f.trial for f in result.failures} == set(range(60))


def test_reinforce_batches_take_one_step_per_batch() -> None:
    one = Reinforce(lr=0.05).search(NB201Space(), FunctionEvaluator(convs), Budget(40), seed=0)
    batched = Reinforce(lr=0.05, batch_size=4).search(NB201Space(), FunctionEvaluator(convs), Budget(40), seed=0)
    assert len(batched.history) == 40 and batched.extras["probs"] != one.extras["probs"]
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        Reinforce(batch_size=0)


@pytest.mark.parametrize("strategy", [RandomSearch(), RegularizedEvolution(6, 3), Reinforce(lr=0.05, batch_size=3)],
                         ids=lambda s: s.name)
def test_a_replayed_journal_gives_the_same_search(tmp_path: Path, strategy) -> None:
    evaluator = FunctionEvaluator(convs)
    whole = strategy.search(NB201Space(), evaluator, Budget(30), seed=1)
    journal = Journal(tmp_path / "j.jsonl", {"test": 1})
    strategy.search(NB201Space(), evaluator, Budget(12), seed=1, journal=journal)
    journal.close()
    lines = (tmp_path / "j.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "j.jsonl").write_text("".join(lines[:-1]) + lines[-1][:7])  # killed while writing the last line
    counted: list[str] = []
    counting = FunctionEvaluator(lambda c: counted.append(c.to_arch_str()) or convs(c))
    resumed = strategy.search(NB201Space(), counting, Budget(30), seed=1,
                              journal=Journal(tmp_path / "j.jsonl", {"test": 1}, resume=True))
    assert [(r.arch, r.metric, r.parent) for r in resumed.history] == [(r.arch, r.metric, r.parent) for r in whole.history]
    assert resumed.extras == whole.extras
    assert len(counted) == 30 - 11  # the trial whose line was cut short runs again, no finished one does
    with pytest.raises(ValueError, match=r"from another search \(differs in: test\)"):
        Journal(tmp_path / "j.jsonl", {"test": 2}, resume=True)


class InProcessPool(SerialPool):
    """``workers`` trials in flight in this process (evaluated in submission order), refusing a submit with no free
    worker as a Ray pool must."""

    def __init__(self, evaluator, workers: int) -> None:
        super().__init__(evaluator)
        self.workers = workers

    def submit(self, trial: int, cell) -> None:
        assert self.free > 0, "submitted with no free worker"
        super().submit(trial, cell)


def _cut_with_trials_in_flight(path: Path, trials: int) -> list[int]:
    """Cut the journal at the last point where ``trials`` trials were in flight; return them."""
    lines = path.read_text().splitlines(keepends=True)
    pending: set[int] = set()
    cut = None
    for i, line in enumerate(lines[1:], start=1):
        event = json.loads(line)
        if event["event"] == "start" and event["attempt"] == 1:
            pending.add(event["trial"])
        elif event["event"] in ("done", "failed"):
            pending.discard(event["trial"])
        if len(pending) == trials:
            cut, in_flight = i + 1, sorted(pending)
    assert cut is not None
    path.write_text("".join(lines[:cut]))
    return in_flight


def test_a_resume_with_fewer_workers_waits_for_free_ones(tmp_path: Path) -> None:
    evaluator = FunctionEvaluator(convs)
    journal = Journal(tmp_path / "j.jsonl", {"test": 1})
    RegularizedEvolution(6, 3).search(NB201Space(), evaluator, Budget(20), seed=0, journal=journal,
                                      pool=InProcessPool(evaluator, 4))
    journal.close()
    in_flight = _cut_with_trials_in_flight(tmp_path / "j.jsonl", 4)
    resumed = RegularizedEvolution(6, 3).search(NB201Space(), evaluator, Budget(20), seed=0,
                                                journal=Journal(tmp_path / "j.jsonl", {"test": 1}, resume=True),
                                                pool=InProcessPool(evaluator, 1))
    assert sorted(r.trial for r in resumed.history) == list(range(20))
    assert all(r.attempts == 2 for r in resumed.history if r.trial in in_flight)  # the killed attempt counts


def test_a_trial_that_took_the_search_down_twice_is_recorded_as_failed(tmp_path: Path) -> None:
    evaluator = FunctionEvaluator(convs)
    journal = Journal(tmp_path / "j.jsonl", {"test": 1})
    RandomSearch().search(NB201Space(), evaluator, Budget(10), seed=0, journal=journal)
    journal.close()
    (trial,) = _cut_with_trials_in_flight(tmp_path / "j.jsonl", 1)
    with (tmp_path / "j.jsonl").open("a") as handle:  # its second attempt killed the search as well
        handle.write(json.dumps({"event": "start", "trial": trial, "attempt": 2}) + "\n")
    resumed = RandomSearch().search(NB201Space(), evaluator, Budget(10), seed=0,
                                    journal=Journal(tmp_path / "j.jsonl", {"test": 1}, resume=True))
    (failure,) = resumed.failures
    assert failure.trial == trial and failure.attempts == 2 and "search process ended" in failure.error
    assert len(resumed.history) == 9
    with (tmp_path / "j.jsonl").open("a") as handle:
        handle.write(json.dumps({"event": "done", "trial": 99}) + "\n")
    with pytest.raises(ValueError, match="is damaged: a 'done' event for trial 99"):
        RandomSearch().search(NB201Space(), evaluator, Budget(10), seed=0,
                              journal=Journal(tmp_path / "j.jsonl", {"test": 1}, resume=True))


def test_progress_line() -> None:
    p = Progress(done=40, running=2, failed=1, budget=100, best=None, elapsed=130.0, record=None, finished_here=41)
    assert p.remaining == pytest.approx(130.0 / 41 * 59)
    resumed = Progress(done=40, running=2, failed=1, budget=100, best=None, elapsed=130.0, record=None, finished_here=1)
    assert resumed.remaining == pytest.approx(130.0 * 59)  # the pace of this process, not of the replayed trials
    assert progress_line("evolution seed 0", p, "val_acc") == (
        "[evolution seed 0] 40/100 trials done, 2 running, 1 failed; best none yet; 2m10s elapsed, ~3m07s left")


def _command(out: Path, log: Path, *extra: str) -> list[str]:
    evaluator = {"class_path": "discrete_helpers.SlowTable",
                 "init_args": {"table": str(EXCERPT), "hp12_table": str(HP12), "log": str(log), "delay": 0.1}}
    return [sys.executable, "-m", "search.evolution", "--table", str(EXCERPT), "--hp12_table", str(HP12),
            "--evaluator", json.dumps(evaluator), "--evolution.population_size", "5", "--evolution.sample_size", "2",
            "--budget.evaluations", "40", "--out_dir", str(out), "--name", "run", "--log_every", "0", *extra]


def _done(journal: Path) -> int:
    return sum('"event": "done"' in line for line in journal.read_text().splitlines()) if journal.exists() else 0


def test_a_search_killed_with_sigkill_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    journal = tmp_path / "killed" / "run" / "seed0" / "journal.jsonl"
    first = subprocess.Popen(_command(tmp_path / "killed", tmp_path / "first.log"), env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _done(journal) < 10 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    finished = _done(journal)
    assert 10 <= finished < 40
    log = tmp_path / "first.log"
    before = len(log.read_text().splitlines())
    resumed = subprocess.run(_command(tmp_path / "killed", log, "--resume", "true"), env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming: {finished} finished trials" in resumed.stdout
    rows = list(csv.DictReader((tmp_path / "killed" / "run" / "seed0" / "history.csv").open()))
    assert sorted(int(r["trial"]) for r in rows) == list(range(40))  # every trial once
    assert len(log.read_text().splitlines()) - before == 40 - finished  # none finished ran again
    whole = subprocess.run(_command(tmp_path / "whole", tmp_path / "whole.log"), env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    uninterrupted = list(csv.DictReader((tmp_path / "whole" / "run" / "seed0" / "history.csv").open()))
    assert [(r["arch"], r["parent"]) for r in rows] == [(r["arch"], r["parent"]) for r in uninterrupted]


def _cli(tmp_path: Path, *extra: str) -> list[str]:
    return ["--table", str(EXCERPT), "--hp12_table", str(HP12), "--out_dir", str(tmp_path), "--name", "run",
            "--log_every", "0", "--budget.evaluations", "8", *extra]


def test_resume_refuses_a_journal_of_another_search_and_leaves_it(tmp_path: Path, capsys) -> None:
    assert main("evolution", _cli(tmp_path)) == 0
    journal = tmp_path / "run" / "seed0" / "journal.jsonl"
    before = journal.read_bytes()
    assert main("evolution", _cli(tmp_path, "--resume", "true", "--evolution.population_size", "4")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is from another search (differs in: settings)" in err
    assert journal.read_bytes() == before
    assert main("evolution", _cli(tmp_path, "--resume", "true", "--budget.evaluations", "4")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds 8 trials, more than budget.evaluations 4" in err
    assert journal.read_bytes() == before
    assert main("evolution", _cli(tmp_path, "--resume", "true", "--budget.evaluations", "12")) == 0  # a longer budget
    assert len(list(csv.DictReader((tmp_path / "run" / "seed0" / "history.csv").open()))) == 12


@pytest.mark.parametrize("argv, message", [
    (["--space", "darts"], "the NAS-Bench-201 table scores cells of the nb201 space"),
    (["--resume", "true", "--overwrite", "true"], "pass one"),
    (["--workers", "0"], "--workers must be >= 1"),
])
def test_trial_options_bad_input_exits_2_with_one_line(tmp_path: Path, argv, message, capsys) -> None:
    assert main("random_search", _cli(tmp_path, *argv)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_workers_without_ray_name_the_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main("random_search", _cli(tmp_path, "--workers", "2")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install -e ".[ray]"' in err
    assert not (tmp_path / "run").exists()


def test_the_trained_evaluator_searches_the_darts_space_from_the_command_line(tmp_path: Path, capsys) -> None:
    evaluator = {"class_path": "search.discrete.TrainedEvaluator",
                 "init_args": {"data": {"class_path": "nasdata.DigitsDataModule",
                                        "init_args": {"search_split": True, "subset": 64, "batch_size": 32}},
                               "epochs": 1, "channels": 4, "layers": 2}}
    argv = ["--space", "darts", "--evaluator", json.dumps(evaluator), "--budget.evaluations", "2",
            "--out_dir", str(tmp_path), "--name", "run", "--log_every", "1"]
    assert main("random_search", argv) == 2  # a DARTS network needs 3 cells
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TrainedEvaluator in the darts space: layers must be an integer >= 3" in err
    evaluator["init_args"]["layers"] = 3
    argv[3] = json.dumps(evaluator)
    assert main("random_search", argv) == 0
    out = capsys.readouterr().out
    assert "[random_search seed 0] 2/2 trials done, 0 running, 0 failed; best val_acc" in out
    rows = list(csv.DictReader((tmp_path / "run" / "seed0" / "history.csv").open()))
    assert len(rows) == 2 and all(r["arch"].startswith("Genotype(normal=") and float(r["params_m"]) > 0 for r in rows)


# --- Ray workers -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    _start(ray)
    yield ray
    ray.shutdown()


def _start(ray) -> None:
    """A local Ray whose workers import this project and these tests (the evaluators here are defined in them)."""
    path = os.pathsep.join([str(ROOT / "tests"), str(ROOT)])
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})


def test_four_ray_workers_evaluate_what_one_worker_does(ray_session, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from discrete_helpers import SlowTable
    from search.discrete import RayPool
    from search.nb201_table import NB201Table

    slow = SlowTable(str(EXCERPT), str(HP12), str(tmp_path / "log"), delay=0.02)  # the tabular evaluator, slowed
    space = NB201Space().restrict(NB201Genotype.from_arch_str(a) for a in NB201Table(EXCERPT, HP12).archs)
    pool = RayPool(slow, 4)  # one pool for the three searches, as the CLI shares it across seeds
    try:
        def both(strategy):
            serial = strategy.search(space, slow, Budget(24), seed=3)
            return serial, strategy.search(space, slow, Budget(24), seed=3, pool=pool)

        serial, parallel = both(RandomSearch())
        assert len(parallel.history) == len(serial.history) == 24
        assert sorted(r.arch for r in parallel.history) == sorted(r.arch for r in serial.history)
        assert parallel.best.arch == serial.best.arch and parallel.best.trial == serial.best.trial
        serial, parallel = both(RegularizedEvolution(6, 3))
        assert len(parallel.history) == len(serial.history) == 24  # asynchronous: the cells may differ, not their number
        serial, parallel = both(Reinforce(lr=0.05, batch_size=4))
        assert parallel.extras["probs"] == serial.extras["probs"]  # a batch's step does not depend on finishing order
        assert pool.free == 4 and pool.running == 0
    finally:
        pool.close()


@pytest.mark.parametrize("always", [False, True], ids=["dies once", "dies always"])
def test_a_worker_that_dies_is_replaced_and_its_trial_retried_then_recorded(ray_session, tmp_path, always) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from discrete_helpers import Dies
    from search.discrete import RayPool

    evaluator = Dies(str(tmp_path), always)
    pool = RayPool(evaluator, 2)
    try:
        result = RandomSearch().search(NB201Space(), evaluator, Budget(6), seed=5, pool=pool)  # trial 3 dies
    finally:
        pool.close()
    deaths = [r for r in result.history if r.arch.startswith("|none~0|")]
    assert len(result.history) + len(result.failures) == 6
    if always:
        assert not deaths and result.failures and all("died" in f.error and f.attempts == 2 for f in result.failures)
    else:
        assert deaths and not result.failures and all(r.attempts == 2 for r in deaths)


def test_an_unreachable_cluster_is_refused_in_one_line(ray_session, tmp_path, capsys) -> None:
    ray_session.shutdown()
    try:
        assert main("random_search", _cli(tmp_path, "--ray_address", "127.0.0.1:1")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--ray_address 127.0.0.1:1: no Ray cluster answers there" in err
        assert not (tmp_path / "run").exists()
        assert main("random_search", _cli(tmp_path)) == 0
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        assert main("random_search", _cli(tmp_path, "--overwrite", "true", "--ray_address", "127.0.0.1:1")) == 2
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # the old run is untouched
    finally:
        _start(ray_session)
