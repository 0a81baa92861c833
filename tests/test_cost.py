"""Hardware-aware search: the cost model against the NAS-Bench-201 table and ``build_network``, the expected cost and
its gradient, the budget (dual ascent, the cell brought within it), the latency cache, and bad input.

``tests/data/nb201_sizes.csv``: every 25th row (625 cells) of the columns ``arch_index, arch, params_m, flops_m``
of the NAS-Bench-201 table (``../shared/benchdata/nb201.csv``; the benchmark's CIFAR-10 network, C=16, N=5).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ops import DartsGenotype, DartsSpace, NB201Genotype, NB201Space
from ops.zoo import get_genotype, list_genotypes
from retrain import build_network, count_macs, count_parameters
from search.cost import CostModel, CostObjective, LatencyMeter, top2_inclusion
from search.cost.model import reference_genotype, standalone
from search.strategies import get_strategy
from supernet import ArchParameters, DartsSearchNetwork, NB201SearchNetwork

SIZES = Path(__file__).parent / "data" / "nb201_sizes.csv"
DARTS_ZOO = [name for name in list_genotypes() if isinstance(get_genotype(name), DartsGenotype)]


@pytest.fixture(scope="module")
def nb201_model() -> CostModel:
    space = NB201Space()
    net = standalone(reference_genotype(space), "nb201", None, None, 10, 3)
    return CostModel.build(space, net, (3, 32, 32), ("params", "flops"))


def test_nb201_params_and_flops_equal_the_table_for_625_cells(nb201_model):
    with SIZES.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 500
    for row in rows:
        genotype = NB201Genotype.from_arch_str(row["arch"])
        params, flops = float(row["params_m"]), float(row["flops_m"])
        assert nb201_model.genotype_cost(genotype, "params") == pytest.approx(params, rel=1e-6), row["arch"]
        # the table also counts the classifier's 10 bias additions, 1e-5 of the smallest cell
        assert nb201_model.genotype_cost(genotype, "flops") == pytest.approx(flops, rel=1e-5), row["arch"]


@pytest.mark.parametrize("name", DARTS_ZOO)
def test_darts_zoo_cells_priced_like_build_network_counts(name):
    genotype = get_genotype(name)
    ops = sorted({op for op, _ in genotype.normal + genotype.reduce})
    space = DartsSpace(["none", *ops], steps=genotype.steps, multiplier=len(genotype.normal_concat))
    reference = reference_genotype(space, like=genotype)  # other ops and inputs, the same concatenated nodes
    assert reference != genotype
    net = standalone(reference, "cifar", None, None, 10, 3)
    model = CostModel.build(space, net, (3, 32, 32), ("params", "flops"), reference=reference)
    real = build_network(genotype)  # C=36, 20 cells
    assert round(model.genotype_cost(genotype, "params") * 1e6) == count_parameters(real)
    assert model.genotype_cost(genotype, "flops") == pytest.approx(count_macs(real, 32) / 1e6, rel=1e-9)


def _one_hot(space, genotype) -> dict[str, torch.Tensor]:
    out = {}
    for cell, ops in space.kept_ops(genotype).items():
        weights = torch.zeros(space.num_edges, len(space.candidates), dtype=torch.float64)
        for edge, op in enumerate(ops):
            weights[edge, space.index(op if op is not None else "none")] = 1.0
        out[cell] = weights
    return out


def test_expected_cost_of_a_genotype_one_hot_is_its_cost(nb201_model):
    darts = DartsSpace()
    darts_model = CostModel.build(darts, standalone(reference_genotype(darts), "cifar", 8, 5, 10, 3), (3, 16, 16),
                                  ("params", "flops"))
    generator = torch.Generator().manual_seed(0)
    for model in (nb201_model, darts_model):
        space = model.space
        for _ in range(5):
            weights = {cell: torch.rand(space.num_edges, len(space.candidates), generator=generator)
                       for cell in space.cell_types}
            genotype = space.discretize(weights)
            for kind in ("params", "flops"):
                expected = float(model.expected(_one_hot(space, genotype), kind))
                assert expected == pytest.approx(model.genotype_cost(genotype, kind), rel=1e-9)


def test_top2_inclusion_is_the_probability_of_two_draws_without_replacement():
    s = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    p = s / s.sum()
    exact = torch.zeros(4, dtype=torch.float64)
    for i in range(4):
        for j in range(4):
            if i != j:  # draw i, then j from the rest
                pair = p[i] * p[j] / (1 - p[i])
                exact[i] += pair
                exact[j] += pair
    assert torch.allclose(top2_inclusion(s), exact)
    assert float(top2_inclusion(s).sum()) == pytest.approx(2.0)
    assert torch.equal(top2_inclusion(torch.tensor([0.3, 0.1])), torch.ones(2))


def _objective(supernet, strategy="darts", **kwargs) -> tuple[CostObjective, ArchParameters]:
    strategy = get_strategy(strategy)
    arch = strategy.build_arch(supernet)
    cost = CostObjective(channels=4, layers=1 if isinstance(supernet, NB201SearchNetwork) else 5, **kwargs)
    cost.check(supernet, arch, strategy)
    cost.build((1, 8, 8))
    return cost, arch


@pytest.mark.parametrize("space", ["nb201", "darts"])
@pytest.mark.parametrize("kind", ["params", "flops"])
def test_penalty_gradient_matches_finite_differences(space, kind):
    supernet = (NB201SearchNetwork(channels=4, cells_per_stage=1, in_channels=1) if space == "nb201"
                else DartsSearchNetwork(channels=4, layers=3, in_channels=1))
    cost, arch = _objective(supernet, kind=kind, weight=2.0)
    arch.double()
    torch.manual_seed(1)
    for alpha in arch.alphas.values():
        alpha.data = torch.randn_like(alpha)
    grads = torch.autograd.grad(cost.penalty(arch), list(arch.alphas.values()))
    eps = 1e-6
    for (cell, alpha), grad in zip(arch.alphas.items(), grads):
        for index in [(0, 1), (3, 2), (arch.num_edges - 1, arch.num_ops - 1), (2, 0)]:
            saved = alpha.data[index].item()
            with torch.no_grad():
                alpha.data[index] = saved + eps
                up = float(cost.penalty(arch))
                alpha.data[index] = saved - eps
                down = float(cost.penalty(arch))
            alpha.data[index] = saved
            assert float(grad[index]) == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9), (cell, index)


def test_gdas_prices_the_sampled_path_with_a_straight_through_gradient():
    supernet = NB201SearchNetwork(channels=4, cells_per_stage=1, in_channels=1)
    cost, arch = _objective(supernet, strategy="gdas", weight=1.0)
    weights = cost._strategy.weights(arch)  # one sampled op per edge
    cost.capture(weights)
    penalty = cost.penalty(arch)
    sampled = NB201Genotype(edges=tuple(supernet.candidates[int(i)] for i in weights["normal"].active))
    assert float(penalty.detach()) == pytest.approx(cost.model.genotype_cost(sampled, "flops") / cost.largest, rel=1e-6)
    (grad,) = torch.autograd.grad(penalty, [arch.alphas["normal"]])
    assert grad.abs().sum() > 0


def test_dual_ascent_raises_the_multiplier_over_budget_and_lowers_it_under():
    supernet = NB201SearchNetwork(channels=4, cells_per_stage=1, in_channels=1)
    cost, _ = _objective(supernet, budget=1e9, dual_lr=0.5)
    dear = NB201Genotype(edges=("nor_conv_3x3",) * 6)
    cheap = NB201Genotype(edges=("none",) * 6)
    cost.budget = (cost.model.genotype_cost(dear, "flops") + cost.smallest) / 2
    ratio = cost.model.genotype_cost(dear, "flops") / cost.budget
    cost.update(dear)
    assert cost.multiplier == pytest.approx(0.5 * (ratio - 1))
    cost.update(cheap)
    assert cost.multiplier < 0.5 * (ratio - 1)
    for _ in range(100):
        cost.update(cheap)
    assert cost.multiplier == 0.0  # never negative


def test_within_budget_gives_up_the_least_probability_per_unit_saved():
    supernet = NB201SearchNetwork(channels=4, cells_per_stage=1, in_channels=1)
    cost, _ = _objective(supernet, budget=1.0)
    space, model = cost.space, cost.model
    conv3 = ("nor_conv_3x3",) * 6
    probabilities = torch.full((6, 5), 0.01)
    probabilities[:, space.index("nor_conv_3x3")] = 0.6
    probabilities[2, space.index("nor_conv_1x1")] = 0.35  # edge 2 has a strong cheaper second choice
    cost.budget = model.genotype_cost(NB201Genotype(edges=conv3), "flops") - 1e-6  # one move is enough
    fixed = cost.within_budget(NB201Genotype(edges=conv3), {"normal": probabilities})
    assert fixed.edges == conv3[:2] + ("nor_conv_1x1",) + conv3[3:]
    cost.budget = cost.smallest  # only the cheapest cell fits
    assert model.genotype_cost(cost.within_budget(NB201Genotype(edges=conv3), {"normal": probabilities}),
                               "flops") == pytest.approx(cost.smallest)
    within = NB201Genotype(edges=("none",) * 6)
    assert cost.within_budget(within, {"normal": probabilities}) == within


def test_darts_cell_brought_within_budget_keeps_two_distinct_inputs_per_node():
    supernet = DartsSearchNetwork(channels=4, layers=3, in_channels=1)
    cost, arch = _objective(supernet, kind="params", budget=1e9)
    probabilities = {cell: torch.rand(arch.num_edges, arch.num_ops, generator=torch.Generator().manual_seed(3))
                     for cell in arch.cell_types}
    dear = cost.space.discretize(probabilities)
    cost.budget = (cost.model.genotype_cost(dear, "params") + cost.smallest) / 2
    fixed = cost.within_budget(dear, probabilities)
    assert cost.smallest <= cost.model.genotype_cost(fixed, "params") <= cost.budget
    for cell in (fixed.normal, fixed.reduce):
        for node in range(0, len(cell), 2):
            assert cell[node][1] != cell[node + 1][1] and "none" not in (cell[node][0], cell[node + 1][0])


def test_latency_cache_is_reused_on_the_same_device_and_remeasured_on_another(tmp_path, capsys):
    path = tmp_path / "latency.json"
    op = torch.nn.Conv2d(4, 4, 3, padding=1)
    first = LatencyMeter(repeats=2, warmup=0, cache=path)
    value = first.measure(op, (4, 8, 8))
    first.save()
    again = LatencyMeter(repeats=2, warmup=0, cache=path)
    assert again.measure(op, (4, 8, 8)) == value and again.measured == 0  # from the cache
    data = json.loads(path.read_text())
    data["device"] = "another device"
    path.write_text(json.dumps(data))
    other = LatencyMeter(repeats=2, warmup=0, cache=path)
    line = capsys.readouterr().err.strip()
    assert "measured on another device" in line and "measuring again" in line and "\n" not in line
    other.measure(op, (4, 8, 8))
    assert other.measured == 1


@pytest.mark.parametrize("kwargs, needle", [
    ({"kind": "energy"}, "--model.cost.kind must be one of params, flops, latency"),
    ({"budget": 0}, "--model.cost.budget must be a positive number"),
    ({"budget": -3.0}, "--model.cost.budget must be a positive number"),
    ({"weight": -1.0}, "--model.cost: weight must be a finite number >= 0"),
    ({"kind": "latency", "latency_repeats": 0}, "--model.cost.latency_repeats must be an integer >= 1"),
])
def test_bad_cost_settings_are_refused_in_one_line(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        CostObjective(**kwargs)


def test_cost_needs_alphas_and_a_network_of_the_space():
    supernet = NB201SearchNetwork(channels=4, cells_per_stage=1, in_channels=1)
    enas = get_strategy("enas")
    with pytest.raises(ValueError, match="acts on architecture alphas"):
        CostObjective().check(supernet, enas.build_arch(supernet), enas)
    darts = get_strategy("darts")
    with pytest.raises(ValueError, match="network 'cifar' cannot hold a cell of the nb201 space"):
        CostObjective(network="cifar").check(supernet, darts.build_arch(supernet), darts)
    cost, _ = _objective(supernet)
    cost.budget = cost.smallest / 2
    with pytest.raises(ValueError, match=r"below the cheapest cell of the space \(.*\|none~0\|"):
        cost.build((1, 8, 8), "cpu")


TINY_NB201 = ["--config", "nb201_darts.yaml", "--data", "nasdata.DigitsDataModule", "--data.subset", "96",
              "--data.batch_size", "8", "--data.num_workers", "0", "--trainer.accelerator", "cpu",
              "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--model.supernet.init_args.channels", "4",
              "--model.supernet.init_args.cells_per_stage", "1", "--outputs.importance_batches", "0",
              "--model.cost", "search.cost.CostObjective", "--model.cost.kind", "flops", "--model.arch_lr", "0.05"]


def _search(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "search.darts", *TINY_NB201, *extra], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_budget_search_ends_within_its_budget_and_reports_predicted_beside_real(tmp_path):
    done = _search(tmp_path, "--trainer.max_epochs", "2", "--model.cost.budget", "1.0", "--model.cost.dual_lr", "1",
                   "--checkpoint.every_n_epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "darts_nb201_cifar10" / "version_0"
    genotype = NB201Genotype.load(run / "genotype.json")
    cost = json.loads((run / "cost.json").read_text())["epochs"]
    assert [r["epoch"] for r in cost] == [0, 1]
    last = cost[-1]
    assert last["genotype"] == genotype.to_text() and last["within_budget"] and last["predicted"]["flops"] <= 1.0
    real = build_network(genotype, num_classes=10, in_channels=1)
    assert last["real"]["params"] == pytest.approx(count_parameters(real) / 1e6)
    assert last["real"]["flops"] == pytest.approx(count_macs(real, 8, in_channels=1) / 1e6)
    for record in cost:  # the model predicts what the standalone network counts
        for kind in ("params", "flops"):
            assert record["predicted"][kind] == pytest.approx(record["real"][kind], rel=1e-9)
    assert "Cost: flops predicted" in done.stdout and "within" in done.stdout
    assert "Cost of the found cell" in (run / "report.html").read_text()

    # resumed from the end of epoch 0: the multiplier comes back from the checkpoint, nothing differs
    (checkpoint,) = (run / "checkpoints").glob("epoch=0-*.ckpt")
    resumed = _search(tmp_path, "--trainer.max_epochs", "2", "--model.cost.budget", "1.0", "--model.cost.dual_lr", "1",
                      "--checkpoint.every_n_epochs", "1", "--resume", str(checkpoint))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads((run.parent / "version_1" / "cost.json").read_text())["epochs"]
    assert [r["multiplier"] for r in again] == [r["multiplier"] for r in cost]
    assert [r["genotype"] for r in again] == [r["genotype"] for r in cost]


def test_a_budget_below_the_cheapest_cell_stops_before_the_run_starts(tmp_path):
    done = _search(tmp_path, "--trainer.max_epochs", "1", "--model.cost.budget", "0.1")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert "--model.cost.budget 0.1 M multiply-adds is below the cheapest cell of the space (0.4686" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("strategy, args", [("darts", {"order": 2}), ("pcdarts", {}), ("drnas", {}), ("gdas", {})])
def test_every_alpha_strategy_searches_within_a_params_budget(strategy, args):
    import lightning as L

    from nasdata import DigitsDataModule
    from search.module import SearchModule

    L.seed_everything(0)
    supernet = DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, in_channels=1,
                                  partial_channels=2 if strategy == "pcdarts" else 1)
    cost = CostObjective(kind="params", budget=1e9, dual_lr=2.0, channels=4, layers=5)
    module = SearchModule(supernet, strategy=strategy, strategy_args=args, arch_lr=0.05, cost=cost)
    data = DigitsDataModule(subset=64, batch_size=16, search_split=True)
    module.cost.build((1, 8, 8))
    cost.budget = (cost.smallest + cost.largest) / 2
    L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=1).fit(module, data)
    assert cost.multiplier >= 0 and cost.model.genotype_cost(module.genotype(), "params") <= cost.budget


def test_gdas_in_the_darts_space_keeps_the_penalty_gradient_bounded_when_none_is_sampled():
    supernet = DartsSearchNetwork(channels=4, layers=3, in_channels=1)
    cost, arch = _objective(supernet, strategy="gdas", weight=5.0)
    for draw in range(6):
        weights = cost._strategy.weights(arch)
        cost.capture(weights)
        grads = torch.autograd.grad(cost.penalty(arch), list(arch.alphas.values()))
        assert max(float(g.abs().max()) for g in grads) < 100.0, draw
    # float32 strengths where one input holds everything: inclusions stay probabilities summing to 2
    inclusion = top2_inclusion(torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(inclusion, torch.tensor([1.0, 0.5, 0.5])) and inclusion.dtype == torch.float32
