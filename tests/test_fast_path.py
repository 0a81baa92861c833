"""The fused supernet forward computes the same function as the reference (per-op) one: outputs, losses, weight
and architecture gradients (1st and 2nd order), running statistics; in float64 for tight tolerances."""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernet.fast
from ops import search_space
from search.hypergrad import exact_second_order_gradient, functional_loss, second_order_gradient
from supernet import ArchParameters, CellWeights, DartsSearchNetwork, NB201SearchNetwork
from supernet.fast.dwconv import depthwise_conv2d
from supernet.fast.batch_norm import batch_statistics

TOL = dict(rtol=1e-9, atol=1e-11)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _net(**kwargs) -> DartsSearchNetwork:
    spec = dict(channels=4, layers=3, steps=3, multiplier=3, num_classes=5)
    return DartsSearchNetwork(**{**spec, **kwargs}).double()


def _nb201(**kwargs) -> NB201SearchNetwork:
    spec = dict(channels=4, cells_per_stage=2, num_classes=5)
    return NB201SearchNetwork(**{**spec, **kwargs}).double()


def _data(n: int = 3, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 3, size, size, dtype=torch.float64), torch.randint(0, 5, (n,))


def _assert_paths_agree(net: nn.Module, arch: ArchParameters, x: torch.Tensor, y: torch.Tensor) -> None:
    """The loss and all gradients of ``net`` equal those of a reference-path copy."""
    ref = copy.deepcopy(net).set_impl("reference")
    for a, b in zip(_loss_and_grads(net, arch, x, y), _loss_and_grads(ref, arch, x, y)):
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            torch.testing.assert_close(u, v, **TOL)


def _loss_and_grads(net: nn.Module, arch: ArchParameters, x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    net.zero_grad()
    arch.zero_grad()
    loss = F.cross_entropy(net(x, arch.weights()), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in net.parameters()], [p.grad.clone() for p in arch.parameters()]


# ---------------------------------------------------------------- depthwise convolution

@pytest.mark.parametrize("k, dilation, stride, size, channels_last",
                         list(itertools.product([3, 5], [1, 2], [1, 2], [8, 7], [False, True])))
def test_depthwise_conv_matches_conv2d(k: int, dilation: int, stride: int, size: int, channels_last: bool) -> None:
    padding = dilation * (k - 1) // 2
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(3, 1, k, k, dtype=torch.float64, requires_grad=True)
    out = depthwise_conv2d(x, w, stride, padding, dilation)
    expected = F.conv2d(x, w, None, stride, padding, dilation, 3)
    torch.testing.assert_close(out, expected, **TOL)
    g = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(expected, (x, w), g)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("dilation, stride", [(1, 1), (2, 1), (2, 2), (1, 2)])
def test_depthwise_conv_double_backward(dilation: int, stride: int) -> None:
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: depthwise_conv2d(a, b, stride, dilation, dilation), (x, w))


# ---------------------------------------------------------------- whole supernet, 1st order

@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("partial_channels, edge_betas, recompute",
                         [(1, False, True), (1, False, False), (2, True, True), (1, True, False)])
