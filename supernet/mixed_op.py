"""``MixedOp``: one supernet edge, a weighted sum of all candidate ops (DARTS) with the PC-DARTS
partial-channel variant and a single-op path for sampling strategies."""
from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from ops import PoolBN, create_op


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave ``groups`` equal channel groups: channel ``g * c + i`` moves to ``i * groups + g``."""
    return rearrange(x, "n (g c) h w -> n (c g) h w", g=groups)


class MixedOp(nn.Module):
    """All candidate ops of one edge, built with ``affine=False``.

    Pooling ops are followed by an affine-free BatchNorm as in DARTS (``pool_bn=False`` leaves them bare,
    as the NAS-Bench-201 supernet does). With ``partial_channels=K > 1`` (PC-DARTS) only the first
    ``channels / K`` channels pass through the ops; the rest bypass them (max-pooled 2x2 when
    ``stride == 2``), and the two parts are concatenated and channel-shuffled with ``K`` groups.
    """

    def __init__(self, channels: int, stride: int, candidates: Sequence[str], partial_channels: int = 1,
                 pool_bn: bool = True) -> None:
        super().__init__()
        if partial_channels < 1:
            raise ValueError(f"partial_channels must be >= 1, got {partial_channels}")
        if channels % partial_channels:
            raise ValueError(f"channels={channels} is not divisible by partial_channels={partial_channels}")
        if not candidates:
            raise ValueError("MixedOp needs at least one candidate op")
        self.candidates = tuple(candidates)
        self.stride = stride
        self.partial_channels = partial_channels
        c_op = channels // partial_channels
        built = []
        for name in self.candidates:
            op = create_op(name, c_op, stride, affine=False)
            if pool_bn and "pool" in name:
                op = PoolBN(op, c_op)
            built.append(op)
        self.ops = nn.ModuleList(built)
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if partial_channels > 1 and stride == 2 else None

    def forward(self, x: Tensor, weights: Tensor, active: int | None = None, add_inactive: bool = False) -> Tensor:
        """``sum_i weights[i] * op_i(x)``, or ``weights[active] * op_active(x)`` when ``active`` is given, plus
        ``sum_{i != active} weights[i]`` (broadcast) with ``add_inactive``."""
        if weights.shape != (len(self.ops),):
            raise ValueError(f"MixedOp expects weights of shape ({len(self.ops)},), got {tuple(weights.shape)}")
        k = self.partial_channels
        if k == 1:
            return self._mix(x, weights, active, add_inactive)
        c_op = x.shape[1] // k
        mixed = self._mix(x[:, :c_op], weights, active, add_inactive)
        bypass = x[:, c_op:]
        if self.bypass_pool is not None:
            bypass = self.bypass_pool(bypass)
        return channel_shuffle(torch.cat([mixed, bypass], dim=1), k)

    def _mix(self, x: Tensor, weights: Tensor, active: int | None, add_inactive: bool) -> Tensor:
        if active is not None:
            index = int(active)
            out = weights[index] * self.ops[index](x)
            if add_inactive:
                out = out + torch.cat([weights[:index], weights[index + 1:]]).sum()
            return out
        return sum(w * op(x) for w, op in zip(weights, self.ops))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, partial_channels={self.partial_channels}"
