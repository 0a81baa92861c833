"""Depthwise convolution with a faster CPU backward pass.

oneDNN's CPU backward kernels for depthwise convolutions are fast only without dilation: dilated ones fall back to
a generic grouped kernel 5-20x slower than the forward pass (so do 5x5 weight gradients; splitting them into 3x3
blocks measured no faster). ``depthwise_conv2d`` computes the same values and gradients from fast kernels (best
on channels-last tensors):

* stride 2 with dilation 2 reads only the even pixel phase of the input: an undilated stride-1 convolution of it;
* input gradient (stride 1): a forward depthwise convolution of the output gradient with the flipped kernel;
* weight gradient with dilation 2: the four pixel phases of the input, stacked along the batch, convolved with
  an undilated kernel.

Everything is built from differentiable operations, so double backward works. On other devices, or for shapes
these identities do not cover, it is plain ``F.conv2d``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from supernet.fast.strides import match_strides

_cbw = torch.ops.aten.convolution_backward

class DwConf(NamedTuple):
    """How ``depthwise_conv2d`` evaluates a convolution: ``fast`` (the identities above apply) and, if ``even``,
    as an undilated stride-1 convolution (``stride``, ``padding``, ``dilation``) of the even pixel phase."""

    stride: int
    padding: int
    dilation: int
    even: bool
    fast: bool


def dw_conf(x: Tensor, weight: Tensor, stride: int, padding: int, dilation: int, cpu_kernels: bool) -> DwConf:
    """The evaluation plan of a depthwise convolution of ``x`` by ``weight``; ``cpu_kernels`` False: PyTorch's own
    kernels everywhere (as on other devices), the identities above on the CPU otherwise."""
    k = weight.shape[-1]
    fast = (cpu_kernels and x.device.type == "cpu" and weight.shape[-2] == k and k % 2 == 1 and stride in (1, 2)
            and dilation in (1, 2) and (k - 1) * dilation >= padding)
    if fast and stride == 2 and dilation == 2 and padding % 2 == 0:
        # only the even pixel phase is read, by an undilated kernel: out[i] = sum_j x[2 (i + j) - padding] w[j]
        return DwConf(1, padding // 2, 1, True, True)
    return DwConf(stride, padding, dilation, False, fast)


def dw_forward(x: Tensor, weight: Tensor, conf: DwConf) -> Tensor:
    """The convolution's output."""
    if conf.even:
        x = _even_phase(x)
    return F.conv2d(x, weight, None, conf.stride, conf.padding, conf.dilation, x.shape[1])


def dw_backward(grad: Tensor, x: Tensor, weight: Tensor, conf: DwConf, needs: tuple[bool, bool]
                ) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of the input and of the weight (``None`` where ``needs`` is False); differentiable. Computed in
    ``grad``'s dtype (the forward pass's, also under autocast)."""
    c, (stride, padding, dilation) = x.shape[1], conf[:3]
    x, weight = x.to(grad.dtype), weight.to(grad.dtype)
    if not conf.fast:
        grad = grad.contiguous(memory_format=_format(x))
        gx, gw, _ = _cbw(grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], c,
                         [needs[0], needs[1], False])
        return gx, gw
    x_full = x
    if conf.even:
        x = _even_phase(x)
    grad = grad.contiguous(memory_format=_format(x))
    gx = gw = None
    if needs[0]:
        gx = _input_grad(grad, x, weight, stride, padding, dilation)
        if conf.even:
            full = gx.new_zeros(x_full.shape).contiguous(memory_format=_format(x_full))
            full[:, :, ::2, ::2] = gx
            gx = full
    if needs[1]:
        gw = _weight_grad(grad, x, weight, stride, padding, dilation)
    return gx, gw


def depthwise_conv2d(x: Tensor, weight: Tensor, stride: int = 1, padding: int = 0, dilation: int = 1,
                     cpu_kernels: bool = True) -> Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation, groups=channels)``."""
    conf = dw_conf(x, weight, stride, padding, dilation, cpu_kernels)
    if not conf.fast:
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])
    return _DepthwiseConv.apply(x, weight, conf)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, conf: DwConf) -> Tensor:
        ctx.conf = conf
        ctx.save_for_backward(x, weight)  # the input itself (not its phase) keeps double backward connected
        return dw_forward(x, weight, conf)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        gx, gw = dw_backward(grad, x, weight, ctx.conf, tuple(ctx.needs_input_grad[:2]))
        return gx, match_strides(gw, weight), None


def _even_phase(x: Tensor) -> Tensor:
    return x[:, :, ::2, ::2].contiguous(memory_format=_format(x))


def _format(x: Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format


def _input_grad(grad: Tensor, x: Tensor, weight: Tensor, stride: int, padding: int, dilation: int) -> Tensor:
    c, k = x.shape[1], weight.shape[-1]
    if stride == 1:
        # d x[i] = sum_j grad[i + padding - j * dilation] * weight[j]: a correlation with the flipped kernel
        full = (k - 1) * dilation - padding
        return F.conv2d(grad, weight.flip(-1, -2), None, 1, full, dilation, c)
    return _cbw(grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], c,
                [True, False, False])[0]


def _weight_grad(grad: Tensor, x: Tensor, weight: Tensor, stride: int, padding: int, dilation: int) -> Tensor:
    c = x.shape[1]
    sizes = (*x.shape[-2:], *grad.shape[-2:], padding)
    if dilation == 1 or stride != 1 or any(s % 2 for s in sizes):
        return _cbw(grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], c,
                    [False, True, False])[1]
    # dilation 2: each of the four pixel phases of the input is an undilated convolution with the same kernel
    fmt = _format(x)
    phases = [(a, b) for a in (0, 1) for b in (0, 1)]
    x = torch.cat([x[:, :, a::2, b::2] for a, b in phases]).contiguous(memory_format=fmt)
    grad = torch.cat([grad[:, :, a::2, b::2] for a, b in phases]).contiguous(memory_format=fmt)
    return _cbw(grad, x, weight, None, [1, 1], [padding // 2] * 2, [1, 1], False, [0, 0], c, [False, True, False])[1]
