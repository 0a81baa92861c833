"""The convolutional candidates of ``T`` edges that read the same tensor, as one pure function of tensors.

``gather_convs`` collects, from the edges' modules, the stacked parameters of every ``DilConv``, ``SepConv``,
``FactorizedReduce`` and ``ReLUConvBN`` candidate (read at every call, so ``torch.func.functional_call`` works);
``run_convs`` evaluates them all from ``relu(x)``. The ``T`` edges' ``ReLUConvBN`` kernels of one candidate are one
dense convolution of the shared ``relu(x)`` with their weights stacked along the output channels (no input copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops import DilConv
from supernet.fast.dwconv import depthwise_conv2d
from supernet.fast.batch_norm import batch_norm_eval, batch_norm_train, check_batch_norms
from supernet.fast.stage import conv_stage, dense_conv_stage


@dataclass(frozen=True)
class Stage:
    """One ``DilConv`` body: depthwise (stride, padding, dilation), grouped 1x1, BatchNorm (scaled if last)."""

    stride: int
    padding: int
    dilation: int


@dataclass(frozen=True)
class ConvKind:
    """A candidate op column: ``dil`` (one stage), ``sep`` (two stages, ReLU between), ``reduce`` or ``relu_conv``
    (one dense convolution; its stage holds the convolution's stride, padding and dilation)."""

    kind: str
    stages: tuple[Stage, ...] = ()


def _stage(dilconv: DilConv) -> Stage:
    dw, pw = dilconv.depthwise, dilconv.pointwise
    if pw.kernel_size != (1, 1) or pw.stride != (1, 1) or pw.groups != 1:
        raise ValueError("fused DilConv expects a dense 1x1 pointwise convolution")
    return Stage(dw.stride[0], dw.padding[0], dw.dilation[0])


def gather_convs(columns: Sequence[tuple[str, Sequence[nn.Module]]], coef: Sequence[Tensor]
                 ) -> tuple[list[ConvKind], list[Tensor], list[list[nn.BatchNorm2d]]]:
    """For each ``(kind, ops of the T edges)`` column with mixing weights ``coef[i]`` (``[T]``): its plan, and
    (flat) the stacked parameters and per-channel output scales; plus the BatchNorm modules of every
    normalization, in evaluation order."""
    plans: list[ConvKind] = []
    tensors: list[Tensor] = []
    bns: list[list[nn.BatchNorm2d]] = []
    for (kind, ops), weight in zip(columns, coef):
        if kind == "reduce":
            blocks = []
            for op in ops:
                w1, w2 = op.conv_1.weight, op.conv_2.weight
                zero = w1.new_zeros(w1.shape)
                blocks += [torch.cat([w1, zero], 1), torch.cat([zero, w2], 1)]
            plans.append(ConvKind("reduce"))
            tensors += [torch.cat(blocks), weight.repeat_interleave(ops[0].bn.num_features)]
            bns.append([op.bn for op in ops])
            continue
        if kind == "relu_conv":
            conv = ops[0].conv
            plans.append(ConvKind(kind, (Stage(conv.stride[0], conv.padding[0], conv.dilation[0]),)))
            tensors += [torch.cat([op.conv.weight for op in ops]), weight.repeat_interleave(conv.out_channels)]
            bns.append([op.bn for op in ops])
            continue
        bodies = [[op] if kind == "dil" else list(op.stages) for op in ops]  # the DilConvs of each edge's op
        plans.append(ConvKind(kind, tuple(_stage(body) for body in bodies[0])))
        for s in range(len(bodies[0])):
            tensors += [torch.cat([b[s].depthwise.weight for b in bodies]),
                        torch.cat([b[s].pointwise.weight for b in bodies])]
            bns.append([b[s].bn for b in bodies])
        tensors.append(weight.repeat_interleave(bodies[0][-1].pointwise.out_channels))
    for group in bns:
        check_batch_norms(group)
    return plans, tensors, bns


def run_convs(relu_x: Tensor, count: int, plans: Sequence[ConvKind], tensors: Sequence[Tensor], eps: float,
              stats_dtype: torch.dtype, eval_bns: Sequence[Sequence[nn.BatchNorm2d]] | None, recompute: bool,
              cpu_kernels: bool) -> tuple[list[Tensor], list[Tensor]]:
    """Outputs (one ``[N, T * C, H', W']`` tensor per plan, edge-major channels, already scaled by the mixing
    weights), and in training mode the batch mean and variance of every normalization (in ``gather`` order).
    ``eval_bns``: the modules whose running statistics to use (eval mode), or None (training mode).
    ``recompute``: convolution stages keep only their input for the backward pass (``supernet.fast.stage``);
    ``cpu_kernels``: this package's CPU kernels (``batch_norm``, ``dwconv``)."""
    outs: list[Tensor] = []
    stats: list[Tensor] = []
    flat = iter(tensors)
    groups = iter(eval_bns) if eval_bns is not None else None

    def norm(y: Tensor, scale: Tensor | None) -> Tensor:
        if groups is not None:
            return batch_norm_eval(y, next(groups), scale)
        y, mean, var = batch_norm_train(y, scale, eps, stats_dtype, cpu_kernels)
        stats.extend((mean, var))
        return y

    repeated = None
    for plan in plans:
        if plan.kind == "reduce":
            weight, scale = next(flat), next(flat)
            shifted = F.pad(relu_x[:, :, 1:, 1:], (0, 1, 0, 1))
            both = torch.cat([relu_x[:, :, ::2, ::2], shifted[:, :, ::2, ::2]], 1)
            outs.append(norm(F.conv2d(both, weight), scale))
            continue
        if plan.kind == "relu_conv":
            weight, scale = next(flat), next(flat)
            stage = plan.stages[0]
            if recompute and groups is None and weight.shape[-1] == 1:
                y, mean, var = dense_conv_stage(relu_x, weight, scale, stage.stride, stage.padding, stage.dilation,
                                                eps, stats_dtype, cpu_kernels)
                stats.extend((mean, var))
                outs.append(y)
            else:
                outs.append(norm(F.conv2d(relu_x, weight, None, stage.stride, stage.padding, stage.dilation), scale))
            continue
        if repeated is None:
            repeated = _repeat_channels(relu_x, count)
        y = repeated
        weights = [(next(flat), next(flat)) for _ in plan.stages]
        scale = next(flat)
        for s, (stage, (dw, pw)) in enumerate(zip(plan.stages, weights)):
            y = F.relu(y) if s else y
            stage_scale = scale if s == len(plan.stages) - 1 else None
            if recompute and groups is None:
                y, mean, var = conv_stage(y, dw, pw, stage_scale, stage.stride, stage.padding, stage.dilation, count,
                                           eps, stats_dtype, cpu_kernels)
                stats.extend((mean, var))
            else:
                y = depthwise_conv2d(y, dw, stage.stride, stage.padding, stage.dilation, cpu_kernels)
                y = norm(F.conv2d(y, pw, None, 1, 0, 1, count), stage_scale)
        outs.append(y)
    return outs, stats


def _repeat_channels(x: Tensor, times: int) -> Tensor:
    """``cat([x] * times, dim=1)`` as a channels-last tensor."""
    n, c, h, w = x.shape
    phys = x.permute(0, 2, 3, 1).unsqueeze(3).expand(n, h, w, times, c)
    return phys.reshape(n, h, w, times * c).permute(0, 3, 1, 2)
