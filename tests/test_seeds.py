"""``python -m search.seeds``: one-shot search once per seed, resumable, with a summary (agreement, table accuracy)."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops import DartsGenotype, Genotype, NB201Genotype
from ops.zoo import get_genotype
from search import cli as search_cli
from search.nb201_table import NB201Table
from search.seeds import PROG, SUMMARY_NAME, consensus_genotype, edge_agreement, main, mean_sample_std

DATA = Path(__file__).parent / "data"
EXCERPT = DATA / "nb201_excerpt.csv"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--outputs.pictures", "false", "--outputs.importance_batches", "0"]
DARTS_TINY = ["--config", "quickstart.yaml", "--trainer.max_epochs", "1", "--data.init_args.subset", "64",
              "--data.init_args.batch_size", "16", "--model.supernet.init_args.layers", "3",
              "--model.supernet.init_args.channels", "4", "--model.supernet.init_args.steps", "2",
              "--model.supernet.init_args.multiplier", "2", *QUIET]
# GDAS: an NB201 strategy that takes a seed argument; the 8x8 grey digits fit the NB201 network.
NB201_TINY = ["--config", "nb201_gdas.yaml", "--data", "nasdata.DigitsDataModule", "--data.subset", "48",
              "--data.batch_size", "8", "--data.num_workers", "0", "--trainer.accelerator", "cpu",
              "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
              "--model.supernet.init_args.channels", "4", "--model.supernet.init_args.cells_per_stage", "1", *QUIET]


def _save_dir(tmp_path: Path) -> list[str]:
    return ["--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def search_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The arguments of every search run ``search.seeds`` starts (the real runs still happen)."""
    calls: list[list[str]] = []
    real = search_cli.main

    def counting(argv: list[str], prog: str | None = None) -> int:
        calls.append(list(argv))
        return real(argv, prog)

    monkeypatch.setattr(search_cli, "main", counting)
    return calls


