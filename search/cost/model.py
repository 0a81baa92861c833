"""The cost model of a search space: what every candidate op on every edge adds to the standalone network.

The cost that matters is the one of the network a search hands over: the standalone network (``retrain``) of the
found cell at the retrain configuration (DARTS space: C=36, 20 cells; NAS-Bench-201: C=16, N=5, the table's
network), not the supernet. That network's cost is a fixed part (stem, cell preprocessing, reductions, classifier)
plus one term per kept edge, which depends on the op, the cell type and the edge only (every cell of a type holds
the same genotype). ``CostModel.build`` measures those terms once, on the ops exactly as ``retrain`` builds them at
their real input shapes:

* ``params``: parameters, exact (millions);
* ``flops``: multiply-adds of convolutions and linear layers, PyTorch's FLOP counter halved (millions; the
  NAS-Bench-201 table's ``flops_m`` convention);
* ``latency``: milliseconds of the op on the search device (``search.cost.latency``), cached on disk.

The fixed part is the whole network of a reference cell minus its edges' terms (exact for params and FLOPs; for
latency it also absorbs the sums and concatenations between ops).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ops import DartsGenotype, DartsSpace, Genotype, NB201Genotype, NB201Space, create_op
from ops.discretize import NONE_OP
from ops.spaces import SearchSpace
from search.cost.latency import LatencyMeter

COST_KINDS = ("params", "flops", "latency")
UNITS = {"params": "M params", "flops": "M multiply-adds", "latency": "ms"}


@dataclass(frozen=True)
class EdgeSlot:
    """Where one edge's op sits in the standalone network: its cell type, edge index (supernet order), the op's
    input shape ``(C, H, W)`` and stride."""

    cell: str
    edge: int
    shape: tuple[int, int, int]
    stride: int


def count_op_params(module: nn.Module) -> float:
    """Parameters of ``module`` in millions (``retrain.count_parameters``)."""
    from retrain import count_parameters

    return count_parameters(module) / 1e6


def count_op_flops(module: nn.Module, shape: tuple[int, int, int]) -> float:
    """Multiply-adds (millions) of ``module`` on one input of ``shape`` (``(C, H, W)``; ``retrain.count_macs``)."""
    from retrain import count_macs

    return count_macs(module, shape[1:], shape[0]) / 1e6


class CostModel:
    """Per cost kind: ``tables[kind][cell]``, a ``[num_edges, num_ops]`` tensor of what each candidate op adds on
    each edge (summed over the cells of that type), and ``fixed[kind]``, the rest of the network.

    Build with ``CostModel.build``; ``genotype_cost`` prices a discrete cell, ``expected`` the architecture
    distribution (differentiable), ``extreme`` the cheapest and the dearest cell of the space.
    """

    def __init__(self, space: SearchSpace, tables: dict[str, dict[str, Tensor]], fixed: dict[str, float],
                 network: str) -> None:
        self.space = space
        self.tables = tables
        self.fixed = fixed
        self.network = network  # e.g. "cifar, C=36, layers 20, 10 classes, 3x32x32 input"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The cost kinds this model holds."""
        return tuple(self.tables)

    # ---- building -------------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, space: SearchSpace, net: nn.Module, image_shape: tuple[int, int, int], kinds: tuple[str, ...],
              latency: LatencyMeter | None = None, reference: Genotype | None = None) -> "CostModel":
        """Measure every candidate on every edge of ``net`` at input ``image_shape`` (``(C, H, W)``): ``net`` is the
        standalone network (``standalone``) of the cell ``reference`` (default ``reference_genotype(space)``), whose
        whole cost minus its edges' is the fixed part. ``latency`` measures the ``latency`` kind."""
        for kind in kinds:
            if kind not in COST_KINDS:
                raise ValueError(f"unknown cost kind {kind!r}; known: {', '.join(COST_KINDS)}")
        if "latency" in kinds and latency is None:
            raise ValueError("the latency cost kind needs a LatencyMeter")
        slots = edge_slots(space, net, image_shape)
        measures: dict[str, Callable[[nn.Module, tuple[int, int, int]], float]] = {
            "params": lambda m, s: count_op_params(m), "flops": count_op_flops}
        if latency is not None:
            measures["latency"] = latency.measure
        memo: dict[tuple[str, str, tuple[int, int, int], int], float] = {}

        def op_cost(kind: str, op: str, shape: tuple[int, int, int], stride: int) -> float:
            key = (kind, op, shape, stride)
            if key not in memo:
                memo[key] = measures[kind](create_op(op, shape[0], stride, True), shape)
            return memo[key]

        tables = {kind: {cell: torch.zeros(space.num_edges, len(space.candidates), dtype=torch.float64)
                         for cell in space.cell_types} for kind in kinds}
        for kind in kinds:
            for slot in slots:
                for k, op in enumerate(space.candidates):
                    tables[kind][slot.cell][slot.edge, k] += op_cost(kind, op, slot.shape, slot.stride)
        reference = reference or reference_genotype(space)
        whole = {"params": count_op_params(net), "flops": count_op_flops(net, image_shape)}
        if latency is not None:
            whole["latency"] = latency.measure(net, image_shape)
        model = cls(space, tables, {kind: 0.0 for kind in kinds}, describe(net, image_shape))
        model.fixed = {kind: whole[kind] - model.genotype_cost(reference, kind) for kind in kinds}
        if latency is not None:
            model.fixed["latency"] = max(model.fixed["latency"], 0.0)
        return model

    # ---- pricing --------------------------------------------------------------------------------------------------
    def genotype_cost(self, genotype: Genotype, kind: str) -> float:
        """The cost of ``genotype``'s standalone network: the fixed part plus each kept ``(op, input)``'s term (an
        input taken twice by a node, as some zoo cells do, counts twice)."""
        total = self.fixed[kind]
        for cell, pairs in genotype_pairs(genotype).items():
            table = self.tables[kind][cell]
            total += sum(float(table[self.slot_edge(slot, src), self.space.index(op)])
                         for slot, (op, src) in enumerate(pairs))
        return total

    def slot_edge(self, slot: int, source: int) -> int:
        """The edge of the ``slot``-th ``(op, input)`` of a cell (``genotype_pairs`` order) taking ``source``."""
        return slot if isinstance(self.space, NB201Space) else self.space.edge(slot // 2, source)

    def expected(self, weights: Mapping[str, Tensor], kind: str,
                 edge_weights: Mapping[str, Tensor] | None = None) -> Tensor:
        """The expected cost of the discretized cell under per-cell-type ``[num_edges, num_ops]`` op weights
        (differentiable in them). NAS-Bench-201 keeps every edge: ``sum_e sum_k p_ek c_ek``. The DARTS space keeps
        each edge's strongest non-``none`` op and two inputs per node: an edge costs its non-``none`` ops' weights,
        renormalized, times their costs, and counts with the probability that a Plackett-Luce draw of two inputs
        weighted by the DARTS rule's edge strength (its largest non-``none`` weight, times the PC-DARTS edge weight)
        takes it. One-hot weights of a genotype give exactly ``genotype_cost``."""
        any_weights = next(iter(weights.values()))
        total = torch.tensor(self.fixed[kind], dtype=any_weights.dtype, device=any_weights.device)
        for cell in self.space.cell_types:
            p = weights[cell]
            cost = self.tables[kind][cell].to(p.device, p.dtype)
            if isinstance(self.space, NB201Space):
                total = total + (p * cost).sum()
                continue
            allowed = [k for k, op in enumerate(self.space.candidates) if op != NONE_OP]
            real = p[:, allowed]
            mass = real.sum(-1)  # zero where a sampled path put `none` on the edge: it then costs nothing
            edge_cost = torch.where(mass > 1e-6, (real * cost[:, allowed]).sum(-1) / mass.clamp_min(1e-6), 0.0)
            strength = real.max(-1).values
            if edge_weights is not None:
                strength = strength * edge_weights[cell].to(p.dtype)
            for edges in self.space.node_edges():
                total = total + (top2_inclusion(strength[edges]) * edge_cost[edges]).sum()
        return total

    def extreme(self, kind: str, largest: bool = False) -> tuple[float, Genotype]:
        """The cost and the genotype of the space's cheapest (or dearest) cell."""
        pick = max if largest else min
        ops = self.space.cell_ops()
        choice: dict[str, list[tuple[str, int]]] = {}
        total = self.fixed[kind]
        for cell in self.space.cell_types:
            table = self.tables[kind][cell]
            best = [pick(ops, key=lambda op: float(table[e, self.space.index(op)])) for e in range(table.shape[0])]
            prices = [float(table[e, self.space.index(op)]) for e, op in enumerate(best)]
            if isinstance(self.space, NB201Space):
                choice[cell] = [(op, e) for e, op in enumerate(best)]
                total += sum(prices)
                continue
            choice[cell] = []
            for edges in self.space.node_edges():
                ranked = sorted(range(len(edges)), key=lambda j: prices[edges[j]], reverse=largest)[:2]
                choice[cell].extend((best[edges[j]], j) for j in ranked)
                total += sum(prices[edges[j]] for j in ranked)
        return total, genotype_from_pairs(self.space, choice)


def genotype_pairs(genotype: Genotype) -> dict[str, list[tuple[str, int]]]:
    """Per cell type, the ``(op, input)`` of every slot of ``genotype`` (NB201: ``(op, edge)``)."""
    if isinstance(genotype, NB201Genotype):
        return {"normal": [(op, e) for e, op in enumerate(genotype.edges)]}
    return {"normal": list(genotype.normal), "reduce": list(genotype.reduce)}


def top2_inclusion(strength: Tensor) -> Tensor:
    """For each entry, the probability that it is among two items drawn without replacement with probabilities
    proportional to ``strength``: ``s_e / S + sum_{j != e} (s_j / S) s_e / (S - s_j)``; ones for two items."""
    if strength.numel() <= 2:
        return torch.ones_like(strength)
    s = strength.double() + 1e-12  # float64: the rest after the first draw must not cancel to 0
    n = s.numel()
    others = ~torch.eye(n, dtype=torch.bool, device=s.device)
    rest = torch.stack([s[others[j]].sum() for j in range(n)])  # sum of the other strengths, no subtraction
    total = s.sum()
    first = s / total
    second = (first.unsqueeze(1) * s.unsqueeze(0) / rest.unsqueeze(1)) * others  # [j, e]: j first, then e
    return (first + second.sum(0)).to(strength.dtype)


def edge_slots(space: SearchSpace, net: nn.Module, image_shape: tuple[int, int, int]) -> list[EdgeSlot]:
    """Every edge of every cell of the standalone network ``net``: the input shape and stride of its op, read
    from one forward pass (hooks on the cells)."""
    from retrain.darts_net import DartsCell
    from retrain.nb201_net import NB201Cell

    seen: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = []
    for module in net.modules():
        if isinstance(module, DartsCell):
            hooks.append(module.preprocess1.register_forward_hook(
                lambda m, args, out, cell=module: seen.append((cell, tuple(out.shape[1:])))))
        elif isinstance(module, NB201Cell):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, cell=module: seen.append((cell, tuple(args[0].shape[1:])))))
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, *image_shape))
    finally:
        for hook in hooks:
            hook.remove()
    slots = []
    for cell, shape in seen:
        if isinstance(space, NB201Space):
            slots.extend(EdgeSlot("normal", e, shape, 1) for e in range(space.num_edges))
            continue
        cell_type = "reduce" if cell.reduction else "normal"
        stride = 2 if cell.reduction else 1
        c, h, w = shape
        node_shape = (c, -(-h // stride), -(-w // stride))
        for node, edges in enumerate(space.node_edges()):
            for j, e in enumerate(edges):
                slots.append(EdgeSlot(cell_type, e, shape if j < 2 else node_shape, stride if j < 2 else 1))
    return slots


def reference_genotype(space: SearchSpace, like: Genotype | None = None) -> Genotype:
    """A cell of ``space`` to measure the fixed part with: the first allowed op on every kept edge (DARTS: inputs
    0 and 1 of every node, concatenating the nodes ``like`` concatenates, else the last ``multiplier``)."""
    op = space.cell_ops()[0]
    if isinstance(space, NB201Space):
        return NB201Genotype(edges=(op,) * space.num_edges)
    return genotype_from_pairs(space, {cell: [(op, j) for _ in space.node_edges() for j in (0, 1)]
                             for cell in space.cell_types}, like)


def genotype_from_pairs(space: SearchSpace, choice: dict[str, list[tuple[str, int]]], like: Genotype | None = None
                        ) -> Genotype:
    """The genotype of ``space`` with the per-cell-type ``(op, input)`` slots ``choice`` (``genotype_pairs``'s
    form), concatenating the nodes ``like`` does (default: the last ``multiplier``)."""
    if isinstance(space, NB201Space):
        return NB201Genotype(edges=tuple(op for op, _ in choice["normal"]))
    assert isinstance(space, DartsSpace)
    concat = tuple(range(2 + space.steps - space.multiplier, 2 + space.steps))
    normal_concat, reduce_concat = (like.normal_concat, like.reduce_concat) if isinstance(like, DartsGenotype) \
        else (concat, concat)
    return DartsGenotype(normal=tuple(choice["normal"]), normal_concat=normal_concat, reduce=tuple(choice["reduce"]),
                         reduce_concat=reduce_concat)


def describe(net: nn.Module, image_shape: tuple[int, int, int]) -> str:
    """One line naming the standalone network a cost model prices."""
    config = net.cost_config
    return (f"{config['kind']} network, C={config['channels']}, layers {config['layers']}, "
            f"{config['num_classes']} classes, {'x'.join(map(str, image_shape))} input")


def standalone(genotype: Genotype, kind: str, channels: int | None, layers: int | None, num_classes: int,
               in_channels: int) -> nn.Module:
    """The standalone network a cost model prices (published ``channels`` / ``layers`` when ``None``), remembering
    its configuration in ``cost_config``."""
    from retrain import build_network
    from retrain.build import NETWORK_KINDS

    spec = NETWORK_KINDS.get(kind)
    config = {"kind": kind, "channels": spec.channels if channels is None else channels,
              "layers": spec.layers if layers is None else layers, "num_classes": num_classes,
              "in_channels": in_channels}
    net = build_network(genotype, **config)
    net.cost_config = config
    return net
