"""Randomness owned by strategies and regularizers: seeded CPU generators (the same on every rank that uses the
same seed), their checkpoint state, and pickling them for ``ddp_spawn`` workers."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (identical on every rank that uses the same seed)."""
    return torch.Generator().manual_seed(int(seed))


def load_generator_state(generator: torch.Generator, state: Tensor) -> None:
    """Restore a state from ``generator.get_state()`` (possibly moved to another device by checkpoint loading)."""
    generator.set_state(state.detach().to("cpu", torch.uint8))


class PicklesGenerator:
    """Mixin for strategies that own a ``generator``: it is pickled as its state's bytes, because a
    ``torch.Generator`` does not survive ``torch.multiprocessing`` pickling (``ddp_spawn`` workers)."""

    generator: torch.Generator

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["generator"] = self.generator.get_state().numpy().tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(state["generator"]), dtype=torch.uint8))
        state["generator"] = generator
        self.__dict__.update(state)
