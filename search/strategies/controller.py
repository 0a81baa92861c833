"""The ENAS controller (Pham et al., ICML 2018, micro search): an LSTM that samples cells decision by decision,
and its REINFORCE update with a moving-average baseline."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from ops import DartsGenotype, DartsSpace, Genotype, NB201Genotype, NB201Space, Registry, SearchSpace
from search.strategies.paths import NONE_OP, one_hot_path
from supernet import ArchWeights


@dataclass
class ControllerOutput:
    """One pass of the controller.

    ``decisions``: per cell type the decisions in sampling order (DARTS: per node ``input_a, input_b, op_a, op_b``
    with ops indexing ``controller.ops``; NB201: the op of each edge). ``log_prob``: sum of the decisions'
    log-probabilities (differentiable). ``entropy``: sum of the entropies of the decisions' distributions
    (detached). ``distributions``: per cell type the probabilities each decision was drawn from (detached).
    """

    decisions: dict[str, list[int]] = field(default_factory=dict)
    log_prob: Tensor | float = 0.0
    entropy: Tensor | float = 0.0
    distributions: dict[str, list[Tensor]] = field(default_factory=dict)


class _Decider:
    """Draws (or replays, or takes the argmax of) each decision and accumulates log-probability and entropy."""

    def __init__(self, generator: torch.Generator | None, forced: dict[str, Sequence[int]] | None) -> None:
        self.generator, self.forced = generator, forced
        self.out = ControllerOutput()
        self._replay: Iterator[int] | None = None
        self._cell = ""

    def start(self, cell: str) -> None:
        self._cell = cell
        self.out.decisions[cell], self.out.distributions[cell] = [], []
        self._replay = iter(self.forced[cell]) if self.forced is not None else None

    def __call__(self, logits: Tensor) -> int:
        log_p = logits.log_softmax(dim=-1)
        p = log_p.detach().exp()
        if self._replay is not None:
            index = int(next(self._replay))
        elif self.generator is None:
            index = int(p.argmax())
        else:
            index = int(torch.multinomial(p.float().cpu(), 1, generator=self.generator))
        self.out.log_prob = self.out.log_prob + log_p[index]
        self.out.entropy = self.out.entropy + torch.special.entr(p).sum()
        self.out.decisions[self._cell].append(index)
        self.out.distributions[self._cell].append(p)
        return index


class EnasController(nn.Module, ABC):
    """LSTM controller of ENAS micro search; a subclass per search space decodes the cells (``CONTROLLERS``).

    LSTM controller of ENAS micro search, for the DARTS cell space or the NB201 space.

    DARTS space (per cell type, normal then reduce, LSTM state carried over): two warm-up steps give the two
    cell inputs their attention keys (their embeddings are zero, as in ENAS); then per node two input decisions
    (attention ``v . tanh(W1 h_j + W2 h)`` over the earlier nodes) and two op decisions (over the non-``none``
    candidates), and one more step whose output becomes the node's embedding. Unlike ENAS the second input is
    drawn without the first (the supernet has one edge per input pair, so a cell needs two distinct inputs).
    NB201 space: one op decision per edge, fed back through the op embedding.

    Logits are ``c * tanh(logits / temperature)`` with ``c = tanh_constant`` for inputs and
    ``tanh_constant / op_tanh_reduce`` for ops (ENAS ``op_tanh_reduce``, applied to the op logits of both cells).
    With ``tanh_constant`` set this bounds how peaked a distribution can get (ENAS's exploration; e.g. at most
    0.38 for one of 5 ops with 1.10 / 2.5). Parameters start uniform in [-0.1, 0.1] (ENAS's fixed logit bias
    towards convolutions is not used). The REINFORCE baseline is the buffer ``baseline``.
    """

    def __init__(self, space: SearchSpace, lstm_size: int = 64, tanh_constant: float | None = 1.10,
                 op_tanh_reduce: float = 2.5, temperature: float | None = None) -> None:
        super().__init__()
        if lstm_size < 1 or op_tanh_reduce <= 0 or (temperature is not None and temperature <= 0):
            raise ValueError("ENAS controller: need lstm_size >= 1, op_tanh_reduce > 0 and temperature > 0 or null")
        self.search_space, self.space = space, space.name
        self.cell_types, self.candidates, self.num_edges = space.cell_types, space.candidates, space.num_edges
        self.ops = space.cell_ops()
        self.tanh_constant, self.op_tanh_reduce, self.temperature = tanh_constant, op_tanh_reduce, temperature
        self.lstm = nn.LSTMCell(lstm_size, lstm_size)
        self.g_emb = nn.Parameter(torch.empty(1, lstm_size))
        self.op_emb = nn.Embedding(len(self.ops), lstm_size)
        self.op_head = nn.Linear(lstm_size, len(self.ops))
        self.build_heads(lstm_size)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)
        self.register_buffer("baseline", torch.zeros(()))

    @classmethod
    def for_supernet(cls, supernet: nn.Module, **kwargs: object) -> "EnasController":
        """The controller of the supernet's search space, for its candidates and cell shape."""
        return CONTROLLERS.get(supernet.search_space.name)(supernet.search_space, **kwargs)

    def build_heads(self, lstm_size: int) -> None:
        """Add the space's own decision heads (before the uniform initialisation)."""

    def _squash(self, logits: Tensor, constant: float | None) -> Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        return logits if constant is None else constant * torch.tanh(logits)

    def _op_constant(self) -> float | None:
        return None if self.tanh_constant is None else self.tanh_constant / self.op_tanh_reduce

    def forward(self, generator: torch.Generator | None = None,
                forced: dict[str, Sequence[int]] | None = None) -> ControllerOutput:
        """Sample a cell (``generator``), replay given ``forced`` decisions, or decode greedily (neither)."""
        decide = _Decider(generator, forced)
        h = c = self.g_emb.new_zeros(self.g_emb.shape)
        for cell in self.cell_types:
            decide.start(cell)
            h, c = self.cell(h, c, decide)
        return decide.out

    @abstractmethod
    def cell(self, h: Tensor, c: Tensor, decide: Callable[[Tensor], int]) -> tuple[Tensor, Tensor]:
        """The decisions of one cell type, from LSTM state ``(h, c)``; returns the state after them."""

    @abstractmethod
    def genotype(self, decisions: dict[str, Sequence[int]]) -> Genotype:
        """The cell the decisions describe."""

    def path(self, decisions: dict[str, Sequence[int]]) -> ArchWeights:
        """Single-path supernet weights of the cell the decisions describe."""
        return self.genotype_path(self.genotype(decisions))

    def genotype_path(self, genotype: Genotype) -> ArchWeights:
        """Single-path supernet weights of ``genotype`` (on the controller's device)."""
        return one_hot_path(self.search_space.edge_ops(genotype), len(self.candidates), self.g_emb.device)

    def op_probabilities(self) -> dict[str, Tensor]:
        """Per cell type ``[num_edges, num_candidates]`` op probabilities, conditional on the greedy decode of the
        earlier decisions."""
        with torch.no_grad():
            out = self()
        return {cell: self.edge_probabilities(out.distributions[cell]) for cell in self.cell_types}

    @abstractmethod
    def edge_probabilities(self, distributions: list[Tensor]) -> Tensor:
        """``[num_edges, num_candidates]`` from one cell type's decision distributions."""


