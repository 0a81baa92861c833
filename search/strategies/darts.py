"""DARTS (Liu et al., ICLR 2019): continuous relaxation, softmax mixing weights, 1st- or 2nd-order gradient."""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.optim import SGD, Optimizer

from ops import Genotype
from search.hypergrad import HVPS, functional_loss, second_order_gradient
from search.strategies.base import ArchStepContext, SearchStrategy, register_strategy
from supernet import ArchParameters, ArchWeights


def sgd_settings(optimizer: Optimizer) -> tuple[float, float, float]:
    """``(lr, momentum, weight_decay)`` of a single-group plain SGD optimizer (what the virtual step mimics)."""
    if not isinstance(optimizer, SGD):
        raise ValueError(f"2nd-order DARTS needs an SGD weight optimizer, got {type(optimizer).__name__}")
    groups = optimizer.param_groups
    keys = ("lr", "momentum", "weight_decay")
    if any(tuple(g[k] for k in keys) != tuple(groups[0][k] for k in keys) for g in groups):
        raise ValueError("2nd-order DARTS needs one lr / momentum / weight decay for all weights")
    if any(g.get("nesterov") or g.get("dampening") for g in groups):
        raise ValueError("2nd-order DARTS mimics SGD without Nesterov and dampening")
    return float(groups[0]["lr"]), float(groups[0]["momentum"]), float(groups[0]["weight_decay"])


def supernet_genotype(supernet: nn.Module, probabilities: dict[str, Tensor],
                      edge_weights: dict[str, Tensor] | None = None) -> Genotype:
    """Discretize per-cell op probabilities with the rule of the supernet's search space."""
    return supernet.search_space.discretize(probabilities, edge_weights)


@register_strategy("darts")
class DartsStrategy(SearchStrategy):
    """DARTS: every edge mixes all ops with ``softmax(alpha)``; alphas follow the gradient of the validation
    loss, to 1st order (``order=1``: at the current weights) or 2nd order (``order=2``: through one virtual
    SGD step of the weights, finite-difference Hessian-vector product).

    Args:
        order: 1 (first-order approximation) or 2 (unrolled, second order).
        init_scale: alphas start as ``init_scale * randn``.
        r: 2nd order: finite-difference scale, ``eps = r / ||grad_w' L_val(w')||``.
        hvp: 2nd order: ``finite_difference`` (the original code's central difference), ``forward_difference``
            (one-sided: one forward/backward pass fewer per step, ``O(eps)`` truncation error; ``search.hypergrad``)
            or ``exact`` (double backward: the exact unrolled gradient, at the cost of keeping the training loss's
            graph for a second backward pass; both supernet paths support it).
    """

    def __init__(self, order: int = 1, init_scale: float = 1e-3, r: float = 0.01,
                 hvp: Literal["finite_difference", "forward_difference", "exact"] = "finite_difference") -> None:
        if order not in (1, 2):
            raise ValueError(f"DARTS order must be 1 or 2, got {order} (--model.strategy_args.order)")
        if r <= 0:
            raise ValueError(f"DARTS finite-difference scale r must be > 0, got {r}")
        if hvp not in HVPS:
            raise ValueError(f"--model.strategy_args.hvp must be one of {', '.join(HVPS)}, got {hvp!r}")
        self.order = order
        self.init_scale = init_scale
        self.r = r
        self.hvp = hvp

    def build_arch(self, supernet: nn.Module) -> ArchParameters:
        """``[num_edges, num_ops]`` alphas per cell type of ``supernet``."""
        return ArchParameters.for_network(supernet, init_scale=self.init_scale)

    def weights(self, arch: nn.Module) -> ArchWeights:
        """``softmax(alpha)`` per cell type."""
        return arch.weights()

    def probabilities(self, arch: nn.Module) -> dict[str, Tensor]:
        """Detached ``softmax(alpha)`` per cell type."""
        return arch.probabilities()

    def genotype(self, arch: nn.Module, supernet: nn.Module) -> Genotype:
        """The DARTS rule (2 strongest non-``none`` inputs per node) or NB201 argmax, by the supernet's space."""
        return supernet_genotype(supernet, self.probabilities(arch))

    def arch_step(self, ctx: ArchStepContext) -> dict[str, Tensor]:
        """One Adam step of the alphas on the gradient of the validation loss (1st or 2nd order), plus the
        regularizers' penalty (``ctx.penalty``)."""
        if self.order == 1:
            return first_order_step(ctx, lambda: self.weights(ctx.arch))
        if ctx.optimizer is None:
            raise RuntimeError("DARTS needs an architecture optimizer")
        x_val, y_val = ctx.val_batch
        ctx.optimizer.zero_grad()
        lr, momentum, weight_decay = sgd_settings(ctx.weight_optimizer)
        params = {n: p for n, p in ctx.supernet.named_parameters() if p.requires_grad}
        state = ctx.weight_optimizer.state
        buffers = {n: state[p].get("momentum_buffer") for n, p in params.items() if p in state}
        alphas = [p for p in ctx.arch.parameters() if p.requires_grad]
        x_train, y_train = ctx.train_batch

        def forward_args(x: Tensor) -> Callable[[], tuple[Tensor, ArchWeights]]:
            return lambda: (x, ctx.transform(self.weights(ctx.arch)))

        train_loss = functional_loss(ctx.supernet, forward_args(x_train), y_train, ctx.criterion)
        val_loss = functional_loss(ctx.supernet, forward_args(x_val), y_val, ctx.criterion)
        grads, loss = second_order_gradient(train_loss, val_loss, params, alphas, lr=lr, momentum=momentum,
                                            weight_decay=weight_decay, momentum_buffers=buffers, r=self.r,
                                            reduce=ctx.reduce, hvp=self.hvp)
        penalty = ctx.penalty()
        if penalty is not None:  # the same on every rank: no all-reduce needed
            extra = torch.autograd.grad(penalty, alphas, allow_unused=True)
            grads = [g if e is None else g + e for g, e in zip(grads, extra)]
        for alpha, grad in zip(alphas, grads):
            alpha.grad = grad.to(alpha.dtype)
        ctx.optimizer.step()
        return with_penalty({"arch_loss": loss}, penalty)


def first_order_step(ctx: ArchStepContext, weights: Callable[[], ArchWeights],
                     extra: Callable[[], Tensor | None] = lambda: None) -> dict[str, Tensor]:
    """One step of the architecture optimizer on the validation loss of the supernet under ``weights()`` (passed
    through the regularizers' transform) plus their penalty and ``extra()``; returns ``arch_loss`` (+ ``arch_penalty``).
    The step of DARTS 1st order, GDAS (sampled weights) and DrNAS (Dirichlet samples, ``extra`` its KL term)."""
    if ctx.optimizer is None:
        raise RuntimeError("this strategy needs an architecture optimizer")
    x, y = ctx.val_batch
    ctx.optimizer.zero_grad()
    loss = ctx.criterion(ctx.supernet(x, ctx.transform(weights())), y)
    terms = [t for t in (ctx.penalty(), extra()) if t is not None]
    penalty = sum(terms[1:], terms[0]) if terms else None
    ctx.backward(loss if penalty is None else loss + penalty)
    ctx.optimizer.step()
    return with_penalty({"arch_loss": loss.detach()}, penalty)


def with_penalty(metrics: dict[str, Tensor], penalty: Tensor | None) -> dict[str, Tensor]:
    """``metrics`` plus ``arch_penalty`` when the regularizers added one."""
    if penalty is not None:
        metrics["arch_penalty"] = penalty.detach()
    return metrics
