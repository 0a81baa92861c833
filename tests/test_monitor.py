"""CollapseMonitor: the power-iteration eigenvalue against exact Hessians, parameter-free op counts, Zela et al.'s
early-stop rule, and tiny fits that log, write monitor.json, stop early and restore the stop epoch's cell."""
from __future__ import annotations

import copy
import json
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

import search.monitor as monitor_module
from nasdata import DigitsDataModule
from ops import Genotype, NB201Genotype
from search.callbacks import SearchOutputs
from search.module import SearchModule
from search.monitor import (CollapseMonitor, arch_hessian_eigenvalue, dominant_eigenvalue, is_parameter_free,
                            param_free_ops, zela_stop_epoch)
from supernet import CellWeights, DartsSearchNetwork, NB201SearchNetwork


def _nb201() -> NB201SearchNetwork:
    return NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=10, in_channels=1)


def _darts() -> DartsSearchNetwork:
    return DartsSearchNetwork(channels=4, layers=3, steps=1, multiplier=1, num_classes=10, in_channels=1)


def _data() -> DigitsDataModule:
    return DigitsDataModule(batch_size=16, subset=64, search_split=True)


def _val_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)  # the loader's shuffle
    data = _data()
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()["val"]))
    return x.double(), y


def _trainer(epochs: int, root, **kw) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     default_root_dir=root, limit_train_batches=1, limit_val_batches=1, **kw)


def _module(build, scale: float = 1.0, **kw) -> SearchModule:
    """A float64 SearchModule of the supernet ``build()`` whose alphas are moved away from uniform (seeded)."""
    torch.manual_seed(0)
    module = SearchModule(build(), **kw).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for alpha in module.arch.alphas.values():
            alpha.add_(scale * torch.randn(alpha.shape, generator=generator, dtype=alpha.dtype))
    return module


def _loss_of_flat(module: SearchModule, x, y):
    """The validation loss as a function of the flattened alphas (the DARTS strategy's weights: softmax)."""
    cells = module.arch.cell_types
    shapes = [module.arch.alphas[c].shape for c in cells]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = flat.split([s.numel() for s in shapes])
        weights = {c: CellWeights(ops=p.view(s).softmax(-1)) for c, p, s in zip(cells, parts, shapes)}
        return F.cross_entropy(module.supernet(x, weights), y)

    return loss, torch.cat([module.arch.alphas[c].detach().reshape(-1) for c in cells])


# ---- (a) power iteration on a quadratic ----------------------------------------------------------------------
@pytest.mark.parametrize("spectrum", [[4.0, 1.5, 1.0, 0.5, 0.2, 0.0, -0.3, -1.0],    # largest = largest |.|
                                      [3.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, -6.0]])  # most negative dominates
def test_dominant_eigenvalue_of_a_quadratic(spectrum):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ q.T
    a = (a + a.T) / 2
    # two parameter tensors, concatenated in order: x = [p1.flatten(), p2]
    p1 = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        x = torch.cat([p1.reshape(-1), p2])
        return 0.5 * x @ a @ x

    value = dominant_eigenvalue(loss, [p1, p2], 60, torch.Generator().manual_seed(0))
    assert abs(value - torch.linalg.eigvalsh(a).max().item()) < 1e-4
    assert p1.grad is None and p2.grad is None  # autograd.grad only: nothing accumulated
    with pytest.raises(ValueError, match="iterations"):
        dominant_eigenvalue(loss, [p1, p2], 0)


# ---- (b) the supernet Hessian w.r.t. the alphas ----------------------------------------------------------------
def test_power_iteration_matches_the_exact_hessian_of_an_nb201_supernet():
    x, y = _val_batch()
    module = _module(_nb201)
    buffers = {k: v.clone() for k, v in module.supernet.named_buffers()}
    module.supernet.eval()
    value = arch_hessian_eigenvalue(module, (x, y), iterations=40, seed=0)
    # side-effect free: BatchNorm statistics and modes untouched
    assert all(torch.equal(buffers[k], v) for k, v in module.supernet.named_buffers())
    assert not module.supernet.training

    module.supernet.train()
    loss, flat = _loss_of_flat(module, x, y)
    hessian = torch.autograd.functional.hessian(loss, flat)
    eigenvalues = torch.linalg.eigvalsh((hessian + hessian.T) / 2)
    exact = eigenvalues.max().item()
    assert exact > 0 and abs(value - exact) <= 1e-3 * abs(exact)
    # the double-backward Hessian agrees with central differences of the gradient (independent of it)
    direction = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(hessian @ direction, _fd_hvp(loss, flat, direction), rtol=1e-4, atol=1e-7)


