"""One convolution stage in training mode that keeps only its input for the backward pass: a ``DilConv`` body
(depthwise conv, grouped 1x1 conv, BatchNorm, optionally scaled; ``conv_stage``) or a dense convolution and
BatchNorm (the conv and BN of ReLU-Conv-BN candidates; ``dense_conv_stage``).

The convolution outputs are recomputed in the backward pass (two forward convolutions, or one); the BatchNorm
statistics are not (the forward pass's mean and inverse standard deviation are kept), unlike
``torch.utils.checkpoint``, which also recomputes the statistics, the input repeat and the ReLUs (measured on a
1st-order DARTS step: +20 % time with ``checkpoint``, +15 % with this). The backward pass is built from
differentiable operations, so double backward works.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from supernet.fast.dwconv import DwConf, dw_backward, dw_conf, dw_forward
from supernet.fast.strides import match_strides
from supernet.fast.batch_norm import batch_statistics, unbiased

_cbw = torch.ops.aten.convolution_backward


def conv_stage(x: Tensor, dw_weight: Tensor, pw_weight: Tensor, scale: Tensor | None, stride: int, padding: int,
               dilation: int, groups: int, eps: float, stats_dtype: torch.dtype, cpu_kernels: bool
               ) -> tuple[Tensor, Tensor, Tensor]:
    """``BN(conv1x1(dwconv(x), groups) * scale`` with batch statistics, and the batch mean and unbiased variance
    (for the running statistics). Keeps only ``x`` (and per-channel statistics) for the backward pass."""
    conf = dw_conf(x, dw_weight, stride, padding, dilation, cpu_kernels)
    return _ConvStage.apply(x, dw_weight, pw_weight, scale, conf, groups, eps, stats_dtype, cpu_kernels)


def dense_conv_stage(x: Tensor, weight: Tensor, scale: Tensor | None, stride: int, padding: int, dilation: int,
                     eps: float, stats_dtype: torch.dtype, cpu_kernels: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``BN(conv(x, weight)) * scale`` with batch statistics (a bias-free dense convolution), and the batch mean and
    unbiased variance. Keeps only ``x`` (and per-channel statistics) for the backward pass."""
    conf = DenseConf(stride, padding, dilation)
    return _ConvStage.apply(x, weight, None, scale, conf, 1, eps, stats_dtype, cpu_kernels)


class DenseConf(NamedTuple):
    """A dense convolution's stride, padding and dilation."""

    stride: int
    padding: int
    dilation: int


def _autocast_state(device: str) -> tuple[bool, torch.dtype]:
    """Whether autocast is on for ``device``, and its dtype (replayed when the backward pass recomputes)."""
    return torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)


def _convs(x: Tensor, dw_weight: Tensor, pw_weight: Tensor | None, conf: DwConf | DenseConf, groups: int
           ) -> tuple[Tensor, Tensor]:
    """The stage's intermediate and final convolution outputs (for a dense stage: its input and its output)."""
    if isinstance(conf, DenseConf):
        return x, F.conv2d(x, dw_weight.to(x.dtype), None, conf.stride, conf.padding, conf.dilation)
    depthwise = dw_forward(x, dw_weight.to(x.dtype), conf)
    return depthwise, F.conv2d(depthwise, pw_weight.to(depthwise.dtype), None, 1, 0, 1, groups)


class _ConvStage(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, dw_weight: Tensor, pw_weight: Tensor | None, scale: Tensor | None,
                conf: DwConf | DenseConf,
                groups: int, eps: float, stats_dtype: torch.dtype, cpu_kernels: bool) -> tuple[Tensor, Tensor, Tensor]:
        ctx.autocast = _autocast_state(x.device.type)
        _, pointwise = _convs(x, dw_weight, pw_weight, conf, groups)
        mean, var = batch_statistics(pointwise, cpu_kernels)
        out = F.batch_norm(pointwise, mean, var, scale, None, False, 0.0, eps)  # normalization only
        ctx.save_for_backward(x, dw_weight, pw_weight, scale, mean, (var + eps).rsqrt())
        mean, var = mean.to(stats_dtype), unbiased(var, pointwise).to(stats_dtype)
        ctx.conf = (conf, groups, eps)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _mean: Tensor, _var: Tensor) -> tuple[Tensor | None, ...]:
        x, dw_weight, pw_weight, scale, save_mean, save_invstd = ctx.saved_tensors
        conf, groups, eps = ctx.conf
        enabled, dtype = ctx.autocast
        with torch.autocast(x.device.type, dtype=dtype, enabled=enabled):
            depthwise, pointwise = _convs(x, dw_weight, pw_weight, conf, groups)
        fmt = torch.channels_last if pointwise.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        grad = grad.to(pointwise.dtype).contiguous(memory_format=fmt)
        needs = ctx.needs_input_grad
        g_pw, g_scale, _ = torch.ops.aten.native_batch_norm_backward(
            grad, pointwise, scale, None, None, save_mean, save_invstd, True, eps,
            [True, scale is not None and needs[3], False])
        if isinstance(conf, DenseConf):
            g_x, g_weight, _ = _cbw(g_pw, x, dw_weight.to(x.dtype), None, [conf.stride] * 2, [conf.padding] * 2,
                                    [conf.dilation] * 2, False, [0, 0], 1, [needs[0], needs[1], False])
            return g_x, match_strides(g_weight, dw_weight), None, g_scale, None, None, None, None, None
        g_dw, g_pw_weight, _ = _cbw(g_pw, depthwise, pw_weight.to(depthwise.dtype), None, [1, 1], [0, 0], [1, 1],
                                    False, [0, 0], groups, [needs[0] or needs[1], needs[2], False])
        g_x, g_dw_weight = (dw_backward(g_dw, x, dw_weight.to(x.dtype), conf, (needs[0], needs[1]))
                            if needs[0] or needs[1] else (None, None))
        return (g_x, match_strides(g_dw_weight, dw_weight), match_strides(g_pw_weight, pw_weight), g_scale, None,
                None, None, None, None)
