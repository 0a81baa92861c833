"""The op registry: every candidate op is a factory ``(C, stride, affine) -> nn.Module``.

Users add their own with ``@register_op("name")``; search spaces are named tuples of op names.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ops.primitives import Conv7x1_1x7, DilConv, FactorizedReduce, ReLUConvBN, SepConv, Zero

OpFactory = Callable[[int, int, bool], nn.Module]
_OPS: dict[str, OpFactory] = {}

SEARCH_SPACES: dict[str, tuple[str, ...]] = {
    "darts": ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"),
    "nb201": ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"),
}


def register_op(name: str, *, overwrite: bool = False) -> Callable[[OpFactory], OpFactory]:
    """Decorator registering ``factory(C, stride, affine) -> nn.Module`` under ``name``."""

    def decorator(factory: OpFactory) -> OpFactory:
        if name in _OPS and not overwrite:
            raise ValueError(f"op {name!r} is already registered (pass overwrite=True to replace it)")
        _OPS[name] = factory
        return factory

    return decorator


def list_ops() -> list[str]:
    """Names of all registered ops, sorted."""
    return sorted(_OPS)


def check_op(name: str) -> None:
    """Raise ``ValueError`` naming the valid ops if ``name`` is not registered."""
    if name not in _OPS:
        raise ValueError(f"unknown op {name!r}; registered ops: {', '.join(list_ops())}")


def create_op(name: str, channels: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build the op ``name`` for ``channels`` channels; stride 2 halves the resolution."""
    check_op(name)
    if stride not in (1, 2):
        raise ValueError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return _OPS[name](channels, stride, affine)


def search_space(name: str) -> tuple[str, ...]:
    """The candidate op names of a named search space (``darts`` or ``nb201``)."""
    if name not in SEARCH_SPACES:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(sorted(SEARCH_SPACES))}")
    return SEARCH_SPACES[name]


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


register_op("none")(lambda c, stride, affine: Zero(stride))
register_op("skip_connect")(_skip)
register_op("max_pool_3x3")(lambda c, stride, affine: nn.MaxPool2d(3, stride, padding=1))
register_op("avg_pool_3x3")(
    lambda c, stride, affine: nn.AvgPool2d(3, stride, padding=1, count_include_pad=False))
register_op("sep_conv_3x3")(lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine))
register_op("sep_conv_5x5")(lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine))
register_op("sep_conv_7x7")(lambda c, stride, affine: SepConv(c, c, 7, stride, 3, affine))
register_op("dil_conv_3x3")(lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine))
register_op("dil_conv_5x5")(lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine))
register_op("conv_7x1_1x7")(lambda c, stride, affine: Conv7x1_1x7(c, stride, affine))
register_op("nor_conv_1x1")(lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, 1, affine))
register_op("nor_conv_3x3")(lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, 1, affine))
