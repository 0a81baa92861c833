"""The robust-search pieces on hand-set values: beta-decay, random smoothing, the DARTS- auxiliary skip, DrNAS's
Dirichlet samples, the GDAS edge forms (golden alpha gradients by hand) and perturbation selection."""
from __future__ import annotations

import math
import subprocess
import sys

import lightning as L
import pytest
import torch
from torch import nn

from nasdata import DigitsDataModule
from ops import NB201Space
from search.module import SearchModule
from search.robust import (REGULARIZERS, AuxiliarySkip, BetaDecay, RandomSmoothing, beta_decay_loss, linear_ramp,
                           smoothed)
from search.selection import PerturbationSelection
from search.strategies import get_strategy
from search.strategies.drnas import concentration, dirichlet_kl, dirichlet_sample
from search.strategies.gdas import gumbel_hard
from search.strategies.probe import ProbeSet
from supernet import ArchParameters, CellWeights, DartsSearchNetwork, MixedOp, NB201SearchNetwork


def _nb201() -> NB201SearchNetwork:
    return NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=10, in_channels=1)


def _darts() -> DartsSearchNetwork:
    return DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, num_classes=10, in_channels=1)


# ---- beta-decay -----------------------------------------------------------------------------------------------
def test_beta_decay_value_and_gradient_by_hand():
    alpha = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    loss = beta_decay_loss([alpha])
    # edge 0: log(1 + 3) ; edge 1: log(2 e) = 1 + log 2 ; mean of the two
    assert loss.item() == pytest.approx((math.log(4.0) + 1.0 + math.log(2.0)) / 2, abs=1e-12)
    loss.backward()
    expected = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64) / 2  # softmax(alpha_e) / E
    assert torch.allclose(alpha.grad, expected, atol=1e-12)


def test_beta_decay_schedule_ramps_from_start_to_end():
    reg = BetaDecay(weight_start=0.0, weight_end=24.5)
    weights = []
    for epoch in range(50):
        reg.on_epoch_start(epoch, 50)
        weights.append(reg.weight)
    assert weights[0] == 0.0 and weights[-1] == 24.5  # the beta-DARTS code's 50 * epoch / 100 over 50 epochs
    assert weights[10] == pytest.approx(50 * 10 / 100)
    assert linear_ramp(0, 1, 2.0, 5.0) == 5.0
    arch = ArchParameters(("normal", "reduce"), num_edges=3, num_ops=4)
    reg.on_epoch_start(49, 50)
    expected = 24.5 * (torch.logsumexp(arch.alphas["normal"], -1).mean()
                       + torch.logsumexp(arch.alphas["reduce"], -1).mean())
    assert torch.allclose(reg.penalty(arch), expected)
    reg.on_epoch_start(0, 50)
    assert reg.penalty(arch) is None  # weight 0: nothing added


# ---- random smoothing -----------------------------------------------------------------------------------------
def test_random_smoothing_perturbs_the_weight_step_only_within_epsilon():
    reg = RandomSmoothing(epsilon_start=0.1, epsilon_end=0.3, seed=3)
    reg.on_epoch_start(5, 10)
    assert reg.epsilon == pytest.approx(0.1 + 0.2 * 5 / 10)  # SmoothDARTS: ends just short of epsilon_end
    probs = torch.softmax(torch.randn(6, 5), -1)
    weights = {"normal": CellWeights(ops=probs)}
    for phase in ("arch", "eval"):
        assert reg.transform(weights, phase) is weights
    noisy = reg.transform(weights, "weight")["normal"].ops
    assert torch.allclose(noisy.sum(-1), torch.ones(6)) and (noisy >= 0).all() and not torch.equal(noisy, probs)
    again = RandomSmoothing(epsilon_start=0.1, epsilon_end=0.3, seed=3)
    again.on_epoch_start(5, 10)
    assert torch.equal(again.transform(weights, "weight")["normal"].ops, noisy)  # seeded: the same on every rank


def test_smoothing_before_renormalisation_stays_within_epsilon_and_empty_rows_fall_back():
    g = torch.Generator().manual_seed(0)
    probs = torch.full((4, 5), 0.2)
    out = smoothed(probs, 0.05, g)
    # renormalisation of a row of values in [0.15, 0.25] keeps each entry within [0.15/1.25, 0.25/0.75]
    assert (out >= 0.15 / 1.25).all() and (out <= 0.25 / 0.75).all()
    tiny = torch.tensor([[0.9, 0.05, 0.05]])
    g = torch.Generator().manual_seed(0)
    out = smoothed(tiny - 2.0, 0.01, g)  # every entry clipped to 0: one-hot at the largest
    assert torch.equal(out, torch.tensor([[1.0, 0.0, 0.0]]))