def test_fused_equals_reference(space: str, partial_channels: int, edge_betas: bool, recompute: bool,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    forward = "fused_cell_forward" if space == "darts" else "fused_nb201_cell_forward"
    original = getattr(supernet.fast, forward)
    monkeypatch.setattr(supernet.fast, forward,  # count the calls of the fused path's cell forward
                        lambda *args: calls.append(1) or original(*args))
    net = (_net if space == "darts" else _nb201)(partial_channels=partial_channels, recompute=recompute)
    arch = ArchParameters.for_network(net, edge_betas=edge_betas, init_scale=1.0).double()
    x, y = _data()
    ref = copy.deepcopy(net).set_impl("reference")
    ref_arch = copy.deepcopy(arch)
    for _ in range(2):  # the second pass starts from the running statistics the first one left
        loss, w_grads, a_grads = _loss_and_grads(net, arch, x, y)
        ref_loss, ref_w_grads, ref_a_grads = _loss_and_grads(ref, ref_arch, x, y)
        torch.testing.assert_close(loss, ref_loss, **TOL)
        for a, b in zip(w_grads + a_grads, ref_w_grads + ref_a_grads):
            torch.testing.assert_close(a, b, **TOL)
        assert all(torch.count_nonzero(g) > 0 for g in a_grads)
        for (name, a), (_, b) in zip(net.state_dict().items(), ref.state_dict().items()):
            torch.testing.assert_close(a, b, **TOL, msg=name)
    net.eval()
    ref.eval()
    torch.testing.assert_close(net(x, arch.weights()), ref(x, ref_arch.weights()), **TOL)
    search_cells = [cell for cell in net.cells if hasattr(cell, "fast")]
    assert len(calls) == 3 * len(search_cells)  # the fused forward ran (and only for `net`)


@pytest.mark.parametrize("candidates", [
    ("none", "skip_connect"),
    ("none",),
    ("max_pool_3x3", "sep_conv_7x7", "conv_7x1_1x7", "dil_conv_5x5"),
])
def test_fused_equals_reference_on_other_candidate_sets(candidates: tuple[str, ...]) -> None:
    net = _net(candidates=candidates, layers=4)
    arch = ArchParameters.for_network(net, init_scale=1.0).double()
    x, y = _data()
    ref = copy.deepcopy(net).set_impl("reference")
    loss, w_grads, a_grads = _loss_and_grads(net, arch, x, y)
    ref_loss, ref_w_grads, ref_a_grads = _loss_and_grads(ref, arch, x, y)
    torch.testing.assert_close(loss, ref_loss, **TOL)
    for a, b in zip(w_grads + a_grads, ref_w_grads + ref_a_grads):
        torch.testing.assert_close(a, b, **TOL)


def test_per_edge_pool_statistics_are_kept_apart() -> None:
    # Sampling strategies update only the chosen op's BatchNorm, so the pooling BatchNorms of the edges leaving a
    # node can differ; the fused path must update and use each edge's own running statistics.
    net = _net()
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if "running" in name:
                buf.copy_(torch.rand_like(buf) + 0.5)
    arch = ArchParameters.for_network(net, init_scale=1.0).double()
    x, _ = _data()
    ref = copy.deepcopy(net).set_impl("reference")
    net(x, arch.weights())
    ref(x, arch.weights())
    for (name, a), (_, b) in zip(net.state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(a, b, **TOL, msg=name)
    net.eval()
    ref.eval()
    torch.testing.assert_close(net(x, arch.weights()), ref(x, arch.weights()), **TOL)


def test_sampled_path_and_one_hot_weights() -> None:
    net = _net()
    ref = copy.deepcopy(net).set_impl("reference")
    x, _ = _data()
    num_ops = net.num_ops
    active = {c: torch.randint(0, num_ops, (net.num_edges,)) for c in net.cell_types}
    ops = {c: F.one_hot(active[c], num_ops).double().requires_grad_(True) for c in net.cell_types}
    for use_active in (True, False):
        weights = {c: CellWeights(ops=ops[c], active=active[c] if use_active else None) for c in net.cell_types}
        out, expected = net(x, weights), ref(x, weights)
        torch.testing.assert_close(out, expected, **TOL)
        grads = torch.autograd.grad(out.sum(), list(ops.values()))
        expected_grads = torch.autograd.grad(expected.sum(), list(ops.values()))
        for a, b in zip(grads, expected_grads):
            torch.testing.assert_close(a, b, **TOL)


def test_state_dict_is_shared_by_both_implementations() -> None:
    fused = _net(impl="fused")
    reference = _net(impl="reference")
    reference.load_state_dict(fused.state_dict())
    assert list(fused.state_dict()) == list(reference.state_dict())
    with pytest.raises(ValueError, match="unknown impl 'fast'"):
        _net(impl="fast")


# ---------------------------------------------------------------- 2nd order

def _second_order(net: DartsSearchNetwork, arch: ArchParameters, exact: bool) -> list[torch.Tensor]:
    (x_train, y_train), (x_val, y_val) = _data(), _data()
    params = dict(net.named_parameters())
    buffers = {n: 0.1 * torch.randn_like(p) for n, p in params.items()}
    alphas = list(arch.parameters())
    train = functional_loss(net, lambda: (x_train, arch.weights()), y_train, F.cross_entropy)
    val = functional_loss(net, lambda: (x_val, arch.weights()), y_val, F.cross_entropy)
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=3e-4, momentum_buffers=buffers)
    if exact:
        return exact_second_order_gradient(train, val, params, alphas, **kwargs)
    return second_order_gradient(train, val, params, alphas, **kwargs)[0]


@pytest.mark.parametrize("exact, space", [(False, "darts"), (True, "darts"), (False, "nb201"), (True, "nb201")])
def test_second_order_gradient_equal(exact: bool, space: str) -> None:
    if space == "nb201":
        net = _nb201(cells_per_stage=1)
    else:
        net = _net(steps=2, multiplier=2) if exact else _net()
    arch = ArchParameters.for_network(net, init_scale=1.0).double()
    grads = {}
    for impl in ("fused", "reference"):
        torch.manual_seed(1)
        grads[impl] = _second_order(net.set_impl(impl), arch, exact)
    for a, b in zip(grads["fused"], grads["reference"]):
        assert torch.count_nonzero(a) > 0
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_default_is_fused_with_recompute() -> None:
    net = DartsSearchNetwork(channels=4, layers=3)
    assert net.impl == "fused" and net.recompute
    assert all(cell.fast is net.fast for cell in net.cells) and net.fast == supernet.fast.FusedCells(recompute=True)
    assert search_space("darts") == net.candidates


def test_channels_last_batch_statistics_are_accurate() -> None:
    # PyTorch's channels-last CPU BatchNorm sums in one float per channel (relative error ~2e-5 here); the fused
    # path's statistics must be as accurate as the NCHW kernel's.
    x64 = torch.randn(32, 16, 16, 16, dtype=torch.float64) * 0.1 + 3.0
    x = x64.float().contiguous(memory_format=torch.channels_last)
    mean, var = batch_statistics(x)
    var64, mean64 = torch.var_mean(x64, dim=(0, 2, 3), correction=0)
    assert (mean.double() - mean64).abs().max() < 2e-6
    assert ((var.double() - var64) / var64).abs().max() < 2e-6


def test_generic_kernels_path() -> None:
    # The code path other devices take (PyTorch's own depthwise backward and BatchNorm), exercised on the CPU.
    net = _net(cpu_kernels=False)
    arch = ArchParameters.for_network(net, init_scale=1.0).double()
    x, y = _data()
    _assert_paths_agree(net, arch, x, y)
    grads = {}
    for impl in ("fused", "reference"):
        torch.manual_seed(1)
        grads[impl] = _second_order(net.set_impl(impl), arch, exact=True)
    for a, b in zip(grads["fused"], grads["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("generic_kernels, space", [(False, "darts"), (True, "darts"), (False, "nb201")])
def test_bf16_autocast_channels_last(generic_kernels: bool, space: str) -> None:
    # The GPU recipe (bf16 autocast, channels-last), on the CPU: the fused path runs in bf16 and its gradients are
    # as close to the float32 ones as the reference path's are (bf16 rounding alone: cosine ~0.98 here for DARTS,
    # ~0.94 for the smaller NB201 network).
    net = (DartsSearchNetwork(channels=4, layers=3, steps=3, multiplier=3, num_classes=5,
                              cpu_kernels=not generic_kernels) if space == "darts"
           else NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=5))
    net = net.to(memory_format=torch.channels_last)
    arch = ArchParameters.for_network(net, init_scale=1.0)
    x = torch.randn(8, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (8,))

    def loss_and_grads(impl: str, bf16: bool) -> tuple[float, torch.Tensor]:
        net.set_impl(impl)
        net.zero_grad()
        arch.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x, arch.weights())
            assert logits.dtype == (torch.bfloat16 if bf16 else torch.float32)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in [*net.parameters(), *arch.parameters()]])

    loss32, grads32 = loss_and_grads("reference", bf16=False)
    cosines = {}
    for impl in ("reference", "fused"):
        loss, grads = loss_and_grads(impl, bf16=True)
        assert abs(loss - loss32) < 0.02
        cosines[impl] = F.cosine_similarity(grads, grads32, dim=0).item()
    assert cosines["fused"] > 0.9 and cosines["fused"] > cosines["reference"] - 0.02, cosines


