"""Cost-aware one-shot search: the expected cost of the found cell in the architecture objective, with a penalty
weight or a budget.

``SearchModule(cost=CostObjective(...))`` (in a config: ``model.cost`` with ``class_path:
search.cost.CostObjective``; flags ``--model.cost.kind flops --model.cost.budget 60``). It works with every
strategy that has architecture alphas (DARTS 1st/2nd order, PC-DARTS, GDAS, DrNAS) and composes with the
regularizers of ``search.robust``:

* **penalty**: ``weight * E[cost] / largest`` is added to the architecture step's validation loss, ``largest`` the
  cost of the dearest cell (so ``weight`` does not depend on the unit);
* **budget**: ``multiplier * E[cost] / budget``, the multiplier updated by dual ascent after every architecture
  step, ``multiplier += dual_lr * (cost / budget - 1)`` (kept >= 0), where ``cost`` is the cost of the cell the
  space's rule picks now (before the budget is enforced). It rises while that cell is over the budget and falls
  while it is under. The returned
  cell is always within the budget: if the space's rule picks one over it, edges are moved to cheaper ops (and,
  in the DARTS space, to cheaper inputs) one at a time, always the move that gives up the least log-probability
  per unit of cost saved (``within_budget``).

``E[cost]`` is ``CostModel.expected`` under the op probabilities the strategy evaluates (softmax of the alphas,
DrNAS's Dirichlet mean, PC-DARTS's edge weights included); for sampling strategies (GDAS) under the one-hot path
sampled in that step, whose straight-through gradient reaches every alpha.
"""
from __future__ import annotations

import math
import sys
from typing import Any

import torch
from torch import Tensor, nn

from ops import Genotype, NB201Space
from search.cost.latency import DEFAULT_CACHE, LatencyMeter
from search.cost.model import COST_KINDS, UNITS, CostModel, count_op_flops, count_op_params, genotype_from_pairs, \
    genotype_pairs, reference_genotype, standalone
from search.robust import ArchRegularizer, check_nonnegative
from supernet import ArchParameters, ArchWeights