# ---- DARTS- auxiliary skip -----------------------------------------------------------------------------------
def test_auxiliary_skip_coefficient_decays_linearly_and_adds_to_skip():
    reg = AuxiliarySkip(beta_start=1.0)
    net = _nb201()
    arch = ArchParameters.for_network(net)
    reg.check(net, arch, get_strategy("darts"))
    betas = []
    for epoch in range(4):
        reg.on_epoch_start(epoch, 4)
        betas.append(reg.beta)
    assert betas == [1.0, 0.75, 0.5, 0.25]  # DARTS- DecayScheduler, linear: (T - epoch) / T
    weights = arch.weights()
    out = reg.transform(weights, "eval")["normal"].ops
    skip = net.candidates.index("skip_connect")
    expected = weights["normal"].ops.clone()
    expected[:, skip] += 0.25
    assert torch.equal(out, expected)


def test_auxiliary_skip_equals_a_separate_identity_branch_on_stride_one_edges():
    torch.manual_seed(0)
    edge = MixedOp(4, 1, ("none", "skip_connect", "nor_conv_3x3"), pool_bn=False)
    x = torch.randn(2, 4, 5, 5)
    w = torch.softmax(torch.randn(3), -1)
    bonus = torch.tensor([0.0, 0.3, 0.0])
    assert torch.allclose(edge(x, w + bonus), edge(x, w) + 0.3 * x, atol=1e-6)


def test_auxiliary_skip_refuses_sampling_strategies_and_missing_skip():
    net = _nb201()
    arch = ArchParameters.for_network(net)
    with pytest.raises(ValueError, match="gdas.*sampled path"):
        AuxiliarySkip().check(net, arch, get_strategy("gdas"))
    no_skip = NB201SearchNetwork(channels=4, cells_per_stage=1, in_channels=1, candidates=("none", "nor_conv_3x3"))
    with pytest.raises(ValueError, match="lacks"):
        AuxiliarySkip().check(no_skip, ArchParameters.for_network(no_skip), get_strategy("darts"))


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_regularizers_refuse_negative_or_non_numeric_coefficients_and_strategies_without_alphas(name):
    cls = REGULARIZERS[name]
    first = next(iter(p for p in cls.__init__.__code__.co_varnames[1:cls.__init__.__code__.co_argcount]))
    for bad in (-1.0, float("nan"), "abc"):
        with pytest.raises(ValueError, match=f"{first} must be a finite number >= 0") as info:
            cls(**{first: bad})
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="has none"):
        SearchModule(_nb201(), strategy="spos", regularizers=[cls()])


# ---- DrNAS ------------------------------------------------------------------------------------------------------
def test_dirichlet_samples_are_reparameterized_and_their_mean_matches():
    alpha = torch.tensor([[0.5, -0.3, 1.2, 0.0]], requires_grad=True)
    conc = concentration(alpha)
    assert torch.allclose(conc, torch.where(alpha > 0, alpha + 1, torch.exp(alpha)))  # elu + 1
    g = torch.Generator().manual_seed(0)
    samples = torch.stack([dirichlet_sample(conc, g) for _ in range(4000)])
    assert torch.allclose(samples.sum(-1), torch.ones(4000, 1))
    mean = (conc / conc.sum()).detach()
    assert torch.allclose(samples.mean(0), mean, atol=0.01)
    samples[:, 0, 2].mean().backward()  # the gradient reaches the concentration (hence alpha)
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0 and alpha.grad[0, 2] > 0


def test_dirichlet_kl_vanishes_at_the_uniform_prior_and_grows_away_from_it():
    assert dirichlet_kl(torch.ones(3, 5)).abs().item() < 1e-6
    assert dirichlet_kl(torch.full((3, 5), 4.0)).item() > 0.1


def test_drnas_strategy_samples_in_training_and_uses_the_mean_in_evaluation():
    strategy = get_strategy("drnas", seed=1)
    arch = strategy.build_arch(_nb201())
    a, b = strategy.weights(arch)["normal"].ops, strategy.weights(arch)["normal"].ops
    assert not torch.equal(a, b)
    mean = strategy.eval_weights(arch)["normal"].ops
    assert torch.equal(mean, strategy.eval_weights(arch)["normal"].ops)
    assert torch.equal(mean.argmax(-1), arch.alphas["normal"].argmax(-1))
    with pytest.raises(ValueError, match="regularization must be one of l2, kl"):
        get_strategy("drnas", regularization="l1")


# ---- GDAS edge forms: golden alpha gradients computed by hand ---------------------------------------------------
def _softmax_jacobian(s: torch.Tensor) -> torch.Tensor:
    return torch.diag(s) - torch.outer(s, s)