def test_two_seeds_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               search_calls: list[list[str]]) -> None:
    parent = tmp_path / "runs" / "quickstart"
    assert main(DARTS_TINY + _save_dir(tmp_path) + ["--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert len(search_calls) == 2
    for seed in (0, 1):
        run = parent / f"seed_{seed}"
        assert (run / "genotype.json").is_file()
        assert yaml.safe_load((run / "config.yaml").read_text())["seed_everything"] == seed
    summary = _strict_json(parent / SUMMARY_NAME)
    assert summary["space"] == "darts" and summary["seeds"] == [0, 1] and "table" not in summary
    for seed, run in zip((0, 1), summary["runs"]):
        genotype = Genotype.load(parent / f"seed_{seed}" / "genotype.json")
        assert run["seed"] == seed and not run["reused"] and run["genotype"] == genotype.to_text()
        assert run["genotype"] in out
    agreement = summary["agreement"]
    assert set(agreement["cells"]) == {"normal", "reduce"} and agreement["slots"] == 4  # 2 nodes per cell
    assert 0 <= agreement["all_agree"] <= 4 and "edge agreement over 2 seeds" in out
    first = {r["seed"]: r["genotype"] for r in summary["runs"]}

    # A killed command: seed 2 left an unfinished folder. The rerun reuses 0 and 1, redoes only seed 2.
    (parent / "seed_2").mkdir()
    (parent / "seed_2" / "stale.txt").write_text("from a killed run")
    assert main(DARTS_TINY + _save_dir(tmp_path) + ["--seeds", "0", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert len(search_calls) == 3 and "seed_2" in " ".join(search_calls[-1])
    assert "reused" in out and not (parent / "seed_2" / "stale.txt").exists()
    summary = _strict_json(parent / SUMMARY_NAME)
    assert [r["reused"] for r in summary["runs"]] == [True, True, False]
    assert {r["seed"]: r["genotype"] for r in summary["runs"][:2]} == first
    assert summary["agreement"]["slots"] == 4


def test_nb201_seeds_with_table(tmp_path: Path, search_calls: list[list[str]]) -> None:
    parent = tmp_path / "runs" / "gdas_nb201_cifar10"
    assert main(NB201_TINY + _save_dir(tmp_path) + ["--seeds", "3", "4", "--table", str(EXCERPT)]) == 0
    for seed in (3, 4):  # the strategy's own seed follows --seeds
        config = yaml.safe_load((parent / f"seed_{seed}" / "config.yaml").read_text())
        assert config["model"]["strategy_args"]["seed"] == seed and config["seed_everything"] == seed
    summary = _strict_json(parent / SUMMARY_NAME)
    table = NB201Table(EXCERPT)
    assert summary["space"] == "nb201" and len(summary["agreement"]["cells"]["normal"]) == 6
    for run in summary["runs"]:  # the tiny search's cells are looked up, or marked absent from the 48-row excerpt
        NB201Genotype.from_arch_str(run["genotype"])
        expected = table.accuracy(run["genotype"]) if run["genotype"] in table else None
        assert run["cifar10_test"] == expected
    assert summary["table"]["n"] + len(summary["table"]["not_in_table"]) == 2


def test_every_seeded_part_follows_the_seed_and_ties_go_to_the_alphas_before_selection(
        tmp_path: Path, search_calls: list[list[str]]) -> None:
    """SDARTS-RS + PT (the default) over two seeds: the smoothing noise and the selection's edge order take each run's
    seed (a regularizer added by flag is kept), and the consensus breaks its ties with the op probabilities before
    the selection's decisions (``alpha_probabilities``), not with the one-hot weights the decisions leave."""
    tiny = ["--config", "nb201_sdarts_rs_pt.yaml", *NB201_TINY[2:], "--trainer.max_epochs", "2",
            "--model.selection.init_args.tune_epochs", "0", "--model.selection.init_args.probe_batches", "1",
            "--model.regularizers+=search.robust.BetaDecay"]
    parent = tmp_path / "runs" / "sdarts_rs_pt_nb201_cifar10"
    assert main(tiny + _save_dir(tmp_path) + ["--seeds", "5", "6"]) == 0
    genotypes, before = [], []
    for seed in (5, 6):
        run = parent / f"seed_{seed}"
        model = yaml.safe_load((run / "config.yaml").read_text())["model"]
        assert [(r["class_path"], r["init_args"].get("seed")) for r in model["regularizers"]] == [
            ("search.robust.RandomSmoothing", seed), ("search.robust.BetaDecay", None)]
        assert model["selection"]["init_args"]["seed"] == seed
        last = _strict_json(run / "alphas.json")["epochs"][-1]
        assert all(max(edge) == 1.0 for edge in last["probabilities"]["normal"])  # every edge decided: one-hot
        assert all(0.0 < max(edge) < 1.0 for edge in last["alpha_probabilities"]["normal"])
        genotypes.append(NB201Genotype.load(run / "genotype.json"))
        before.append(last["alpha_probabilities"])
    candidates = _strict_json(parent / "seed_5" / "alphas.json")["candidates"]
    summary = _strict_json(parent / SUMMARY_NAME)
    assert summary["consensus"]["genotype"] == consensus_genotype(genotypes, before, candidates).to_text()


def test_table_summary_of_known_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      search_calls: list[list[str]]) -> None:
    """Finished seed folders holding known cells: nothing runs, the table accuracies are exact."""
    parent = tmp_path / "runs" / "gdas_nb201_cifar10"
    for seed, arch in ((0, BEST), (1, BEST), (2, ALL_SKIP)):
        (parent / f"seed_{seed}").mkdir(parents=True)
        NB201Genotype.from_arch_str(arch).save(parent / f"seed_{seed}" / "genotype.json")
    assert main(NB201_TINY + _save_dir(tmp_path) + ["--seeds", "0", "1", "2", "--table", str(EXCERPT)]) == 0
    assert search_calls == []
    summary = _strict_json(parent / SUMMARY_NAME)
    accuracies = [r["cifar10_test"] for r in summary["runs"]]
    assert accuracies == pytest.approx([94.373333, 94.373333, 54.296667])
    assert [r["genotype"] for r in summary["runs"]] == [BEST, BEST, ALL_SKIP]
    assert summary["table"]["mean"] == pytest.approx(statistics.mean(accuracies))
    assert summary["table"]["std"] == pytest.approx(statistics.stdev(accuracies))  # sample std
    assert summary["agreement"]["all_agree"] == 1 and summary["agreement"]["slots"] == 6  # edge 0->3: skip
    assert summary["consensus"] == {"genotype": BEST, "cifar10_test": pytest.approx(94.373333)}  # two votes of 3
    assert NB201Genotype.load(parent / "consensus.json") == NB201Genotype.from_arch_str(BEST)
    out = capsys.readouterr().out
    assert "all agree on 1 of 6 edges" in out and f"{statistics.mean(accuracies):.2f} ± " in out


def test_edge_agreement_of_hand_made_genotypes() -> None:
    nb = [NB201Genotype.from_arch_str(a) for a in (BEST, BEST, ALL_SKIP, ALL_SKIP)]
    result = edge_agreement(nb)
    assert [s["agreement"] for s in result["cells"]["normal"]] == [0.5, 0.5, 0.5, 1.0, 0.5, 0.5]
    assert result["cells"]["normal"][3] == {"slot": "0->3", "choice": "skip_connect", "agreement": 1.0}
    assert (result["all_agree"], result["slots"]) == (1, 6)

    def darts(normal: list[tuple[str, int]]) -> DartsGenotype:
        reduce = (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1))
        return DartsGenotype(normal=tuple(normal), normal_concat=(2, 3), reduce=reduce, reduce_concat=(2, 3))

    a = darts([("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1)])
    b = darts([("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)])  # node 2 reordered
    c = darts([("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 1), ("sep_conv_3x3", 1)])
    result = edge_agreement([a, b, c])
    normal = result["cells"]["normal"]
    assert normal[0] == {"slot": "node 2", "choice": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "agreement": 1.0}
    assert normal[1]["agreement"] == pytest.approx(1 / 3)  # three different nodes 3
    assert (result["all_agree"], result["slots"]) == (3, 4)  # node 2 and the whole reduction cell
    assert edge_agreement([a])["all_agree"] == 4
    with pytest.raises(ValueError, match="different search spaces"):
        edge_agreement([a, nb[0]])


def test_consensus_votes_per_edge_and_breaks_ties_by_probability_then_seed_order() -> None:
    conv3, skip, conv1 = "nor_conv_3x3", "skip_connect", "nor_conv_1x1"
    cells = [NB201Genotype(edges=(conv3, conv3, conv1, skip, conv3, conv3)),
             NB201Genotype(edges=(conv3, conv3, conv3, skip, conv3, conv3)),
             NB201Genotype(edges=(conv3, conv3, skip, conv3, conv3, skip))]
    assert consensus_genotype(cells).edges == (conv3, conv3, conv1, skip, conv3, conv3)  # 1->2: a 3-way tie, seed 0
    candidates = ["none", skip, conv1, conv3, "avg_pool_3x3"]
    flat = [[0.2] * 5 for _ in range(6)]
    favour_conv3 = [{"normal": [row[:] for row in flat]} for _ in cells]
    favour_conv3[1]["normal"][2][3] = 0.9  # seed 1 holds conv3 on 1->2 strongly
    assert consensus_genotype(cells, favour_conv3, candidates).edges[2] == conv3

    def darts(normal: list[tuple[str, int]]) -> DartsGenotype:
        reduce = (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1))
        return DartsGenotype(normal=tuple(normal), normal_concat=(2, 3), reduce=reduce, reduce_concat=(2, 3))

    a = darts([("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 2)])
    b = darts([("sep_conv_3x3", 1), ("dil_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 2)])
    c = darts([("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 1), ("dil_conv_3x3", 2)])
    vote = consensus_genotype([a, b, c])
    # node 2: inputs 0 and 1 (3 votes each), input 0's op sep_conv_3x3 (2 of 3); node 3: input 2 (3 votes), then
    # input 1 (2 votes) over input 0 (1), ops by majority
    assert vote.normal == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2), ("skip_connect", 1))
    assert vote.reduce == a.reduce and vote.normal_concat == (2, 3)


def test_mean_sample_std() -> None:
    assert mean_sample_std([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))
    assert mean_sample_std([5.0]) == (5.0, None) and mean_sample_std([]) == (None, None)


BAD = [
    ([], ["--seeds", "required"]),
    (["--seeds"], ["--seeds", "at least one"]),
    (["--seeds", "--trainer.max_epochs", "1"], ["--seeds", "at least one"]),
    (["--seeds", "0", "1", "0"], ["--seeds", "0 given twice"]),
    (["--seeds", "0", "x"], ["--seeds", "'x' is not an integer"]),
    (["--seeds", "1.5"], ["--seeds", "'1.5'"]),
    (["--seeds", "0", "-1"], ["--seeds", "-1 is negative"]),
    (["--seeds", "0", "--table", "missing.csv"], ["--table missing.csv", "no such file"]),
    (["--seeds", "0", "--table", str(EXCERPT)], ["--table", "NAS-Bench-201 space only", "darts"]),
    (["--seeds", "0", "--seed_everything", "3"], ["--seed_everything", "--seeds"]),
    (["--seeds", "0", "--model.selection.init_args.seed=3"], ["--model.selection.init_args.seed", "--seeds"]),
    (["--seeds", "0", "--trainer.max_epochs", "x"], ["--trainer.max_epochs", "'x'"]),
    (["--seeds", "0", "1", "--model.lr", "-1"], ["--model.lr"]),  # refused by seed 0's run: seed 1 never runs
]


@pytest.mark.parametrize("extra,needles", BAD, ids=[" ".join(b[0]) or "no-seeds" for b in BAD])
def test_bad_input_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], search_calls: list[list[str]],
                                  extra: list[str], needles: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(DARTS_TINY + _save_dir(tmp_path) + extra) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error:"), lines
    for needle in needles:
        assert needle in lines[0]
    assert len(search_calls) == ("--model.lr" in extra)  # only the refused seed-0 run starts, no later seed
    assert not any(tmp_path.iterdir())  # nothing written


def test_failed_seed_stops_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A seed run ending in exit 2 ends the command with that status: later seeds and the summary never happen."""
    calls: list[list[str]] = []

    def fake_search(argv: list[str], prog: str | None = None) -> int:  # seed 0 finishes, seed 1 is refused
        calls.append(list(argv))
        if len(calls) == 2:
            print(f"{prog}: error: --model.lr must be > 0", file=sys.stderr)
            return 2
        run = tmp_path / "runs" / "quickstart" / f"seed_{argv[argv.index('--seed_everything') + 1]}"
        run.mkdir(parents=True)
        get_genotype("DARTS_V2").save(run / "genotype.json")
        return 0

    monkeypatch.setattr(search_cli, "main", fake_search)
    assert main(DARTS_TINY + _save_dir(tmp_path) + ["--seeds", "0", "1", "2"]) == 2
    assert len(calls) == 2 and "seed_1" in " ".join(calls[1])
    assert capsys.readouterr().err.strip().splitlines() == [f"{PROG}: error: --model.lr must be > 0"]
    assert not (tmp_path / "runs" / "quickstart" / SUMMARY_NAME).exists()
