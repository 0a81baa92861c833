"""Parameter gradients with the parameter's exact strides.

Convolution backward kernels on channels-last tensors return weight gradients whose size-1 dimensions carry
channels-last strides (``[C, 1, k, k]`` with strides ``(k*k, 1, k, 1)``). Autograd accepts them, since the memory
layout is the parameter's, but DDP compares strides exactly and warns that the gradient does not match its
bucket. The fused supernet therefore hands every weight gradient back with the parameter's strides.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def match_strides(grad: Tensor | None, like: Tensor) -> Tensor | None:
    """``grad`` viewed with the strides of ``like`` when both have one memory layout and differ only in the strides
    of size-1 dimensions, else ``grad`` unchanged."""
    if grad is None or grad.stride() == like.stride():
        return grad
    for fmt in (torch.contiguous_format, torch.channels_last):
        if grad.is_contiguous(memory_format=fmt) and like.is_contiguous(memory_format=fmt):
            return grad.as_strided(like.shape, like.stride())
    return grad


class _SameStridesGrad(torch.autograd.Function):
    """Identity whose backward pass gives the gradient its input's strides (differentiable)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor) -> Tensor:
        ctx.save_for_backward(weight)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (weight,) = ctx.saved_tensors
        return match_strides(grad, weight)


def conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)``; the weight gradient has the weight's strides also for channels-last ``x``."""
    return F.conv2d(x, _SameStridesGrad.apply(conv.weight), conv.bias, conv.stride, conv.padding, conv.dilation,
                    conv.groups)