@pytest.mark.parametrize("form", ["sum", "selected"])
def test_gdas_edge_alpha_gradient_matches_the_hand_computation(form):
    torch.manual_seed(0)
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    edge = MixedOp(3, 1, ops, pool_bn=False).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    c = torch.randn(2, 3, 4, 4, dtype=torch.float64)  # L = <c, edge(x)>
    alpha = torch.randn(len(ops), dtype=torch.float64, requires_grad=True)
    tau = 2.0
    generator = torch.Generator().manual_seed(5)
    hard, index = gumbel_hard(alpha, tau, generator)
    s = int(index)
    (c * edge(x, hard, s, add_inactive=form == "sum")).sum().backward()

    # by hand: z = (log_softmax(alpha) + g) / tau, soft = softmax(z); value one-hot, gradient that of soft
    g = -torch.empty(len(ops)).exponential_(generator=torch.Generator().manual_seed(5)).clamp_min(
        torch.finfo(torch.float32).tiny).log().double()
    p = torch.softmax(alpha.detach(), 0)
    soft = torch.softmax((torch.log(p) + g) / tau, 0)
    assert int(soft.argmax()) == s
    d_h = torch.full((len(ops),), float(c.sum()) if form == "sum" else 0.0, dtype=torch.float64)
    with torch.no_grad():
        d_h[s] = (c * edge.ops[s](x)).sum()
    d_z = _softmax_jacobian(soft) @ d_h
    d_alpha = (torch.eye(len(ops), dtype=torch.float64) - p.unsqueeze(0)).T @ d_z / tau
    assert torch.allclose(alpha.grad, d_alpha, atol=1e-10)


def test_gdas_edge_form_auto_follows_the_space_and_bad_forms_are_refused():
    assert get_strategy("gdas").build_arch(_nb201()) is not None
    strategy = get_strategy("gdas")
    strategy.build_arch(_nb201())
    assert strategy.add_inactive
    strategy = get_strategy("gdas")
    strategy.build_arch(_darts())
    assert not strategy.add_inactive
    with pytest.raises(ValueError, match="edge_form must be one of auto, sum, selected"):
        get_strategy("gdas", edge_form="both")


# ---- perturbation selection -------------------------------------------------------------------------------------
class OneUsefulOp(nn.Module):
    """A 'supernet' whose logits come from op 2 of edge 1 only (the label is the sign of the first pixel); every
    other op adds noise. Removing op 2 of edge 1 destroys the accuracy; no other removal matters much."""

    space = "nb201"
    cell_types = ("normal",)
    candidates = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    num_edges, num_ops = 6, 5
    search_space = NB201Space()

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.noise = torch.randn(6, 5, 2, generator=torch.Generator().manual_seed(0)) * 0.1

    def forward(self, x: torch.Tensor, weights: dict) -> torch.Tensor:
        w = weights["normal"].ops
        signal = torch.stack([x[:, 0], -x[:, 0]], dim=1) * self.scale
        noise = (w.unsqueeze(-1) * self.noise).sum((0, 1))
        return w[1, 2] * signal + noise


@pytest.mark.parametrize("criterion", ["accuracy", "loss"])
def test_perturbation_selection_keeps_the_op_whose_removal_hurts_most(criterion):
    net = OneUsefulOp()
    arch = ArchParameters.for_network(net)
    pt = PerturbationSelection(tune_epochs=0, probe_batches=2, seed=0, criterion=criterion)
    pt.check(net, arch, get_strategy("darts"))
    x = torch.randn(64, 1)
    y = (x[:, 0] < 0).long()
    for lo in (0, 32):
        pt.probe.add((x[lo:lo + 32], y[lo:lo + 32]))
    base = {"normal": CellWeights(ops=torch.full((6, 5), 0.2))}
    lines = pt.decide_round(0, 1, base, pt.scorer(net, lambda t: t))
    assert len(lines) == 6 and pt.done and f"supernet {criterion} without each op" in lines[0]
    assert pt.fixed["normal"][1] == 2 and "nor_conv_1x1" in next(line for line in lines if "edge 1:" in line)
    projected = pt.project("normal", torch.full((6, 5), 0.2))
    assert torch.equal(projected.sum(-1), torch.ones(6)) and projected[1, 2] == 1.0


@pytest.mark.parametrize("keep_none, kept", [(True, "none"), (False, "nor_conv_3x3")])
def test_perturbation_selection_keeps_none_only_when_asked(keep_none, kept):
    # Every removal helps on each edge (the score falls with the ops' weights), nor_conv_3x3's least; removing
    # `none` changes nothing, so only keep_none lets that no-op removal count as the one that hurts most.
    net = OneUsefulOp()
    pt = PerturbationSelection(tune_epochs=0, probe_batches=1, seed=0, keep_none=keep_none)
    pt.check(net, ArchParameters.for_network(net), get_strategy("darts"))
    harm = torch.tensor([0.0, -1.0, -1.0, -0.5, -1.0])

    def score(paths):
        return [float((p["normal"].ops * harm).sum()) for p in paths]

    lines = pt.decide_round(0, 1, {"normal": CellWeights(ops=torch.full((6, 5), 0.2))}, score)
    assert len(lines) == 6 and all(f": {kept} (" in line for line in lines)


