"""Speed and peak memory of a full DARTS search step, reference vs fused supernet, in one run, in both spaces.

A step is what ``SearchModule.training_step`` does, without Lightning: the architecture step of
``search.strategies.DartsStrategy`` (1st or 2nd order, Adam on the alphas) on a validation batch, then the weight
step (SGD, momentum 0.9, weight decay 3e-4, gradient clipping 5) on a training batch; random 32x32x3 images.
Both supernet implementations share one network (``set_impl`` switches the forward; the parameters are the same),
and their steps are interleaved, so that machine load slows both alike; the speed-up is the ratio of median
step times, in wall-clock and in CPU seconds (the latter does not count time other processes held the cores).

Peak memory of a step:

* CPU (a fresh process per configuration and variant): the growth of the resident set during one step -- the
  peak RSS of the step (``VmHWM``, reset through
  ``/proc/self/clear_refs`` after a warm-up step) minus the RSS just before it. glibc keeps freed heap memory,
  which would hide the step's allocations, so the process runs with a fixed ``MALLOC_MMAP_THRESHOLD_`` (large
  tensors come from ``mmap`` and go back at ``free``): the figure is the memory the step really holds at its peak
  (activations, gradients, temporary copies), not what the allocator happened to cache.
* CUDA: ``torch.cuda.max_memory_allocated`` during a step minus the allocation before it (in the timing
  process: the allocator's peak counter is exact and resettable).

First it prints the same-math check (``check_same_math``): the two paths' logits and gradients in float64, and
each path's float32 (or bf16) gradient error against float64 over a few seeds.

The last column estimates a 50-epoch CIFAR-10 search (25k training + 25k validation images per epoch): 50 x
ceil(25000 / batch) x (step time + one no-grad validation forward of a batch).

    python benchmarks/step_speed.py                           # CPU: every config, orders 1 and 2, memory
    python benchmarks/step_speed.py --configs nb201 --orders 1   # NB201 at the nb201_oneshot.py budget
    python benchmarks/step_speed.py --scaling                 # + step time vs ops / nodes / batch size
    python benchmarks/step_speed.py --device cuda --bf16 --channels-last --steps 10
    python benchmarks/step_speed.py --ops                     # ATen ops per step, per space, path and order
    python benchmarks/step_speed.py --hvp --configs paper     # fused 2nd-order step (central / forward) vs 1st

``--ops`` counts the ATen ops of one step with the profiler (on the CPU; the count is the same on any device up to
the device's own dispatch): all of them and the leaves, the ops that call no other (about one kernel launch each):
the launch-bound cost of a step on a GPU, as a machine-independent figure. ``fused-gpu`` is the fused path with
PyTorch's kernels instead of its own CPU kernels, which is what it runs on a GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ops import search_space  # noqa: E402
from search.strategies.base import ArchStepContext  # noqa: E402
from search.strategies.darts import DartsStrategy  # noqa: E402
from supernet import DartsSearchNetwork, NB201SearchNetwork  # noqa: E402

CONFIGS = {"paper": dict(space="darts", channels=16, layers=8, batch=64),
           "small": dict(space="darts", channels=8, layers=5, batch=32),
           "nb201": dict(space="nb201", channels=8, layers=1, batch=64),
           "nb201-paper": dict(space="nb201", channels=16, layers=5, batch=64)}
"""DARTS: the paper's search config and a small one; NB201 (``layers``: cells per stage): the
``benchmarks/nb201_oneshot.py`` budget and the NAS-Bench-201 paper's supernet."""
IMPLS = ("reference", "fused")
VARIANTS = {"reference": ("reference", False), "fused": ("fused", True), "fused-keep": ("fused", False)}
"""Benchmarked variants: ``(impl, recompute)``; ``fused-keep`` keeps all activations (no recomputation)."""


