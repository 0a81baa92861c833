"""2nd-order DARTS: the finite-difference Hessian-vector product against the exact one (double backward).

For each supernet config, one architecture-gradient computation (``search.hypergrad.second_order_gradient``) at
one state (random init, random 32x32x3 images, an SGD momentum buffer), both ways: the cosine between the
finite-difference hypergradient at the shipped scale (``r = 0.01``, the original code's), at ``r = 1e-6``, the
one-sided (forward) difference at ``r = 0.01``, and the exact one, and the time of each (median of
``--repeats``). Float32 on the search's fused path, as a search runs; ``--float64`` for the rounding-free
comparison.

    python benchmarks/hypergrad_exact.py [--configs small paper] [--repeats 3] [--threads 1] [--float64]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {"small": {"channels": 8, "layers": 5, "batch": 32}, "paper": {"channels": 16, "layers": 8, "batch": 64}}


def measure(config: str, repeats: int, float64: bool) -> list[tuple[str, float, float]]:
    """``(variant, cosine with the exact gradient, median seconds)`` for each variant."""
    import torch
    import torch.nn.functional as F

    from search.hypergrad import functional_loss, second_order_gradient
    from supernet import ArchParameters, DartsSearchNetwork

    torch.manual_seed(0)
    spec = CONFIGS[config]
    dtype = torch.float64 if float64 else torch.float32
    net = DartsSearchNetwork(channels=spec["channels"], layers=spec["layers"], num_classes=10).to(dtype)
    arch = ArchParameters.for_network(net).to(dtype)
    batch = [(torch.randn(spec["batch"], 3, 32, 32, dtype=dtype), torch.randint(0, 10, (spec["batch"],)))
             for _ in range(2)]
    params = dict(net.named_parameters())
    buffers = {n: 0.01 * torch.randn_like(p) for n, p in params.items()}
    train, val = (functional_loss(net, lambda x=x: (x, arch.weights()), y, F.cross_entropy) for x, y in batch)
    alphas = list(arch.parameters())
    kwargs = dict(lr=0.025, momentum=0.9, weight_decay=3e-4, momentum_buffers=buffers)
    variants = {"finite difference, r=0.01": dict(r=0.01), "finite difference, r=1e-6": dict(r=1e-6),
                "forward difference, r=0.01": dict(r=0.01, hvp="forward_difference"),
                "exact (double backward)": dict(hvp="exact")}
    grads, seconds = {}, {}
    for name, extra in variants.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            grads[name] = second_order_gradient(train, val, params, alphas, **kwargs, **extra)[0]
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    exact = torch.cat([g.flatten() for g in grads["exact (double backward)"]])
    return [(name, float(F.cosine_similarity(torch.cat([g.flatten() for g in grads[name]]), exact, dim=0)),
             seconds[name]) for name in variants]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--float64", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"2nd-order architecture gradient, {'float64' if args.float64 else 'float32'}, fused path, "
          f"{args.threads} thread(s), median of {args.repeats}")
    for config in args.configs:
        spec = CONFIGS[config]
        rows = measure(config, args.repeats, args.float64)
        base = rows[0][2]
        print(f"\n{config}: C={spec['channels']}, L={spec['layers']}, batch {spec['batch']}")
        print(f"  {'Hessian-vector product':<28}{'cosine with exact':>18}{'seconds':>10}{'vs r=0.01':>11}")
        for name, cosine, seconds in rows:
            print(f"  {name:<28}{cosine:>18.4f}{seconds:>10.2f}{seconds / base:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