@pytest.mark.parametrize("partial_channels, space", [(1, "darts"), (2, "darts"), (1, "nb201")])
def test_weight_gradients_have_the_parameters_strides(partial_channels: int, space: str) -> None:
    # DDP copies each gradient into a bucket view with the parameter's strides and warns when they differ; the
    # fused path's channels-last kernels must not hand back channels-last strides for [C, 1, k, k] weights.
    net = (DartsSearchNetwork(channels=4, layers=3, steps=3, multiplier=3, num_classes=5,
                              partial_channels=partial_channels) if space == "darts"
           else NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=5))
    arch = ArchParameters.for_network(net)
    F.cross_entropy(net(torch.randn(4, 3, 8, 8), arch.weights()), torch.randint(0, 5, (4,))).backward()
    mismatched = [name for name, p in net.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()]
    assert not mismatched


# ---------------------------------------------------------------- NAS-Bench-201 cell

@pytest.mark.parametrize("candidates", [("none", "skip_connect"), ("none",), ("nor_conv_3x3", "max_pool_3x3"),
                                        ("nor_conv_1x1", "sep_conv_3x3", "avg_pool_3x3")])
def test_nb201_fused_equals_reference_on_other_candidate_sets(candidates: tuple[str, ...]) -> None:
    net = _nb201(candidates=candidates)
    arch = ArchParameters.for_network(net, init_scale=1.0).double()
    x, y = _data()
    _assert_paths_agree(net, arch, x, y)


