"""Unit tests of the GDAS, PC-DARTS, ENAS and SPOS strategies (no Trainer): sampling, gradients, the ENAS
controller, the DARTS cell space, single paths and strategy state."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import nn

from ops import DartsGenotype, NB201Genotype, search_space
from search.discrete.darts_space import DartsCellSpace
from search.checks import check_trainer_strategy
from search.strategies import get_strategy
from search.strategies.controller import EnasController, reinforce_gradients
from search.strategies.gdas import gumbel_hard, tau_schedule
from search.strategies.paths import genotype_active, genotype_path
from search.strategies.probe import ProbeSet, batch_statistics
from search.strategies.spos import uniform_decisions
from supernet import DartsSearchNetwork, MixedOp, NB201SearchNetwork

DARTS_OPS = search_space("darts")
NO_NONE = tuple(op for op in DARTS_OPS if op != "none")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def darts_net(candidates=DARTS_OPS, partial_channels: int = 1) -> DartsSearchNetwork:
    return DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, num_classes=10, in_channels=1,
                              candidates=candidates, partial_channels=partial_channels)


def nb201_net() -> NB201SearchNetwork:
    return NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=10, in_channels=1)


def count_op_calls(net: nn.Module) -> dict[MixedOp, list[int]]:
    """Per MixedOp, a live list of how often each of its ops ran."""
    calls: dict[MixedOp, list[int]] = {}
    for mixed in (m for m in net.modules() if isinstance(m, MixedOp)):
        calls[mixed] = [0] * len(mixed.ops)
        for i, op in enumerate(mixed.ops):
            op.register_forward_hook(lambda mod, inp, out, c=calls[mixed], i=i: c.__setitem__(i, c[i] + 1))
    return calls


# ---------------------------------------------------------------------------------------------------- GDAS
def test_gumbel_hard_is_one_hot_with_soft_gradient_on_every_entry() -> None:
    alpha = torch.randn(4, 6, requires_grad=True)
    hard, index = gumbel_hard(alpha, 2.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(hard.detach(), nn.functional.one_hot(index, 6).float())
    (hard * torch.randn(4, 6)).sum().backward()
    assert (alpha.grad != 0).all()


def test_gumbel_argmax_follows_softmax_of_alpha() -> None:
    alpha = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(4000):
        counts[gumbel_hard(alpha, 0.3, g)[1]] += 1
    torch.testing.assert_close(counts / 4000, alpha.softmax(-1)[0], atol=0.025, rtol=0)


def test_tau_schedule_is_linear_from_max_to_min() -> None:
    taus = [tau_schedule(e, 5, 10.0, 0.1) for e in range(5)]
    assert taus[0] == 10.0 and taus[-1] == pytest.approx(0.1)
    assert np.allclose(np.diff(taus), -9.9 / 4)
    assert tau_schedule(0, 1, 10.0, 0.1) == 10.0


@pytest.mark.parametrize("net_fn", [darts_net, nb201_net], ids=["darts", "nb201"])
def test_gdas_forward_runs_exactly_the_sampled_op_of_each_edge(net_fn) -> None:
    net = net_fn()
    strategy = get_strategy("gdas")
    arch = strategy.build_arch(net)
    calls = count_op_calls(net)
    weights = strategy.weights(arch)
    net(torch.randn(2, 1, 8, 8), weights)
    for mixed, counts in calls.items():
        assert sorted(counts) == [0] * (len(counts) - 1) + [1]  # one op per edge, once (one cell of each use)
    # every DARTS normal/reduce cell shares its cell type's sample: the op that ran is the sampled one
    cell = net.cells[0]
    active = weights["normal"].active.tolist()
    assert [calls[edge].index(1) for edge in cell.edges] == active


def test_gdas_gradient_reaches_every_alpha_of_every_edge() -> None:
    net = darts_net(candidates=NO_NONE)  # a sampled 'none' edge outputs zeros and passes no gradient back
    strategy = get_strategy("gdas")
    arch = strategy.build_arch(net)
    loss = nn.functional.cross_entropy(net(torch.randn(4, 1, 8, 8), strategy.weights(arch)), torch.arange(4))
    loss.backward()
    for cell in arch.cell_types:
        assert (arch.alphas[cell].grad != 0).all(), cell


def test_gdas_state_restores_temperature_and_noise() -> None:
    a, b = get_strategy("gdas", seed=3), get_strategy("gdas", seed=4)
    net = darts_net()
    arch = a.build_arch(net)
    a.on_epoch_start(2, 5)
    a.weights(arch)
    b.load_state_dict(a.state_dict())
    assert b.tau == a.tau == tau_schedule(2, 5, 10.0, 0.1)
    assert torch.equal(a.weights(arch)["normal"].active, b.weights(arch)["normal"].active)
    assert all(torch.equal(a.weights(arch)[c].ops, b.weights(arch)[c].ops) for c in ("normal", "reduce"))


def test_gdas_validation_uses_argmax_path_without_noise() -> None:
    strategy = get_strategy("gdas")
    arch = strategy.build_arch(darts_net())
    before = strategy.generator.get_state()
    w = strategy.eval_weights(arch)
    assert torch.equal(strategy.generator.get_state(), before)
    assert torch.equal(w["reduce"].active, arch.alphas["reduce"].argmax(-1))


# ------------------------------------------------------------------------------------------------- PC-DARTS
def test_pcdarts_refuses_a_full_channel_supernet() -> None:
    with pytest.raises(ValueError, match="partial_channels"):
        get_strategy("pcdarts").build_arch(darts_net())


def test_pcdarts_edge_betas_enter_weights_and_genotype() -> None:
    net = darts_net(partial_channels=2)
    strategy = get_strategy("pcdarts")
    arch = strategy.build_arch(net)
    with torch.no_grad():
        for cell in arch.cell_types:
            arch.alphas[cell].zero_()
            arch.alphas[cell][:, DARTS_OPS.index("sep_conv_3x3")] = 1.0  # every edge equally strong
            arch.betas[cell].copy_(torch.tensor([0.0, 0.0, 5.0, -5.0, 5.0]))  # node 3: inputs 0 and 2
    weights = strategy.weights(arch)
    assert weights["normal"].edges is not None
    torch.testing.assert_close(weights["normal"].edges[2:].sum(), torch.tensor(1.0))
    genotype = strategy.genotype(arch, net)
    assert sorted(src for _, src in genotype.normal[2:]) == [0, 2]
    without = get_strategy("darts").genotype(arch, net)  # the plain DARTS rule ignores betas: ties -> 0, 1
    assert sorted(src for _, src in without.normal[2:]) == [0, 1]


# ------------------------------------------------------------------------------------------------------ ENAS
def controller(space: str, **kwargs) -> EnasController:
    net = darts_net() if space == "darts" else nb201_net()
    return EnasController.for_supernet(net, **kwargs)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_controller_replay_greedy_and_distinct_inputs(space: str) -> None:
    ctrl = controller(space)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        sample = ctrl(generator=g)
        replay = ctrl(forced=sample.decisions)
        assert replay.decisions == sample.decisions
        torch.testing.assert_close(replay.log_prob, sample.log_prob)
        genotype = ctrl.genotype(sample.decisions)
        if space == "darts":
            for cell in ("normal", "reduce"):
                edges = getattr(genotype, cell)
                assert all(edges[k][1] != edges[k + 1][1] for k in range(0, len(edges), 2))
    assert ctrl().decisions == ctrl().decisions
    for cell, p in ctrl.op_probabilities().items():
        assert p.shape == (ctrl.num_edges, len(ctrl.candidates)) and (p >= 0).all()
        torch.testing.assert_close(p.sum(1), torch.ones(ctrl.num_edges))


def test_reinforce_moves_baseline_first_then_scales_log_prob_gradient() -> None:
    ctrl = controller("nb201", tanh_constant=None)
    sample = ctrl(generator=torch.Generator().manual_seed(0))
    grads, metrics = reinforce_gradients(ctrl, sample, torch.tensor(0.5), 0.0, 0.9)
    assert float(ctrl.baseline) == pytest.approx(0.05)  # 0 - 0.1 * (0 - 0.5)
    expected = torch.autograd.grad(-ctrl(forced=sample.decisions).log_prob * (0.5 - 0.05), list(ctrl.parameters()),
                                   allow_unused=True)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, torch.zeros_like(g) if e is None else e)
    assert float(metrics["controller_reward"]) == 0.5


def train_controller(ctrl: EnasController, target: int, steps: int) -> None:
    """REINFORCE with reward = fraction of op decisions equal to ``target`` (paper optimizer settings)."""
    optimizer = torch.optim.Adam(ctrl.parameters(), lr=0.0035, betas=(0.0, 0.999), eps=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        sample = ctrl(generator=g)
        ops = [d for cell in ctrl.cell_types for k, d in enumerate(sample.decisions[cell])
               if ctrl.space == "nb201" or k % 4 >= 2]
        reward = torch.tensor(sum(op == target for op in ops) / len(ops))
        grads, _ = reinforce_gradients(ctrl, sample, reward, 1e-4, 0.99)
        for p, grad in zip(ctrl.parameters(), grads):
            p.grad = grad
        optimizer.step()


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_controller_learns_a_rewarded_op(space: str) -> None:
    ctrl = controller(space, tanh_constant=None)
    target = ctrl.ops.index("skip_connect")
    train_controller(ctrl, target, 300)
    g = torch.Generator().manual_seed(1)
    samples = [ctrl(generator=g).decisions for _ in range(50)]
    if space == "nb201":
        probs = ctrl.op_probabilities()["normal"][:, ctrl.candidates.index("skip_connect")]
        assert (probs > 0.9).all(), probs
        picked = [d == target for s in samples for d in s["normal"]]
    else:
        picked = [d == target for s in samples for c in ctrl.cell_types for k, d in enumerate(s[c]) if k % 4 >= 2]
    assert np.mean(picked) > 0.9


def test_controller_tanh_constant_caps_op_probability() -> None:
    ctrl = controller("nb201")  # paper: op logits bounded by 1.10 / 2.5
    train_controller(ctrl, ctrl.ops.index("skip_connect"), 300)
    cap = np.exp(0.44) / (np.exp(0.44) + 4 * np.exp(-0.44))
    probs = ctrl.op_probabilities()["normal"][:, ctrl.candidates.index("skip_connect")]
    assert (probs <= cap + 1e-5).all() and (probs > 0.9 * cap).all(), probs


def test_enas_requires_none_on_darts_space() -> None:
    with pytest.raises(ValueError, match="none"):
        get_strategy("enas").build_arch(darts_net(candidates=NO_NONE))


# ------------------------------------------------------------------------------------- single paths, SPOS
def test_darts_cell_space_round_trip_and_distinct_inputs() -> None:
    space = DartsCellSpace(steps=3, multiplier=2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        cell = space.sample(rng)
        assert space.decode(space.encode(cell)) == cell
        assert all(cell.normal[k][1] != cell.normal[k + 1][1] for k in range(0, 6, 2))
    assert space.size == (1 * 49 * 3 * 49 * 6 * 49) ** 2
    with pytest.raises(ValueError, match="twice"):
        space.encode(DartsGenotype(normal=(("skip_connect", 0), ("skip_connect", 0)) * 3, normal_concat=(3, 4),
                                   reduce=cell.reduce, reduce_concat=(3, 4)))
    with pytest.raises(ValueError, match="outside"):
        DartsCellSpace(ops=("skip_connect",), steps=3, multiplier=2).encode(cell)


def test_genotype_path_runs_the_cell_and_switches_other_edges_off() -> None:
    net = darts_net()
    cell = DartsGenotype(normal=(("sep_conv_3x3", 1), ("skip_connect", 0), ("max_pool_3x3", 2), ("dil_conv_3x3", 0)),
                         normal_concat=(2, 3), reduce=(("avg_pool_3x3", 0), ("sep_conv_5x5", 1)) * 2,
                         reduce_concat=(2, 3))
    none = DARTS_OPS.index("none")
    active = genotype_active(cell, net.candidates, net.num_edges)
    assert active["normal"] == [DARTS_OPS.index("skip_connect"), DARTS_OPS.index("sep_conv_3x3"),
                                DARTS_OPS.index("dil_conv_3x3"), none, DARTS_OPS.index("max_pool_3x3")]
    calls = count_op_calls(net)
    net(torch.randn(2, 1, 8, 8), genotype_path(net, cell))
    first = net.cells[0]  # a normal cell
    assert [calls[e].index(1) for e in first.edges] == active["normal"]
    assert genotype_active(NB201Genotype(edges=("none",) * 6), nb201_net().candidates, 6)["normal"] == [0] * 6


def test_spos_samples_uniform_cells_and_has_no_architecture_parameters() -> None:
    net = darts_net()
    strategy = get_strategy("spos")
    arch = strategy.build_arch(net)
    assert list(arch.parameters()) == []
    calls = count_op_calls(net)
    net(torch.randn(2, 1, 8, 8), strategy.weights(arch))
    none = DARTS_OPS.index("none")
    for cell in net.cells:
        ran = [calls[e].index(1) for e in cell.edges]
        assert sum(op != none for op in ran[:2]) == 2 and sum(op != none for op in ran[2:]) == 2
    decisions = np.array([uniform_decisions((3, 7), strategy.generator) for _ in range(3000)])
    assert decisions.max(0).tolist() == [2, 6] and decisions.min(0).tolist() == [0, 0]
    assert np.allclose(np.bincount(decisions[:, 0]) / 3000, 1 / 3, atol=0.03)
    for p in strategy.probabilities(arch).values():
        torch.testing.assert_close(p.sum(1), torch.ones(net.num_edges))
        assert p[0, none] == 0.0 and p[2, none] == pytest.approx(1 / 3)  # node 3 uses 2 of its 3 inputs


def test_spos_fallback_genotype_is_fixed_and_selection_arguments_checked() -> None:
    strategy = get_strategy("spos", seed=5)
    arch = strategy.build_arch(nb201_net())
    assert strategy.genotype(arch, None) == strategy.genotype(arch, None)
    with pytest.raises(ValueError, match="selection"):
        get_strategy("spos", selection="grid")


@pytest.mark.parametrize("name", ["gdas", "enas", "spos"])
def test_strategies_pickle_with_their_sampling_stream(name: str) -> None:
    """ddp_spawn pickles the module: the strategy's generator must travel as its state."""
    import pickle

    strategy = get_strategy(name, seed=7)
    strategy.generator.manual_seed(11)
    copy = pickle.loads(pickle.dumps(strategy))
    assert torch.equal(torch.rand(5, generator=copy.generator), torch.rand(5, generator=strategy.generator))


