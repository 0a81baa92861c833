"""Helpers shared by the sampling strategies (GDAS, ENAS, SPOS): single-path weights for a genotype, the
discrete cell space of a supernet, evaluation with batch statistics and the validation probe set."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ops import SPACES, DartsSpace, Genotype
from search.discrete import NB201Space
from search.discrete.darts_space import DartsCellSpace
from supernet import ArchWeights, CellWeights

NONE_OP = "none"


def supernet_device(supernet: nn.Module) -> torch.device:
    """The device of the supernet's parameters (CPU for a parameter-free module)."""
    return next(iter(supernet.parameters()), torch.empty(0)).device


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


def one_hot_path(active: dict[str, Sequence[int]], num_ops: int, device: torch.device) -> ArchWeights:
    """``CellWeights`` running op ``active[cell][e]`` on edge ``e`` with weight 1 (``active`` kept on the CPU,
    so that the cells read it without a device synchronisation)."""
    out: ArchWeights = {}
    for cell, ops in active.items():
        index = torch.as_tensor(list(ops), dtype=torch.long)
        weights = torch.zeros(len(index), num_ops).scatter_(1, index.unsqueeze(1), 1.0)
        out[cell] = CellWeights(ops=weights.to(device), active=index)
    return out


def require_none(supernet: nn.Module, owner: str) -> int:
    """Index of ``none`` in a DARTS supernet's candidates (it switches off the edges a cell does not use)."""
    if NONE_OP not in supernet.candidates:
        raise ValueError(f"{owner} on the DARTS space switches unused edges off with the 'none' op; add it to "
                         "--model.supernet.init_args.candidates")
    return supernet.candidates.index(NONE_OP)


def cell_space(supernet: nn.Module) -> DartsCellSpace | NB201Space:
    """The discrete space of the cells the supernet can run as single paths."""
    space = supernet.search_space
    if isinstance(space, DartsSpace):
        require_none(supernet, "a discrete DARTS cell space")
        return DartsCellSpace(space.cell_ops(), steps=space.steps, multiplier=space.multiplier)
    return NB201Space(space.cell_ops())


def genotype_active(genotype: Genotype, candidates: Sequence[str], num_edges: int) -> dict[str, list[int]]:
    """Per cell type, the index in ``candidates`` of the op each supernet edge runs for ``genotype``
    (``none`` on the edges a DARTS cell does not use): the ``edge_ops`` of the genotype's space."""
    return SPACES.get(genotype.space).for_edges(tuple(candidates), num_edges).edge_ops(genotype)


def genotype_path(supernet: nn.Module, genotype: Genotype, device: torch.device | None = None) -> ArchWeights:
    """Single-path weights that make ``supernet`` compute ``genotype`` (one-hot ops, ``active`` set)."""
    active = supernet.search_space.edge_ops(genotype)
    return one_hot_path(active, supernet.num_ops, supernet_device(supernet) if device is None else device)


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Evaluate ``module`` without gradients and with BatchNorm on batch statistics, leaving running statistics
    (and ``num_batches_tracked``) untouched: they are saved and put back afterwards, so the fused cell forward,
    which updates them as the modules would, can run inside too. Modes are restored afterwards."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.training, [None if b is None else b.clone() for b in _statistics(m)]) for m in norms]
    try:
        for m in norms:
            m.training = True
        with torch.no_grad():
            yield
    finally:
        for m, (training, buffers) in zip(norms, saved):
            m.training = training
            for live, kept in zip(_statistics(m), buffers):
                if live is not None and kept is not None:
                    live.copy_(kept)


def _statistics(norm: _BatchNorm) -> list[Tensor | None]:
    return [norm.running_mean, norm.running_var, norm.num_batches_tracked]


class ProbeSet:
    """The last ``size`` validation batches an architecture step saw: the data on which candidate cells are
    compared. Accuracies are all-reduced across ranks, so every rank ranks the candidates alike."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"probe_batches must be >= 1, got {size}")
        self.batches: deque[tuple[Tensor, Tensor]] = deque(maxlen=size)

    def add(self, batch: tuple[Tensor, Tensor]) -> None:
        """Remember a validation batch (detached)."""
        self.batches.append((batch[0].detach(), batch[1].detach()))

    def clear(self) -> None:
        """Forget all batches (at the start of an epoch)."""
        self.batches.clear()

    def accuracies(self, supernet: nn.Module, paths: Sequence[ArchWeights],
                   reduce: Callable[[list[Tensor]], list[Tensor]]) -> list[float]:
        """Accuracy of each single path on the probe batches (batch statistics), pooled over all ranks."""
        if not self.batches:
            raise RuntimeError("no validation batch recorded to compare cells on")
        with batch_statistics(supernet):
            correct = torch.stack([sum((supernet(x, path).argmax(1) == y).sum() for x, y in self.batches)
                                   for path in paths]).double()
        total = torch.tensor(float(sum(len(y) for _, y in self.batches)), dtype=torch.float64, device=correct.device)
        correct, total = reduce([correct, total.reshape(1)])
        return (correct / total).tolist()


class SelectsCell(PicklesGenerator):
    """Mixin for strategies that sample with a ``generator`` and pick one ``selected`` cell (``selected_score``):
    their checkpoint state is the generator's state and the selected cell as plain dicts, lists and floats."""

    selected: Genotype | None
    selected_score: float | None

    def state_dict(self) -> dict[str, Any]:
        """The sampling generator's state and the selected cell."""
        cell = None if self.selected is None else self.selected.to_dict()
        return {"generator": self.generator.get_state(), "genotype": cell, "score": self.selected_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        load_generator_state(self.generator, state["generator"])
        raw = state.get("genotype")
        self.selected = None if raw is None else Genotype.from_dict(raw)
        self.selected_score = state.get("score")
