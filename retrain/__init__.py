"""Standalone networks from a genotype, their training module and ``python -m retrain``.

Imports only ``ops`` and ``nasdata`` (never ``search`` or ``supernet``)::

    from retrain import build_network
    net = build_network("DARTS_V2", num_classes=10, channels=36, layers=20)   # or a Genotype / genotype.json
    net = timm.create_model("darts_v2_cifar")                                  # the zoo cells, via timm
"""
from retrain.build import (KINDS, NETWORK_KINDS, NetworkKind, build_network, count_macs, count_parameters,
                           resolve_genotype)
from retrain.darts_net import DartsCell, DartsNetworkCIFAR, DartsNetworkImageNet
from retrain.layers import AuxiliaryHead, DropPath, drop_path
from retrain.nb201_net import NB201Cell, NB201Network
from retrain.timm_models import TIMM_MODELS

__all__ = [
    "AuxiliaryHead", "DartsCell", "DartsNetworkCIFAR", "DartsNetworkImageNet", "DropPath", "KINDS",
    "NETWORK_KINDS", "NB201Cell", "NetworkKind", "NB201Network", "TIMM_MODELS", "build_network", "count_macs",
    "count_parameters", "drop_path", "resolve_genotype",
]


def __getattr__(name: str) -> object:
    """``retrain.RetrainModule`` is imported on first use (it pulls in Lightning)."""
    if name == "RetrainModule":
        from retrain.module import RetrainModule

        return RetrainModule
    raise AttributeError(f"module 'retrain' has no attribute {name!r}")
