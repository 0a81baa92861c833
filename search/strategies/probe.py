"""Comparing cells on validation batches with the shared weights (batch statistics, accuracies pooled over ranks),
and keeping the chosen one in checkpoints: used by ENAS, SPOS and perturbation selection."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ops import Genotype
from search.rng import PicklesGenerator, load_generator_state
from supernet import ArchWeights


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


def first_batches(loader: Iterable[tuple[Tensor, Tensor]], count: int) -> list[tuple[Tensor, Tensor]]:
    """The first ``count`` batches of ``loader`` (all of them if it has fewer); raises on an empty loader."""
    out = []
    for x, y in loader:
        if len(out) == count:
            break
        out.append((x, y))
    if not out:
        raise ValueError("the data loader is empty")
    return out


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
        return self.scores(supernet, paths, reduce, "accuracy")

    def scores(self, supernet: nn.Module, paths: Sequence[ArchWeights],
               reduce: Callable[[list[Tensor]], list[Tensor]], criterion: str) -> list[float]:
        """Per path, the ``accuracy`` or the cross-entropy ``loss`` on the probe batches (batch statistics), pooled
        over all ranks."""
        if not self.batches:
            raise RuntimeError("no validation batch recorded to compare cells on")

        def total(path: ArchWeights) -> Tensor:
            if criterion == "loss":
                return sum(F.cross_entropy(supernet(x, path), y, reduction="sum") for x, y in self.batches)
            return sum((supernet(x, path).argmax(1) == y).sum() for x, y in self.batches)

        with batch_statistics(supernet):
            sums = torch.stack([total(path) for path in paths]).double()
        count = torch.tensor(float(sum(len(y) for _, y in self.batches)), dtype=torch.float64, device=sums.device)
        sums, count = reduce([sums, count.reshape(1)])
        return (sums / count).tolist()


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
