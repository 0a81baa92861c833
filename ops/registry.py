"""Registries (timm style: register, create, list; an unknown name raises one line listing the valid ones) and the
op registry built on one: every candidate op is a factory ``(C, stride, affine) -> nn.Module``.

Users add their own op with ``@register_op("name")``; search spaces are named tuples of op names.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from torch import nn

from ops.primitives import Conv7x1_1x7, DilConv, FactorizedReduce, ReLUConvBN, SepConv, Zero

T = TypeVar("T")
_DECORATE = object()  # register() without an entry: return a decorator


class Registry(Generic[T]):
    """Named entries of one kind. ``get`` of an unknown name raises a one-line ``ValueError``:
    ``unknown <kind> 'name'<hint>; <listing>: a, b, c``.

    Args:
        kind: What an entry is, for messages (``op``, ``strategy``, ``search space``).
        listing: The words before the valid names in the unknown-name message.
        hint: Text after the name in that message, e.g. the flag that sets it (`` (--model.strategy)``).
    """

    def __init__(self, kind: str, listing: str = "valid", hint: str = "") -> None:
        self.kind, self.listing, self.hint = kind, listing, hint
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T: ...

    def register(self, name: str, entry: Any = _DECORATE, *, overwrite: bool = False) -> T | Callable[[T], T]:
        """Add ``entry`` under ``name`` (or, without ``entry``, return a decorator that does); a taken name raises
        unless ``overwrite``."""

        def add(item: T) -> T:
            if name in self._entries and not overwrite and self._entries[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is already registered (pass overwrite=True to replace it)")
            self._entries[name] = item
            return item

        return add if entry is _DECORATE else add(entry)

    def unregister(self, name: str) -> None:
        """Remove ``name`` if registered (a plug-in's clean-up; tests)."""
        self._entries.pop(name, None)

    def check(self, name: str) -> None:
        """Raise the one-line ``ValueError`` if ``name`` is not registered."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}{self.hint}; {self.listing}: {', '.join(self.names())}")

    def get(self, name: str) -> T:
        """The entry ``name``; unknown names raise (see ``check``)."""
        self.check(name)
        return self._entries[name]

    __getitem__ = get

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order."""
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


OpFactory = Callable[[int, int, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("op", listing="registered ops")
"""Every candidate op, by name."""

SEARCH_SPACES: Registry[tuple[str, ...]] = Registry("search space", listing="known")
SEARCH_SPACES.register("darts", ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                                 "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"))
SEARCH_SPACES.register("nb201", ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"))


def register_op(name: str, *, overwrite: bool = False) -> Callable[[OpFactory], OpFactory]:
    """Decorator registering ``factory(C, stride, affine) -> nn.Module`` under ``name``."""
    return OPS.register(name, overwrite=overwrite)


def list_ops() -> list[str]:
    """Names of all registered ops, sorted."""
    return OPS.names()


def check_op(name: str) -> None:
    """Raise ``ValueError`` naming the valid ops if ``name`` is not registered."""
    OPS.check(name)


def create_op(name: str, channels: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build the op ``name`` for ``channels`` channels; stride 2 halves the resolution."""
    factory = OPS.get(name)
    if stride not in (1, 2):
        raise ValueError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return factory(channels, stride, affine)


def search_space(name: str) -> tuple[str, ...]:
    """The candidate op names of a named search space (``darts`` or ``nb201``)."""
    return SEARCH_SPACES.get(name)


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
