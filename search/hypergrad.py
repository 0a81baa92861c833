"""The DARTS architecture gradient, 1st and 2nd order, as pure functions (no Lightning, no optimizer objects).

A loss is given as a function ``L(w)`` of the network weights: ``w`` is a mapping from parameter name to tensor
and the function evaluates the network with its weights replaced by those tensors (``torch.func.functional_call``)
while using the *live* architecture parameters, so ``torch.autograd.grad(L(w), alphas)`` is the architecture
gradient. Nothing here touches a module's weights or buffers in place; see ``functional_loss``, which also
evaluates BatchNorm on copies of the running statistics so virtual steps leave them untouched.

2nd order (Liu et al. 2019, eq. 7-8), with ``xi`` the current weight learning rate, ``mu`` the SGD momentum,
``m`` its momentum buffer and ``lam`` the weight decay::

    w'  = w - xi * (mu * m + grad_w L_train(w) + lam * w)              # the step SGD would take
    g_a = grad_a L_val(w') - xi * (grad_a L_train(w+) - grad_a L_train(w-)) / (2 eps)
    w+- = w +- eps * grad_w' L_val(w'),   eps = r / ||grad_w' L_val(w')||,   r = 0.01

Data-parallel use: pass ``reduce`` (an all-reduce mean over a list of tensors). The weight gradients that define
``w'`` and ``w+-`` and the final architecture gradient are reduced, so every rank computes the gradient of the
loss averaged over all ranks' batches and holds the same result.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

LossFn = Callable[[Mapping[str, Tensor]], Tensor]
"""``L(w)``: a scalar loss computed with the network weights replaced by ``w`` (name -> tensor)."""

Reduce = Callable[[list[Tensor]], list[Tensor]]
"""All-reduce (mean over processes) of a list of tensors; returns the reduced list in the same order."""

HVPS = ("finite_difference", "forward_difference", "exact")
"""How ``second_order_gradient`` takes the mixed Hessian-vector product."""


def functional_loss(module: nn.Module, forward_args: Callable[[], tuple], target: Tensor,
                    criterion: Callable[[Tensor, Tensor], Tensor]) -> LossFn:
    """Build ``L(w) = criterion(module(*forward_args()) with weights w, target)``.

    ``forward_args`` is called at every evaluation so that tensors derived from the architecture parameters
    (e.g. softmax weights) are rebuilt inside the autograd graph of that evaluation. The module's buffers
    (BatchNorm running statistics) are cloned once here: the virtual forward passes update the clones, never
    the module.
    """
    buffers = {name: buf.detach().clone() for name, buf in module.named_buffers()}

    def loss(weights: Mapping[str, Tensor]) -> Tensor:
        return criterion(functional_call(module, (dict(weights), buffers), forward_args()), target)

    return loss


def _grads(output: Tensor, inputs: Sequence[Tensor], create_graph: bool = False) -> list[Tensor]:
    """``torch.autograd.grad`` with zeros (instead of ``None``) for inputs the output does not depend on."""
    grads = torch.autograd.grad(output, list(inputs), allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def virtual_step(weights: Sequence[Tensor], grads: Sequence[Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, momentum_buffers: Sequence[Tensor | None] | None = None) -> list[Tensor]:
    """One SGD step without touching ``weights``: ``w - lr * (momentum * m + g + weight_decay * w)``.

    This is exactly the update ``torch.optim.SGD`` (no dampening, no Nesterov) makes next. A missing momentum
    buffer (``None``, before the first step) counts as zero. Differentiable if the inputs carry a graph.
    """
    buffers = list(momentum_buffers) if momentum_buffers is not None else [None] * len(weights)
    if not len(buffers) == len(grads) == len(weights):
        raise ValueError(f"virtual_step: got {len(weights)} weights, {len(grads)} gradients, {len(buffers)} buffers")
    out = []
    for w, g, m in zip(weights, grads, buffers):
        direction = g + weight_decay * w
        if m is not None and momentum:
            direction = direction + momentum * m
        out.append(w - lr * direction)
    return out


def first_order_gradient(val_loss: LossFn, weights: Mapping[str, Tensor], alphas: Sequence[Tensor]) -> list[Tensor]:
    """The 1st-order DARTS architecture gradient: ``grad_a L_val(w)`` at the current weights."""
    return _grads(val_loss(weights), alphas)


def second_order_gradient(train_loss: LossFn, val_loss: LossFn, weights: Mapping[str, Tensor],
                          alphas: Sequence[Tensor], *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                          momentum_buffers: Mapping[str, Tensor | None] | None = None, r: float = 0.01,
                          reduce: Reduce | None = None, hvp: str = "finite_difference") -> tuple[list[Tensor], Tensor]:
    """The 2nd-order DARTS architecture gradient by the finite-difference formula (see the module docstring), or
    with ``hvp="exact"`` the same formula with its mixed Hessian-vector product ``grad_a (grad_w L_train(w) . v)``
    taken by double backward instead of the two evaluations at ``w +- eps v``: the exact unrolled gradient
    (``exact_second_order_gradient``), also under data parallelism. ``hvp="forward_difference"`` takes the one-sided
    difference ``(grad_a L_train(w + eps v) - grad_a L_train(w)) / eps``, whose second term comes with the training
    gradient at ``w`` that the virtual step computes anyway: one forward/backward pass fewer than the central
    difference, with an ``O(eps)`` instead of ``O(eps^2)`` truncation error.

    Args:
        train_loss, val_loss: ``L(w)`` on the training and on the validation batch.
        weights: the current network weights (name -> tensor); only read.
        alphas: the architecture parameters (leaf tensors the losses depend on).
        lr, momentum, weight_decay: the weight optimizer's current SGD settings (``xi``, ``mu``, ``lam``).
        momentum_buffers: SGD momentum buffers by weight name (missing or ``None``: zero).
        r: the finite-difference scale; ``eps = r / ||grad_w' L_val(w')||``.
        reduce: all-reduce mean across processes (``None`` on a single process).
        hvp: ``finite_difference`` (the DARTS code's central difference), ``forward_difference`` (one-sided, one
            pass fewer) or ``exact`` (double backward: one more backward pass through the training loss, its graph
            kept; no scale ``r``). ReLU and max-pool kinks make the finite differences at ``r = 0.01`` coarse
            estimates of the exact product.

    Returns:
        One gradient per tensor of ``alphas``, and the (local, detached) validation loss at ``w'``.
    """
    if hvp not in HVPS:
        raise ValueError(f"hvp must be one of {', '.join(HVPS)}, got {hvp!r}")
    names = list(weights)
    alphas = list(alphas)
    w = [weights[n].detach() for n in names]
    buffers = [None if momentum_buffers is None else momentum_buffers.get(n) for n in names]

    w_grad = [t.clone().requires_grad_(True) for t in w]
    forward = hvp == "forward_difference"
    g_train = _grads(train_loss(dict(zip(names, w_grad))), w_grad + (alphas if forward else []))
    g_train, g_alpha_here = g_train[:len(names)], g_train[len(names):]
    if reduce is not None:
        g_train = reduce(g_train)
    with torch.no_grad():
        w_next = virtual_step(w, g_train, lr, momentum, weight_decay, buffers)
    w_next = [t.requires_grad_(True) for t in w_next]

    loss_next = val_loss(dict(zip(names, w_next)))
    grads = _grads(loss_next, alphas + w_next)
    d_alpha, d_w = grads[:len(alphas)], grads[len(alphas):]
    if reduce is not None:
        d_w = reduce(d_w)
    norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in d_w))
    if hvp == "exact":
        w_exact = [t.clone().requires_grad_(True) for t in w]
        g_exact = _grads(train_loss(dict(zip(names, w_exact))), w_exact, create_graph=True)
        mixed = _grads(sum((g * d.detach()).sum() for g, d in zip(g_exact, d_w)), alphas)
        hyper = [(da - lr * m).detach() for da, m in zip(d_alpha, mixed)]
    elif not torch.isfinite(norm) or float(norm) == 0.0:
        hyper = d_alpha  # no weight direction: the implicit term vanishes
    else:
        eps = r / norm
        g_plus = _grads(train_loss(_shifted(names, w, d_w, eps)), alphas)
        if forward:
            hyper = [(da - lr * (gp - g) / eps).detach() for da, gp, g in zip(d_alpha, g_plus, g_alpha_here)]
        else:
            g_minus = _grads(train_loss(_shifted(names, w, d_w, -eps)), alphas)
            hyper = [(da - lr * (gp - gm) / (2 * eps)).detach() for da, gp, gm in zip(d_alpha, g_plus, g_minus)]
    if reduce is not None:
        hyper = reduce(hyper)
    return hyper, loss_next.detach()


def _shifted(names: list[str], weights: list[Tensor], direction: list[Tensor], eps: Tensor) -> dict[str, Tensor]:
    """``weights + eps * direction`` by name, outside any graph."""
    with torch.no_grad():
        return {n: t + eps * d for n, t, d in zip(names, weights, direction)}


def exact_second_order_gradient(train_loss: LossFn, val_loss: LossFn, weights: Mapping[str, Tensor],
                                alphas: Sequence[Tensor], *, lr: float, momentum: float = 0.0,
                                weight_decay: float = 0.0,
                                momentum_buffers: Mapping[str, Tensor | None] | None = None) -> list[Tensor]:
    """The quantity ``second_order_gradient`` approximates, computed exactly by double backward.

    ``d/da L_val(w'(a))`` with ``w'(a) = w - xi * (mu * m + grad_w L_train(w, a) + lam * w)``. Costs a
    Hessian-vector product's memory; meant as a reference for small networks, not for search runs.
    """
    names = list(weights)
    alphas = list(alphas)
    w = [weights[n].detach().clone().requires_grad_(True) for n in names]
    buffers = [None if momentum_buffers is None else momentum_buffers.get(n) for n in names]
    g_train = _grads(train_loss(dict(zip(names, w))), w, create_graph=True)
    w_next = virtual_step(w, g_train, lr, momentum, weight_decay, buffers)
    return [g.detach() for g in _grads(val_loss(dict(zip(names, w_next))), alphas)]