def test_batch_statistics_leave_running_stats_and_modes_alone() -> None:
    net = nb201_net().eval()
    bn = net.stem[1]
    before = (bn.running_mean.clone(), bn.num_batches_tracked.clone())
    strategy = get_strategy("spos")
    arch = strategy.build_arch(net)
    with batch_statistics(net):
        out = net(torch.randn(8, 1, 8, 8) * 3 + 1, strategy.weights(arch))
    assert not out.requires_grad and not net.training and not bn.training and bn.track_running_stats
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.num_batches_tracked, before[1])


def test_probe_set_pools_correct_counts_through_reduce() -> None:
    net = nb201_net()
    probe = ProbeSet(2)
    batches = [(torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))) for _ in range(3)]
    for b in batches:
        probe.add(b)
    path = genotype_path(net, NB201Genotype(edges=("skip_connect",) * 6))
    seen = []
    acc = probe.accuracies(net, [path], lambda ts: seen.append(ts) or ts)[0]
    with batch_statistics(net):
        expected = sum(int((net(x, path).argmax(1) == y).sum()) for x, y in batches[1:]) / 10
    assert acc == pytest.approx(expected) and len(seen) == 1


# ---------------------------------------------------------------------------------------------- DDP guard
@pytest.mark.parametrize("name", ["gdas", "enas", "spos"])
def test_sampling_strategies_need_find_unused_parameters_under_ddp(name: str) -> None:
    strategy = get_strategy(name)
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        check_trainer_strategy(DDPStrategy(), strategy)
    check_trainer_strategy(DDPStrategy(find_unused_parameters=True), strategy)


