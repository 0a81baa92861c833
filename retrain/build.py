"""``build_network``: a genotype (object, JSON path, zoo name or text) to a plain ``nn.Module``; size counters."""
from __future__ import annotations

import os
from typing import Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ops import DartsGenotype, Genotype, NB201Genotype
from retrain.darts_net import DartsNetworkCIFAR, DartsNetworkImageNet
from retrain.nb201_net import NB201Network

Kind = Literal["cifar", "imagenet", "nb201"]
KINDS: tuple[str, ...] = ("cifar", "imagenet", "nb201")
DEFAULT_SIZES: dict[str, tuple[int, int]] = {"cifar": (36, 20), "imagenet": (48, 14), "nb201": (16, 5)}
"""Per network kind, the published ``(channels, layers)``; for ``nb201`` layers are cells per stage."""
MIN_IMAGENET_SIZE = 64
"""Smallest input side the ImageNet network accepts (it down-samples 32x before the last stage)."""


def resolve_genotype(genotype: Genotype | str | os.PathLike) -> Genotype:
    """A ``Genotype`` as is; otherwise ``Genotype.resolve`` (JSON path, zoo name or genotype text)."""
    if isinstance(genotype, Genotype):
        return genotype
    if not isinstance(genotype, (str, os.PathLike)):
        raise TypeError(f"genotype must be a Genotype, a JSON path, a zoo name or genotype text, got {type(genotype).__name__}")
    return Genotype.resolve(genotype)


def build_network(genotype: Genotype | str | os.PathLike, num_classes: int = 10, channels: int | None = None,
                  layers: int | None = None, auxiliary: bool = False, drop_path_prob: float = 0.0,
                  kind: Kind = "cifar", in_channels: int = 3) -> nn.Module:
    """Build the standalone network of a found cell.

    Args:
        genotype: a ``Genotype``, a ``genotype.json`` path, a zoo name (``DARTS_V2``) or genotype text.
        num_classes: classifier outputs (>= 2).
        channels: initial channels ``C``; ``None`` = the published value (CIFAR 36, ImageNet 48, NB201 16).
        layers: number of cells (>= 3); for NB201 cells per stage. ``None`` = published (20, 14, 5).
        auxiliary: add the DARTS auxiliary head after cell ``2 * layers // 3`` (DARTS networks only).
        drop_path_prob: initial drop-path probability (``net.drop_path_prob`` may be changed later).
        kind: ``cifar`` / ``imagenet`` build the DARTS network of a ``DartsGenotype`` (an ``NB201Genotype``
            with ``cifar`` builds the NB201 network); ``nb201`` requires an ``NB201Genotype``.
        in_channels: image channels (1 for grey-scale).

    Returns:
        A plain ``nn.Module`` mapping ``(N, in_channels, H, W)`` to logits, or to ``(logits, aux_logits)`` in
        training mode with ``auxiliary``. It has a float attribute ``drop_path_prob``.

    Raises:
        ValueError / FileNotFoundError: one-line messages naming the bad argument and what is allowed.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    geno = resolve_genotype(genotype)
    if isinstance(geno, NB201Genotype) and kind == "cifar":
        kind = "nb201"
    expected = NB201Genotype if kind == "nb201" else DartsGenotype
    if not isinstance(geno, expected):
        raise ValueError(f"the {kind} network needs a genotype of the {expected.space!r} space, got one of the "
                         f"{geno.space!r} space ({'kind nb201' if geno.space == 'nb201' else 'kind cifar or imagenet'} "
                         "builds it)")
    c_default, l_default = DEFAULT_SIZES[kind]
    channels = c_default if channels is None else channels
    layers = l_default if layers is None else layers
    _check_int("num_classes", num_classes, 2)
    _check_int("in_channels", in_channels, 1)
    _check_int("channels", channels, 2 if kind == "imagenet" else 1)
    if kind == "imagenet" and channels % 2:
        raise ValueError(f"channels must be even for the imagenet network (its stem halves it), got {channels}")
    _check_int("layers (cells per stage)" if kind == "nb201" else "layers", layers, 1 if kind == "nb201" else 3)
    if not 0.0 <= drop_path_prob < 1.0:
        raise ValueError(f"drop_path_prob must be in [0, 1), got {drop_path_prob}")
    net: nn.Module
    if kind == "nb201":
        if auxiliary:
            raise ValueError("auxiliary head: the NB201 network has none (use auxiliary=False)")
        net = NB201Network(geno, channels, layers, num_classes, in_channels)
    else:
        cls = DartsNetworkCIFAR if kind == "cifar" else DartsNetworkImageNet
        net = cls(geno, channels, num_classes, layers, auxiliary, in_channels)
    net.drop_path_prob = float(drop_path_prob)
    return net


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def count_parameters(net: nn.Module, include_auxiliary: bool = False) -> int:
    """Number of parameters of ``net``; the auxiliary head is left out unless ``include_auxiliary``."""
    return sum(p.numel() for name, p in net.named_parameters()
               if include_auxiliary or not name.startswith("auxiliary_head."))


def count_macs(net: nn.Module, image_size: int | tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-adds of one image's inference (convolutions and linear layers, as NAS papers report "FLOPs")."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    param = next(net.parameters())
    x = torch.zeros(1, in_channels, h, w, device=param.device, dtype=param.dtype)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
    finally:
        net.train(was_training)
    return counter.get_total_flops() // 2
