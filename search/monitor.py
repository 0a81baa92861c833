"""Watching a search for collapse: parameter-free ops in the genotype, the Hessian eigenvalue of the validation
loss w.r.t. the architecture alphas, and the early stop of Zela et al. (ICLR 2020, "Understanding and Robustifying
Differentiable Architecture Search", code: automl/RobustDARTS).

``CollapseMonitor`` is a Lightning callback; from the command line::

    python -m search.darts --config cifar.yaml --trainer.callbacks+=search.monitor.CollapseMonitor \\
        --trainer.callbacks.early_stop=true

or in a config under ``trainer.callbacks`` as ``- class_path: search.monitor.CollapseMonitor`` with ``init_args``.
It writes ``monitor.json`` into the run folder (the Trainer's ``log_dir``) after every epoch.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from ops import DartsGenotype, Genotype, NB201Genotype, create_op
from ops.jsonfile import write_json
from search.callbacks import SearchOutputs
from supernet import ArchParameters

MONITOR_VERSION = 1
_PROBE_CHANNELS = 4


# ---- parameter-free ops ------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def is_parameter_free(op: str) -> bool:
    """Whether op ``op`` has no parameters, as built by ``ops.create_op(op, C, 1, affine=False)`` (cached per
    name): True for none, skip_connect and the pools, False for convolutions; works for any registered op."""
    return not any(True for _ in create_op(op, _PROBE_CHANNELS, 1, affine=False).parameters())


def param_free_ops(genotype: Genotype) -> int:
    """The number of parameter-free ops in ``genotype``: the kept edges of both cells (DARTS) or the six edges,
    ``none`` included (NB201)."""
    if isinstance(genotype, DartsGenotype):
        ops = [op for op, _ in genotype.normal + genotype.reduce]
    elif isinstance(genotype, NB201Genotype):
        ops = list(genotype.edges)
    else:
        raise ValueError(f"param_free_ops: unknown genotype type {type(genotype).__name__}")
    return sum(is_parameter_free(op) for op in ops)


# ---- the Hessian eigenvalue --------------------------------------------------------------------------------
def dominant_eigenvalue(loss_fn: Callable[[], Tensor], params: Sequence[Tensor], iterations: int = 20,
                        generator: torch.Generator | None = None,
                        reduce: Callable[[Tensor], Tensor] | None = None) -> float:
    """The largest eigenvalue of the Hessian of ``loss_fn()`` w.r.t. all ``params`` together (flattened and
    concatenated), by power iteration on Hessian-vector products.

    ``loss_fn()`` is called once; its gradient is kept with ``create_graph=True`` and every step is one more
    backward pass (double backward). The start vector is ``randn`` from ``generator`` (a CPU generator; seeded
    alike on every rank it gives every rank the same start). The result is the Rayleigh quotient after
    ``iterations`` steps. Power iteration finds the eigenvalue of largest *magnitude*; when that one is negative,
    a second run of ``iterations`` steps on ``H - lambda I`` finds the largest (algebraic) eigenvalue, so the
    result is ``max(eigvals(H))`` as in Zela et al. ``reduce`` (e.g. a DDP all-reduce mean) is applied to every
    Hessian-vector product: the eigenvalue is then that of the mean Hessian over the ranks' batches.
    """
    params = list(params)
    if not params:
        raise ValueError("dominant_eigenvalue: params is empty")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"dominant_eigenvalue: iterations must be an integer >= 1, got {iterations!r}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True, allow_unused=True)
    grad = _flat(grads, params)

    def hvp(v: Tensor) -> Tensor:
        if grad.requires_grad:
            hv = _flat(torch.autograd.grad(grad, params, grad_outputs=v, retain_graph=True, allow_unused=True), params)
        else:  # the loss is linear in params: a zero Hessian
            hv = torch.zeros_like(v)
        return reduce(hv) if reduce is not None else hv

    def power(shift: float) -> float:
        v = torch.randn(grad.numel(), generator=generator, dtype=torch.float64).to(grad.device, grad.dtype)
        v = v / v.norm()
        value = 0.0
        for _ in range(iterations):
            hv = hvp(v) - shift * v
            value = float(torch.dot(v, hv))
            norm = float(hv.norm())
            if norm == 0.0 or not math.isfinite(norm):
                break
            v = hv / norm
        return value + shift

    top = power(0.0)
    return power(top) if top < 0 else top


def _flat(parts: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensor:
    return torch.cat([(p if p is not None else torch.zeros_like(q)).reshape(-1) for p, q in zip(parts, like)])


def arch_hessian_eigenvalue(module: L.LightningModule, batch: tuple[Tensor, Tensor], iterations: int = 20,
                            seed: int = 0, reduce: Callable[[Tensor], Tensor] | None = None) -> float:
    """``dominant_eigenvalue`` of the validation cross-entropy of ``batch`` w.r.t. all alphas of a
    ``SearchModule`` with ``ArchParameters`` (concatenated over cell types), the logits being
    ``module.supernet(x, module.transform(module.strategy.weights(module.arch), "arch"))``.

    Side-effect free: BatchNorm runs in training mode (batch statistics) and all supernet buffers (running
    statistics) are put back afterwards, as are the modules' train/eval modes, the strategy's and the
    regularizers' state (e.g. the GDAS Gumbel generator) and the global random-number generators.
    """
    arch = module.arch
    if not isinstance(arch, ArchParameters):
        raise ValueError(f"arch_hessian_eigenvalue needs architecture alphas; strategy {module.strategy.name!r} "
                         "has none")
    x, y = batch
    supernet = module.supernet
    regularizers = list(getattr(module, "regularizers", []))
    strategy_state = copy.deepcopy(module.strategy.state_dict())
    regularizer_states = [copy.deepcopy(r.state_dict()) for r in regularizers]
    buffers = [(b, b.detach().clone()) for b in supernet.buffers()]
    modes = [(m, m.training) for m in supernet.modules()]
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] \
        if x.device.type == "cuda" else []

    def loss_fn() -> Tensor:
        weights = module.transform(module.strategy.weights(arch), "arch")
        return F.cross_entropy(supernet(x, weights), y)

    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            supernet.train()
            params = [arch.alphas[cell] for cell in arch.cell_types]
            return dominant_eigenvalue(loss_fn, params, iterations, torch.Generator().manual_seed(seed), reduce)
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for submodule, mode in modes:
            submodule.training = mode
        module.strategy.load_state_dict(strategy_state)
        for regularizer, state in zip(regularizers, regularizer_states):
            regularizer.load_state_dict(state)


# ---- the early-stopping rule -------------------------------------------------------------------------------
def zela_stop_epoch(eigenvalues: Sequence[float], window: int = 5, delta: int = 4, factor: float = 1.3,
                    start_epoch: int = 10, ev_freq: int = 1) -> int | None:
    """The epoch whose architecture Zela et al.'s early stop returns, or ``None`` if it never fires on
    ``eigenvalues`` (``eigenvalues[i]`` measured at epoch ``i * ev_freq``; this callback: every epoch).

    Re-implements ``EVLocalAvg.update`` / ``early_stop`` of automl/RobustDARTS ``src/utils.py``, scanning the
    measurements in order and returning at the first one where the rule fires. With ``h = floor(window / 2)``,
    at measurement ``i`` (epoch ``e = i * ev_freq``), once ``i + 1 >= ceil(window / 2)``:

    * the local average ``la_i`` is the mean of the last ``window`` eigenvalues up to ``i`` (fewer at the start),
      attributed to ``la_epoch = e - ev_freq * h`` (the window's centre);
    * if ``la_epoch - ev_freq * delta >= start_epoch`` and ``la_i / la_{i - delta} > factor``, the rule fires and
      returns ``stop_epoch = la_epoch - ev_freq * delta`` (the centre of the earlier window).

    Defaults (window 5, delta 4, factor 1.3, start 10, every epoch): the first decision is at epoch 16, and a
    stop decided at epoch ``e`` returns epoch ``e - 6``. The reference scripts measure every 2 epochs
    (``--report_freq_hessian 2``), i.e. ``ev_freq=2``: ``stop_epoch = (e - 2 * h) - 2 * delta``. Like the
    reference, the caller makes no decision in the last epoch of training.
    """
    if window < 1 or delta < 1 or ev_freq < 1 or start_epoch < 0:
        raise ValueError(f"zela_stop_epoch: window, delta and ev_freq must be >= 1 and start_epoch >= 0, got "
                         f"window={window}, delta={delta}, ev_freq={ev_freq}, start_epoch={start_epoch}")
    half = window // 2
    averages: dict[int, float] = {}
    for i in range(len(eigenvalues)):
        if i + 1 < math.ceil(window / 2):
            continue
        recent = eigenvalues[max(0, i + 1 - window): i + 1]
        averages[i] = sum(recent) / len(recent)
        la_epoch = i * ev_freq - ev_freq * half
        stop_epoch = la_epoch - ev_freq * delta
        if stop_epoch >= start_epoch and _ratio(averages[i], averages[i - delta]) > factor:
            return stop_epoch
    return None


def _ratio(current: float, previous: float) -> float:
    if previous != 0:
        return current / previous
    return math.copysign(math.inf, current) if current != 0 else math.nan


# ---- the callback ------------------------------------------------------------------------------------------
class CollapseMonitor(Callback):
    """Log signs of the DARTS collapse after every training epoch and optionally stop the search early.

    Logs ``param_free_ops`` (parameter-free ops in ``pl_module.genotype()``, see ``param_free_ops``) and, for
    strategies whose architecture state is ``ArchParameters``, ``hessian_eigenvalue``: the largest eigenvalue of
    the Hessian of the validation cross-entropy w.r.t. all alphas, on the last ``batch["val"]`` of the epoch
    (``arch_hessian_eigenvalue``; ``iterations`` power-iteration steps from a start seeded by ``seed``; under
    DDP every Hessian-vector product is averaged across ranks). ENAS/SPOS (no alphas): the eigenvalue is skipped
    with one message. Rank 0 writes ``monitor.json`` (strict JSON) into the run folder every epoch.

    Early stop (``early_stop=True``): the rule of Zela et al. on the per-epoch eigenvalues (``zela_stop_epoch``
    with ``ev_freq=1``: sliding means over ``window`` epochs; at epoch ``e``, with ``la_epoch = e - window // 2``,
    stop when ``la_epoch - delta >= start_epoch`` and the mean centred at ``la_epoch`` exceeds ``factor`` times
    the mean centred at ``la_epoch - delta``; never in the last epoch). On a stop it sets
    ``trainer.should_stop``, logs ``early_stop_epoch`` and one line, and at ``on_train_end`` loads the
    architecture state (``arch.state_dict()``, kept per epoch) of ``stop_epoch = la_epoch - delta`` back into
    ``pl_module.arch``, so the final genotype is that epoch's. ``SearchOutputs`` writes ``genotype.json`` in its
    ``on_train_end``: list this callback before it (the CLI does: its own ``SearchOutputs`` comes last).

    History, stop decision and the kept architecture states are in the checkpoint (``state_dict``), so a
    resumed run continues the rule (a run resumed after a stop ends at once).

    Args:
        eigenvalue: Compute the Hessian eigenvalue.
        iterations: Power-iteration steps per epoch (each one double backward pass on one batch).
        early_stop: Stop by the rule of Zela et al. (needs ``eigenvalue``).
        window: Epochs per sliding mean.
        delta: How many epochs earlier the compared mean lies.
        factor: Stop when the ratio of the two means exceeds this.
        start_epoch: No stop returning an epoch before this one (RobustDARTS ``es_start_epoch``).
        seed: Seed of the power iteration's start vector.
    """

    def __init__(self, eigenvalue: bool = True, iterations: int = 20, early_stop: bool = False, window: int = 5,
                 delta: int = 4, factor: float = 1.3, start_epoch: int = 10, seed: int = 0) -> None:
        def integer(value: Any, low: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        checks = [
            (isinstance(eigenvalue, bool), "eigenvalue", "true or false", eigenvalue),
            (integer(iterations, 1), "iterations", "an integer >= 1", iterations),
            (isinstance(early_stop, bool), "early_stop", "true or false", early_stop),
            (integer(window, 1), "window", "an integer >= 1", window),
            (integer(delta, 1), "delta", "an integer >= 1", delta),
            (isinstance(factor, (int, float)) and not isinstance(factor, bool) and math.isfinite(factor)
             and factor > 0, "factor", "a finite number > 0", factor),
            (integer(start_epoch, 0), "start_epoch", "an integer >= 0", start_epoch),
            (integer(seed, 0), "seed", "an integer >= 0", seed),
            (not (early_stop is True and eigenvalue is False), "early_stop", "false when eigenvalue is false "
             "(the rule needs the eigenvalues)", early_stop),
        ]
        for ok, name, allowed, value in checks:
            if not ok:
                raise ValueError(f"CollapseMonitor: {name} must be {allowed}, got {value!r}")
        self.eigenvalue, self.iterations, self.early_stop = eigenvalue, iterations, early_stop
        self.window, self.delta, self.factor = window, delta, float(factor)
        self.start_epoch, self.seed = start_epoch, seed
        self.history: list[dict[str, Any]] = []
        self.stop: dict[str, Any] | None = None
        self.snapshots: dict[int, dict[str, Tensor]] = {}
        self.run_dir: Path | None = None
        self._val_batch: tuple[Tensor, Tensor] | None = None
        self._told_no_alphas = False

    # ---- hooks ----
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # ``trainer.log_dir`` is a collective under DDP: every rank asks, once, here.
        self.run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        callbacks = list(trainer.callbacks)
        mine = next((i for i, c in enumerate(callbacks) if c is self), len(callbacks))
        if self.early_stop and any(isinstance(c, SearchOutputs) for c in callbacks[:mine]):
            rank_zero_warn("CollapseMonitor comes after SearchOutputs in the callbacks: genotype.json is then "
                           "written before an early stop restores its architecture; list CollapseMonitor first")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run resumed after an early stop ends at once."""
        if self.stop is not None:
            trainer.should_stop = True
            rank_zero_info(f"CollapseMonitor: the search was stopped early at epoch {self.stop['decided_at_epoch']}"
                           "; not training further")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Keep the (detached) architecture batch for the end-of-epoch eigenvalue."""
        if self.eigenvalue and isinstance(batch, dict) and "val" in batch:
            self._val_batch = tuple(t.detach() for t in batch["val"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure, log, apply the early-stop rule, write ``monitor.json``."""
        epoch = trainer.current_epoch
        record: dict[str, Any] = {"epoch": epoch, "param_free_ops": param_free_ops(pl_module.genotype()),
                                  "hessian_eigenvalue": self._measure(trainer, pl_module)}
        pl_module.log("param_free_ops", float(record["param_free_ops"]), on_step=False, on_epoch=True,
                      sync_dist=False)
        if record["hessian_eigenvalue"] is not None:
            pl_module.log("hessian_eigenvalue", record["hessian_eigenvalue"], on_step=False, on_epoch=True,
                          sync_dist=False)
        self.history = sorted([r for r in self.history if r["epoch"] != epoch] + [record], key=lambda r: r["epoch"])
        if self.early_stop and record["hessian_eigenvalue"] is not None:
            self._apply_rule(trainer, pl_module, epoch)
        if trainer.is_global_zero and self.run_dir is not None:
            self._write()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After an early stop: put the stop epoch's architecture back."""
        if self.stop is not None and self.stop["stop_epoch"] in self.snapshots:
            pl_module.arch.load_state_dict(self.snapshots[self.stop["stop_epoch"]])

    # ---- work ----
    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
        if not self.eigenvalue:
            return None
        if not isinstance(getattr(pl_module, "arch", None), ArchParameters):
            if not self._told_no_alphas:
                name = getattr(getattr(pl_module, "strategy", None), "name", "?")
                rank_zero_info(f"CollapseMonitor: strategy {name!r} has no architecture alphas; the Hessian "
                               "eigenvalue (and early stopping) is skipped, param_free_ops is still logged")
                self._told_no_alphas = True
            return None
        if self._val_batch is None:
            return None
        reduce = (lambda v: trainer.strategy.reduce(v, reduce_op="mean")) if trainer.world_size > 1 else None
        value = arch_hessian_eigenvalue(pl_module, self._val_batch, self.iterations, self.seed, reduce)
        self._val_batch = None
        return value

    def _apply_rule(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        self.snapshots[epoch] = {k: v.detach().clone() for k, v in pl_module.arch.state_dict().items()}
        last_epoch = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch + 1
        eigenvalues = [r["hessian_eigenvalue"] for r in self.history]
        contiguous = [r["epoch"] for r in self.history] == list(range(epoch + 1)) and None not in eigenvalues
        if self.stop is None and not last_epoch and contiguous:
            stop_epoch = zela_stop_epoch(eigenvalues, self.window, self.delta, self.factor, self.start_epoch)
            if trainer.world_size > 1:  # ranks agree by construction; make sure
                stop_epoch = trainer.strategy.broadcast(stop_epoch, src=0)
            if stop_epoch is not None:
                self._decide(trainer, pl_module, epoch, stop_epoch)
        keep = epoch + 1 - self.window // 2 - self.delta
        stop_epoch = self.stop["stop_epoch"] if self.stop is not None else None
        self.snapshots = {e: s for e, s in self.snapshots.items() if e >= keep or e == stop_epoch}

    def _decide(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int, stop_epoch: int) -> None:
        trainer.should_stop = True
        self.stop = {"decided_at_epoch": epoch, "stop_epoch": stop_epoch, "genotype": None}
        pl_module.log("early_stop_epoch", float(stop_epoch), on_step=False, on_epoch=True, sync_dist=False)
        snapshot = self.snapshots.get(stop_epoch)
        if snapshot is None:
            rank_zero_warn(f"CollapseMonitor: early stop at epoch {epoch}, but the architecture of epoch {stop_epoch}"
                           " was not kept (early_stop was off then); the current architecture stays")
            return
        arch = copy.deepcopy(pl_module.arch)
        arch.load_state_dict(snapshot)
        genotype = pl_module.strategy.genotype(arch, pl_module.supernet)
        self.stop["genotype"] = genotype.to_dict()
        n = len(self.history)  # epochs 0..n-1, one eigenvalue each
        current, previous = (max(0, n - self.window), n), (max(0, n - self.delta - self.window), n - self.delta)
        rank_zero_info(f"CollapseMonitor: the mean Hessian eigenvalue of epochs {current[0]}-{current[1] - 1} is "
                       f"{self._mean_ratio(current, previous):.3g}x that of epochs {previous[0]}-{previous[1] - 1} "
                       f"(> {self.factor}); stopping after epoch {epoch}, keeping the architecture of epoch "
                       f"{stop_epoch}: {genotype.to_text()}")

    def _mean_ratio(self, current: tuple[int, int], previous: tuple[int, int]) -> float:
        values = [r["hessian_eigenvalue"] for r in self.history]
        means = [sum(values[a:b]) / (b - a) for a, b in (current, previous)]
        return _ratio(*means)

    def _write(self) -> None:
        write_json(self.run_dir / "monitor.json", {
            "format_version": MONITOR_VERSION,
            "description": "per epoch: param_free_ops, the parameter-free ops (none, skip, pooling) in the genotype; "
                           "hessian_eigenvalue, the largest eigenvalue of the Hessian of the validation "
                           "cross-entropy w.r.t. all alphas on the epoch's last architecture batch (null: not "
                           "computed or not finite); early_stop: the stop decision of Zela et al.'s rule (null: none)",
            "settings": {"eigenvalue": self.eigenvalue, "iterations": self.iterations, "early_stop": self.early_stop,
                         "window": self.window, "delta": self.delta, "factor": self.factor,
                         "start_epoch": self.start_epoch, "seed": self.seed},
            "epochs": [{**r, "hessian_eigenvalue": _finite_or_none(r["hessian_eigenvalue"])} for r in self.history],
            "early_stop": self.stop,
        })

    # ---- checkpoint ----
    def state_dict(self) -> dict[str, Any]:
        """History, stop decision and the kept architecture states (saved in checkpoints)."""
        return {"version": MONITOR_VERSION, "history": copy.deepcopy(self.history), "stop": copy.deepcopy(self.stop),
                "snapshots": {e: {k: v.clone() for k, v in s.items()} for e, s in self.snapshots.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (a resumed run continues the rule)."""
        self.history = copy.deepcopy(list(state_dict.get("history", [])))
        self.stop = copy.deepcopy(state_dict.get("stop"))
        self.snapshots = {int(e): dict(s) for e, s in state_dict.get("snapshots", {}).items()}


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
