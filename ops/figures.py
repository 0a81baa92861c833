"""Pictures of what a trained supernet relies on and how a run went: the op-importance heatmap beside the op
probabilities, the supernet-fidelity scatter, the loss and accuracy curves of a run, a discrete search's trials. Same conventions as
``ops.draw`` (Agg canvas, fixed op colours, atomic writes, edge names numbered as in ``genotype.json``)."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ops.draw import _check_path, _edge_grid, _save_atomic, op_color

__all__ = ["plot_curves", "plot_fidelity", "plot_importance", "plot_trials"]


def plot_importance(probabilities: Mapping[str, Sequence[Sequence[float]]],
                    importance: Mapping[str, Sequence[Sequence[float]]], candidates: Sequence[str],
                    path: str | os.PathLike, kept: Mapping[str, Sequence[str | None]] | None = None,
                    base_accuracy: float | None = None) -> None:
    """Per cell type, two heatmaps with one row per edge and one column per op: the op probabilities, and the
    drop of the supernet's validation accuracy (percentage points) when that op alone is removed from that edge
    (``search.importance``). ``kept`` outlines the op the genotype keeps on each edge in both."""
    path, fmt = _check_path(path)
    candidates = list(candidates)
    cell_types = list(importance)
    arrays = {}
    for cell in cell_types:
        p, d = np.asarray(probabilities[cell], float), 100.0 * np.asarray(importance[cell], float)
        if p.shape != d.shape or p.ndim != 2 or p.shape[1] != len(candidates):
            raise ValueError(f"cell {cell!r}: probabilities {p.shape} and importance {d.shape} must both be "
                             f"[edges, {len(candidates)} ops]")
        arrays[cell] = (p, d)
    col_w, row_h = 0.62, 0.3
    panel_w = col_w * len(candidates)
    left, gap, right = 0.75, 0.95, 0.9
    title_h, foot_h, top_h = 0.45, 1.25, 0.55
    section_h = {c: title_h + arrays[c][0].shape[0] * row_h + foot_h for c in cell_types}
    width, height = left + 2 * panel_w + gap + right, top_h + sum(section_h.values())
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    heading = "What the supernet relies on"
    if base_accuracy is not None:
        heading += f" (supernet validation accuracy {100 * base_accuracy:.1f}%)"
    fig.text(0.5, 1 - 0.28 / height, heading, ha="center", va="center", fontsize=11.5, fontweight="bold")
    top = top_h
    for cell in cell_types:
        p, d = arrays[cell]
        n_edges = p.shape[0]
        _, names, _, _ = _edge_grid(n_edges)
        limit = max(float(np.abs(d).max()), 0.5)
        low, high = float(p.min()), float(p.max())  # colours span what the probabilities show
        panels = ((p, "op probability", "Blues", (low, max(high, low + 1e-6)),
                   "{:.3f}" if high - low < 0.05 else "{:.2f}"),
                  (d, "accuracy drop without the op (points)", "RdBu_r", (-limit, limit), "{:+.1f}"))
        for i, (values, label, cmap, (vmin, vmax), form) in enumerate(panels):
            x0 = left + i * (panel_w + gap)
            y0 = top + title_h + n_edges * row_h
            ax = fig.add_axes((x0 / width, 1 - y0 / height, panel_w / width, n_edges * row_h / height))
            image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            for e in range(n_edges):
                for k in range(len(candidates)):
                    shade = (values[e, k] - vmin) / ((vmax - vmin) or 1.0)
                    ax.text(k, e, form.format(values[e, k]), ha="center", va="center", fontsize=6.5,
                            color="white" if (shade > 0.75 or (i == 1 and shade < 0.2)) else "#222222")
                keep = None if kept is None else kept[cell][e]
                if keep is not None:
                    ax.add_patch(Rectangle((candidates.index(keep) - 0.5, e - 0.5), 1, 1, fill=False,
                                           edgecolor="black", linewidth=1.8))
            ax.set_xticks(range(len(candidates)), candidates, rotation=40, ha="right", fontsize=7)
            for tick, op in zip(ax.get_xticklabels(), candidates):
                tick.set_color(op_color(op))
            ax.set_yticks(range(n_edges), names[:n_edges], fontsize=7)
            ax.tick_params(length=0)
            ax.set_title(label, fontsize=8.5, pad=4)
            bar = fig.add_axes(((x0 + panel_w + 0.08) / width, 1 - y0 / height, 0.1 / width,
                                n_edges * row_h / height))
            fig.colorbar(image, cax=bar).ax.tick_params(labelsize=6)
        name = cell if cell.lower().endswith("cell") else f"{cell} cell"
        fig.text(0.5, 1 - (top + 0.2) / height, name + (" (black box: the op the genotype keeps)" if kept else ""),
                 ha="center", va="center", fontsize=9.5)
        top += section_h[cell]
    _save_atomic(fig, path, fmt)


def plot_fidelity(supernet_scores: Sequence[float], true_scores: Sequence[float], path: str | os.PathLike,
                  title: str, x_label: str = "supernet accuracy with shared weights (%)",
                  y_label: str = "ground truth (%)") -> None:
    """Scatter of each sampled cell's shared-weight accuracy against its ground truth (``search.fidelity``)."""
    path, fmt = _check_path(path)
    x, y = np.asarray(supernet_scores, float), np.asarray(true_scores, float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"plot_fidelity needs two equally long lists of >= 2 scores, got {x.shape} and {y.shape}")
    fig = Figure(figsize=(5.2, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.14, 0.13, 0.8, 0.74))
    ax.scatter(x, y, s=14, color="#1f77b4", alpha=0.75, edgecolors="none")
    ax.set_xlabel(x_label, fontsize=9)
    ax.set_ylabel(y_label, fontsize=9)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.tick_params(labelsize=8)
    fig.text(0.5, 0.94, title, ha="center", va="center", fontsize=9.5)
    _save_atomic(fig, path, fmt)