def test_nb201_sampled_path_and_one_hot_weights() -> None:
    net = _nb201()
    ref = copy.deepcopy(net).set_impl("reference")
    x, _ = _data()
    active = torch.randint(0, net.num_ops, (net.num_edges,))
    ops = F.one_hot(active, net.num_ops).double().requires_grad_(True)
    for use_active, add_inactive in ((True, False), (True, True), (False, False)):
        weights = {"normal": CellWeights(ops=ops, active=active if use_active else None, add_inactive=add_inactive)}
        out, expected = net(x, weights), ref(x, weights)
        torch.testing.assert_close(out, expected, **TOL)
        torch.testing.assert_close(torch.autograd.grad(out.sum(), ops)[0],
                                   torch.autograd.grad(expected.sum(), ops)[0], **TOL)


def test_nb201_default_is_fused_and_shares_the_state_dict() -> None:
    net = NB201SearchNetwork(channels=4, cells_per_stage=1)
    assert net.impl == "fused" and net.recompute
    assert all(cell.fast is net.fast for cell in net.cells if hasattr(cell, "fast"))
    reference = NB201SearchNetwork(channels=4, cells_per_stage=1, impl="reference")
    reference.load_state_dict(net.state_dict())
    assert list(net.state_dict()) == list(reference.state_dict())
    with pytest.raises(ValueError, match="NB201SearchNetwork: unknown impl 'fast'"):
        NB201SearchNetwork(channels=4, cells_per_stage=1, impl="fast")


def test_nb201_keeps_the_networks_memory_format() -> None:
    # The fused cells run channels-last inside; the ResNet blocks between them get the format they would get on the
    # reference path from the same stem (channels-last, as the fused stem produces it)
    net = _nb201()
    arch = ArchParameters.for_network(net).double()
    cell = net.cells[0]
    for fmt in (torch.contiguous_format, torch.channels_last):
        h = torch.randn(3, 4, 8, 8, dtype=torch.float64).contiguous(memory_format=fmt)
        assert cell(h, arch.weights()["normal"]).is_contiguous(memory_format=fmt)
