"""``build_network``: a genotype (object, JSON path, zoo name or text) to a plain ``nn.Module``; size counters."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ops import DartsGenotype, Genotype, NB201Genotype, Registry
from retrain.darts_net import DartsNetworkCIFAR, DartsNetworkImageNet
from retrain.nb201_net import NB201Network

Kind = Literal["cifar", "imagenet", "nb201"]


@dataclass(frozen=True)
class NetworkKind:
    """A standalone network family: the genotype class it takes, its published ``channels`` and ``layers``, and the
    limits ``build_network`` checks. ``build(genotype, channels, layers, num_classes, auxiliary, in_channels)``
    makes the network; ``label`` names it in messages, ``timm_suffix`` ends its zoo cells' timm names."""

    genotype: type[Genotype]
    channels: int
    layers: int
    build: Callable[[Any, int, int, int, bool, int], nn.Module]
    label: str
    timm_suffix: str = ""
    layers_name: str = "layers"
    min_layers: int = 3
    even_channels: bool = False
    auxiliary: bool = True
    num_classes: int = 10
    min_image_size: int = 1


NETWORK_KINDS: Registry[NetworkKind] = Registry("network kind")
"""The standalone networks by ``kind``; a new one is one ``register`` call."""
NETWORK_KINDS.register("cifar", NetworkKind(
    DartsGenotype, channels=36, layers=20, label="cifar", timm_suffix="_cifar",
    build=lambda g, c, l, n, aux, i: DartsNetworkCIFAR(g, c, n, l, aux, i)))
NETWORK_KINDS.register("imagenet", NetworkKind(  # its stem halves the channels; it down-samples 32x
    DartsGenotype, channels=48, layers=14, label="imagenet", timm_suffix="_imagenet", even_channels=True,
    num_classes=1000, min_image_size=64, build=lambda g, c, l, n, aux, i: DartsNetworkImageNet(g, c, n, l, aux, i)))
NETWORK_KINDS.register("nb201", NetworkKind(
    NB201Genotype, channels=16, layers=5, label="NB201", layers_name="layers (cells per stage)", min_layers=1,
    auxiliary=False, build=lambda g, c, l, n, aux, i: NB201Network(g, c, l, n, i)))
KINDS: tuple[str, ...] = tuple(NETWORK_KINDS.names())
DEFAULT_KIND = "cifar"
"""The default ``kind``; given a genotype of another space it builds that space's network."""


def kinds_for(genotype: Genotype) -> list[str]:
    """The network kinds that take ``genotype``."""
    return [name for name, kind in NETWORK_KINDS.items() if isinstance(genotype, kind.genotype)]


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
    if kind not in NETWORK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    geno = resolve_genotype(genotype)
    spec = NETWORK_KINDS.get(kind)
    if not isinstance(geno, spec.genotype):
        if kind != DEFAULT_KIND or not kinds_for(geno):
            raise ValueError(f"the {spec.label} network needs a genotype of the {spec.genotype.space!r} space, got one of "
                             f"the {geno.space!r} space (kind {' or '.join(kinds_for(geno))} builds it)")
        kind = kinds_for(geno)[0]
        spec = NETWORK_KINDS.get(kind)
    channels = spec.channels if channels is None else channels
    layers = spec.layers if layers is None else layers
    _check_int("num_classes", num_classes, 2)
    _check_int("in_channels", in_channels, 1)
    _check_int("channels", channels, 2 if spec.even_channels else 1)
    if spec.even_channels and channels % 2:
        raise ValueError(f"channels must be even for the {spec.label} network (its stem halves it), got {channels}")
    _check_int(spec.layers_name, layers, spec.min_layers)
    if not 0.0 <= drop_path_prob < 1.0:
        raise ValueError(f"drop_path_prob must be in [0, 1), got {drop_path_prob}")
    if auxiliary and not spec.auxiliary:
        raise ValueError(f"auxiliary head: the {spec.label} network has none (use auxiliary=False)")
    net = spec.build(geno, channels, layers, num_classes, auxiliary, in_channels)
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
    """Multiply-adds of one image's inference (convolutions and linear layers, as NAS papers report "FLOPs"); also
    for a single op, parameter-free or not (``image_size`` then is its input's ``(H, W)``, ``in_channels`` its C)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    param = next(net.parameters(), None)
    x = torch.zeros(1, in_channels, h, w, device=param.device if param is not None else None,
                    dtype=param.dtype if param is not None else None)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
    finally:
        net.train(was_training)
    return counter.get_total_flops() // 2
