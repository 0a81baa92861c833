"""REINFORCE over an independent categorical policy per decision (the NAS-Bench-201 paper's RL baseline).

The policy is one row of logits per decision (``torch.distributions.Categorical``), trained by ``torch.optim``
on the score-function loss ``-(reward - baseline) * log p(cell)``. In a restricted space the policy is
conditioned on the allowed cells: ``log p(cell | allowed) = log p(cell) - logsumexp_{c in allowed} log p(c)``.
Measured on one CPU thread, a policy step costs ~1.3 ms (a hand-written numpy Adam and score function took ~0.3
ms): nothing beside an evaluator that trains or even runs a network, and ~1 minute over the 500 x 89 lookups of
``benchmarks/nb201_discrete.py``, so the library parts are used.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torch.distributions import Categorical

from search.discrete.loop import SearchLoop, Strategy


def policy(logits: Tensor, valid: Tensor) -> Categorical:
    """One categorical per decision (row); options beyond a decision's count (``~valid``) have probability 0."""
    return Categorical(logits=logits.masked_fill(~valid, float("-inf")), validate_args=False)


def cell_log_probs(dist: Categorical, cells: Tensor) -> Tensor:
    """``log p(cell)`` of every row of ``cells`` (``(n, n_decisions)``) under the independent policy."""
    return dist.log_prob(cells).sum(dim=1)


def sample_cell(dist: Categorical, cells: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw one cell (a decision per row) and return it with its log-probability (differentiable in the logits):
    from the independent policy, or, given the allowed ``cells``, from the policy conditioned on them."""
    if cells is None:
        decisions = torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)
        return decisions, cell_log_probs(dist, decisions[None])[0]
    conditional = torch.log_softmax(cell_log_probs(dist, cells), dim=0)
    index = torch.multinomial(conditional.detach().exp(), 1, generator=generator).item()
    return cells[index], conditional[index]


class Reinforce(Strategy):
    """Policy gradient with a moving-average baseline.

    Each step samples one option per decision from ``softmax(logits)``, evaluates the cell and takes one
    optimizer step on ``-(reward - baseline) * log p(cell)``. The reward is the evaluator's metric (accuracy
    in % for the tabular evaluator). The baseline is a bias-corrected exponential moving average of the rewards,
    updated with the new reward before the advantage is formed, as in the NAS-Bench-201 code. In a restricted
    space (``CategoricalSpace.restrict``) cells are drawn from the policy conditioned on the allowed cells.

    Args:
        lr: learning rate of the logits.
        baseline_decay: decay of the moving-average baseline (the paper's momentum 0.9).
        optimizer: ``adam`` (``torch.optim.Adam``, betas 0.9, 0.999) or ``sgd`` (plain gradient steps).
    """

    name = "reinforce"

    def __init__(self, lr: float = 0.01, baseline_decay: float = 0.9,
                 optimizer: Literal["adam", "sgd"] = "adam") -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.lr, self.baseline_decay, self.optimizer = lr, baseline_decay, optimizer

    def _run(self, loop: SearchLoop[Any], seed: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(seed)
        choices = torch.tensor(loop.space.choices)
        valid = torch.arange(int(choices.max()))[None, :] < choices[:, None]
        logits = torch.zeros(valid.shape, dtype=torch.float64, requires_grad=True)
        optimizer = (torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD)([logits], lr=self.lr)
        cells = None if loop.space.allowed is None else torch.as_tensor(loop.space.allowed)
        ema_num = ema_den = 0.0
        while not loop.exhausted:
            decisions, log_p = sample_cell(policy(logits, valid), cells, generator)
            record = loop.evaluate(loop.space.decode(decisions.tolist()))
            if record is None:
                continue
            ema_num = self.baseline_decay * ema_num + (1 - self.baseline_decay) * record.metric
            ema_den = self.baseline_decay * ema_den + (1 - self.baseline_decay)
            advantage = record.metric - ema_num / ema_den
            optimizer.zero_grad()
            (-advantage * log_p).backward()
            optimizer.step()
        probs = policy(logits.detach(), valid).probs
        return {"probs": [p[:n].tolist() for p, n in zip(probs, choices.tolist())],
                "baseline": ema_num / ema_den if ema_den else None}