def test_perturbation_selection_topology_drops_the_input_that_matters_least():
    net = _darts()
    arch = ArchParameters.for_network(net)
    pt = PerturbationSelection(tune_epochs=0, probe_batches=1, seed=0)
    pt.check(net, arch, get_strategy("darts"))
    assert net.search_space.node_edges() == [[0, 1], [2, 3, 4]]
    assert [d for d in pt.pending if d[0] == "topology"] == [("topology", "normal", 1), ("topology", "reduce", 1)]
    pt.pending = [("topology", "normal", 1)]
    importance = torch.tensor([0.0, 0.0, 0.9, 0.1, 0.5])  # edge 3 matters least among node 3's inputs

    def score(paths):
        return [float((p["normal"].ops.sum(-1) * importance).sum()) for p in paths]

    base = {c: CellWeights(ops=torch.full((5, 8), 1 / 8)) for c in ("normal", "reduce")}
    lines = pt.decide_round(0, 1, base, score)
    assert pt.removed["normal"] == [3] and "node 1: drop input edges [3], keep [2, 4]" in lines[0]
    genotype_rows = pt.project("normal", torch.full((5, 8), 1 / 8))
    assert genotype_rows[3].abs().sum() == 0


def test_perturbation_selection_refuses_what_it_cannot_handle():
    with pytest.raises(ValueError, match="sampled paths"):
        SearchModule(_nb201(), strategy="gdas", selection=PerturbationSelection())
    with pytest.raises(ValueError, match="has none"):
        SearchModule(_nb201(), strategy="spos", selection=PerturbationSelection())
    with pytest.raises(ValueError, match="tune_epochs must be an integer >= 0"):
        PerturbationSelection(tune_epochs=-1)
    with pytest.raises(ValueError, match="criterion must be one of accuracy, loss, got 'acc'"):
        PerturbationSelection(criterion="acc")
    module = SearchModule(_nb201(), selection=PerturbationSelection(tune_epochs=3))
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="needs --trainer.max_epochs > 3"):
        trainer.fit(module, DigitsDataModule(batch_size=16, subset=64, search_split=True))


def test_probe_accuracies_leave_batch_norm_statistics_untouched_on_the_fused_path():
    net = _darts()
    arch = ArchParameters.for_network(net)
    probe = ProbeSet(1)
    probe.add((torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe.accuracies(net, [arch.weights()], lambda t: t)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_selection_decisions_are_spread_evenly_over_the_rounds():
    from search.selection import due

    # NAS-Bench-201 with DARTS-PT's 25 tune epochs: decisions at rounds 0, 4, 9, 14, 19, 24 (theirs: 0, 5, ..., 24)
    counts = [due(6, 25, r) for r in range(25)]
    assert [r for r in range(25) if counts[r] > (counts[r - 1] if r else 0)] == [0, 4, 9, 14, 19, 24]
    assert [due(6, 4, r) for r in range(4)] == [2, 4, 5, 6]  # more decisions than rounds share rounds
    assert due(34, 81, 80) == 34 and due(1, 3, 0) == 1


@pytest.mark.parametrize("method", ["beta_decay", "random_smoothing", "auxiliary_skip", "drnas", "selection"])
def test_every_method_runs_on_the_fused_path_of_the_darts_space(method, monkeypatch):
    import supernet.fast

    calls = []
    fused = supernet.fast.fused_cell_forward
    monkeypatch.setattr(supernet.fast, "fused_cell_forward", lambda *a, **k: calls.append(1) or fused(*a, **k))
    kwargs = {"strategy": "drnas"} if method == "drnas" else {}
    if method in REGULARIZERS:
        kwargs["regularizers"] = [REGULARIZERS[method]()]
    if method == "selection":
        kwargs["selection"] = PerturbationSelection(tune_epochs=0, probe_batches=1)
    module = SearchModule(_darts(), **kwargs)
    assert module.supernet.impl == "fused"
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DigitsDataModule(batch_size=16, subset=64, search_split=True))
    assert len(calls) >= 2 * len(module.supernet.cells)  # the architecture step and the weight step, every cell


def test_regularizers_import_first():
    # `from search.robust import BetaDecay` as a user's first import (it went through an import cycle:
    # strategies -> discrete -> cost -> robust).
    done = subprocess.run([sys.executable, "-c", "import search.robust"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