class Search:
    """A supernet with its DARTS strategy, alphas, both optimizers and a fixed pair of batches."""

    def __init__(self, channels: int, layers: int, batch: int, order: int, device: str, steps: int = 4,
                 candidates: tuple[str, ...] | None = None, bf16: bool = False,
                 channels_last: bool = False, seed: int = 0, space: str = "darts",
                 hvp: str = "finite_difference") -> None:
        torch.manual_seed(seed)
        if space == "nb201":  # layers: cells per stage
            self.net = NB201SearchNetwork(channels, layers).to(device)
        else:
            self.net = DartsSearchNetwork(channels, layers, steps=steps, multiplier=steps,
                                          candidates=candidates or search_space("darts")).to(device)
        self.strategy = DartsStrategy(order=order, hvp=hvp)
        self.arch = self.strategy.build_arch(self.net).to(device)
        self.w_opt = torch.optim.SGD(self.net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        self.a_opt = torch.optim.Adam(self.arch.parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net.to(memory_format=fmt)
        self.batches = [(torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt),
                         torch.randint(0, 10, (batch,), device=device)) for _ in range(2)]
        self.device, self.bf16 = device, bf16

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def step(self, variant: str) -> None:
        """Architecture step on the validation batch, then weight step on the training batch."""
        self.net.set_impl(*VARIANTS[variant])
        train, val = self.batches
        with self.autocast():
            ctx = ArchStepContext(supernet=self.net, arch=self.arch, optimizer=self.a_opt,
                                  weight_optimizer=self.w_opt, train_batch=train, val_batch=val,
                                  criterion=F.cross_entropy, backward=lambda loss: loss.backward(),
                                  reduce=lambda tensors: tensors)
            self.strategy.arch_step(ctx)
            loss = F.cross_entropy(self.net(train[0], self.strategy.weights(self.arch)), train[1])
        self.w_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.w_opt.step()
        if self.device == "cuda":
            torch.cuda.synchronize()


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def interleaved(search: Search, steps: int, variants: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds per step of each variant, steps interleaved (after one warm-up step
    each). On a shared CPU the wall clock also counts the time other processes held the cores; CPU time does not."""
    for variant in variants:
        search.step(variant)
    times: dict[str, list[tuple[float, float]]] = {variant: [] for variant in variants}
    for _ in range(steps):
        for variant in variants:
            times[variant].append(timed(lambda: search.step(variant)))
    return {v: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for v, t in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def cuda_step_memory(search: Search, variant: str) -> float:
    """Peak CUDA memory (MiB) allocated during one step above the allocation before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    search.step(variant)
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


def cpu_step_memory(spec: dict[str, Any], variant: str) -> float:
    """Peak RSS growth (MiB) during one step after a warm-up step; call in a fresh process (see the docstring)."""
    search = Search(**spec)
    search.step(variant)  # warm-up: optimizer state, kernel caches
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    search.step(variant)
    return (_status_kib("VmHWM") - before) / 1024


def memory_in_subprocess(spec: dict[str, Any], variant: str, threads: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS=str(threads))
    job = json.dumps({"spec": spec, "variant": variant})
    out = subprocess.run([sys.executable, __file__, "--memory-worker", job, "--threads", str(threads)], env=env,
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def eval_forward_time(search: Search, variant: str, reps: int = 3) -> float:
    """Median seconds of a no-grad eval-mode forward of one batch (per-epoch validation)."""
    search.net.set_impl(*VARIANTS[variant]).eval()
    x = search.batches[1][0]
    weights = search.strategy.weights(search.arch)

    def forward() -> None:
        with torch.no_grad(), search.autocast():
            search.net(x, weights)
        if search.device == "cuda":
            torch.cuda.synchronize()

    forward()
    result = statistics.median(timed(forward)[0] for _ in range(reps))
    search.net.train()
    return result


def _loss_and_grads(net: DartsSearchNetwork, arch: torch.nn.Module, strategy: DartsStrategy, x: torch.Tensor,
                    y: torch.Tensor, impl: str, autocast: contextlib.AbstractContextManager
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and all gradients (weights, then alphas, flattened) of one forward/backward with ``impl``."""
    net.set_impl(impl)
    net.zero_grad()
    arch.zero_grad()
    with autocast:
        logits = net(x, strategy.weights(arch))
        loss = F.cross_entropy(logits, y)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in [*net.parameters(), *arch.parameters()]])
    return logits.detach().double(), grads.double()


def check_same_math(args: argparse.Namespace, seeds: int = 3) -> None:
    """Print how far the two implementations are apart: logits and all weight and alpha gradients of the same
    network (small config, non-uniform alphas) on the same batch. In float64 the two must agree to rounding; in
    the benchmark's precision each is compared with the float64 reference, over a few seeds: at ReLU and max-pool
    kinks rounding can flip single gradient entries on either path, so equal math shows as errors of one size. The
    last entry is that noise floor: the reference path on an input changed by rounding-sized (1e-7) noise."""
    for space in dict.fromkeys(CONFIGS[name]["space"] for name in args.configs):
        _same_math(args, space, seeds)


def _same_math(args: argparse.Namespace, space: str, seeds: int) -> None:
    cfg = CONFIGS["small"] if space == "darts" else dict(channels=8, layers=2, batch=32)
    errors: dict[str, list[str]] = {impl: [] for impl in (*IMPLS, "reference, input x (1 + 1e-7 noise)")}
    for seed in range(seeds):
        search = Search(cfg["channels"], cfg["layers"], cfg["batch"], 1, args.device, bf16=args.bf16,
                        channels_last=args.channels_last, seed=seed, space=space)
        with torch.no_grad():  # a mis-weighted candidate would show
            for p in search.arch.parameters():
                p.normal_(0.0, 0.5)
        x, y = search.batches[0]
        net64, arch64 = copy.deepcopy(search.net).double(), copy.deepcopy(search.arch).double()
        exact = {impl: _loss_and_grads(net64, arch64, search.strategy, x.double(), y, impl, contextlib.nullcontext())
                 for impl in IMPLS}
        if seed == 0:
            (l_ref, g_ref), (l_fused, g_fused) = exact["reference"], exact["fused"]
            print(f"{space} same math, float64, fused vs reference: max |logits diff| {(l_fused - l_ref).abs().max():.1e}, "
                  f"|grad diff| / |grad| (all weights and alphas) {(g_fused - g_ref).norm() / g_ref.norm():.1e}")
        logits_ref, grads_ref = exact["reference"]
        for impl in IMPLS:
            logits, grads = _loss_and_grads(search.net, search.arch, search.strategy, x, y, impl, search.autocast())
            errors[impl].append(f"{(grads - grads_ref).norm() / grads_ref.norm():.0e}")
        # the noise floor: how far float32 rounding-sized changes of the input move the same path's gradients
        nudged = x * (1 + 1e-7 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device))
        _, grads = _loss_and_grads(search.net, search.arch, search.strategy, nudged, y, "reference", search.autocast())
        errors["reference, input x (1 + 1e-7 noise)"].append(f"{(grads - grads_ref).norm() / grads_ref.norm():.0e}")
    precision = "bf16 autocast" if args.bf16 else "float32"
    print(f"{space} {precision} vs float64, |grad error| / |grad|, seeds 0-{seeds - 1}: "
          + "; ".join(f"{impl} {' '.join(errs)}" for impl, errs in errors.items()), flush=True)


def main_table(args: argparse.Namespace) -> None:
    variants = ("reference", "fused") + (("fused-keep",) if args.keep else ())
    print(f"{'config':11} {'order':>5} {'variant':>10} {'s/step':>7} {'img/s':>6} {'speed-up':>8} {'cpu s':>7} "
          f"{'speed-up':>8} {'peak MiB':>8} {'memory':>6}  50 ep (h)")
    for name in args.configs:
        cfg = CONFIGS[name]
        for order in args.orders:
            spec = dict(channels=cfg["channels"], layers=cfg["layers"], batch=cfg["batch"], order=order,
                        device=args.device, bf16=args.bf16, channels_last=args.channels_last, space=cfg["space"])
            search = Search(**spec)
            times = interleaved(search, args.steps, variants)
            if not args.memory:
                mem = {v: float("nan") for v in variants}
            elif args.device == "cuda":
                mem = {v: cuda_step_memory(search, v) for v in variants}
            else:
                mem = {v: memory_in_subprocess(spec, v, args.threads) for v in variants}
            ref_wall, ref_cpu = times["reference"]
            for v in variants:
                wall, cpu = times[v]
                # an epoch: 25k training images in steps of `batch`, plus validation forwards over 25k images
                steps = -(-25_000 // cfg["batch"])
                hours = 50 * steps * (wall + eval_forward_time(search, v)) / 3600
                print(f"{name:11} {order:>5} {v:>10} {wall:7.2f} {cfg['batch'] / wall:6.1f} {ref_wall / wall:7.2f}x "
                      f"{cpu:7.2f} {ref_cpu / cpu:7.2f}x {mem[v]:8.0f} {mem[v] / mem['reference']:5.2f}x  {hours:8.1f}",
                      flush=True)


def aten_ops(search: Search, variant: str) -> tuple[int, int]:
    """ATen ops of one step, counted with the profiler: all of them, and the leaves (ops that call no other ATen
    op, about one kernel launch each) -- a figure that does not depend on the machine."""
    from torch.profiler import ProfilerActivity, profile

    search.step(variant)  # warm-up: first-call set-up is not part of a step
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        search.step(variant)
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    leaves = [e for e in events if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    return len(events), len(leaves)


def ops_table(args: argparse.Namespace) -> None:
    """ATen ops (and leaf ops, ~kernel launches) per search step, per space, path and order."""
    print(f"\n{'config':16} {'order':>5} {'path':>10} {'ATen ops':>9} {'leaf ops':>9}  (one architecture + weight step)")
    for name in args.configs:
        cfg = CONFIGS[name]
        for order in args.orders:
            search = Search(cfg["channels"], cfg["layers"], 2, order, "cpu", space=cfg["space"])  # counts do not
            for variant in ("reference", "fused", "fused-gpu"):  # depend on the batch size
                search.net.cpu_kernels = variant != "fused-gpu"  # PyTorch's kernels, as the fused path runs on a GPU
                total, leaves = aten_ops(search, variant.replace("-gpu", ""))
                print(f"{name:16} {order:>5} {variant:>10} {total:>9} {leaves:>9}", flush=True)


def order_table(args: argparse.Namespace) -> None:
    """The fused path's 2nd-order step against its 1st-order step, per Hessian-vector product, steps interleaved."""
    kinds = {"1st order": (1, "finite_difference"), "2nd, central difference": (2, "finite_difference"),
             "2nd, forward difference": (2, "forward_difference")}
    print(f"\n{'config':11} {'step':>24} {'s/step':>7} {'vs 1st':>7}  (fused path)")
    for name in args.configs:
        cfg = CONFIGS[name]
        searches = {kind: Search(cfg["channels"], cfg["layers"], cfg["batch"], order, args.device, space=cfg["space"],
                                 hvp=hvp) for kind, (order, hvp) in kinds.items()}
        for search in searches.values():
            search.step("fused")  # warm-up
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.steps):
            for kind, search in searches.items():
                times[kind].append(timed(lambda: search.step("fused"))[0])
        first = statistics.median(times["1st order"])
        for kind, values in times.items():
            median = statistics.median(values)
            print(f"{name:11} {kind:>24} {median:7.2f} {median / first:6.2f}x", flush=True)


def scaling_rows() -> Iterator[tuple[str, dict[str, Any]]]:
    base = dict(channels=8, layers=5, batch=32, order=1)
    darts = search_space("darts")
    for ops in (("none", "skip_connect"), ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"), darts):
        yield f"ops={len(ops)}", dict(base, candidates=ops)
    for steps in (2, 3, 4, 5):
        yield f"nodes={steps}", dict(base, steps=steps)
    for batch in (16, 32, 64):
        yield f"batch={batch}", dict(base, batch=batch)


def scaling_table(args: argparse.Namespace) -> None:
    print("\n1st-order step time vs search-space size (C=8, 5 cells, 4 nodes, 8 ops, batch 32 unless varied)")
    print(f"{'varied':10} {'reference s':>12} {'fused s':>8} {'speed-up':>9} {'cpu s ref':>10} {'cpu s fused':>12} "
          f"{'speed-up':>9}")
    for label, spec in scaling_rows():
        times = interleaved(Search(**spec, device=args.device, bf16=args.bf16, channels_last=args.channels_last),
                            args.scaling_steps, ("reference", "fused"))
        (ref_wall, ref_cpu), (wall, cpu) = times["reference"], times["fused"]
        print(f"{label:10} {ref_wall:12.2f} {wall:8.2f} {ref_wall / wall:8.2f}x {ref_cpu:10.2f} {cpu:12.2f} "
              f"{ref_cpu / cpu:8.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--orders", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per implementation (after a warm-up)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="channels-last input and reference weights")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    parser.add_argument("--keep", action="store_true", help="also the fused variant without recomputation")
    parser.add_argument("--scaling", action="store_true", help="also time the step against ops/nodes/batch size")
    parser.add_argument("--scaling-steps", type=int, default=2)
    parser.add_argument("--hvp", action="store_true",
                        help="only time the fused 2nd-order step (central and forward difference) against the 1st")
    parser.add_argument("--ops", action="store_true", help="only count the ATen ops of one step (device-independent)")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        job = json.loads(args.memory_worker)
        print(cpu_step_memory(job["spec"], job["variant"]))
        return
    print(f"device={args.device} threads={args.threads} bf16={args.bf16} channels_last={args.channels_last} "
          f"torch={torch.__version__}")
    if args.ops:
        ops_table(args)
        return
    if args.hvp:
        order_table(args)
        return
    check_same_math(args)
    main_table(args)
    if args.scaling:
        scaling_table(args)


if __name__ == "__main__":
    main()