class DartsEnasController(EnasController):
    """The controller for the DARTS space (see ``EnasController``)."""

    def __init__(self, space: DartsSpace, **kwargs: object) -> None:
        self.steps, self.multiplier = space.steps, space.multiplier
        super().__init__(space, **kwargs)

    def build_heads(self, lstm_size: int) -> None:
        """The attention over earlier nodes that picks inputs."""
        self.attn_key = nn.Linear(lstm_size, lstm_size, bias=False)
        self.attn_query = nn.Linear(lstm_size, lstm_size, bias=False)
        self.attn_v = nn.Linear(lstm_size, 1, bias=False)

    def cell(self, h: Tensor, c: Tensor, decide: Callable[[Tensor], int]) -> tuple[Tensor, Tensor]:
        inputs = self.g_emb
        anchors, keys = [], []
        for _ in range(2):
            h, c = self.lstm(inputs, (h, c))
            anchors.append(torch.zeros_like(h))
            keys.append(self.attn_key(h))
        for _ in range(self.steps):
            first = -1
            for _ in range(2):
                h, c = self.lstm(inputs, (h, c))
                logits = self._squash(self.attn_v(torch.tanh(torch.cat(keys) + self.attn_query(h))).view(-1),
                                      self.tanh_constant)
                if first >= 0:
                    logits = logits.masked_fill(torch.arange(len(keys), device=logits.device) == first, float("-inf"))
                index = decide(logits)
                first = index if first < 0 else first
                inputs = anchors[index]
            for _ in range(2):
                h, c = self.lstm(inputs, (h, c))
                op = decide(self._squash(self.op_head(h).view(-1), self._op_constant()))
                inputs = self.op_emb.weight[op].unsqueeze(0)
            h, c = self.lstm(inputs, (h, c))
            anchors.append(h)
            keys.append(self.attn_key(h))
            inputs = self.g_emb
        return h, c

    def genotype(self, decisions: dict[str, Sequence[int]]) -> DartsGenotype:
        """The cell the decisions describe (per node: input a, input b, op a, op b)."""
        concat = tuple(range(2 + self.steps - self.multiplier, 2 + self.steps))
        cells = {}
        for cell in self.cell_types:
            d = decisions[cell]
            cells[cell] = tuple(edge for node in range(self.steps) for edge in (
                (self.ops[d[4 * node + 2]], d[4 * node]), (self.ops[d[4 * node + 3]], d[4 * node + 1])))
        return DartsGenotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=concat)

    def edge_probabilities(self, distributions: list[Tensor]) -> Tensor:
        """For edge ``(node, j)``, the probability that one of the node's two input slots, picked at random, is
        wired to ``j`` with each op (``(p_a(j) q_a + p_b(j) q_b) / 2``); ``none`` holds the rest, i.e. the edge
        going unused."""
        rows = torch.zeros(self.num_edges, len(self.candidates), dtype=torch.float32)
        columns = torch.tensor([self.candidates.index(op) for op in self.ops])
        none = self.candidates.index(NONE_OP)
        for node, edges in enumerate(self.search_space.node_edges()):
            p_a, p_b, q_a, q_b = (d.float().cpu() for d in distributions[4 * node:4 * node + 4])
            for j, e in enumerate(edges):
                rows[e, columns] = 0.5 * (p_a[j] * q_a + p_b[j] * q_b)
                rows[e, none] = 1.0 - rows[e, columns].sum()
        return rows


