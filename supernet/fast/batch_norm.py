"""BatchNorm over the concatenated channels of several affine-free ``BatchNorm2d`` modules, in one kernel call.

Per-channel statistics do not depend on the other channels, so normalizing ``cat(x_1, ..., x_n)`` at once is the
same as normalizing each ``x_i`` with its own module. In training mode the batch statistics are returned so
that the caller updates the modules' running statistics (``update_running_stats``) exactly once. On the CPU the
statistics come from ``batch_statistics`` (PyTorch's channels-last kernel is not accurate enough) unless
``cpu_kernels`` is False (then PyTorch's own kernels run, as on other devices).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_batch_norms(bns: Sequence[nn.BatchNorm2d]) -> float:
    """The common ``eps`` of affine-free modules with running statistics and one float momentum."""
    first = bns[0]
    if first.momentum is None or not first.track_running_stats:
        raise ValueError("fused BatchNorm needs modules with a float momentum and running statistics")
    if any(b.momentum != first.momentum or b.eps != first.eps or b.affine or b.training != first.training
           for b in bns):
        raise ValueError("fused BatchNorm needs affine-free modules with one momentum, eps and mode")
    return float(first.eps)


def batch_statistics(x: Tensor, cpu_kernels: bool = True) -> tuple[Tensor, Tensor]:
    """Per-channel batch mean and (biased) variance of ``x``.

    On the CPU, PyTorch's channels-last BatchNorm accumulates the statistics in one float sum per channel, ~30x
    less accurate than its NCHW kernel (relative error 2e-5 for mean/std = 30); here the rows are summed in
    ``_BLOCKS`` interleaved partial sums that are combined exactly (as accurate as NCHW, as fast); ``cpu_kernels``
    False: PyTorch's kernel everywhere."""
    n, c, h, w = x.shape
    count = n * h * w
    dtype = torch.promote_types(x.dtype, torch.float32)  # float statistics for low-precision inputs
    if _cpu(x, cpu_kernels) and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        blocks = math.gcd(count, _BLOCKS)
        rows = x.permute(0, 2, 3, 1).reshape(count // blocks, blocks * c)[:, :, None, None]
        means, variances = torch.ops.aten.batch_norm_update_stats(rows, None, None, 1.0)
        means, variances = means.to(dtype).view(blocks, c), variances.to(dtype).view(blocks, c)
        return means.mean(0), variances.mean(0) + means.var(0, correction=0)
    mean, var = torch.ops.aten.batch_norm_update_stats(x, None, None, 1.0)
    return mean.to(dtype), var.to(dtype)


_BLOCKS = 64

def _cpu(x: Tensor, cpu_kernels: bool) -> bool:
    """Whether the CPU kernels of this package apply to ``x``."""
    return cpu_kernels and x.device.type == "cpu"


def unbiased(var: Tensor, x: Tensor) -> Tensor:
    """The unbiased variance (what running statistics average) from the biased batch variance of ``x``."""
    count = x.numel() // x.shape[1]
    return var * (count / max(count - 1, 1))


class _BatchNormTrain(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
                ) -> tuple[Tensor, Tensor, Tensor]:
        mean, var = batch_statistics(x, cpu_kernels=True)
        ctx.save_for_backward(x, weight, mean, (var + eps).rsqrt())
        ctx.eps, ctx.has_bias = eps, bias is not None
        out = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)  # normalization only
        var = unbiased(var, x)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _mean: Tensor, _var: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        needs = ctx.needs_input_grad
        g_x, g_weight, g_bias = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(memory_format=fmt), x, weight, None, None, mean, invstd, True, ctx.eps,
            [needs[0], weight is not None and needs[1], ctx.has_bias and needs[2]])
        return g_x, g_weight, g_bias, None


def batch_norm_train(x: Tensor, scale: Tensor | None, eps: float, stats_dtype: torch.dtype, cpu_kernels: bool
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Training-mode ``BN(x) * scale``; also returns the batch mean and the unbiased batch variance."""
    if _cpu(x, cpu_kernels):
        out, mean, var = _BatchNormTrain.apply(x, scale, None, eps)
        return out, mean.to(stats_dtype), var.to(stats_dtype)
    mean = torch.zeros(x.shape[1], dtype=stats_dtype, device=x.device)
    var = torch.ones(x.shape[1], dtype=stats_dtype, device=x.device)
    out = F.batch_norm(x, mean, var, scale, None, True, 1.0, eps)  # momentum 1: running := batch statistics
    return out, mean, var


def batch_norm_eval(x: Tensor, bns: Sequence[nn.BatchNorm2d], scale: Tensor | None) -> Tensor:
    """Eval-mode ``BN(x) * scale`` with each module's running statistics on its channels."""
    mean = torch.cat([b.running_mean for b in bns])
    var = torch.cat([b.running_var for b in bns])
    return F.batch_norm(x, mean, var, scale, None, False, 0.0, check_batch_norms(bns))


def update_running_stats(bns: Sequence[nn.BatchNorm2d], mean: Tensor, var: Tensor) -> None:
    """What ``BatchNorm2d.forward`` does after a training batch: ``running = (1 - m) * running + m * batch`` and
    ``num_batches_tracked += 1``. ``mean``/``var`` cover the modules' channels in order, or one module's channels
    (then every module gets the same statistics)."""
    momentum = float(bns[0].momentum)
    means = [b.running_mean for b in bns]
    variances = [b.running_var for b in bns]
    if mean.numel() == means[0].numel():
        batch_means, batch_vars = [mean] * len(bns), [var] * len(bns)
    else:
        batch_means, batch_vars = list(mean.split(means[0].numel())), list(var.split(means[0].numel()))
    with torch.no_grad():
        torch._foreach_mul_(means, 1.0 - momentum)
        torch._foreach_add_(means, batch_means, alpha=momentum)
        torch._foreach_mul_(variances, 1.0 - momentum)
        torch._foreach_add_(variances, batch_vars, alpha=momentum)
        torch._foreach_add_([b.num_batches_tracked for b in bns], 1)


def module_batch_norm(bn: nn.BatchNorm2d, x: Tensor, cpu_kernels: bool) -> Tensor:
    """``bn(x)``, with the accurate statistics of ``batch_statistics`` in training mode on the CPU."""
    if not (bn.training and _cpu(x, cpu_kernels) and bn.track_running_stats and bn.momentum is not None):
        return bn(x)
    out, mean, var = _BatchNormTrain.apply(x, bn.weight, bn.bias, bn.eps)
    update_running_stats([bn], mean.to(bn.running_mean.dtype), var.to(bn.running_var.dtype))
    return out