def test_darts_supernet_hessian_vector_products_match_finite_differences():
    """The fused DARTS cell's double backward is exact: H v by autograd equals central differences."""
    x, y = _val_batch()
    module = _module(_darts)
    module.supernet.train()
    loss, flat = _loss_of_flat(module, x, y)
    flat.requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(flat), flat, create_graph=True)
    direction = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (hvp,) = torch.autograd.grad(grad, flat, grad_outputs=direction)
    assert torch.allclose(hvp, _fd_hvp(loss, flat.detach(), direction), rtol=1e-4, atol=1e-7)
    assert math.isfinite(arch_hessian_eigenvalue(module, (x, y), iterations=2))


def test_eigenvalue_leaves_the_search_random_state_alone():
    """GDAS samples Gumbel noise in ``strategy.weights``: its generator and the global RNG are put back."""
    x, y = _val_batch()
    torch.manual_seed(0)
    module = SearchModule(_nb201(), strategy="gdas")
    gumbel, global_rng = module.strategy.generator.get_state(), torch.get_rng_state()
    assert math.isfinite(arch_hessian_eigenvalue(module, (x.float(), y), iterations=2))
    assert torch.equal(module.strategy.generator.get_state(), gumbel)
    assert torch.equal(torch.get_rng_state(), global_rng)


def _fd_hvp(loss, flat: torch.Tensor, direction: torch.Tensor, h: float = 1e-7) -> torch.Tensor:
    def grad(at: torch.Tensor) -> torch.Tensor:
        at = at.detach().requires_grad_(True)
        return torch.autograd.grad(loss(at), at)[0]

    # ReLU and max-pool make the gradient piecewise smooth: a small step keeps both points on one piece
    return (grad(flat + h * direction) - grad(flat - h * direction)) / (2 * h)


# ---- (c) parameter-free ops ---------------------------------------------------------------------------------
def test_param_free_op_counts():
    assert [is_parameter_free(op) for op in ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3")] == [True] * 4
    assert not any(is_parameter_free(op) for op in ("sep_conv_3x3", "dil_conv_5x5", "nor_conv_1x1", "conv_7x1_1x7"))
    assert param_free_ops(NB201Genotype(edges=("skip_connect",) * 6)) == 6
    assert param_free_ops(Genotype.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|"
                                         "+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")) == 4
    # DARTS_V2 (quark0/darts): normal: 5 sep_conv_3x3, 2 skip_connect, 1 dil_conv_3x3 -> 2;
    # reduce: 5 max_pool_3x3, 3 skip_connect -> 8
    assert param_free_ops(Genotype.resolve("DARTS_V2")) == 10
    # DARTS_V1: normal 5 sep_conv_3x3 + 3 skip_connect -> 3; reduce 4 max_pool + 3 skip + 1 avg_pool -> 8
    assert param_free_ops(Genotype.resolve("DARTS_V1")) == 11


# ---- (d) the early-stop rule ----------------------------------------------------------------------------------
def test_zela_rule_on_synthetic_eigenvalues():
    assert zela_stop_epoch([1.0] * 50) is None  # flat
    assert zela_stop_epoch([1.0 + 0.001 * e for e in range(50)]) is None  # slow growth
    assert zela_stop_epoch([1.0] * 16) is None  # too short for any decision
    # jump to 3 at epoch 20: at epoch 20 the window mean over epochs 16..20 is 7/5 = 1.4 > 1.3 x the mean over
    # epochs 12..16 (1.0): la_epoch = 20 - 2 = 18, stop epoch 18 - 4 = 14
    step = [1.0] * 20 + [3.0] * 30
    assert zela_stop_epoch(step) == 14
    assert zela_stop_epoch(step, factor=1.5) == 15  # 1.8 at epoch 21
    # a jump before the rule may look (decisions start at epoch 16 = start 10 + 2 + 4) never triggers it
    assert zela_stop_epoch([1.0] * 5 + [3.0] * 45) is None
    # every other epoch (the reference scripts, ev_freq=2): measurement 13 = epoch 26 decides, returns
    # la_epoch - 2 * delta = (26 - 2 * 2) - 2 * 4 = 14
    assert zela_stop_epoch([1.0] * 13 + [3.0] * 12, ev_freq=2) == 14
    assert zela_stop_epoch([1.0, 1.0, 5.0], window=1, delta=1, start_epoch=0) == 1