class NB201EnasController(EnasController):
    """The controller for the NAS-Bench-201 space: one op decision per edge (see ``EnasController``)."""

    def cell(self, h: Tensor, c: Tensor, decide: Callable[[Tensor], int]) -> tuple[Tensor, Tensor]:
        inputs = self.g_emb
        for _ in range(self.num_edges):
            h, c = self.lstm(inputs, (h, c))
            op = decide(self._squash(self.op_head(h).view(-1), self._op_constant()))
            inputs = self.op_emb.weight[op].unsqueeze(0)
        return h, c

    def genotype(self, decisions: dict[str, Sequence[int]]) -> NB201Genotype:
        """The cell the decisions describe (the op of each edge)."""
        return NB201Genotype(edges=tuple(self.ops[d] for d in decisions["normal"]))

    def edge_probabilities(self, distributions: list[Tensor]) -> Tensor:
        """Each edge's op distribution."""
        return torch.stack(distributions).cpu()


CONTROLLERS: Registry[type[EnasController]] = Registry("search space for ENAS", listing="known")
"""The ENAS controller of each search space, by the space's name."""
CONTROLLERS.register(DartsSpace.name, DartsEnasController)
CONTROLLERS.register(NB201Space.name, NB201EnasController)


def reinforce_gradients(controller: EnasController, sample: ControllerOutput, accuracy: Tensor,
                        entropy_weight: float, baseline_decay: float) -> tuple[list[Tensor], dict[str, Tensor]]:
    """ENAS's REINFORCE step, up to the optimizer: ``reward = accuracy + entropy_weight * entropy`` (entropy
    detached), the baseline first moves towards it, ``b <- b - (1 - decay) (b - reward)``, then the loss is
    ``-log_prob * (reward - b)``. Returns its gradients w.r.t. ``controller.parameters()`` (zeros where unused)
    and metrics. ``accuracy`` must be the same on every rank (all-reduced) for the baseline to stay in sync."""
    params = list(controller.parameters())
    reward = accuracy.detach().to(controller.baseline) + entropy_weight * torch.as_tensor(sample.entropy).to(
        controller.baseline)
    with torch.no_grad():
        controller.baseline.sub_((1.0 - baseline_decay) * (controller.baseline - reward))
    advantage = reward - controller.baseline
    loss = -sample.log_prob * advantage
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    metrics = {"controller_reward": reward.detach(), "controller_baseline": controller.baseline.detach().clone(),
               "controller_entropy": torch.as_tensor(sample.entropy).detach()}
    return grads, metrics
