"""The op registry and the candidate ops, parametrized over everything registered."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch
from torch import nn

import ops
from ops import registry

C = 8  # channels of the shape tests (even: FactorizedReduce splits them in two)



def _input(channels: int = C, size: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, size, size, generator=gen)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", ops.list_ops())
def test_op_shape_gradient_eval(name: str, stride: int, affine: bool) -> None:
    torch.manual_seed(0)
    op = ops.create_op(name, C, stride, affine)
    assert isinstance(op, nn.Module)
    x = _input().requires_grad_(True)
    out = op(x)
    assert out.shape == (2, C, 8 // stride, 8 // stride)
    assert torch.isfinite(out).all()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    if name == "none":
        assert torch.count_nonzero(x.grad) == 0, "the none op must pass no gradient"
        assert torch.count_nonzero(out) == 0
    else:
        assert x.grad.abs().sum() > 0, f"{name}: no gradient reaches the input"
    for p in op.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()

    op.eval()
    with torch.no_grad():
        first, second = op(x), op(x)
    assert first.shape == out.shape
    assert torch.isfinite(first).all()
    assert torch.equal(first, second), f"{name}: eval mode is not deterministic"


# Offsets (dy, dx) of the input pixels that one output pixel depends on, at stride 1.
def _square(radius: int, step: int = 1) -> set[tuple[int, int]]:
    span = range(-radius, radius + 1, step)
    return {(dy, dx) for dy in span for dx in span}


FOOTPRINTS = {
    "skip_connect": _square(0),
    "nor_conv_1x1": _square(0),
    "nor_conv_3x3": _square(1),
    "avg_pool_3x3": _square(1),
    "sep_conv_3x3": _square(2),  # two stacked 3x3
    "sep_conv_5x5": _square(4),
    "sep_conv_7x7": _square(6),
    "dil_conv_3x3": _square(2, step=2),  # 3x3 with dilation 2: holes between the taps
    "dil_conv_5x5": _square(4, step=2),
    "conv_7x1_1x7": _square(3),
}


@pytest.mark.parametrize("name", sorted(FOOTPRINTS))
def test_receptive_field(name: str) -> None:
    """Kernel size, padding and dilation of each op, read off the gradient of one output pixel."""
    torch.manual_seed(0)
    op = ops.create_op(name, 4, 1, affine=False).eval()
    x = (torch.rand(1, 4, 17, 17) + 0.5).requires_grad_(True)  # positive: the ReLUs pass gradient
    op(x)[:, :, 8, 8].sum().backward()
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    found = {(int(r) - 8, int(c) - 8) for r, c in zip(rows, cols)}
    assert found == FOOTPRINTS[name]


@pytest.mark.parametrize("name, affine, expected", [
    ("sep_conv_3x3", False, 2 * (16 * 9 + 16 * 16)),  # 800: two (depthwise 3x3 + pointwise) blocks
    ("sep_conv_3x3", True, 2 * (16 * 9 + 16 * 16) + 2 * 2 * 16),  # + two affine BNs
    ("sep_conv_5x5", False, 2 * (16 * 25 + 16 * 16)),
    ("sep_conv_7x7", False, 2 * (16 * 49 + 16 * 16)),
    ("dil_conv_3x3", False, 16 * 9 + 16 * 16),  # 400
    ("dil_conv_5x5", True, 16 * 25 + 16 * 16 + 2 * 16),
    ("nor_conv_3x3", True, 16 * 16 * 9 + 2 * 16),
    ("nor_conv_3x3", False, 16 * 16 * 9),
    ("nor_conv_1x1", True, 16 * 16 + 2 * 16),
    ("conv_7x1_1x7", False, 2 * 16 * 16 * 7),
    ("skip_connect", True, 0),
    ("max_pool_3x3", True, 0),
    ("avg_pool_3x3", True, 0),
    ("none", True, 0),
])
def test_parameter_count_golden(name: str, affine: bool, expected: int) -> None:
    op = ops.create_op(name, 16, 1, affine)
    assert sum(p.numel() for p in op.parameters()) == expected


@pytest.mark.parametrize("affine, expected", [(True, 2 * 16 * 8 + 2 * 16), (False, 2 * 16 * 8)])
def test_strided_skip_is_factorized_reduce(affine: bool, expected: int) -> None:
    op = ops.create_op("skip_connect", 16, 2, affine)
    assert isinstance(op, ops.FactorizedReduce)
    assert sum(p.numel() for p in op.parameters()) == expected
    assert isinstance(ops.create_op("skip_connect", 16, 1, affine), nn.Identity)


# ---------------------------------------------------------------------------------- registry
@pytest.fixture
def scratch_op() -> Iterator[str]:
    """A fresh op name, removed from the registry afterwards whatever the test did."""
    name = "test_scratch_conv_3x3"
    assert name not in registry.OPS
    yield name
    registry.OPS.unregister(name)


class _Scaled(nn.Module):
    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, c, 1, 1))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.scale)[:, :, :: self.stride, :: self.stride]


def test_register_user_op(scratch_op: str) -> None:
    @ops.register_op(scratch_op)
    def factory(c: int, stride: int, affine: bool) -> nn.Module:
        return _Scaled(c, stride)

    assert callable(factory)  # the decorator hands the factory back
    assert scratch_op in ops.list_ops()
    ops.check_op(scratch_op)
    op = ops.create_op(scratch_op, C, 2)
    assert isinstance(op, _Scaled)
    assert op(_input()).shape == (2, C, 4, 4)


def test_scratch_op_was_cleaned_up() -> None:
    assert "test_scratch_conv_3x3" not in ops.list_ops()


def test_duplicate_registration(scratch_op: str) -> None:
    ops.register_op(scratch_op)(lambda c, stride, affine: _Scaled(c, stride))
    with pytest.raises(ValueError, match=rf"{scratch_op}.*already registered.*overwrite=True"):
        ops.register_op(scratch_op)(lambda c, stride, affine: nn.Identity())
    assert isinstance(ops.create_op(scratch_op, C), _Scaled)  # the failed attempt changed nothing
    ops.register_op(scratch_op, overwrite=True)(lambda c, stride, affine: nn.Identity())
    assert isinstance(ops.create_op(scratch_op, C), nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        ops.register_op("sep_conv_3x3")(lambda c, stride, affine: nn.Identity())


def test_unknown_op_lists_valid_names() -> None:
    for call in (lambda: ops.create_op("sep_conv_4x4", C), lambda: ops.check_op("sep_conv_4x4")):
        with pytest.raises(ValueError, match="unknown op 'sep_conv_4x4'") as info:
            call()
        for name in ops.list_ops():
            assert name in str(info.value)


def test_bad_stride() -> None:
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        ops.create_op("sep_conv_3x3", C, 3)


def test_list_ops_sorted() -> None:
    names = ops.list_ops()
    assert names == sorted(names) and len(set(names)) == len(names)


def test_search_spaces_golden() -> None:
    assert ops.search_space("darts") == (
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert ops.search_space("nb201") == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    with pytest.raises(ValueError, match="unknown search space 'enas'.*darts.*nb201"):
        ops.search_space("enas")


@pytest.mark.parametrize("space", sorted(ops.SEARCH_SPACES))
def test_every_search_space_op_is_registered(space: str) -> None:
    candidates = ops.search_space(space)
    assert len(set(candidates)) == len(candidates)
    for name in candidates:
        ops.check_op(name)
        assert name in ops.list_ops()


def _registries():
    from search.discrete.cli import STRATEGIES as DISCRETE
    from search.robust import REGULARIZERS
    from search.strategies.base import STRATEGIES
    from supernet.networks import SUPERNETS

    return {"ops": registry.OPS, "search spaces": registry.SEARCH_SPACES, "strategies": STRATEGIES,
            "supernets": SUPERNETS, "regularizers": REGULARIZERS, "discrete strategies": DISCRETE}


@pytest.mark.parametrize("which", ["ops", "search spaces", "strategies", "supernets", "regularizers",
                                   "discrete strategies"])
def test_every_registry_names_the_valid_entries_on_an_unknown_name(which: str) -> None:
    reg = _registries()[which]
    assert len(reg) >= 2 and reg.names() == sorted(reg)
    first = reg.names()[0]
    assert first in reg and reg.get(first) is reg[first]
    with pytest.raises(ValueError, match=rf"unknown {reg.kind} 'no_such_entry'") as info:
        reg.get("no_such_entry")
    assert "\n" not in str(info.value) and all(name in str(info.value) for name in reg.names())


def test_registry_register_decorator_overwrite_and_unregister() -> None:
    reg: registry.Registry[int] = registry.Registry("number", hint=" (--n)")
    reg.register("one", 1)
    assert reg.register("two")(2) == 2 and reg.items() == [("one", 1), ("two", 2)]
    with pytest.raises(ValueError, match="number 'one' is already registered"):
        reg.register("one", 11)
    reg.register("one", 11, overwrite=True)
    assert reg["one"] == 11
    reg.unregister("one")
    with pytest.raises(ValueError, match=r"unknown number 'one' \(--n\); valid: two"):
        reg.get("one")
