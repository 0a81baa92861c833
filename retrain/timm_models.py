"""The zoo cells as timm models: ``timm.create_model("darts_v2_cifar")`` once ``retrain`` is imported.

Names: ``<zoo name in lower case>_cifar`` / ``_imagenet`` for DARTS-space cells (published sizes: C=36, 20 cells,
10 classes / C=48, 14 cells, 1000 classes) and ``<zoo name in lower case>`` for NAS-Bench-201 cells. timm's
``num_classes``, ``in_chans`` and ``drop_path_rate`` are honoured, plus ``channels``, ``layers`` and ``auxiliary``.
No pretrained weights exist.
"""
from __future__ import annotations

from typing import Any, Callable

import timm
from timm.models import register_model
from torch import nn

from ops import DartsGenotype, NB201Genotype
from ops.zoo import NB201_PUBLISHED, PUBLISHED
from retrain.build import NETWORK_KINDS, build_network

TIMM_MODELS: dict[str, tuple[str, str]] = {}
"""Registered timm name -> (zoo name, network kind)."""


def _entrypoint(zoo_name: str, kind: str, model_name: str) -> Callable[..., nn.Module]:
    num_classes_default = NETWORK_KINDS.get(kind).num_classes

    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if pretrained:
            raise ValueError(f"{model_name}: no pretrained weights exist for the cell zoo (use pretrained=False)")
        for timm_only in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(timm_only, None)
        return build_network(zoo_name, num_classes=kwargs.pop("num_classes", num_classes_default),
                             in_channels=kwargs.pop("in_chans", 3),
                             drop_path_prob=kwargs.pop("drop_path_rate", 0.0), kind=kind, **kwargs)

    create.__name__ = create.__qualname__ = model_name
    create.__module__ = __name__
    create.__doc__ = f"The {zoo_name} cell in the {kind} network."
    return create


def _register_all() -> None:
    taken = set(timm.list_models())
    zoo = {DartsGenotype: PUBLISHED, NB201Genotype: NB201_PUBLISHED}
    entries = [(name, kind, spec.timm_suffix) for kind, spec in NETWORK_KINDS.items() for name in zoo[spec.genotype]]
    for zoo_name, kind, suffix in entries:
        model_name = zoo_name.lower() + suffix
        if model_name in taken:  # never shadow one of timm's own models
            continue
        register_model(_entrypoint(zoo_name, kind, model_name))
        TIMM_MODELS[model_name] = (zoo_name, kind)


_register_all()
