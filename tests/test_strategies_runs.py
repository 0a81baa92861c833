"""Trainer runs of GDAS, ENAS, PC-DARTS, SPOS, DrNAS, the robust-search additions (beta-decay, the DARTS-
auxiliary skip, SDARTS random smoothing, perturbation selection, the NB201 GDAS edge sum) and the cost objective
(measured latency, FLOPs on a sampled path): resuming equals running
through, 2-process CPU DDP keeps every rank's architecture state bit-identical, and DDP without unused-parameter
detection fails at start."""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from search.cost import CostObjective
from search.module import SearchModule
from search.robust import AuxiliarySkip, BetaDecay, RandomSmoothing
from search.selection import PerturbationSelection
from supernet import DartsSearchNetwork, NB201SearchNetwork

pytestmark = pytest.mark.filterwarnings("ignore:.*callbacks used to create the checkpoint.*")

STRATEGIES = ["gdas", "enas", "pcdarts", "spos", "drnas", "beta_decay", "darts_minus", "sdarts_rs", "darts_pt",
              "gdas_nb201_sum", "darts_latency", "gdas_flops"]
"""Run names: a strategy, or a strategy with regularizers / a selection (see ``make_module``)."""
STRATEGY_OF = {"beta_decay": "darts", "darts_minus": "darts", "sdarts_rs": "darts", "darts_pt": "darts",
               "gdas_nb201_sum": "gdas", "darts_latency": "darts", "gdas_flops": "gdas"}
STRATEGY_ARGS: dict[str, dict[str, Any]] = {
    "enas": {"derive_samples": 3, "probe_batches": 2},
    "spos": {"evaluations": 6, "epoch_evaluations": 3, "population_size": 3, "sample_size": 2, "probe_batches": 2},
    "gdas_nb201_sum": {"edge_form": "sum"},
}
MODULE_ARGS: dict[str, dict[str, Any]] = {
    "gdas": {"arch_lr": 3e-2},
    "enas": {"arch_lr": 0.0035, "arch_betas": (0.0, 0.999), "arch_eps": 1e-3, "arch_weight_decay": 0.0},
    "pcdarts": {"arch_lr": 3e-2, "arch_start_epoch": 1},  # the warm-up path: arch steps from epoch 1
    "spos": {},
    "drnas": {"arch_lr": 3e-2},
    "beta_decay": {"arch_lr": 3e-2, "regularizers": lambda: [BetaDecay(weight_start=1.0, weight_end=5.0)]},
    "darts_minus": {"arch_lr": 3e-2, "regularizers": lambda: [AuxiliarySkip()]},
    "sdarts_rs": {"arch_lr": 3e-2, "regularizers": lambda: [RandomSmoothing(epsilon_start=0.3)]},
    "darts_pt": {"arch_lr": 3e-2, "selection": lambda: PerturbationSelection(tune_epochs=1, probe_batches=1)},
    # the authors' NB201 GDAS loop: weights first, Nesterov, alphas clipped with the weights
    "gdas_nb201_sum": {"arch_lr": 3e-2, "weights_first": True, "nesterov": True, "clip_with_arch": True},
    # the cost objective: measured latency (each rank times the ops and the ranks average them; a resume reuses the
    # checkpoint's; runs in one process share a cache, so that the uninterrupted run optimizes the same latencies)
    # and FLOPs on GDAS's sampled path
    "darts_latency": {"arch_lr": 3e-2, "cost": lambda: CostObjective(
        kind="latency", weight=5.0, channels=4, layers=3, image_size=8, latency_repeats=2, latency_warmup=0,
        latency_cache=str(Path(tempfile.gettempdir()) / f"oneshot-nas-test-latency-{os.getpid()}.json"))},
    "gdas_flops": {"arch_lr": 3e-2, "cost": lambda: CostObjective(kind="flops", weight=5.0, channels=4, layers=3,
                                                                  image_size=8)},
}
DENSE = ("pcdarts", "drnas", "beta_decay", "darts_minus", "sdarts_rs", "darts_pt", "darts_latency")
"""Runs that train every supernet parameter each step (plain DDP suffices)."""