# ---- (e) tiny fits ------------------------------------------------------------------------------------------
def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_fit_logs_both_metrics_writes_monitor_json_and_checkpoints_the_history(tmp_path):
    L.seed_everything(0)
    monitor = CollapseMonitor(iterations=5)
    trainer = _trainer(2, tmp_path, callbacks=[monitor])
    trainer.fit(SearchModule(_nb201()), _data())
    metrics = trainer.callback_metrics
    assert "param_free_ops" in metrics and "hessian_eigenvalue" in metrics
    assert math.isfinite(float(metrics["hessian_eigenvalue"]))
    report = _strict_json(tmp_path / "monitor.json")
    assert [r["epoch"] for r in report["epochs"]] == [0, 1] and report["early_stop"] is None
    last = report["epochs"][-1]
    assert last["param_free_ops"] == float(metrics["param_free_ops"])
    assert math.isclose(last["hessian_eigenvalue"], float(metrics["hessian_eigenvalue"]), rel_tol=1e-6)

    trainer.save_checkpoint(tmp_path / "x.ckpt")
    state = torch.load(tmp_path / "x.ckpt", weights_only=True)["callbacks"]["CollapseMonitor"]
    resumed = CollapseMonitor()
    resumed.load_state_dict(state)
    assert resumed.history == monitor.history and resumed.stop is None


def test_strategies_without_alphas_still_log_param_free_ops(tmp_path):
    L.seed_everything(0)
    trainer = _trainer(1, tmp_path, callbacks=[CollapseMonitor(iterations=2)])
    trainer.fit(SearchModule(_nb201(), strategy="spos"), _data())
    assert "param_free_ops" in trainer.callback_metrics and "hessian_eigenvalue" not in trainer.callback_metrics
    assert _strict_json(tmp_path / "monitor.json")["epochs"][0]["hessian_eigenvalue"] is None


class _ArchRecorder(L.Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append(copy.deepcopy(pl_module.arch.state_dict()))


def test_early_stop_restores_the_stop_epochs_architecture(tmp_path, monkeypatch):
    sequence = iter([1.0, 1.0, 5.0, 5.0, 5.0, 5.0])
    monkeypatch.setattr(monitor_module, "arch_hessian_eigenvalue", lambda *args, **kwargs: next(sequence))
    L.seed_everything(0)
    recorder = _ArchRecorder()
    monitor = CollapseMonitor(early_stop=True, window=1, delta=1, start_epoch=0)
    outputs = SearchOutputs(pictures=False, summary=False, importance_batches=0)
    trainer = _trainer(6, tmp_path, callbacks=[recorder, monitor, outputs])
    module = SearchModule(_nb201(), arch_lr=0.05)
    trainer.fit(module, _data())
    # epoch 2: eigenvalue 5 / 1 > 1.3 -> stop after epoch 2, keep epoch 1
    assert trainer.current_epoch == 3 and len(recorder.states) == 3
    assert monitor.stop["decided_at_epoch"] == 2 and monitor.stop["stop_epoch"] == 1
    final = module.arch.state_dict()
    assert all(torch.equal(final[k], v) for k, v in recorder.states[1].items())
    assert not all(torch.equal(final[k], v) for k, v in recorder.states[2].items())
    assert Genotype.load(tmp_path / "genotype.json") == module.genotype()
    assert _strict_json(tmp_path / "monitor.json")["early_stop"]["genotype"] == module.genotype().to_dict()

    # a run resumed from the stop epoch's state ends at once
    resumed = CollapseMonitor(early_stop=True, window=1, delta=1, start_epoch=0)
    resumed.load_state_dict(monitor.state_dict())
    trainer = _trainer(6, tmp_path / "resumed", callbacks=[resumed])
    trainer.fit(SearchModule(_nb201()), _data())
    assert trainer.global_step == 0


# ---- (f) argument checks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,needle", [
    ({"iterations": 0}, "iterations"), ({"window": 0}, "window"), ({"delta": 0}, "delta"),
    ({"factor": 0.0}, "factor"), ({"factor": float("nan")}, "factor"), ({"start_epoch": -1}, "start_epoch"),
    ({"seed": -1}, "seed"), ({"eigenvalue": "yes"}, "eigenvalue"), ({"iterations": 2.5}, "iterations"),
    ({"early_stop": True, "eigenvalue": False}, "early_stop"),
])
def test_bad_arguments_give_one_line_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle) as info:
        CollapseMonitor(**kwargs)
    assert "\n" not in str(info.value)
