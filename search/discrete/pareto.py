"""Accuracy-size Pareto front of evaluated cells, and its plot."""
from __future__ import annotations

import os
from typing import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(metric, size)`` that no other point dominates, sorted by size then metric.

    A point dominates another if its metric is >= and its size <=, one of them strictly. Identical points
    do not dominate each other: all copies of a front point are kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front: list[int] = []
    best_metric = float("-inf")
    for i in order:
        metric, size = points[i]
        if metric > best_metric:
            front.append(i)
            best_metric = metric
        elif front and points[front[-1]] == (metric, size):
            front.append(i)
    return front


def plot_pareto(points: Sequence[tuple[float, float]], path: str | os.PathLike, *, metric_name: str = "metric",
                size_name: str = "params (M)", title: str = "", size_limit: float | None = None) -> None:
    """Scatter of all ``(metric, size)`` points with the Pareto front drawn as a staircase, saved as PNG.

    ``size_limit`` draws the size budget as a dashed vertical line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    front = pareto_front(points)
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter([p[1] for p in points], [p[0] for p in points], s=12, alpha=0.5, color="tab:gray",
               label=f"evaluated cells ({len(points)})")
    fx, fy = [points[i][1] for i in front], [points[i][0] for i in front]
    ax.step(fx, fy, where="post", color="tab:red", lw=1.2)
    ax.scatter(fx, fy, s=24, color="tab:red", label=f"Pareto front ({len(front)})", zorder=3)
    if size_limit is not None:
        ax.axvline(size_limit, color="tab:blue", ls="--", lw=1, label=f"size limit {size_limit:g}")
    ax.set_xlabel(size_name)
    ax.set_ylabel(metric_name)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png", dpi=110)
