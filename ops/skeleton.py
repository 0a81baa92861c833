"""The macro skeletons shared by a space's search network (``supernet``) and its standalone network (``retrain``):
where the cells sit and how many channels each gets, written once so that both networks agree by construction."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DartsCellSlot:
    """One cell of a DARTS network: its inputs' channels, its own channels and whether it (or the cell before it)
    reduces the resolution."""

    c_prev_prev: int
    c_prev: int
    channels: int
    reduction: bool
    reduction_prev: bool


def darts_reductions(layers: int) -> tuple[int, int]:
    """The reduction cells of a DARTS network of ``layers`` cells: at ``layers // 3`` and ``2 * layers // 3``."""
    return layers // 3, 2 * layers // 3


def darts_cells(layers: int, channels: int, stem_channels: tuple[int, int], multiplier: int,
                reduction_prev: bool = False, reduce_multiplier: int | None = None) -> list[DartsCellSlot]:
    """The DARTS macro skeleton: ``layers`` cells; channels double at each reduction cell; a cell's output has
    ``multiplier`` times its channels (its concatenated nodes; ``reduce_multiplier`` for reduction cells, if their
    concat differs). ``stem_channels``: the channels of the first cell's two inputs; ``reduction_prev``: whether the
    stem already reduced (the ImageNet stem's second half)."""
    c_prev_prev, c_prev = stem_channels
    c_curr = channels
    slots = []
    for i in range(layers):
        reduction = i in darts_reductions(layers)
        if reduction:
            c_curr *= 2
        slots.append(DartsCellSlot(c_prev_prev, c_prev, c_curr, reduction, reduction_prev))
        reduction_prev = reduction
        out = reduce_multiplier if reduction and reduce_multiplier is not None else multiplier
        c_prev_prev, c_prev = c_prev, out * c_curr
    return slots


def nb201_stages(channels: int, cells_per_stage: int) -> list[tuple[int, int]]:
    """The NAS-Bench-201 macro skeleton: ``(c_in, c_out)`` of every block in order: ``cells_per_stage`` cells at
    ``channels``, ``2 * channels`` and ``4 * channels`` (``c_in == c_out``), joined by a stride-2 ResNet basic block
    (``c_out == 2 * c_in``) before the second and the third stage."""
    blocks = []
    for stage in range(3):
        c = channels * 2 ** stage
        if stage:
            blocks.append((c // 2, c))
        blocks.extend((c, c) for _ in range(cells_per_stage))
    return blocks