class CostObjective(ArchRegularizer):
    """The cost of the found cell's standalone network in the search objective (see the module docstring).

    Args:
        kind: ``params`` (M), ``flops`` (M multiply-adds) or ``latency`` (ms on the search device).
        weight: Penalty weight; with a budget, the multiplier's starting value.
        budget: The most the found cell may cost, in the unit of ``kind`` (``None``: no budget).
        dual_lr: Step of the multiplier's dual ascent (budget mode).
        network: The standalone network priced (``cifar``, ``imagenet``, ``nb201``; ``None``: the space's own).
        channels: Its initial channels (``None``: the published retrain value: 36 DARTS, 16 NB201).
        layers: Its cells (NB201: cells per stage; ``None``: published, 20 / 5).
        image_size: Its input side (``None``: the training images').
        latency_batch_size: Images per timed call (latency).
        latency_repeats: Timed calls per op (their median is kept).
        latency_warmup: Untimed calls first.
        latency_backward: Time forward + backward instead of inference.
        latency_cache: The latency cache file (``null``: none).
    """

    name = "cost"

    def __init__(self, kind: str = "flops", weight: float = 0.0, budget: float | None = None, dual_lr: float = 0.05,
                 network: str | None = None, channels: int | None = None, layers: int | None = None,
                 image_size: int | None = None, latency_batch_size: int = 1, latency_repeats: int = 20,
                 latency_warmup: int = 5, latency_backward: bool = False,
                 latency_cache: str | None = str(DEFAULT_CACHE)) -> None:
        if kind not in COST_KINDS:
            raise ValueError(f"--model.cost.kind must be one of {', '.join(COST_KINDS)}, got {kind!r}")
        check_nonnegative("--model.cost", weight=weight, dual_lr=dual_lr)
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not math.isfinite(budget) or budget <= 0):
            raise ValueError(f"--model.cost.budget must be a positive number of {UNITS[kind]}, got {budget!r}")
        for key, value in (("channels", channels), ("layers", layers), ("image_size", image_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"--model.cost.{key} must be an integer >= 1 (or null: the default), got {value!r}")
        self.kind, self.weight, self.budget, self.dual_lr = kind, float(weight), budget, float(dual_lr)
        self.network, self.channels, self.layers, self.image_size = network, channels, layers, image_size
        self.latency_options = {"batch_size": latency_batch_size, "repeats": latency_repeats,
                                "warmup": latency_warmup, "backward": latency_backward, "cache": latency_cache}
        if kind == "latency":
            LatencyMeter(**{**self.latency_options, "cache": None})  # checks the options now
        self.multiplier = self.weight
        self.model: CostModel | None = None
        self.meter: LatencyMeter | None = None
        self.image_shape: tuple[int, int, int] | None = None
        self._device: torch.device | None = None
        self.largest = self.smallest = 0.0
        self.last_cost = math.nan
        self._strategy: Any = None
        self._sampled: ArchWeights | None = None
        self._saved_latency: dict[str, Any] | None = None

    @property
    def unit(self) -> str:
        """The unit of ``kind``."""
        return UNITS[self.kind]

    # ---- set-up ---------------------------------------------------------------------------------------------------
    def check(self, supernet: nn.Module, arch: nn.Module, strategy: Any) -> None:
        """Needs alphas; settles the network priced for the supernet's space."""
        from retrain.build import NETWORK_KINDS, kinds_for

        if not isinstance(arch, ArchParameters):
            raise ValueError(f"--model.cost: the cost objective acts on architecture alphas; strategy "
                             f"{strategy.name!r} has none (use darts, pcdarts, gdas or drnas)")
        self._strategy = strategy
        self.space = supernet.search_space
        self.num_classes = supernet.classifier.out_features
        own = kinds_for(reference_genotype(self.space))
        if self.network is None:
            self.network = own[0]
        elif self.network not in NETWORK_KINDS.names():
            raise ValueError(f"--model.cost.network must be one of {', '.join(NETWORK_KINDS.names())}, "
                             f"got {self.network!r}")
        elif self.network not in own:
            raise ValueError(f"--model.cost.network {self.network!r} cannot hold a cell of the {self.space.name} "
                             f"space (use {' or '.join(own)})")
        smallest_image = NETWORK_KINDS.get(self.network).min_image_size
        if self.image_size is not None and self.image_size < smallest_image:
            raise ValueError(f"--model.cost.image_size {self.image_size}: the {self.network} network needs images of "
                             f"at least {smallest_image} pixels")

    def build(self, image_shape: tuple[int, int, int], device: torch.device | str = "cpu", reduce: Any = None,
              save: bool = True, check_budget: bool = True) -> CostModel:
        """Measure the cost model for images of ``image_shape`` (``(C, H, W)``; ``image_size`` overrides the side) on
        ``device`` (once per shape and device; the global random-number generators are left untouched). ``reduce``
        (DDP) averages the latencies over ranks, so that every rank optimizes the same objective; ``save``: write the
        latency cache (one rank). Raises ``BudgetError`` (one line) if the budget is below the cheapest cell."""
        channels, height, width = image_shape
        if self.image_size is not None:
            height = width = int(self.image_size)
        shape, device = (channels, height, width), torch.device(device)
        if self.model is None or (shape, device) != (self.image_shape, self._device):
            with torch.random.fork_rng(devices=[]):
                self.model = self._measure(shape, device, save)
        self.image_shape, self._device = shape, device
        model = self.model
        if self.meter is not None and self._saved_latency is not None:
            self._restore_latency(model)
        if self.meter is not None and reduce is not None:
            tables = model.tables["latency"]
            flat = [tables[c] for c in self.space.cell_types] + [torch.tensor([model.fixed["latency"]])]
            flat = [t.cpu() for t in reduce([t.to(device, torch.float64) for t in flat])]
            model.tables["latency"] = dict(zip(self.space.cell_types, flat[:-1]))
            model.fixed["latency"] = float(flat[-1])
        self.smallest, cheapest = model.extreme(self.kind)
        self.largest, _ = model.extreme(self.kind, largest=True)
        if check_budget and self.budget is not None and self.budget < self.smallest:
            raise BudgetError(f"--model.cost.budget {self.budget:g} {self.unit} is below the cheapest cell of the "
                              f"space ({self.smallest:.4g} {self.unit}, {model.network}: {cheapest.to_text()})")
        return model

    def _measure(self, shape: tuple[int, int, int], device: torch.device, save: bool) -> CostModel:
        net = standalone(reference_genotype(self.space), self.network, self.channels, self.layers, self.num_classes,
                         shape[0])
        kinds = ("params", "flops") + (("latency",) if self.kind == "latency" else ())
        self.meter = LatencyMeter(device, **self.latency_options) if self.kind == "latency" else None
        model = CostModel.build(self.space, net, shape, kinds, self.meter)
        if self.meter is not None and save:
            self.meter.save()
        return model

    # ---- the objective --------------------------------------------------------------------------------------------
    def capture(self, weights: ArchWeights) -> None:
        """Keep the architecture step's weights when they are a sampled path (the penalty prices that path)."""
        if any(w.active is not None for w in weights.values()):
            self._sampled = weights

    def expected(self, arch: nn.Module) -> Tensor:
        """``E[cost]`` under this step's sampled path, or else the strategy's evaluation probabilities."""
        weights, self._sampled = self._sampled or self._strategy.eval_weights(arch), None
        ops = {cell: w.ops for cell, w in weights.items()}
        edges = {cell: w.edges for cell, w in weights.items() if w.edges is not None} or None
        return self._model().expected(ops, self.kind, edges)

    def penalty(self, arch: nn.Module) -> Tensor | None:
        """The penalty or the budget term (``None`` when both are off)."""
        scale = self.multiplier / self.budget if self.budget is not None else self.weight / self.largest
        if scale == 0.0 and self.budget is None:
            self._sampled = None
            return None
        return scale * self.expected(arch)

    def update(self, genotype: Genotype) -> None:
        """After an architecture step: record the current cell's cost, and take the dual step (budget mode)."""
        self.last_cost = self._model().genotype_cost(genotype, self.kind)
        if self.budget is not None:
            self.multiplier = max(0.0, self.multiplier + self.dual_lr * (self.last_cost / self.budget - 1.0))

    def within_budget(self, genotype: Genotype, probabilities: dict[str, Tensor]) -> Genotype:
        """``genotype`` as it is without a budget or within it; otherwise ``genotype`` edited one slot at a time
        until it fits, each time the edit that gives up the least log-probability (of ``probabilities``) per unit
        of cost saved, an edit that gains probability first (the budget is never below the cheapest cell, and any
        cell can reach the cheapest by such edits, so this ends within the budget)."""
        if self.budget is None:
            return genotype
        model, space = self._model(), self.space
        choice = genotype_pairs(genotype)
        logp = {cell: p.double().clamp_min(1e-12).log() for cell, p in probabilities.items()}
        cost = model.genotype_cost(genotype, self.kind)
        while cost > self.budget + 1e-12:
            move = min(_moves(space, model.tables[self.kind], choice, logp), key=lambda m: m[0], default=None)
            if move is None:
                break
            _, saved, cell, slot, pair = move
            choice[cell][slot] = pair
            cost -= saved
        return genotype_from_pairs(space, choice, like=genotype)

    # ---- what users see -------------------------------------------------------------------------------------------
    def report(self, genotype: Genotype, arch: nn.Module) -> dict[str, Any]:
        """The cost the model predicts for ``genotype`` beside the real cost of its standalone network (params and
        FLOPs counted, latency measured when the kind is latency), the expected cost and the budget state."""
        model = self._model()
        with torch.random.fork_rng(devices=[]):  # building the network draws initial weights
            net = standalone(genotype, self.network, self.channels, self.layers, self.num_classes, self.image_shape[0])
        real = {"params": count_op_params(net), "flops": count_op_flops(net, self.image_shape)}
        if self.meter is not None:
            real["latency"] = self.meter.time(net, self.image_shape)
        self._sampled = None  # the last step's sampled path is not the distribution
        with torch.no_grad():
            expected = float(self.expected(arch))
        return {"kind": self.kind, "unit": self.unit, "network": model.network, "genotype": genotype.to_text(),
                "predicted": {k: model.genotype_cost(genotype, k) for k in model.kinds}, "real": real,
                "expected": expected, "budget": self.budget, "multiplier": self.multiplier,
                "within_budget": None if self.budget is None else model.genotype_cost(genotype, self.kind)
                <= self.budget + 1e-12,
                "smallest": self.smallest, "largest": self.largest}

    def state_dict(self) -> dict[str, Any]:
        """The multiplier, and the latencies the run optimizes (a resumed run on the same device reuses them)."""
        state: dict[str, Any] = {"multiplier": self.multiplier, "kind": self.kind}
        if self.meter is not None and self.model is not None:
            state["latency"] = {"header": self.meter.header, "shape": list(self.image_shape),
                                "fixed": self.model.fixed["latency"],
                                "tables": {c: t.tolist() for c, t in self.model.tables["latency"].items()}}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (``search.checkpoint.setup_mismatch`` has checked the kind)."""
        self.multiplier = float(state["multiplier"])
        self._saved_latency = state.get("latency")

    def _restore_latency(self, model: CostModel) -> None:
        """Use the checkpoint's latencies when they were measured on this device and software for these images."""
        saved, self._saved_latency = self._saved_latency, None
        if saved["header"] != self.meter.header or tuple(saved["shape"]) != self.image_shape:
            print(f"--resume: the checkpoint's latencies were measured on {saved['header']['device']} with "
                  f"{saved['header']['versions']} for {saved['shape']} images; this is {self.meter.header['device']} "
                  f"with {self.meter.header['versions']}: the search goes on with latencies measured here",
                  file=sys.stderr, flush=True)
            return
        model.tables["latency"] = {c: torch.tensor(t, dtype=torch.float64) for c, t in saved["tables"].items()}
        model.fixed["latency"] = float(saved["fixed"])

    def _model(self) -> CostModel:
        if self.model is None:
            raise RuntimeError("CostObjective.build must run before the search (SearchModule does it at fit start)")
        return self.model


class BudgetError(ValueError):
    """The budget cannot be met by any cell of the space (the CLI reports it in one line)."""


def _moves(space: Any, tables: dict[str, Tensor], choice: dict[str, list[tuple[str, int]]],
           logp: dict[str, Tensor]):
    """Every single edit that makes the cell cheaper: ``(rank, saved, cell, slot, new (op, input))``, ``rank`` the
    log-probability lost per unit saved (an edit that gains probability ranks first, the largest saving first).
    NB201: another op on an edge; DARTS: another op on a kept input, or another input with any op. Across inputs the
    op log-probabilities of the two edges are compared."""
    ops = space.cell_ops()
    nb201 = isinstance(space, NB201Space)
    for cell, pairs in choice.items():
        table, lp = tables[cell], logp[cell]
        for slot, (op, src) in enumerate(pairs):
            node = slot if nb201 else slot // 2
            edge = slot if nb201 else space.edge(node, src)
            here = float(table[edge, space.index(op)])
            used = set() if nb201 else {s for _, s in pairs[2 * node:2 * node + 2]}
            sources = [src] if nb201 else [src] + [j for j in range(node + 2) if j not in used]
            for new_src in sources:
                new_edge = edge if nb201 else space.edge(node, new_src)
                for new_op in ops:
                    saved = here - float(table[new_edge, space.index(new_op)])
                    if saved > 1e-12:
                        lost = float(lp[edge, space.index(op)] - lp[new_edge, space.index(new_op)])
                        rank = (0, -saved) if lost <= 0 else (1, lost / saved)
                        yield rank, saved, cell, slot, (new_op, new_src)