def test_pcdarts_runs_under_plain_ddp() -> None:
    check_trainer_strategy(DDPStrategy(), get_strategy("pcdarts"))


# ------------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("config, checks", [
    ("cifar_gdas.yaml", {"strategy.tau_max": 10.0, "strategy.tau_min": 0.1, "hparams.lr_min": 0.001}),
    ("cifar_pcdarts.yaml", {"partial": 4, "hparams.arch_lr": 6e-4, "hparams.arch_start_epoch": 15, "hparams.lr": 0.1}),
    ("cifar_enas.yaml", {"controller.lstm_size": 64, "hparams.arch_betas": (0.0, 0.999), "hparams.arch_eps": 1e-3,
                         "strategy.entropy_weight": 1e-4, "strategy.baseline_decay": 0.99, "hparams.arch_lr": 0.0035,
                         "controller.tanh_constant": 1.10, "controller.op_tanh_reduce": 2.5}),
    ("cifar_spos.yaml", {"strategy.evaluations": 1000, "strategy.selection": "evolution"}),
    ("nb201_gdas.yaml", {"strategy.tau_max": 10.0}),
    ("nb201_pcdarts.yaml", {"partial": 4}),
    ("nb201_enas.yaml", {"controller.op_tanh_reduce": 2.5}),
    ("nb201_spos.yaml", {"strategy.selection": "random"}),
])
def test_shipped_configs_build_the_paper_settings(config: str, checks: dict) -> None:
    from search.cli import build_cli
    from search.strategies.pcdarts import partial_channels

    name = config.split("_")[1].removesuffix(".yaml")
    model = build_cli(["--config", config, "--model.strategy", name]).model  # as `python -m search.<name>`
    assert model.strategy.name == name
    assert model.supernet.space == config.split("_")[0].replace("cifar", "darts")
    for key, expected in checks.items():
        owner, _, attr = key.partition(".")
        if owner == "strategy":
            got = getattr(model.strategy, attr)
        elif owner == "controller":
            got = model.arch.lstm.hidden_size if attr == "lstm_size" else getattr(model.arch, attr)
        elif owner == "hparams":
            got = tuple(model.hparams[attr]) if isinstance(expected, tuple) else model.hparams[attr]
        else:
            got = partial_channels(model.supernet)
        assert got == (expected if isinstance(expected, str) else pytest.approx(expected)), key
