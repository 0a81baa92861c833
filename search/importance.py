"""Op importance: does the supernet rely on what the architecture weights say?

For every edge and op, the drop in the supernet's validation accuracy when that op alone is removed from that
edge (its mixing weight set to 0, every other weight left as it is), measured with the shared weights on a fixed
set of validation batches (batch statistics, running statistics untouched; ``ProbeSet``). This is the
measurement perturbation selection (DARTS-PT, ``search.selection``) decides by; here it is taken over every op of
every edge at once, as a picture of the trained supernet. An op whose weight is already 0 (a decided or dropped
edge, the ops a single path does not run) and ``none`` (its output is zero) cost nothing to remove: their
importance is 0 without a forward pass.

At the end of a search ``SearchOutputs`` writes ``importance.json`` and ``importance.png``; for any search
checkpoint ``python -m search.report RUN_DIR --checkpoint PATH`` does the same.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import torch
from torch import Tensor, nn

from ops.discretize import NONE_OP
from search.hypergrad import Reduce
from search.strategies.probe import ProbeSet, first_batches
from supernet import ArchWeights

def without_op(weights: ArchWeights, cell: str, edge: int, op: int) -> ArchWeights:
    """``weights`` with op ``op`` of ``edge`` in cell type ``cell`` removed (its mixing weight set to 0)."""
    ops = weights[cell].ops.clone()
    ops[edge, op] = 0.0
    return {**weights, cell: replace(weights[cell], ops=ops)}


def probe_set(batches: Iterable[tuple[Tensor, Tensor]], size: int, device: torch.device) -> ProbeSet:
    """The first ``size`` batches of ``batches`` (e.g. the validation loader), on ``device``, as a ``ProbeSet``."""
    probe = ProbeSet(size)
    for x, y in first_batches(batches, size):
        probe.add((x.to(device), y.to(device)))
    return probe


def op_importance(supernet: nn.Module, weights: ArchWeights, probe: ProbeSet, reduce: Reduce = lambda t: t,
                  ) -> tuple[float, dict[str, list[list[float]]]]:
    """The supernet's accuracy under ``weights`` on ``probe`` and, per cell type ``[edge][op]``, how much it drops
    when that op is removed from that edge (accuracy points in [0, 1]; negative when the removal helps).
    ``reduce`` pools the counts over DDP ranks (``SearchModule.reduce_mean``)."""
    weights = {cell: replace(w, ops=w.ops.detach()) for cell, w in weights.items()}
    base = probe.accuracies(supernet, [weights], reduce)[0]
    silent = [k for k, op in enumerate(supernet.candidates) if op == NONE_OP]  # outputs zeros: nothing to remove
    drops: dict[str, list[list[float]]] = {}
    for cell, w in weights.items():
        present = (w.ops != 0).cpu()
        trials = [(e, k) for e in range(w.ops.shape[0]) for k in range(w.ops.shape[1])
                  if present[e, k] and k not in silent]
        scores = probe.accuracies(supernet, [without_op(weights, cell, e, k) for e, k in trials], reduce)
        table = [[0.0] * w.ops.shape[1] for _ in range(w.ops.shape[0])]
        for (e, k), score in zip(trials, scores):
            table[e][k] = base - score
        drops[cell] = table
    return base, drops
