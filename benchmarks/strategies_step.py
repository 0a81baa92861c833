"""Search-step throughput and peak memory of every one-shot strategy against 1st-order DARTS at the same config.

Each strategy runs in its own process (so that peak memory is its own): a ``SearchModule`` on the DARTS-space
supernet (sizes ``small``, ``large``) or on the NAS-Bench-201 supernet at the one-shot benchmark's budget (``nb201``:
C=8, N=1, batch 64, as ``benchmarks/nb201_oneshot.py``), ``Trainer.fit`` over random 32x32x3 images, one architecture step + one weight step per batch. A step is
timed from ``on_train_batch_start`` to ``on_train_batch_end``; the first ``--warmup`` steps and the epoch's last step
(where ENAS and SPOS pick their cell) are left out. Throughput counts the weight-step images (the architecture
step reads as many validation images). Peak memory: CPU: peak resident set size of the process, and its rise
during training; CUDA: peak allocated.

    OMP_NUM_THREADS=2 python benchmarks/strategies_step.py                      # C=8, L=5, batch 32 on CPU
    OMP_NUM_THREADS=2 python benchmarks/strategies_step.py --sizes small large  # also C=16, L=8, batch 64
    python benchmarks/strategies_step.py --device cuda --sizes large
    OMP_NUM_THREADS=1 python benchmarks/strategies_step.py --sizes nb201 --threads 1   # the robust methods too
    python benchmarks/strategies_step.py --sizes nb201 --threads 1 --impls reference fused --strategies gdas enas spos

``--impls``: the supernet's cell paths to run each strategy on (``supernet.impls``; default the fused one); with
both, each row also gives the fused path's speed-up. Sampled one-op-per-edge steps (GDAS, ENAS, SPOS) run the
cells' own forward on either network; on the fused one the stem hands them channels-last tensors.

The robust-search methods (``search.robust`` regularizers, DrNAS) run on the same supernet; perturbation selection
costs its base strategy's step plus a few forward passes per decision at the end of an epoch, so it is not timed here.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

SIZES = {"small": (8, 5, 32), "large": (16, 8, 64), "nb201": (8, 1, 64)}
"""name -> (channels, layers (NB201: cells per stage), batch)."""
STRATEGIES = {
    "darts (1st order)": ("darts", {"order": 1}, 1, {}),
    "pcdarts (K=4)": ("pcdarts", {}, 4, {}),
    "gdas": ("gdas", {}, 1, {}),
    "enas": ("enas", {"derive_samples": 2, "probe_batches": 1}, 1, {}),
    "spos": ("spos", {"evaluations": 2, "epoch_evaluations": 2, "probe_batches": 1}, 1, {}),
    "beta-darts": ("darts", {"order": 1}, 1, {"BetaDecay": {"weight_start": 1.0}}),
    "darts-": ("darts", {"order": 1}, 1, {"AuxiliarySkip": {}}),
    "sdarts-rs": ("darts", {"order": 1}, 1, {"RandomSmoothing": {}}),
    "drnas": ("drnas", {}, 1, {}),
}
"""label -> (strategy, strategy arguments, partial channels, search.robust regularizers)."""


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.steps`` search steps of one strategy; return the figures."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader, TensorDataset

    from search import robust
    from search.module import SearchModule
    from supernet import DartsSearchNetwork, NB201SearchNetwork

    torch.set_num_threads(args.threads)
    name, strategy_args, partial, regularizers = STRATEGIES[args.worker]
    channels, layers, batch = SIZES[args.size]
    L.seed_everything(0)
    if args.size == "nb201":
        net: torch.nn.Module = NB201SearchNetwork(channels=channels, cells_per_stage=layers, num_classes=10,
                                                  in_channels=3, partial_channels=partial, impl=args.impl)
    else:
        net = DartsSearchNetwork(channels=channels, layers=layers, num_classes=10, in_channels=3,
                                 partial_channels=partial, impl=args.impl)
    module = SearchModule(net, strategy=name, strategy_args=strategy_args,
                          regularizers=[getattr(robust, cls)(**kw) for cls, kw in regularizers.items()])
    n_batches = args.warmup + args.steps + 1
    x, y = torch.randn(n_batches * batch, 3, 32, 32), torch.randint(0, 10, (n_batches * batch,))
    loader = lambda: DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)  # noqa: E731
    times: list[float] = []

    class Timer(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if args.device == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return {"train": loader(), "val": loader()}

    trainer = L.Trainer(accelerator=args.device, devices=1, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Timer()])
    rss_before = _rss_mib()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, Data())
    step = statistics.median(times[args.warmup:-1])
    out = {"strategy": args.worker, "step_s": step, "images_per_s": batch / step,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_rise_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before}
    if args.device == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["small"])
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    parser.add_argument("--steps", type=int, default=6, help="timed steps per strategy")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--impls", nargs="+", choices=["reference", "fused"], default=["fused"])
    parser.add_argument("--impl", default="fused", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"device {args.device}, {args.threads} threads, median of {args.steps} steps after {args.warmup} warm-up")
    for size in args.sizes:
        channels, layers, batch = SIZES[size]
        network = f"NB201 supernet C={channels}, N={layers}" if size == "nb201" else f"C={channels}, L={layers}"
        print(f"\n{network}, batch {batch}, 32x32x3 (arch step + weight step per batch)")
        memory = "peak CUDA MiB" if args.device == "cuda" else "peak RSS MiB (rise)"
        print(f"{'strategy':<20} {'path':>9} {'step s':>8} {'images/s':>9} {'vs DARTS':>9} {'vs ref':>7} {memory:>20}")
        reference: dict[str, float] = {}
        for label in args.strategies:
            by_impl: dict[str, float] = {}
            for impl in args.impls:
                cmd = [sys.executable, __file__, "--worker", label, "--size", size, "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--device", args.device, "--threads", str(args.threads),
                       "--impl", impl]
                done = subprocess.run(cmd, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if done.returncode != 0:
                    print(f"{label:<20} {impl:>9} failed: "
                          f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                by_impl[impl] = r["images_per_s"]
                if label.startswith("darts") and impl not in reference:
                    reference[impl] = r["images_per_s"]
                ratio = f"{r['images_per_s'] / reference[impl]:.2f}x" if impl in reference else "-"
                vs_ref = f"{r['images_per_s'] / by_impl['reference']:.2f}x" if "reference" in by_impl else "-"
                mem = (f"{r['peak_cuda_mib']:.0f}" if args.device == "cuda"
                       else f"{r['peak_rss_mib']:.0f} ({r['rss_rise_mib']:+.0f})")
                print(f"{label:<20} {impl:>9} {r['step_s']:>8.3f} {r['images_per_s']:>9.1f} {ratio:>9} {vs_ref:>7} "
                      f"{mem:>20}", flush=True)


if __name__ == "__main__":
    main()
