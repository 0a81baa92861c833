"""Latency of a module on the search device: the median of timed repeats after warm-up, cached on disk.

The cache is a JSON file holding the measurements of one device and software setting: it records the device name
and the library versions they were made with; a cache from another device or version is not used (one line says
so, everything is measured again and the file then holds this device's), since a latency only means something on
the device and software that produced it. Give each device its own file (``--model.cost.latency_cache``) to keep
several. Entries are keyed by the
module's structure (its ``repr``: op, channels, kernel, stride), the input shape, the batch size and whether the
backward pass is timed.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from ops.jsonfile import write_json

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oneshot-nas" / "latency.json"


def device_name(device: torch.device) -> str:
    """What the latency depends on besides the software: the GPU's name, or the CPU's model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def library_versions() -> dict[str, str]:
    """The versions a measurement depends on."""
    return {"torch": str(torch.__version__), "cuda": str(torch.version.cuda), "python": platform.python_version()}


class LatencyMeter:
    """Times modules on ``device``.

    Args:
        device: Where to run them (the search device).
        batch_size: Images per timed call.
        repeats: Timed calls; the median is kept.
        warmup: Untimed calls first.
        backward: Time forward + backward (training cost) instead of the forward pass alone (inference).
        cache: The JSON cache file (``None``: no cache).
    """

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 1, repeats: int = 20, warmup: int = 5,
                 backward: bool = False, cache: str | os.PathLike | None = DEFAULT_CACHE) -> None:
        for name, value, low in (("batch_size", batch_size, 1), ("repeats", repeats, 1), ("warmup", warmup, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--model.cost.latency_{name} must be an integer >= {low}, got {value!r}")
        self.device = torch.device(device)
        self.batch_size, self.repeats, self.warmup, self.backward = batch_size, repeats, warmup, bool(backward)
        self.cache = Path(cache).expanduser() if cache is not None else None
        self.header = {"device": device_name(self.device), "versions": library_versions()}
        self.entries: dict[str, float] = {}
        self.measured = 0
        if self.cache is not None and self.cache.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.cache.read_text())
            header = {"device": data["device"], "versions": data["versions"]}
            entries = {str(k): float(v) for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            print(f"latency cache {self.cache} is unreadable: measuring again", file=sys.stderr, flush=True)
            return
        if header != self.header:
            print(f"latency cache {self.cache} was measured on {header['device']} with "
                  f"{_versions(header['versions'])}; this is {self.header['device']} with "
                  f"{_versions(self.header['versions'])}: measuring again", file=sys.stderr, flush=True)
            return
        self.entries = entries

    def key(self, module: nn.Module, shape: tuple[int, ...]) -> str:
        """The cache key of timing ``module`` on inputs of ``shape``."""
        text = f"{module!r}|{tuple(shape)}|batch {self.batch_size}|{'fwd+bwd' if self.backward else 'fwd'}"
        return hashlib.sha1(text.encode()).hexdigest()

    def measure(self, module: nn.Module, shape: tuple[int, ...]) -> float:
        """Milliseconds of one call of ``module`` on a batch of ``shape`` inputs (cached)."""
        key = self.key(module, shape)
        if key not in self.entries:
            self.entries[key] = self.time(module, shape)
            self.measured += 1
        return self.entries[key]

    def time(self, module: nn.Module, shape: tuple[int, ...]) -> float:
        """Milliseconds of one call of ``module`` on a batch of ``shape`` inputs (timed now, not cached): the median
        of ``repeats`` calls after ``warmup``. The input comes from a private generator (global RNGs untouched)."""
        module = module.to(self.device).train(self.backward)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(self.batch_size, *shape, generator=generator).to(self.device).requires_grad_(self.backward)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)

        def call() -> None:
            if self.backward:
                out = module(x)
                out.float().sum().backward()
            else:
                with torch.no_grad():
                    module(x)

        times = []
        for i in range(self.warmup + self.repeats):
            sync()
            start = time.perf_counter()
            call()
            sync()
            if i >= self.warmup:
                times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    def save(self) -> None:
        """Write the cache (atomically) if anything new was measured; a cache that cannot be written is reported in
        one line and the search goes on."""
        if self.cache is not None and self.measured:
            try:
                write_json(self.cache, {**self.header, "entries": self.entries})
            except OSError as err:
                print(f"latency cache {self.cache} cannot be written ({err.strerror or err}): the measurements are "
                      "not kept", file=sys.stderr, flush=True)
            self.measured = 0


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())
