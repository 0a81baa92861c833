"""Drop-path (stochastic depth) and the auxiliary classifier heads shared by the DARTS networks.

``drop_path`` / ``DropPath`` are timm's: per sample, keep the whole path with probability ``1 - p`` and divide
the kept ones by ``1 - p`` -- exactly the DARTS ``drop_path`` (identity when not training or ``p == 0``).
"""
from __future__ import annotations

import torch
from timm.layers import DropPath, drop_path
from torch import nn
from torch.nn import functional as F

__all__ = ["AuxiliaryHead", "DropPath", "drop_path"]


class AuxiliaryHead(nn.Module):
    """DARTS auxiliary classifier: ReLU -> AvgPool(5, stride) -> 1x1 conv 128 -> BN -> ReLU -> 2x2 conv 768 -> ... -> linear.

    ``stride=3`` with BN after the 768-channel conv is the CIFAR head (made for 8x8 maps), ``stride=2``
    without that BN the ImageNet head (14x14 maps; DARTS omits that BN, "for consistency with the paper").
    Maps too small for the 5x5 pooling are pooled adaptively to 2x2 instead, and a final global average
    makes the head accept any map size; at the reference sizes both are no-ops.
    """

    def __init__(self, channels: int, num_classes: int, stride: int = 3, bn_after_conv: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.pre = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
        layers: list[nn.Module] = [nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
                                   nn.Conv2d(128, 768, 2, bias=False)]
        if bn_after_conv:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Auxiliary logits ``(N, num_classes)`` from a feature map ``(N, C, H, W)``."""
        x = self.pre(x)
        if min(x.shape[-2], x.shape[-1]) >= 5 + self.stride:  # the pooled map is at least 2x2
            x = self.pool(x)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def check_images(x: torch.Tensor, in_channels: int, owner: str) -> None:
    """Raise one line naming the expected shape if ``x`` is not a batch ``[N, in_channels, H, W]``."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{owner} expects images of shape [N, {in_channels}, H, W], got {list(x.shape)}")
