"""Tests of the supernet package: MixedOp, search cells, search networks, architecture parameters."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ops import search_space
from supernet import (ArchParameters, CellWeights, DartsSearchCell, DartsSearchNetwork, MixedOp,
                      NB201SearchCell, NB201SearchNetwork, build_supernet, channel_shuffle, node_softmax)

DARTS_OPS = search_space("darts")
NB201_OPS = search_space("nb201")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _one_hot(rows: int, candidates: tuple[str, ...], op: str) -> torch.Tensor:
    weights = torch.zeros(rows, len(candidates))
    weights[:, candidates.index(op)] = 1.0
    return weights


# ---------------------------------------------------------------- MixedOp

@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_weighted_sum_of_its_ops(stride: int) -> None:
    mixed = MixedOp(8, stride, DARTS_OPS)
    x = torch.randn(2, 8, 8, 8)
    weights = torch.rand(len(DARTS_OPS))
    expected = sum(w * op(x) for w, op in zip(weights, mixed.ops))
    out = mixed(x, weights)
    assert out.shape == (2, 8, 8 // stride, 8 // stride)
    torch.testing.assert_close(out, expected)


def test_mixed_op_pooling_followed_by_affine_free_bn() -> None:
    mixed = MixedOp(4, 1, DARTS_OPS)
    for name, op in zip(DARTS_OPS, mixed.ops):
        if "pool" in name:
            assert isinstance(op, nn.Sequential) and isinstance(op[-1], nn.BatchNorm2d)
            assert not op[-1].affine
    bare = MixedOp(4, 1, NB201_OPS, pool_bn=False)
    assert isinstance(bare.ops[NB201_OPS.index("avg_pool_3x3")], nn.AvgPool2d)
    assert not any(m.affine for m in mixed.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("active", [0, 4, 7])
def test_mixed_op_active_runs_one_op_and_grad_reaches_its_weight(active: int) -> None:
    mixed = MixedOp(4, 1, DARTS_OPS)
    calls = [0] * len(mixed.ops)
    for i, op in enumerate(mixed.ops):
        op.register_forward_hook(lambda module, inp, out, i=i: calls.__setitem__(i, calls[i] + 1))
    x = torch.randn(2, 4, 6, 6)
    weights = torch.rand(len(DARTS_OPS), requires_grad=True)
    out = mixed(x, weights, active=active)
    assert calls == [1 if i == active else 0 for i in range(len(calls))]
    torch.testing.assert_close(out, weights[active] * mixed.ops[active](x))
    (out * torch.randn_like(out)).sum().backward()
    grad = weights.grad
    assert grad is not None
    assert (grad[active] != 0) == (DARTS_OPS[active] != "none")
    assert torch.count_nonzero(grad[torch.arange(len(grad)) != active]) == 0


def test_mixed_op_rejects_wrong_weight_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        MixedOp(4, 1, DARTS_OPS)(torch.randn(1, 4, 4, 4), torch.rand(5))


def test_channel_shuffle_matches_manual_indexing_and_is_a_permutation() -> None:
    groups, per_group = 4, 3
    x = torch.randn(2, groups * per_group, 3, 3)
    index = [g * per_group + c for c in range(per_group) for g in range(groups)]
    assert sorted(index) == list(range(groups * per_group))
    torch.testing.assert_close(channel_shuffle(x, groups), x[:, index])
    assert not torch.equal(channel_shuffle(x, groups), x)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_mixed_op(stride: int) -> None:
    k, channels = 4, 8
    mixed = MixedOp(channels, stride, DARTS_OPS, partial_channels=k)
    assert all(p.shape[0] in (channels // k, 1) for op in mixed.ops for p in op.parameters()
               if p.dim() == 4 and p.shape[1] == 1)  # depthwise convs are built for C/K channels
    x = torch.randn(2, channels, 8, 8)
    weights = torch.rand(len(DARTS_OPS))
    out = mixed(x, weights)
    assert out.shape == (2, channels, 8 // stride, 8 // stride)
    part = channels // k
    mixed_part = sum(w * op(x[:, :part]) for w, op in zip(weights, mixed.ops))
    bypass = x[:, part:] if stride == 1 else nn.functional.max_pool2d(x[:, part:], 2, 2)
    expected = torch.cat([mixed_part, bypass], dim=1)
    index = [g * part + c for c in range(part) for g in range(k)]
    torch.testing.assert_close(out, expected[:, index])


def test_partial_channels_must_divide_channels() -> None:
    with pytest.raises(ValueError, match=r"channels=6 .*partial_channels=4"):
        MixedOp(6, 1, DARTS_OPS, partial_channels=4)
    with pytest.raises(ValueError, match="partial_channels"):
        MixedOp(6, 1, DARTS_OPS, partial_channels=0)


# ---------------------------------------------------------------- cells

def test_darts_cell_wiring_edge_order_and_edge_weights() -> None:
    candidates = ("none", "skip_connect", "sep_conv_3x3")
    cell = DartsSearchCell(steps=2, multiplier=2, c_prev_prev=6, c_prev=5, channels=4, reduction=False,
                           reduction_prev=False, candidates=candidates)
    assert cell.num_edges == 5
    s0, s1 = torch.randn(2, 6, 5, 5), torch.randn(2, 5, 5, 5)
    ops = _one_hot(5, candidates, "skip_connect")
    ops[3] = torch.tensor([1.0, 0.0, 0.0])  # edge 3 = node 3 <- node 1 is "none"
    edges = torch.tensor([0.5, 2.0, 3.0, 7.0, 0.25])
    out = cell(s0, s1, CellWeights(ops=ops, edges=edges))
    h0, h1 = cell.preprocess0(s0), cell.preprocess1(s1)
    node2 = 0.5 * h0 + 2.0 * h1
    node3 = 3.0 * h0 + 0.25 * node2
    torch.testing.assert_close(out, torch.cat([node2, node3], dim=1))


def test_darts_reduction_cell_shapes() -> None:
    cell = DartsSearchCell(4, 4, 12, 16, 8, reduction=True, reduction_prev=True, candidates=DARTS_OPS)
    weights = CellWeights(ops=torch.rand(14, len(DARTS_OPS)).softmax(-1))
    out = cell(torch.randn(2, 12, 16, 16), torch.randn(2, 16, 8, 8), weights)
    assert out.shape == (2, 32, 4, 4)
    strides = [edge.stride for edge in cell.edges]
    assert strides == [2, 2] + [2, 2, 1] + [2, 2, 1, 1] + [2, 2, 1, 1, 1]


def test_nb201_cell_wiring_with_edge_weights() -> None:
    cell = NB201SearchCell(4, NB201_OPS)
    x = torch.randn(2, 4, 5, 5)
    e = torch.tensor([2.0, 3.0, 5.0, 7.0, 11.0, 13.0])
    out = cell(x, CellWeights(ops=_one_hot(6, NB201_OPS, "skip_connect"), edges=e))
    node1 = e[0] * x
    node2 = e[1] * x + e[2] * node1
    torch.testing.assert_close(out, e[3] * x + e[4] * node1 + e[5] * node2)


def test_cell_rejects_misshaped_weights() -> None:
    cell = NB201SearchCell(4, NB201_OPS)
    with pytest.raises(ValueError, match=r"\(6, 5\)"):
        cell(torch.randn(1, 4, 4, 4), CellWeights(ops=torch.rand(14, 5)))


# ---------------------------------------------------------------- networks

def _params_with_grad(module: nn.Module) -> tuple[list[str], list[str]]:
    """Names of parameters with a nonzero gradient and of those without one."""
    with_grad, without = [], []
    for name, p in module.named_parameters():
        (with_grad if p.grad is not None and torch.count_nonzero(p.grad) > 0 else without).append(name)
    return with_grad, without


@pytest.mark.parametrize("partial_channels", [1, 2])
def test_darts_network_shapes_and_gradients(partial_channels: int) -> None:
    net = DartsSearchNetwork(channels=4, layers=5, num_classes=7, partial_channels=partial_channels)
    arch = ArchParameters.for_network(net, edge_betas=partial_channels > 1)
    logits = net(torch.randn(2, 3, 16, 16), arch.weights())
    assert logits.shape == (2, 7)
    logits.logsumexp(-1).sum().backward()
    _, missing = _params_with_grad(net)
    assert missing == []
    for cell in net.cell_types:
        assert torch.all(arch.alphas[cell].grad != 0), cell
        if partial_channels > 1:
            assert arch.betas is not None and torch.all(arch.betas[cell].grad != 0), cell


def test_darts_network_sampled_path_touches_only_active_ops() -> None:
    net = DartsSearchNetwork(channels=4, layers=3)
    arch = ArchParameters.for_network(net)
    active = {cell: torch.randint(0, net.num_ops, (net.num_edges,)) for cell in net.cell_types}
    weights = {cell: CellWeights(ops=arch.op_weights(cell), active=active[cell]) for cell in net.cell_types}
    net(torch.randn(2, 3, 8, 8), weights).sum().backward()
    for cell_module in net.cells:
        chosen = active["reduce" if cell_module.reduction else "normal"]
        for e, edge in enumerate(cell_module.edges):
            for k, op in enumerate(edge.ops):
                grads = [p.grad for p in op.parameters()]
                if k == int(chosen[e]):
                    assert all(g is not None for g in grads)
                else:
                    assert all(g is None for g in grads)
    for cell in net.cell_types:
        assert torch.count_nonzero(arch.alphas[cell].grad) > 0


def test_nb201_network_shapes_and_gradients() -> None:
    net = NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=5)
    assert net.num_edges == 6 and net.cell_types == ("normal",) and net.space == "nb201"
    assert sum(isinstance(m, NB201SearchCell) for m in net.cells) == 3
    arch = ArchParameters.for_network(net)
    logits = net(torch.randn(2, 3, 8, 8), arch.weights())
    assert logits.shape == (2, 5)
    logits.logsumexp(-1).sum().backward()
    assert _params_with_grad(net)[1] == []
    assert torch.all(arch.alphas["normal"].grad != 0)


def test_network_attributes() -> None:
    net = DartsSearchNetwork(channels=4, layers=3, steps=3, multiplier=2)
    assert (net.space, net.cell_types, net.num_edges, net.num_ops, net.steps) == (
        "darts", ("normal", "reduce"), 9, 8, 3)
    assert net.candidates == DARTS_OPS
    assert [c.reduction for c in net.cells] == [False, True, True]
    assert [c.reduction for c in DartsSearchNetwork(channels=4, layers=8).cells] == [
        False, False, True, False, False, True, False, False]


def test_odd_channels_are_fine() -> None:
    # FactorizedReduce only ever sees 2C or 4C channels, so an odd C builds and runs.
    net = DartsSearchNetwork(channels=3, layers=3)
    assert net(torch.randn(1, 3, 8, 8), ArchParameters.for_network(net).weights()).shape == (1, 10)


@pytest.mark.parametrize("kwargs, culprit", [
    (dict(layers=2), "layers=2"),
    (dict(channels=0), "channels must be >= 1, got 0"),
    (dict(channels=6, partial_channels=4), "channels=6 is not divisible by partial_channels=4"),
    (dict(candidates=("none", "sep_conv_9x9")), "sep_conv_9x9"),
    (dict(candidates=("none", "none")), "repeat none"),
    (dict(candidates=()), "candidates is empty"),
    (dict(steps=0), "steps must be >= 1"),
    (dict(steps=3, multiplier=4), "multiplier=4 exceeds steps=3"),
    (dict(num_classes=0), "num_classes"),
])
def test_darts_network_bad_shapes(kwargs: dict, culprit: str) -> None:
    with pytest.raises(ValueError, match=culprit) as info:
        DartsSearchNetwork(**{"channels": 4, **kwargs})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, culprit", [
    (dict(channels=0), "channels"),
    (dict(cells_per_stage=0), "cells_per_stage"),
    (dict(channels=6, partial_channels=4), "channels=6 is not divisible by partial_channels=4"),
    (dict(candidates=("skip_connect", "bogus_op")), "bogus_op"),
])
def test_nb201_network_bad_shapes(kwargs: dict, culprit: str) -> None:
    with pytest.raises(ValueError, match=culprit):
        NB201SearchNetwork(**kwargs)


def test_network_rejects_missing_or_misshaped_weights() -> None:
    net = DartsSearchNetwork(channels=4, layers=3)
    x = torch.randn(1, 3, 8, 8)
    good = CellWeights(ops=torch.rand(14, 8))
    with pytest.raises(ValueError, match="'reduce'"):
        net(x, {"normal": good})
    with pytest.raises(ValueError, match=r"\(14, 8\)"):
        net(x, {"normal": good, "reduce": CellWeights(ops=torch.rand(14, 5))})


def test_darts_supernet_parameter_count() -> None:
    # The reference DARTS search network (C=16, 8 cells, CIFAR-10) reports 1.930618M parameters.
    net = DartsSearchNetwork(16, 8, num_classes=10)
    assert sum(p.numel() for p in net.parameters()) == 1_930_618


def test_build_supernet() -> None:
    assert isinstance(build_supernet("darts", channels=4, layers=3), DartsSearchNetwork)
    assert isinstance(build_supernet("nb201", channels=4, cells_per_stage=1), NB201SearchNetwork)
    with pytest.raises(ValueError, match="'nasnet'.*darts, nb201"):
        build_supernet("nasnet")


# ---------------------------------------------------------------- ArchParameters

def test_arch_parameters_are_parameters_in_state_dict_and_move() -> None:
    net = DartsSearchNetwork(channels=4, layers=3)
    arch = ArchParameters.for_network(net, edge_betas=True)
    assert set(arch.state_dict()) == {"alphas.normal", "alphas.reduce", "betas.normal", "betas.reduce"}
    assert all(isinstance(p, nn.Parameter) for p in arch.parameters())
    assert arch.alphas["normal"].shape == (14, 8) and arch.betas["reduce"].shape == (14,)
    assert 0 < arch.alphas["normal"].abs().max() < 1e-2  # init 1e-3 * randn
    assert not {id(p) for p in arch.parameters()} & {id(p) for p in net.parameters()}
    arch.to(torch.float64)
    assert arch.alphas["reduce"].dtype == torch.float64 and arch.weights()["normal"].ops.dtype == torch.float64
    arch.to("meta")
    assert arch.alphas["normal"].device.type == "meta" and arch.betas["normal"].device.type == "meta"


def test_arch_weights_and_probabilities() -> None:
    arch = ArchParameters(("normal", "reduce"), 14, 8, init_scale=1.0)
    weights = arch.weights()
    torch.testing.assert_close(weights["normal"].ops, arch.alphas["normal"].softmax(-1))
    assert weights["reduce"].edges is None and weights["reduce"].active is None
    probs = arch.probabilities()
    assert not probs["normal"].requires_grad
    torch.testing.assert_close(probs["reduce"].sum(-1), torch.ones(14))


def test_edge_weights_softmax_per_node() -> None:
    arch = ArchParameters(("normal",), 14, 8, edge_betas=True, steps=4)
    with torch.no_grad():
        arch.betas["normal"].copy_(torch.arange(14.0))
    w = arch.edge_weights("normal")
    expected = torch.cat([torch.arange(s, s + n, dtype=torch.float).softmax(0)
                          for s, n in ((0, 2), (2, 3), (5, 4), (9, 5))])
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(node_softmax(torch.zeros(6), (1, 2, 3)),
                               torch.tensor([1, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3]))
    nb201 = ArchParameters.for_network(NB201SearchNetwork(channels=4, cells_per_stage=1), edge_betas=True)
    assert nb201.edge_groups == (1, 2, 3)


def test_edge_betas_need_a_known_grouping() -> None:
    with pytest.raises(ValueError, match="steps"):
        ArchParameters(("normal",), 14, 8, edge_betas=True)
    with pytest.raises(ValueError, match="steps=3 means 9 DARTS edges, but num_edges=14"):
        ArchParameters(("normal",), 14, 8, edge_betas=True, steps=3)
    with pytest.raises(ValueError, match="edge_betas=True"):
        ArchParameters(("normal",), 14, 8).edge_weights("normal")
