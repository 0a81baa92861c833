"""The fused forward of the search cells (DARTS and NAS-Bench-201): the same function as the per-op formulation, with
fewer, larger kernel calls and less memory.

The cell is evaluated source node by source node: the ``T`` edges leaving a node all read the same tensor, so

* ``none`` is skipped (it adds zero; its mixing weight's gradient ``<dL/dy, 0>`` is zero either way);
* pooling, the pooling BatchNorm (batch statistics of the same input are the same) and ``skip_connect`` are
  computed once per source and mixed into all ``T`` targets by one matrix product;
* ReLU is computed once; every separable/dilated candidate runs over the input repeated ``T`` times: one
  depthwise convolution with the ``T`` edges' kernels, one grouped 1x1 convolution, one BatchNorm over the
  ``T`` edges' channels whose per-channel scale is the mixing weight (``w * BN(y)`` without a multiply);
  a ReLU-Conv-BN candidate (NAS-Bench-201's ``nor_conv``) is one dense convolution of the shared ReLU with the
  ``T`` edges' kernels stacked, and the same scaled BatchNorm;
* ``skip_connect`` of stride 2 (``FactorizedReduce``) of all ``T`` edges is one 1x1 convolution;
* tensors are channels-last and depthwise convolutions use ``supernet.fast.dwconv`` (fast CPU backward).

Parameters and buffers stay in the per-op modules (``state_dict`` is that of the reference path) and are read at
every call, so ``torch.func.functional_call`` works. Running statistics are updated as the modules would.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops import NB201_EDGES, DilConv, FactorizedReduce, PoolBN, ReLUConvBN, SepConv, Zero
from ops.topology import darts_node_edges
from supernet.fast.batch_norm import batch_norm_train, check_batch_norms, module_batch_norm, update_running_stats
from supernet.fast.convs import gather_convs, run_convs
from supernet.fast.strides import conv2d
from supernet.weights import CellWeights

CL = torch.channels_last
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)


def op_kind(op: nn.Module) -> str:
    """How the fused cell evaluates a candidate module: ``none``, ``identity``, ``pool``, ``pool_bn``, ``dil``,
    ``sep``, ``reduce`` (FactorizedReduce), ``relu_conv`` (ReLU-Conv-BN, a dense bias-free convolution) or
    ``module`` (any other op: called per edge)."""
    if isinstance(op, Zero):
        return "none"
    if isinstance(op, nn.Identity):
        return "identity"
    if isinstance(op, _POOLS):
        return "pool"
    if isinstance(op, PoolBN) and isinstance(op.pool, _POOLS):
        return "pool_bn"
    if isinstance(op, SepConv):
        return "sep"
    if isinstance(op, DilConv):
        return "dil"
    if isinstance(op, FactorizedReduce):
        return "reduce"
    if isinstance(op, ReLUConvBN) and op.conv.groups == 1 and op.conv.bias is None:
        return "relu_conv"
    return "module"


def preprocess(module: nn.Module, x: Tensor, cpu_kernels: bool) -> Tensor:
    """``module(x)`` for a ``ReLUConvBN`` or ``FactorizedReduce`` cell input, with ``module_batch_norm``."""
    if isinstance(module, ReLUConvBN):
        return module_batch_norm(module.bn, conv2d(module.conv, F.relu(x)), cpu_kernels)
    if isinstance(module, FactorizedReduce):
        r = F.relu(x)
        shifted = F.pad(r[:, :, 1:, 1:], (0, 1, 0, 1))
        return module_batch_norm(module.bn, torch.cat([conv2d(module.conv_1, r), conv2d(module.conv_2, shifted)],
                                                      dim=1), cpu_kernels)
    return module(x)


def channel_shuffle_cl(x: Tensor, groups: int) -> Tensor:
    """``supernet.channel_shuffle`` producing a channels-last tensor."""
    n, c, h, w = x.shape
    phys = x.permute(0, 2, 3, 1).reshape(n, h, w, groups, c // groups).transpose(3, 4)
    return phys.reshape(n, h, w, c).permute(0, 3, 1, 2)


def mix(coef: Tensor, features: Sequence[Tensor]) -> Tensor:
    """``out[t] = sum_s coef[t, s] * features[s]`` as one matrix product; ``[T, N, C, H, W]``, each slice
    channels-last."""
    n, c, h, w = features[0].shape
    phys = torch.stack([f.permute(0, 2, 3, 1) for f in features]).reshape(len(features), -1)
    out = torch.mm(coef.to(phys.dtype), phys)
    return out.view(coef.shape[0], n, h, w, c).permute(0, 1, 4, 2, 3)


def fan_out(x: Tensor, edges: Sequence[nn.Module], coef: Tensor, recompute: bool, cpu_kernels: bool
            ) -> list[list[Tensor]]:
    """The outputs of the ``T`` MixedOps ``edges`` that all read ``x``, weighted by ``coef`` (``[T, num_ops]``):
    per edge a list of tensors whose sum is ``sum_k coef[t, k] * op_k(x)``. ``recompute``: the convolution stages
    keep only their inputs for the backward pass and recompute their convolutions there (``supernet.fast.stage``);
    ``cpu_kernels``: see ``supernet.fast.FusedCells``."""
    count = len(edges)
    terms: list[list[Tensor]] = [[] for _ in range(count)]
    shared: list[Tensor] = []
    shared_cols: list[int] = []
    conv_columns: list[tuple[str, list[nn.Module]]] = []
    conv_cols: list[int] = []
    for k, first in enumerate(edges[0].ops):
        kind = op_kind(first)
        ops = [edge.ops[k] for edge in edges]
        if kind in ("identity", "pool"):
            shared.append(x if kind == "identity" else first(x))
            shared_cols.append(k)
        elif kind == "pool_bn":
            pooled = first.pool(x)
            bns = [op.bn for op in ops]
            eps = check_batch_norms(bns)
            if bns[0].training:
                normed, mean, var = batch_norm_train(pooled, None, eps, bns[0].running_mean.dtype, cpu_kernels)
                update_running_stats(bns, mean, var)
                shared.append(normed)
                shared_cols.append(k)
            else:  # running statistics may differ per edge
                for t, bn in enumerate(bns):
                    terms[t].append(coef[t, k] * bn(pooled))
        elif kind in ("dil", "sep", "reduce", "relu_conv"):
            conv_columns.append((kind, ops))
            conv_cols.append(k)
        elif kind == "module":
            for t, op in enumerate(ops):
                terms[t].append(coef[t, k] * op(x))
    stacked = (_convs(x, conv_columns, [coef[:, k] for k in conv_cols], recompute, cpu_kernels)
               if conv_columns else [])
    for t, part in enumerate(_sum_per_edge(stacked, coef[:, shared_cols], shared, count)):
        terms[t].append(part)
    if not terms[0]:  # only `none` candidates: zeros times the weights, as the reference computes them
        stride = edges[0].stride
        zeros = x[:, :, ::stride, ::stride].mul(0.0)
        for t in range(count):
            terms[t].append(coef[t].sum() * zeros)
    return terms


def _sum_per_edge(stacked: list[Tensor], coef: Tensor, shared: list[Tensor], count: int) -> list[Tensor]:
    """Per edge, the sum of its channels of every ``[N, T * C, H, W]`` tensor in ``stacked`` and of its mix of
    the ``shared`` features; all summed over the whole ``[N, H, W, T, C]`` layout at once, then split by
    ``unbind`` (one gradient copy in the backward pass, not one zero-padded gradient per slice and term)."""
    parts = []
    for y in stacked:
        n, tc, h, w = y.shape
        parts.append(y.permute(0, 2, 3, 1).reshape(n, h, w, count, tc // count))
    if shared:
        parts.append(mix(coef, shared).permute(1, 3, 4, 0, 2))  # [T, N, C, H, W] -> [N, H, W, T, C]
    if not parts:
        return []
    return [part.permute(0, 3, 1, 2) for part in _total(parts).unbind(3)]


def _convs(x: Tensor, columns: list[tuple[str, list[nn.Module]]], coef: list[Tensor], recompute: bool,
           cpu_kernels: bool) -> list[Tensor]:
    """Stacked outputs of the convolutional columns (``supernet.fast.convs``), updating the running statistics."""
    plans, tensors, bns = gather_convs(columns, coef)
    training = bns[0][0].training
    outs, stats = run_convs(F.relu(x), len(columns[0][1]), plans, tensors, check_batch_norms(bns[0]),
                            bns[0][0].running_mean.dtype, None if training else bns,
                            recompute and torch.is_grad_enabled(), cpu_kernels)
    for i, group in enumerate(bns if training else []):
        update_running_stats(group, stats[2 * i], stats[2 * i + 1])
    return outs


def _total(terms: Sequence[Tensor]) -> Tensor:
    """``sum(terms)``, accumulated in place into the first sum (fewer fresh allocations)."""
    if len(terms) == 1:
        return terms[0]
    out = terms[0] + terms[1]
    for term in terms[2:]:
        out.add_(term)
    return out


def fused_cell_forward(cell: Any, s0: Tensor, s1: Tensor, weights: CellWeights, recompute: bool = False,
                       cpu_kernels: bool = True) -> Tensor:
    """Output of a ``DartsSearchCell`` (its modules, ``steps``, ``multiplier``) for mixing weights without
    ``active``; the same function as the cell's per-op forward. ``recompute``, ``cpu_kernels``: see
    ``supernet.fast.FusedCells``."""
    inputs = [preprocess(cell.preprocess0, s0.contiguous(memory_format=CL), cpu_kernels),
              preprocess(cell.preprocess1, s1.contiguous(memory_format=CL), cpu_kernels)]
    node_edges = darts_node_edges(cell.steps)  # intermediate node i is node i + 2; its edge k reads node k
    readers = [[(i + 2, edges[j]) for i, edges in enumerate(node_edges) if len(edges) > j]
               for j in range(cell.steps + 1)]
    states = fused_dag(cell.edges, inputs, readers, weights, recompute, cpu_kernels)
    return torch.cat(states[-cell.multiplier:], dim=1)


def fused_nb201_cell_forward(cell: Any, x: Tensor, weights: CellWeights, recompute: bool = False,
                             cpu_kernels: bool = True) -> Tensor:
    """Output of an ``NB201SearchCell`` (node 3) for mixing weights without ``active``; the same function as the
    cell's per-op forward, returned in ``x``'s memory format (the network's other blocks are left as they are)."""
    fmt = CL if x.is_contiguous(memory_format=CL) and not x.is_contiguous() else torch.contiguous_format
    readers = [[(dst, e) for e, (src, dst) in enumerate(NB201_EDGES) if src == j] for j in range(3)]
    states = fused_dag(cell.edges, [x.contiguous(memory_format=CL)], readers, weights, recompute, cpu_kernels)
    return states[-1].contiguous(memory_format=fmt)


def fused_dag(edges: Sequence[nn.Module], inputs: list[Tensor], readers: Sequence[Sequence[tuple[int, int]]],
              weights: CellWeights, recompute: bool, cpu_kernels: bool) -> list[Tensor]:
    """Every node of a cell DAG: ``inputs`` are its first nodes; each later node sums its incoming edges.
    ``readers[j]``: the ``(node, edge index)`` pairs of the edges leaving node ``j`` (every edge's source precedes
    its node); the edges leaving one node run together (``fan_out``)."""
    coef = weights.ops if weights.edges is None else weights.ops * weights.edges[:, None]
    groups = edges[0].partial_channels
    count = len(inputs) + len({node for pairs in readers for node, _ in pairs} - set(range(len(inputs))))
    states = list(inputs)
    mixed: list[list[Tensor]] = [[] for _ in range(count)]
    bypass: list[list[Tensor]] = [[] for _ in range(count)]
    for j, pairs in enumerate(readers):
        if j >= len(states):
            states.append(_node(mixed[j], bypass[j], groups))
        ids = [e for _, e in pairs]
        fan = [edges[e] for e in ids]
        h = states[j]
        c_op = h.shape[1] // groups
        outs = fan_out(h[:, :c_op] if groups > 1 else h, fan, coef[ids], recompute, cpu_kernels)
        for (node, _), out in zip(pairs, outs):
            mixed[node].extend(out)
        if groups > 1:
            rest = h[:, c_op:]
            if fan[0].bypass_pool is not None:
                rest = fan[0].bypass_pool(rest)
            for node, e in pairs:
                bypass[node].append(rest if weights.edges is None else weights.edges[e] * rest)
    states.extend(_node(mixed[j], bypass[j], groups) for j in range(len(states), count))
    return states


def _node(mixed: Sequence[Tensor], bypass: Sequence[Tensor], groups: int) -> Tensor:
    if groups == 1:
        return _total(mixed)
    return channel_shuffle_cl(torch.cat([_total(mixed), _total(bypass)], dim=1), groups)
