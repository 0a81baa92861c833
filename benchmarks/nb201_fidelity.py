"""Supernet fidelity on NAS-Bench-201: how well a supernet trained at the CPU budget of ``nb201_oneshot.py`` ranks
cells with its shared weights, against the table.

For each method (default SPOS and DARTS 1st order), train the supernet exactly as ``nb201_oneshot.py`` does (same
data, budget and settings), then score ``--cells`` cells drawn uniformly from the table with the shared weights
(``search.fidelity.shared_weight_accuracy``: BatchNorm statistics re-estimated per cell on ``--bn-batches``
training batches, accuracy on ``--val-batches`` validation batches of the architecture split) and compare with the
table's 200-epoch CIFAR-10 test accuracy: Kendall's tau, Spearman's rho, the top-10 overlap. The same cells are
scored for every method. Scatter plots go to ``--out-dir``.

    python benchmarks/nb201_fidelity.py [--methods spos darts] [--cells 100] [--jobs 2] [--out-dir DIR]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nb201_oneshot import LABELS, METHODS, SHARED, SearchConfig, check_inputs, make_run  # noqa: E402


def fidelity_once(config: SearchConfig, method: str, seed: int, cells: int, bn_batches: int, val_batches: int,
                  out_dir: str | None) -> dict[str, Any]:
    """Train one supernet, score the sampled cells with its shared weights, compare with the table."""
    import torch

    from ops.figures import plot_fidelity
    from search.discrete import NB201Space
    from search.fidelity import rank_fidelity, sample_cells, shared_weight_accuracy
    from search.nb201_table import NB201Table
    from search.strategies.probe import first_batches

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    table = NB201Table(config.table)
    sampled = sample_cells(NB201Space(), cells, seed=1234)  # the same cells for every method and seed
    module, data, trainer = make_run(config, method, seed, [])
    start = time.perf_counter()
    trainer.fit(module, data)
    train_seconds = time.perf_counter() - start
    train = data.train_dataloader()["train"]
    start = time.perf_counter()
    scores = shared_weight_accuracy(module.supernet, sampled, first_batches(train, bn_batches),
                                    first_batches(data.val_dataloader(), val_batches))
    score_seconds = time.perf_counter() - start
    truth = [table.accuracy(c, "cifar10", "test") for c in sampled]
    result = rank_fidelity(scores, truth, top_k=10)
    line = result.summary("the NAS-Bench-201 table")
    if out_dir:
        plot_fidelity(scores, truth, Path(out_dir) / f"fidelity_{method}.png", title=f"{LABELS.get(method, method)} "
                      f"supernet (seed {seed}):\n{line.split(': ', 1)[1]}", y_label="NAS-Bench-201 CIFAR-10 test (%)")
    best = max(range(len(scores)), key=scores.__getitem__)
    return {"method": method, "seed": seed, **result.to_dict(), "train_seconds": train_seconds,
            "score_seconds": score_seconds, "supernet_best": sampled[best].to_text(),
            "supernet_best_table": truth[best], "table_best": max(truth)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "cifar10.npz")
    parser.add_argument("--table", type=Path, default=SHARED / "benchdata" / "nb201.csv")
    parser.add_argument("--methods", nargs="+", default=["spos", "darts"], help=f"of {', '.join(METHODS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--bn-batches", type=int, default=4)
    parser.add_argument("--val-batches", type=int, default=20)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=None, help="write the scatter plots here")
    args = parser.parse_args(argv)
    check_inputs(parser, args.methods, args.data, args.table)
    config = SearchConfig(data=str(args.data), table=str(args.table), device="cpu", channels=8, cells=1,
                          images=args.images, epochs=args.epochs, batch_size=64, val_batches=20, workers=0,
                          threads=args.threads)
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"NB201 supernet fidelity: {', '.join(args.methods)}, seed {args.seed}, {args.cells} cells, C=8, N=1, "
          f"first {args.images} images, {args.epochs} epochs; BN re-estimated on {args.bn_batches} batches, "
          f"{args.val_batches} validation batches per cell", flush=True)
    jobs = [(config, m, args.seed, args.cells, args.bn_batches, args.val_batches,
             str(args.out_dir) if args.out_dir else None) for m in args.methods]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(fidelity_once, *zip(*jobs)))
    print(f"{'supernet':<34}{'Kendall tau':>12}{'Spearman':>10}{'top-10':>8}{'train s':>9}{'score s':>9}"
          "   supernet's best cell (table acc; best sampled)")
    for r in results:
        print(f"{LABELS.get(r['method'], r['method']):<34}{r['kendall_tau']:>12.3f}{r['spearman_rho']:>10.3f}"
              f"{r['top_k_overlap']:>8.2f}{r['train_seconds']:>9.0f}{r['score_seconds']:>9.0f}   "
              f"{r['supernet_best_table']:.2f} ({r['table_best']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