class TinySearchData(L.LightningDataModule):
    """Fixed random 8x8 images, not shuffled (so that an interrupted run sees the same batches)."""

    def __init__(self, n: int = 32, batch_size: int = 8, alternating: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(2 * n, 1, 8, 8, generator=g)
        self.y = torch.randint(0, 10, (2 * n,), generator=g)
        if alternating:  # labels 0, 1, 0, 1, ...: under 2-rank DDP one rank sees only 0s, the other only 1s
            self.y = torch.arange(2 * n) % 2
        self.n, self.batch_size = n, batch_size

    def _loader(self, lo: int, hi: int) -> DataLoader:
        return DataLoader(TensorDataset(self.x[lo:hi], self.y[lo:hi]), batch_size=self.batch_size, shuffle=False)

    def train_dataloader(self) -> dict[str, DataLoader]:
        return {"train": self._loader(0, self.n), "val": self._loader(self.n, 2 * self.n)}

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.n, 2 * self.n)


class UnreducedSearchModule(SearchModule):
    """Negative control: rewards and gradients made outside ``manual_backward`` are not all-reduced."""

    def reduce_mean(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return tensors


def make_module(name: str, init_seed: int = 0, module_class: type[SearchModule] = SearchModule) -> SearchModule:
    L.seed_everything(init_seed)
    if name.startswith("gdas_nb201"):
        net: torch.nn.Module = NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=10, in_channels=1)
    else:
        net = DartsSearchNetwork(channels=4, layers=3, steps=2, multiplier=2, num_classes=10, in_channels=1,
                                 partial_channels=2 if name == "pcdarts" else 1)
    kwargs = {k: v() if callable(v) else v for k, v in MODULE_ARGS[name].items()}
    return module_class(net, strategy=STRATEGY_OF.get(name, name), strategy_args=STRATEGY_ARGS.get(name), **kwargs)


def trainer(**kwargs: Any) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    limit_val_batches=2)
    return L.Trainer(**{**defaults, **kwargs})


def strategy_state(module: SearchModule) -> dict[str, Any]:
    """Everything that must survive a resume: arch state (parameters and buffers), strategy state, genotype."""
    state = {f"arch.{k}": v.clone() for k, v in module.arch.state_dict().items()}
    state.update({f"strategy.{k}": v for k, v in module.strategy.state_dict().items()})
    for i, regularizer in enumerate(module.regularizers):
        state.update({f"regularizer{i}.{k}": v for k, v in regularizer.state_dict().items()})
    if module.selection is not None:
        state.update({f"selection.{k}": v for k, v in module.selection.state_dict().items()})
    if module.cost is not None:
        state.update({f"cost.{k}": v for k, v in module.cost.state_dict().items()})
    state["genotype"] = module.genotype().to_text()
    state["supernet"] = torch.cat([p.detach().reshape(-1) for p in module.supernet.parameters()])
    return state


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


class StopAfterFirstEpoch(Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def resumed_state(name: str, tmp_path: Path, restore_strategy: bool = True) -> dict[str, Any]:
    first = make_module(name)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_epochs=1, save_on_train_epoch_end=True)
    trainer(enable_checkpointing=True, callbacks=[checkpoint, StopAfterFirstEpoch()]).fit(first, TinySearchData())
    assert first.current_epoch == 1 and first.trainer.global_step > 0
    second = make_module(name, init_seed=1)  # different initial state: everything must come from the checkpoint
    if not restore_strategy:
        second.strategy.load_state_dict = lambda state: None
    trainer().fit(second, TinySearchData(), ckpt_path=str(tmp_path / "last.ckpt"))
    return strategy_state(second)


@pytest.mark.parametrize("name", STRATEGIES)
def test_resume_equals_uninterrupted(name: str, tmp_path: Path) -> None:
    straight = make_module(name)
    start = {k: v.clone() for k, v in straight.arch.state_dict().items()}
    trainer().fit(straight, TinySearchData())
    expected = strategy_state(straight)
    if name != "spos":
        assert any(not torch.equal(start[k], v) for k, v in straight.arch.state_dict().items())  # it learned
    if name in ("enas", "spos"):  # the cell was selected at the end of each epoch (ArchStepContext.last_batch)
        assert straight.strategy.selected is not None and "selected_acc" in straight.trainer.callback_metrics
    if name == "darts_pt":  # the selection took its decisions in the two epochs
        assert straight.selection.done and sum(map(len, straight.selection.fixed.values())) == 2 * 5
    assert_same_state(resumed_state(name, tmp_path), expected)


@pytest.mark.parametrize("name", ["gdas", "enas", "spos"])
def test_resume_without_strategy_state_differs(name: str, tmp_path: Path) -> None:
    """The check above has teeth: resumed without the strategy state (sampling generator, temperature, selected
    cell) a sampling strategy samples other paths and ends elsewhere."""
    straight = make_module(name)
    trainer().fit(straight, TinySearchData())
    resumed, expected = resumed_state(name, tmp_path, restore_strategy=False), strategy_state(straight)
    assert not torch.equal(resumed["supernet"], expected["supernet"])


