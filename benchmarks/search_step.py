"""Speed and peak memory of one full DARTS search step (architecture step + weight step), 1st and 2nd order.

A step runs through Lightning exactly as a search does (``SearchModule.training_step`` under a ``Trainer``), on
random 32x32x3 images, for the paper's supernet (C=16, 8 cells, batch 64) and a small one (C=8, 5 cells,
batch 32). Every (config, order) runs in a fresh process so that peak memory is its own:

* CPU: peak resident set size of the process (``resource.getrusage``) and its growth over the
  baseline measured after imports, before the model is built;
* CUDA: ``torch.cuda.max_memory_allocated`` during the timed steps.

    python benchmarks/search_step.py                      # CPU, both configs, both orders
    python benchmarks/search_step.py --device cuda --steps 20
    python benchmarks/search_step.py --configs small --orders 1 --threads 2

images/s counts the training images of a step (the batch size); each step also processes as many validation
images (and, 2nd order, 4 more forward/backward passes).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "paper": {"channels": 16, "layers": 8, "batch": 64},
    "small": {"channels": 8, "layers": 5, "batch": 32},
}


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _measure(config: str, order: int, device: str, steps: int, warmup: int, threads: int | None,
             queue: mp.Queue) -> None:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader, TensorDataset

    from search.module import SearchModule
    from supernet import DartsSearchNetwork

    if threads:
        torch.set_num_threads(threads)
    baseline = _current_rss_mib()
    spec = CONFIGS[config]
    L.seed_everything(0)
    n = spec["batch"] * (steps + warmup)

    def loader() -> DataLoader:
        data = TensorDataset(torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))
        return DataLoader(data, batch_size=spec["batch"], shuffle=False, drop_last=True)

    class Timer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
                if batch_idx == warmup:
                    torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            if batch_idx >= warmup:
                self.times.append(time.perf_counter() - self.start)

    net = DartsSearchNetwork(channels=spec["channels"], layers=spec["layers"], num_classes=10, in_channels=3)
    module = SearchModule(net, strategy_args={"order": order})
    timer = Timer()
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer])
    trainer.fit(module, train_dataloaders={"train": loader(), "val": loader()})
    step = sum(timer.times) / len(timer.times)
    result = {"config": config, "order": order, "device": device, "batch": spec["batch"], "step_s": step,
              "images_per_s": spec["batch"] / step, "threads": torch.get_num_threads(),
              "params_m": sum(p.numel() for p in net.parameters()) / 1e6}
    if device == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mib"] = _rss_mib()
        result["growth_mib"] = _rss_mib() - baseline
    queue.put(result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["paper", "small"])
    parser.add_argument("--orders", nargs="+", type=int, choices=(1, 2), default=[1, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up steps)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    context = mp.get_context("spawn")
    results = []
    header = f"{'config':<7}{'order':>6}{'batch':>7}{'params':>9}{'step s':>9}{'img/s':>8}{'peak MiB':>10}"
    print(f"DARTS search step (architecture + weight step) on {args.device}; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(header + ("" if args.device == "cuda" else f"{'growth MiB':>12}"))
    for config in args.configs:
        for order in args.orders:
            queue = context.Queue()
            proc = context.Process(target=_measure, args=(config, order, args.device, args.steps, args.warmup,
                                                          args.threads, queue))
            proc.start()
            result = queue.get()
            proc.join()
            results.append(result)
            line = (f"{config:<7}{order:>6}{result['batch']:>7}{result['params_m']:>8.2f}M{result['step_s']:>9.3f}"
                    f"{result['images_per_s']:>8.1f}{result['peak_mib']:>10.0f}")
            if args.device == "cpu":
                line += f"{result['growth_mib']:>12.0f}"
            print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
