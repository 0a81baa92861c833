"""The DARTS architecture gradients of ``search.hypergrad`` against exact references on a tiny supernet."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from search.hypergrad import (
    exact_second_order_gradient,
    first_order_gradient,
    functional_loss,
    second_order_gradient,
    virtual_step,
)
from supernet import ArchParameters, DartsSearchNetwork



def _setup(seed: int = 0):
    torch.manual_seed(seed)
    net = DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, num_classes=3, in_channels=1).double()
    arch = ArchParameters.for_network(net, init_scale=0.5).double()
    batches = [(torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (6,))) for _ in range(2)]
    params = {n: p for n, p in net.named_parameters()}
    buffers = {n: 0.1 * torch.randn_like(p) for n, p in params.items()}
    losses = [functional_loss(net, lambda x=x: (x, arch.weights()), y, F.cross_entropy) for x, y in batches]
    return net, arch, params, buffers, losses, batches


def _cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    va, vb = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    return float(F.cosine_similarity(va, vb, dim=0))


def test_virtual_step_is_the_next_sgd_step():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(2):  # two steps so the momentum buffer is populated
        opt.zero_grad()
        (w ** 3).sum().backward()
        g = w.grad.clone()
        buf = opt.state[w].get("momentum_buffer")
        expected = virtual_step([w.detach()], [g], 0.1, 0.9, 0.01, [buf])[0]
        opt.step()
        assert torch.allclose(w.detach(), expected, atol=1e-7)


def test_first_order_is_grad_of_val_loss():
    net, arch, params, _, (_, val_loss), (_, (x_val, y_val)) = _setup()
    alphas = list(arch.parameters())
    got = first_order_gradient(val_loss, params, alphas)
    arch.zero_grad()
    F.cross_entropy(net(x_val, arch.weights()), y_val).backward()  # through the module itself
    assert all(torch.allclose(g, a.grad, rtol=1e-10, atol=1e-14) for g, a in zip(got, alphas))
    assert all(g.abs().sum() > 0 for g in got)


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 3e-4)])
def test_second_order_matches_double_backward(momentum, weight_decay):
    # float64 and a small finite-difference scale r: the tiny net is ReLU/max-pool piecewise smooth, and with the
    # production r=0.01 (a weight perturbation of norm 0.01) its few weights cross kinks of the loss surface.
    net, arch, params, buffers, (train_loss, val_loss), _ = _setup()
    alphas = list(arch.parameters())
    kwargs = dict(lr=0.5, momentum=momentum, weight_decay=weight_decay, momentum_buffers=buffers)
    exact = exact_second_order_gradient(train_loss, val_loss, params, alphas, **kwargs)
    approx, loss = second_order_gradient(train_loss, val_loss, params, alphas, r=1e-6, **kwargs)
    first = first_order_gradient(val_loss, params, alphas)
    assert torch.isfinite(loss)
    assert _cosine(approx, exact) > 0.999
    # the test has teeth: the implicit (Hessian) term is not negligible here
    assert _cosine(first, exact) < 0.99
    norm = torch.cat([t.flatten() for t in exact]).norm()
    diff = torch.cat([(a - e).flatten() for a, e in zip(approx, exact)]).norm()
    assert diff < 1e-3 * norm


def test_second_order_leaves_weights_and_batchnorm_untouched():
    net, arch, params, buffers, (train_loss, val_loss), _ = _setup()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    second_order_gradient(train_loss, val_loss, params, list(arch.parameters()), lr=0.1, momentum=0.9,
                          weight_decay=3e-4, momentum_buffers=buffers)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_second_order_reduce_is_applied_to_weight_and_arch_gradients():
    net, arch, params, buffers, (train_loss, val_loss), _ = _setup()
    calls: list[int] = []

    def reduce(tensors):
        calls.append(len(tensors))
        return [2.0 * t for t in tensors]

    alphas = list(arch.parameters())
    plain, _ = second_order_gradient(train_loss, val_loss, params, alphas, lr=0.1)
    reduced, _ = second_order_gradient(train_loss, val_loss, params, alphas, lr=0.1, reduce=reduce)
    n_w = len(params)
    assert calls == [n_w, n_w, len(alphas)]
    assert not all(torch.allclose(2.0 * p, r) for p, r in zip(plain, reduced))  # w' moved with the doubled grads


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 3e-4)])
def test_exact_hessian_vector_product_is_the_exact_unrolled_gradient(momentum, weight_decay):
    """``hvp="exact"`` equals the double-backward reference to float64 rounding, at any scale ``r`` (it has none);
    the finite difference at the shipped r = 0.01 is measurably off on this ReLU/max-pool net."""
    net, arch, params, buffers, (train_loss, val_loss), _ = _setup()
    alphas = list(arch.parameters())
    kwargs = dict(lr=0.5, momentum=momentum, weight_decay=weight_decay, momentum_buffers=buffers)
    reference = exact_second_order_gradient(train_loss, val_loss, params, alphas, **kwargs)
    exact, loss = second_order_gradient(train_loss, val_loss, params, alphas, hvp="exact", **kwargs)
    assert torch.isfinite(loss)
    for got, want in zip(exact, reference):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    coarse, _ = second_order_gradient(train_loss, val_loss, params, alphas, r=0.01, **kwargs)
    assert _cosine(coarse, reference) < 0.999


def test_exact_hessian_vector_product_reduces_like_the_finite_difference():
    net, arch, params, buffers, (train_loss, val_loss), _ = _setup()
    calls: list[int] = []

    def reduce(tensors):
        calls.append(len(tensors))
        return tensors

    alphas = list(arch.parameters())
    second_order_gradient(train_loss, val_loss, params, alphas, lr=0.1, reduce=reduce, hvp="exact")
    assert calls == [len(params), len(params), len(alphas)]
    with pytest.raises(ValueError, match="hvp must be one of finite_difference, forward_difference, exact"):
        second_order_gradient(train_loss, val_loss, params, alphas, lr=0.1, hvp="taylor")


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 3e-4)])
def test_forward_difference_is_the_unrolled_gradient_with_one_training_pass_fewer(momentum, weight_decay):
    # float64, small r: the one-sided difference converges to the exact unrolled gradient as the central one does,
    # and it evaluates the training loss twice (at w, which the virtual step needs anyway, and at w + eps v), not three
    # times; under data parallelism it reduces the same tensors.
    net, arch, params, buffers, (train_loss, val_loss), _ = _setup()
    alphas = list(arch.parameters())
    kwargs = dict(lr=0.5, momentum=momentum, weight_decay=weight_decay, momentum_buffers=buffers)
    exact = exact_second_order_gradient(train_loss, val_loss, params, alphas, **kwargs)
    calls: dict[str, int] = {}

    def counted(hvp):
        def loss(weights):
            calls[hvp] = calls.get(hvp, 0) + 1
            return train_loss(weights)
        return loss

    reduced: list[int] = []
    one_sided, _ = second_order_gradient(counted("forward"), val_loss, params, alphas, r=1e-6,
                                         hvp="forward_difference", reduce=lambda t: reduced.append(len(t)) or t,
                                         **kwargs)
    central, _ = second_order_gradient(counted("central"), val_loss, params, alphas, r=1e-6, **kwargs)
    assert _cosine(one_sided, exact) > 0.999 and _cosine(central, exact) > 0.999
    assert calls == {"forward": 2, "central": 3}
    assert reduced == [len(params), len(params), len(alphas)]
    first = first_order_gradient(val_loss, params, alphas)
    assert _cosine(first, exact) < 0.99  # the implicit term matters here
