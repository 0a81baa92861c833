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

from search.discrete.loop import Proposal, Record, Strategy
from search.discrete.space import CategoricalSpace


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
    With ``batch_size`` B > 1, B cells are drawn from the same policy (and run in parallel on as many workers),
    and one step is taken on the mean of their losses, the baseline updated with each reward in turn (in the order
    the cells were drawn, whatever order they finish in).

    Args:
        lr: learning rate of the logits.
        baseline_decay: decay of the moving-average baseline (the paper's momentum 0.9).
        optimizer: ``adam`` (``torch.optim.Adam``, betas 0.9, 0.999) or ``sgd`` (plain gradient steps).
        batch_size: cells per policy step (the paper: 1).
    """

    name = "reinforce"

    def __init__(self, lr: float = 0.01, baseline_decay: float = 0.9,
                 optimizer: Literal["adam", "sgd"] = "adam", batch_size: int = 1) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.lr, self.baseline_decay, self.optimizer, self.batch_size = lr, baseline_decay, optimizer, batch_size

    def start(self, space: CategoricalSpace[Any], seed: int) -> None:
        self.space = space
        self.generator = torch.Generator().manual_seed(seed)
        self.choices = torch.tensor(space.choices)
        self.valid = torch.arange(int(self.choices.max()))[None, :] < self.choices[:, None]
        self.logits = torch.zeros(self.valid.shape, dtype=torch.float64, requires_grad=True)
        optim = torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD
        self.optim = optim([self.logits], lr=self.lr)
        self.cells = None if space.allowed is None else torch.as_tensor(space.allowed)
        self.ema_num = self.ema_den = 0.0
        self.batch: list[tuple[Proposal[Any], Tensor]] = []  # cells drawn from the current policy, log p(cell)
        self.rewards: list[float | None] = []  # per batch entry; None: failed or over budget
        self.told = 0

    def ask(self) -> Proposal[Any] | None:
        if len(self.batch) == self.batch_size:
            return None  # wait for the batch before the policy step
        decisions, log_p = sample_cell(policy(self.logits, self.valid), self.cells, self.generator)
        proposal = Proposal(self.space.decode(decisions.tolist()))
        self.batch.append((proposal, log_p))
        self.rewards.append(None)
        return proposal

    def _index(self, proposal: Proposal[Any]) -> int:
        return next(i for i, (p, _) in enumerate(self.batch) if p is proposal)

    def reject(self, proposal: Proposal[Any]) -> None:
        i = self._index(proposal)
        del self.batch[i], self.rewards[i]

    def tell(self, proposal: Proposal[Any], record: Record[Any] | None) -> None:
        self.rewards[self._index(proposal)] = None if record is None else record.metric
        self.told += 1
        if self.told < self.batch_size:
            return  # a last batch cut short by the budget takes no step
        losses = []
        for (_, log_p), reward in zip(self.batch, self.rewards):  # in the order the cells were drawn
            if reward is None:
                continue  # failed or over budget: no reward
            self.ema_num = self.baseline_decay * self.ema_num + (1 - self.baseline_decay) * reward
            self.ema_den = self.baseline_decay * self.ema_den + (1 - self.baseline_decay)
            losses.append(-(reward - self.ema_num / self.ema_den) * log_p)
        if losses:
            self.optim.zero_grad()
            torch.stack(losses).mean().backward()
            self.optim.step()
        self.batch, self.rewards, self.told = [], [], 0

    def final_state(self) -> dict[str, Any]:
        probs = policy(self.logits.detach(), self.valid).probs
        return {"probs": [p[:n].tolist() for p, n in zip(probs, self.choices.tolist())],
                "baseline": self.ema_num / self.ema_den if self.ema_den else None}
