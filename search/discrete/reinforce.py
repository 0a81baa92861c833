"""REINFORCE over an independent categorical policy per decision (the NAS-Bench-201 paper's RL baseline).

The policy is a few dozen logits, so it is kept in numpy with its exact score-function gradient: for a
sampled cell ``c``, ``d log p(c) / d logits[i] = onehot(c_i) - p_i`` (in a restricted space, where the policy
is conditioned on the allowed cells, ``p_i`` becomes the conditional marginal of decision ``i``).
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np

from search.discrete.loop import SearchLoop, Strategy


class AdamState:
    """Adam (Kingma & Ba) on one array, with ``torch.optim.Adam``'s defaults and update rule."""

    def __init__(self, shape: tuple[int, ...], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m, self.v, self.t = np.zeros(shape), np.zeros(shape), 0

    def step(self, param: np.ndarray, grad: np.ndarray) -> None:
        """Update ``param`` in place against ``grad`` (a gradient of the loss to minimize)."""
        b1, b2 = self.betas
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        denom = np.sqrt(self.v / (1 - b2 ** self.t)) + self.eps
        param -= self.lr / (1 - b1 ** self.t) * self.m / denom


def _softmax(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    z = np.where(valid, logits, -np.inf)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``probs`` (inverse-CDF with one uniform per row)."""
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1]) * cdf[..., -1]
    return np.minimum((cdf <= u[..., None]).sum(axis=-1), probs.shape[-1] - 1)


def sample_with_score(logits: np.ndarray, valid: np.ndarray, cells: np.ndarray | None,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one cell from the policy and return it with ``d log p(cell) / d logits``.

    ``logits`` and ``valid`` are ``(n_decisions, max_options)``; ``cells`` (``(n, n_decisions)``) restricts the
    policy to those cells (conditioning), ``None`` leaves it a product of independent categoricals.
    """
    probs = _softmax(logits, valid)
    rows = np.arange(len(logits))
    if cells is None:
        decisions, marginal = _draw(probs, rng), probs
    else:
        with np.errstate(divide="ignore"):
            cell_log_p = np.log(probs[rows, cells]).sum(axis=1)
        cell_p = np.exp(cell_log_p - cell_log_p.max())
        cell_p /= cell_p.sum()
        decisions = cells[int(_draw(cell_p, rng))]
        marginal = np.zeros_like(probs)
        for i in rows:
            np.add.at(marginal[i], cells[:, i], cell_p)
    score = -marginal
    score[rows, decisions] += 1.0
    return decisions, np.where(valid, score, 0.0)


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
        optimizer: ``adam`` (betas 0.9, 0.999) or ``sgd`` (plain gradient steps).
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
        rng = np.random.default_rng(seed)
        choices = np.asarray(loop.space.choices)
        valid = np.arange(choices.max())[None, :] < choices[:, None]
        logits = np.zeros(valid.shape)
        adam = AdamState(logits.shape, self.lr) if self.optimizer == "adam" else None
        cells = loop.space.allowed
        ema_num = ema_den = 0.0
        while not loop.exhausted:
            decisions, score = sample_with_score(logits, valid, cells, rng)
            record = loop.evaluate(loop.space.decode(decisions.tolist()))
            if record is None:
                continue
            ema_num = self.baseline_decay * ema_num + (1 - self.baseline_decay) * record.metric
            ema_den = self.baseline_decay * ema_den + (1 - self.baseline_decay)
            advantage = record.metric - ema_num / ema_den
            grad = -advantage * score  # of the loss -(r - b) log p(cell)
            if adam is None:
                logits -= self.lr * grad
            else:
                adam.step(logits, grad)
        return {"probs": [p[:n].tolist() for p, n in zip(_softmax(logits, valid), choices)],
                "baseline": ema_num / ema_den if ema_den else None}