# ---------------------------------------------------------------------------------------------------- DDP
def _flat(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors of a ``strategy_state`` to compare across ranks (strings hashed)."""
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.detach().double().reshape(-1)
        elif isinstance(value, (int, float)):
            out[key] = torch.tensor([float(value)], dtype=torch.float64)
        else:
            digest = int(hashlib.sha256(repr(value).encode()).hexdigest()[:12], 16)
            out[key] = torch.tensor([float(digest)], dtype=torch.float64)
    return out


class RankAgreement(Callback):
    """After every epoch, gather each rank's state inside the workers and report equality per key through
    ``callback_metrics`` (which ``ddp_spawn`` returns to the parent), plus a fingerprint min/max."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: SearchModule) -> None:
        metrics, epoch = trainer.callback_metrics, trainer.current_epoch
        unequal = []
        for key, value in _flat(strategy_state(pl_module)).items():
            gathered = pl_module.all_gather(value)
            if not torch.equal(gathered[0], gathered[1]):
                unequal.append(key)
        metrics[f"unequal_{epoch}"] = torch.tensor(float(len(unequal)))
        metrics["world_size"] = torch.tensor(float(trainer.world_size))
        fingerprint = torch.tensor(pl_module.arch_fingerprint(), dtype=torch.float64)
        metrics[f"fp_min_{epoch}"] = trainer.strategy.reduce(fingerprint.clone(), reduce_op="min")
        metrics[f"fp_max_{epoch}"] = trainer.strategy.reduce(fingerprint.clone(), reduce_op="max")
        baseline = getattr(pl_module.arch, "baseline", torch.zeros(()))
        metrics[f"baseline_{epoch}"] = baseline.detach().double().clone()


def _ddp_worker(rank: int, port: int, queue: Any) -> None:
    """One of two CPU processes: run every strategy under DDP (one spawn for all: imports dominate the cost),
    then check that a sampling strategy without unused-parameter detection fails at start."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", NODE_RANK="0",
                      LOCAL_RANK=str(rank), RANK=str(rank))  # Lightning sees externally launched processes
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    for name in STRATEGIES:
        run = trainer(devices=2, strategy=DDPStrategy(find_unused_parameters=name not in DENSE),
                      callbacks=[RankAgreement()])
        run.fit(make_module(name), TinySearchData())  # 32 + 32 images: 2 batches of 8 per rank and epoch
        results[name] = {k: float(v) for k, v in run.callback_metrics.items()}
    run = trainer(devices=2, strategy=DDPStrategy(find_unused_parameters=True), callbacks=[RankAgreement()])
    run.fit(make_module("enas", module_class=UnreducedSearchModule), TinySearchData(alternating=True))
    results["enas_unreduced"] = {k: float(v) for k, v in run.callback_metrics.items()}
    try:
        trainer(devices=2, strategy=DDPStrategy(), max_epochs=1).fit(make_module("gdas"), TinySearchData())
        results["plain_ddp_error"] = ""
    except ValueError as err:
        results["plain_ddp_error"] = str(err)
    if rank == 0:
        queue.put(results)


@pytest.fixture(scope="module")
def ddp_results() -> dict[str, Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_ddp_worker, args=(port, queue), nprocs=2, join=True)
    return queue.get()


@pytest.mark.parametrize("name", STRATEGIES)
def test_ddp_ranks_hold_identical_architecture_state(name: str, ddp_results: dict[str, Any]) -> None:
    m = ddp_results[name]
    assert m["world_size"] == 2
    for epoch in (0, 1):
        assert m[f"unequal_{epoch}"] == 0.0
        assert m[f"fp_min_{epoch}"] == m[f"fp_max_{epoch}"]
    if name == "enas":
        assert m["baseline_1"] != 0.0  # the baseline did move (from the all-reduced reward)


def test_ddp_enas_without_reduced_rewards_drifts(ddp_results: dict[str, Any]) -> None:
    """The check above has teeth: ENAS with rank-local rewards and gradients ends with different controllers."""
    m = ddp_results["enas_unreduced"]
    assert m["unequal_1"] > 0 and m["fp_min_1"] != m["fp_max_1"]


def test_ddp_without_unused_parameter_detection_fails_at_start(ddp_results: dict[str, Any]) -> None:
    assert "ddp_find_unused_parameters_true" in ddp_results["plain_ddp_error"]