def plot_curves(series: Mapping[str, Sequence[tuple[float, float]]], path: str | os.PathLike) -> None:
    """Loss and accuracy curves of a run: ``series`` maps a metric name (``train_loss``, ``val_acc``, ...) to
    ``(epoch, value)`` points; losses go in the left plot, accuracies in the right."""
    path, fmt = _check_path(path)
    groups = {"loss": [k for k in series if "loss" in k], "accuracy": [k for k in series if "acc" in k]}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise ValueError(f"plot_curves: no loss or accuracy series among {', '.join(series) or 'none'}")
    fig = Figure(figsize=(4.6 * len(groups), 3.4))
    FigureCanvasAgg(fig)
    colors = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
    for i, (label, keys) in enumerate(groups.items()):
        ax = fig.add_subplot(1, len(groups), i + 1)
        for j, key in enumerate(keys):
            points = np.asarray(series[key], float).reshape(-1, 2)
            ax.plot(points[:, 0], points[:, 1], marker="o", markersize=3, linewidth=1.4, label=key,
                    color=colors[j % len(colors)])
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3, linewidth=0.5)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.16, top=0.95, wspace=0.3)
    _save_atomic(fig, path, fmt)


def plot_trials(metrics: Sequence[float], path: str | os.PathLike, metric_name: str, title: str) -> None:
    """A discrete search's history: each evaluated cell's ``metric`` in order, and the best so far."""
    path, fmt = _check_path(path)
    values = np.asarray(metrics, float)
    if values.ndim != 1 or not len(values):
        raise ValueError("plot_trials needs at least one evaluated cell")
    fig = Figure(figsize=(5.6, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, 0.15, 0.84, 0.72))
    steps = np.arange(1, len(values) + 1)
    ax.scatter(steps, values, s=8, color="#9ecae1", edgecolors="none", label="evaluated cell")
    ax.plot(steps, np.fmax.accumulate(values), color="#d62728", linewidth=1.6, label="best so far")
    ax.set_xlabel("evaluation", fontsize=9)
    ax.set_ylabel(metric_name, fontsize=9)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.text(0.5, 0.94, title, ha="center", va="center", fontsize=9.5)
    _save_atomic(fig, path, fmt)
