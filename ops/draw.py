"""Pictures of what a search found: cells of a genotype and the evolution of architecture weights.

Pure matplotlib (Agg), no graphviz. ``draw_cell`` lays a cell out in layers (a node's layer is one
more than the deepest of its inputs), routes every edge as a quadratic curve whose bend is chosen to
keep clear of other nodes and edges, and places each op label where it overlaps nothing else.
``plot_alpha_history`` draws, per cell type, one small plot per edge with one line per candidate op.
Both render with the Agg canvas directly (no pyplot, no global backend switch) and write atomically
(a temporary file in the target folder, renamed into place).
"""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath
from matplotlib.ticker import MaxNLocator

from ops.genotype import NB201_EDGES, DartsGenotype, Genotype, NB201Genotype

__all__ = ["draw_cell", "op_color", "plot_alpha_history"]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
# Fixed colours (matplotlib's tab10 hues) for the ops of the built-in spaces;
# user-registered ops get a stable colour derived from their name.
_OP_COLORS = {
    "none": "#9e9e9e",
    "skip_connect": "#d62728",
    "max_pool_3x3": "#8c564b",
    "avg_pool_3x3": "#e377c2",
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#17becf",
    "sep_conv_7x7": "#0b4f7a",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#7f9f1a",
    "conv_7x1_1x7": "#9467bd",
    "nor_conv_1x1": "#ff7f0e",
    "nor_conv_3x3": "#1f77b4",
}
_EXTRA_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354")

_UNIT_IN = 0.78  # inches per layout unit
_LAYER_DX = 3.3  # horizontal distance between layers (layout units)
_NODE_DY = 1.55  # vertical distance between nodes of a layer
_NODE_R = 0.36  # radius of an intermediate node
_BOX_W, _BOX_H = 1.4, 0.62  # size of the input/output boxes


def op_color(op: str) -> str:
    """The colour used for ``op`` in every picture (stable across runs and processes)."""
    if op in _OP_COLORS:
        return _OP_COLORS[op]
    return _EXTRA_COLORS[zlib.crc32(op.encode()) % len(_EXTRA_COLORS)]


@dataclass
class _Node:
    """A node of a cell picture and its place in the layout."""

    key: str
    label: str
    kind: str  # "input", "inner", "unused" (inner node not concatenated) or "output"
    layer: int
    x: float = 0.0
    y: float = 0.0

    @property
    def radius(self) -> float:
        """Clearance radius used when routing edges around the node."""
        return _NODE_R if self.kind in ("inner", "unused") else 0.5 * math.hypot(_BOX_W, _BOX_H) * 0.85


@dataclass
class _Edge:
    """An edge of a cell picture (source and target node keys) and its routed curve."""

    src: str
    dst: str
    op: str | None  # None: an unlabelled edge into the output node
    curve: np.ndarray | None = None  # sampled points of the routed curve, shape (n, 2)
    line: np.ndarray | None = None  # the visible part of ``curve`` (outside the end nodes)


def _check_path(path: str | os.PathLike) -> tuple[Path, str]:
    """``path`` as a ``Path`` and the picture format its suffix names."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the picture format of {str(path)!r}; use one of the suffixes "
                         f"{', '.join(_FORMATS)}")
    return path, fmt


def _save_atomic(fig: Figure, path: Path, fmt: str) -> None:
    """Save ``fig`` to a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format=fmt, dpi=150, facecolor="white")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------------- cells
def _cell_graph(genotype: Genotype, cell: str) -> tuple[list[_Node], list[_Edge], str, str]:
    """Nodes, edges, default title and footnote of one cell of ``genotype``."""
    if isinstance(genotype, DartsGenotype):
        valid = ("normal", "reduce")
        if cell not in valid:
            raise ValueError(f"unknown cell {cell!r} for a DARTS genotype; valid: {', '.join(valid)}")
        edges_raw = genotype.normal if cell == "normal" else genotype.reduce
        concat = genotype.normal_concat if cell == "normal" else genotype.reduce_concat
        steps = len(edges_raw) // 2
        layer = {0: 0, 1: 0}
        for node in range(2, steps + 2):
            layer[node] = 1 + max(layer[src] for _, src in edges_raw[2 * (node - 2): 2 * (node - 2) + 2])
        out_layer = 1 + max(layer[n] for n in concat)
        # nodes carry the numbers of genotype.json: 0 = c_{k-2}, 1 = c_{k-1}, 2.. the intermediate nodes
        nodes = [_Node("0", r"0: $c_{k-2}$", "input", 0), _Node("1", r"1: $c_{k-1}$", "input", 0)]
        nodes += [_Node(str(n), str(n), "inner" if n in concat else "unused", layer[n])
                  for n in range(2, steps + 2)]
        nodes.append(_Node("out", r"$c_{k}$", "output", out_layer))
        edges = [_Edge(str(src), str(2 + i // 2), op) for i, (op, src) in enumerate(edges_raw)]
        edges += [_Edge(str(n), "out", None) for n in concat]
        title = "normal cell" if cell == "normal" else "reduction cell"
        unused = [str(n) for n in range(2, steps + 2) if n not in concat]
        note = f"output = concat of node{'s' if len(concat) > 1 else ''} {', '.join(str(n) for n in concat)}"
        if unused:
            note += f"; node{'s' if len(unused) > 1 else ''} {', '.join(unused)} (dashed) not concatenated"
        note += "\nnodes numbered as in genotype.json: inputs 0, 1; intermediate nodes 2.." + str(steps + 1)
        return nodes, edges, title, note
    if isinstance(genotype, NB201Genotype):
        if cell != "normal":
            raise ValueError(f"unknown cell {cell!r} for an NB201 genotype (it has one cell); valid: normal")
        nodes = [_Node(str(i), str(i), "input" if i == 0 else "output" if i == 3 else "inner", i)
                 for i in range(4)]
        edges = [_Edge(str(s), str(d), op) for op, (s, d) in zip(genotype.edges, NB201_EDGES)]
        note = genotype.to_arch_str()
        if "none" in genotype.edges:
            note += "\n'none' edges (dashed grey) carry no signal"
        return nodes, edges, "NAS-Bench-201 cell", note
    raise ValueError(f"cannot draw a {type(genotype).__name__}; expected a DartsGenotype or NB201Genotype")


def _place_nodes(nodes: list[_Node], edges: list[_Edge]) -> None:
    """Layered layout: x from the layer, order inside a layer by the barycentre of the inputs."""
    by_layer: dict[int, list[_Node]] = {}
    for node in nodes:
        by_layer.setdefault(node.layer, []).append(node)
    parents: dict[str, list[str]] = {n.key: [] for n in nodes}
    for e in edges:
        parents[e.dst].append(e.src)
    pos = {n.key: 0.0 for n in nodes}
    for layer in sorted(by_layer):
        group = by_layer[layer]
        if layer > 0:  # inputs keep their order (c_{k-2} on top); others sort by barycentre of inputs
            group.sort(key=lambda n: -sum(pos[p] for p in parents[n.key]) / max(1, len(parents[n.key])))
        for i, node in enumerate(group):
            node.x = layer * _LAYER_DX + (0.5 if layer > 0 else 0.0)  # the input fan needs room
            node.y = ((len(group) - 1) / 2 - i) * _NODE_DY
            pos[node.key] = node.y


def _bezier(p0: np.ndarray, p2: np.ndarray, bend: float, n: int = 48) -> np.ndarray:
    """Points of the quadratic curve from ``p0`` to ``p2`` whose control point is pushed sideways by ``bend``."""
    d = p2 - p0
    ctrl = (p0 + p2) / 2 + bend * np.array([-d[1], d[0]])
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t ** 2 * p2


def _min_dist(points: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Distance from each of ``points`` to the nearest point of ``other``."""
    return np.sqrt(((points[:, None, :] - other[None, :, :]) ** 2).sum(-1)).min(1)


def _route(nodes: list[_Node], edges: list[_Edge]) -> None:
    """Choose a bend per edge that keeps the curve off other nodes and off already routed edges."""
    where = {n.key: n for n in nodes}
    bends = (0.0, 0.12, -0.12, 0.22, -0.22, 0.32, -0.32, 0.42, -0.42)
    order = sorted(edges, key=lambda e: (e.op is None, math.hypot(where[e.dst].x - where[e.src].x,
                                                                  where[e.dst].y - where[e.src].y)))
    routed: list[np.ndarray] = []
    for e in order:
        a, b = where[e.src], where[e.dst]
        p0, p2 = np.array([a.x, a.y]), np.array([b.x, b.y])
        best, best_cost = None, math.inf
        for bend in bends:
            curve = _bezier(p0, p2, bend)
            inner = curve[(np.hypot(*(curve - p0).T) > a.radius + 0.15) & (np.hypot(*(curve - p2).T) > b.radius + 0.15)]
            cost = 0.6 * abs(bend)
            for n in nodes:
                if n is a or n is b:
                    continue
                d = np.hypot(*(curve - [n.x, n.y]).T).min()
                cost += 12.0 * max(0.0, n.radius + 0.3 - d)
            if len(inner):
                for other in routed:
                    close = _min_dist(inner, other) < 0.22
                    cost += 4.0 * close.mean()
            if cost < best_cost:
                best, best_cost = curve, cost
        e.curve = best
        routed.append(best)


def _resample(line: np.ndarray, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along the polyline ``line``."""
    seg = np.hypot(*np.diff(line, axis=0).T)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.linspace(0.0, dist[-1], n)
    return np.stack([np.interp(at, dist, line[:, 0]), np.interp(at, dist, line[:, 1])], axis=1)


def _clip(curve: np.ndarray, a: _Node, b: _Node) -> np.ndarray:
    """The part of ``curve`` outside the source and target node shapes (with a small gap)."""

    def inside(node: _Node, pts: np.ndarray, gap: float) -> np.ndarray:
        if node.kind in ("inner", "unused"):
            return np.hypot(*(pts - [node.x, node.y]).T) < _NODE_R + gap
        return (np.abs(pts[:, 0] - node.x) < _BOX_W / 2 + gap) & (np.abs(pts[:, 1] - node.y) < _BOX_H / 2 + gap)

    pts = _resample(curve, 400)
    keep = ~inside(a, pts, 0.04) & ~inside(b, pts, 0.07)
    first, last = int(np.argmax(keep)), len(keep) - 1 - int(np.argmax(keep[::-1]))
    visible = pts[first:last + 1]
    return visible[np.unique(np.r_[np.arange(0, len(visible), 8), len(visible) - 1])]


def _place_labels(fig: Figure, ax: Axes, nodes: list[_Node], edges: list[_Edge]) -> None:
    """Write each op on its edge, rotated along the curve, where it covers no node, label or crossing.

    A label is modelled as a capsule (its centre line, thickened by half its height); candidate
    positions along the curve are scored by how far they intrude into nodes, placed labels and other edges.
    """
    renderer = fig.canvas.get_renderer()
    to_data = ax.transData.inverted()
    where = {n.key: n for n in nodes}
    centres = np.array([[n.x, n.y] for n in nodes])
    radii = np.array([n.radius for n in nodes])
    placed: list[tuple[np.ndarray, float]] = []
    dense = {id(e): _resample(e.line, max(2, int(np.hypot(*np.diff(e.line, axis=0).T).sum() / 0.04)))
             for e in edges}
    labelled = sorted((e for e in edges if e.op is not None),
                      key=lambda e: -abs(where[e.dst].x - where[e.src].x))
    for e in labelled:
        dead = e.op == "none"
        text = ax.text(0, 0, e.op, ha="center", va="center", rotation_mode="anchor", fontsize=8.5, zorder=5,
                       color="#8a8a8a" if dead else op_color(e.op), fontstyle="italic" if dead else "normal",
                       bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9))
        ext = text.get_window_extent(renderer)
        (bx0, by0), (bx1, by1) = to_data.transform([[ext.x0, ext.y0], [ext.x1, ext.y1]])
        half_len, radius = max(0.0, (bx1 - bx0 - (by1 - by0)) / 2), (by1 - by0) / 2
        others = [dense[id(o)] for o in edges if o is not e]
        best, best_cost = None, math.inf
        line = _resample(e.line, 41)
        n = len(line) - 1
        for t in (0.5, 0.44, 0.56, 0.38, 0.62, 0.32, 0.68, 0.26, 0.74):
            i = int(round(t * n))
            centre = line[i]
            tangent = line[min(i + 1, n)] - line[max(i - 1, 0)]
            u = tangent / (np.linalg.norm(tangent) or 1.0)
            if u[0] < 0 or (u[0] == 0 and u[1] < 0):
                u = -u
            spine = centre + np.linspace(-half_len, half_len, 17)[:, None] * u
            d_nodes = _min_dist(centres, spine)
            cost = 40.0 * np.clip(radii + radius + 0.2 - d_nodes, 0, None).sum()
            for other, r in placed:
                cost += 40.0 * max(0.0, radius + r + 0.04 - _min_dist(spine, other).min())
            for curve in others:
                cost += 0.08 * (_min_dist(curve, spine) < radius + 0.03).sum()
            cost += 0.3 * abs(t - 0.5)
            if cost < best_cost:
                best, best_cost = (centre, u, spine), cost
        centre, u, spine = best
        text.set_position(tuple(centre))
        text.set_rotation(math.degrees(math.atan2(u[1], u[0])))
        placed.append((spine, radius))


def draw_cell(genotype: Genotype, cell: str = "normal", path: str | os.PathLike | None = None, *,
              title: str | None = None) -> None:
    """Draw one cell of ``genotype`` to ``path`` (PNG, SVG or PDF, chosen by the suffix).

    DARTS genotypes: ``cell`` is ``normal`` or ``reduce``; the picture shows the inputs
    0 (c_{k-2}) and 1 (c_{k-1}), the intermediate nodes 2..steps+1 (numbered as in ``genotype.json``) and
    the output c_{k}, fed only by the concat nodes. NB201 genotypes: ``cell`` is ``normal``; nodes 0..3 and six edges, ``none`` edges dashed grey.
    Each edge is labelled with its op. ``title`` replaces the default title.
    """
    if path is None:
        raise TypeError("draw_cell() needs the path of the picture to write")
    path, fmt = _check_path(path)
    nodes, edges, default_title, note = _cell_graph(genotype, cell)
    _place_nodes(nodes, edges)
    _route(nodes, edges)
    where = {n.key: n for n in nodes}

    pts = np.concatenate([e.curve for e in edges] + [np.array([[n.x, n.y] for n in nodes])])
    x0, x1 = pts[:, 0].min() - 0.75, pts[:, 0].max() + 0.75
    y0, y1 = pts[:, 1].min() - 0.55, pts[:, 1].max() + 0.55
    head_in, foot_in = 0.5, 0.22 * (note.count("\n") + 1) + 0.15
    width_in, axes_h_in = (x1 - x0) * _UNIT_IN, (y1 - y0) * _UNIT_IN
    fig = Figure(figsize=(width_in, axes_h_in + head_in + foot_in))
    FigureCanvasAgg(fig)
    total_h = axes_h_in + head_in + foot_in
    ax = fig.add_axes((0.0, foot_in / total_h, 1.0, axes_h_in / total_h))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.axis("off")
    fig.text(0.5, 1 - 0.28 / total_h, title if title is not None else default_title,
             ha="center", va="center", fontsize=13, fontweight="bold")
    fig.text(0.5, (foot_in / 2) / total_h, note, ha="center", va="center", fontsize=8.5, color="#444444")

    styles = {"input": ("#c8e6c9", "#2e7d32", "-"), "output": ("#fff3b0", "#9a7d0a", "-"),
              "inner": ("#bbdefb", "#1565c0", "-"), "unused": ("#eef4fb", "#7a9cc6", "--")}
    for n in nodes:
        face, edge, ls = styles[n.kind]
        if n.kind in ("inner", "unused"):
            ax.add_patch(Circle((n.x, n.y), _NODE_R, facecolor=face, edgecolor=edge, linewidth=1.6,
                                linestyle=ls, zorder=3))
        else:
            ax.add_patch(FancyBboxPatch((n.x - _BOX_W / 2, n.y - _BOX_H / 2), _BOX_W, _BOX_H,
                                        boxstyle="round,pad=0,rounding_size=0.14", facecolor=face,
                                        edgecolor=edge, linewidth=1.6, zorder=3))
        ax.text(n.x, n.y, n.label, ha="center", va="center", fontsize=12, zorder=4,
                color="#222222" if n.kind != "unused" else "#5b7ba3")

    for e in edges:
        a, b = where[e.src], where[e.dst]
        line = e.line = _clip(e.curve, a, b)
        dead = e.op == "none"
        color = "#b0b0b0" if e.op is None or dead else op_color(e.op)
        width = 1.1 if e.op is None or dead else 1.8
        ax.add_patch(FancyArrowPatch(path=MplPath(line), arrowstyle="-|>", mutation_scale=13,
                                     color=color, linewidth=width, linestyle="--" if dead or e.op is None else "-",
                                     zorder=2, shrinkA=0, shrinkB=0))

    _place_labels(fig, ax, nodes, edges)
    _save_atomic(fig, path, fmt)


# ------------------------------------------------------------------------------- alpha history
def _edge_grid(n_edges: int) -> tuple[list[tuple[int, int]], list[str], int, int]:
    """Grid cell (row, col) and title of each edge, and the grid shape.

    DARTS supernets (n = 2 + 3 + ... edges) and NB201 (6 edges) get a triangular grid: one row per
    target node, one column per source; anything else a plain near-square grid.
    """
    if n_edges == len(NB201_EDGES):
        cells = [(dst - 1, src) for src, dst in NB201_EDGES]
        return cells, [f"{src} → {dst}" for src, dst in NB201_EDGES], 3, 3
    steps, total = 0, 0
    while total < n_edges:
        steps += 1
        total += steps + 1
    if total == n_edges:  # node numbers as in genotype.json: 0 = c_{k-2}, 1 = c_{k-1}, 2.. intermediate
        cells, titles = [], []
        for node in range(steps):
            for src in range(node + 2):
                cells.append((node, src))
                titles.append(f"{src} → {node + 2}")
        return cells, titles, steps, steps + 1
    cols = math.ceil(math.sqrt(n_edges))
    rows = math.ceil(n_edges / cols)
    return [(i // cols, i % cols) for i in range(n_edges)], [f"edge {i}" for i in range(n_edges)], rows, cols


def _history_array(history: Sequence[Mapping[str, Sequence[Sequence[float]]]], cell: str,
                   n_ops: int) -> np.ndarray:
    """``(epochs, edges, ops)`` array of one cell type, checking every record's shape."""
    rows = []
    for epoch, record in enumerate(history):
        if cell not in record:
            raise ValueError(f"epoch {epoch}: no weights for cell type {cell!r} (has {', '.join(record)})")
        arr = np.asarray(record[cell], dtype=float)
        if arr.ndim != 2 or arr.shape[1] != n_ops:
            raise ValueError(f"epoch {epoch}, cell {cell!r}: expected one row of {n_ops} op weights per edge, "
                             f"got shape {arr.shape}")
        if rows and arr.shape != rows[0].shape:
            raise ValueError(f"epoch {epoch}, cell {cell!r}: {arr.shape[0]} edges, epoch 0 had {rows[0].shape[0]}")
        if not np.isfinite(arr).all():
            raise ValueError(f"epoch {epoch}, cell {cell!r}: weights contain NaN or inf")
        rows.append(arr)
    return np.stack(rows)


def plot_alpha_history(history: Sequence[Mapping[str, Sequence[Sequence[float]]]], candidates: Sequence[str],
                       path: str | os.PathLike, cell: str | None = None,
                       kept: Mapping[str, Sequence[str | None]] | None = None) -> None:
    """Plot how the architecture weights evolved over the epochs of a search.

    ``history`` holds one record per epoch, ``{cell_type: [[weight of op for op in candidates] for edge]}``
    (usually softmax probabilities). Per cell type (only ``cell`` if given) the figure has a grid of
    small plots, one per edge, each with one line per op; one legend is shared. Each plot has its own
    y range (the weights of a short search stay close to uniform, drawn dotted), so small moves show.
    ``kept`` (per cell type, per edge: the op the genotype keeps, ``None`` for an edge it drops) thickens
    that op's line and names it above the plot. Edges are expected in supernet order: DARTS node by node,
    each node's inputs 0, 1, 2, ... (2 + 3 + ... edges, drawn as a triangle: row = node, column = input;
    titles ``source → node`` numbered as in ``genotype.json``: 0 = c_{k-2}, 1 = c_{k-1}, 2.. intermediate);
    NAS-Bench-201 in ``NB201_EDGES`` order (6 edges); any other count as a plain grid. Written atomically
    to ``path`` (PNG, SVG or PDF by suffix).
    """
    path, fmt = _check_path(path)
    candidates = list(candidates)
    if not history:
        raise ValueError("history is empty: expected one record per epoch")
    if not candidates:
        raise ValueError("candidates is empty: expected the op names of the search space")
    cell_types = list(history[0])
    if cell is not None:
        if cell not in cell_types:
            raise ValueError(f"unknown cell type {cell!r}; the history has: {', '.join(cell_types)}")
        cell_types = [cell]
    if not cell_types:
        raise ValueError("history records hold no cell types")
    data = {c: _history_array(history, c, len(candidates)) for c in cell_types}
    grids = {c: _edge_grid(data[c].shape[1]) for c in cell_types}
    kept = _check_kept(kept, data, candidates)

    # Manual layout in inches (constrained layout costs seconds for a few dozen axes).
    sub_w, sub_h, gap_w, gap_h = 2.1, 1.3, 0.42, 0.42
    left, right, legend_h, title_h, bottom_h = 0.62, 0.2, 0.95, 0.5, 0.55
    cols = max(g[3] for g in grids.values())
    section_h = {c: title_h + grids[c][2] * sub_h + (grids[c][2] - 1) * gap_h + bottom_h for c in cell_types}
    width = left + cols * sub_w + (cols - 1) * gap_w + right
    height = legend_h + sum(section_h.values())
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    epochs = np.arange(1, len(history) + 1)
    marker = "o" if len(history) == 1 else None
    uniform = 1.0 / len(candidates)
    top_in = legend_h  # distance of the current section's top from the top of the figure
    for c in cell_types:
        weights = data[c]
        cells, titles, rows, _ = grids[c]
        heading = c if c.lower().endswith("cell") else f"{c} cell"
        fig.text(0.5, 1 - (top_in + 0.22) / height, f"{heading}: architecture weights per edge",
                 ha="center", va="center", fontsize=11.5, fontweight="bold")
        used = set(cells)
        first = None
        for e, ((r, k), name) in enumerate(zip(cells, titles)):
            x_in = left + k * (sub_w + gap_w)
            y_in = top_in + title_h + r * (sub_h + gap_h) + sub_h  # bottom edge, from the top
            ax = fig.add_axes((x_in / width, 1 - y_in / height, sub_w / width, sub_h / height), sharex=first)
            first = first or ax
            keep = None if kept is None else kept[c][e]
            ax.axhline(uniform, color="#777777", linewidth=0.8, linestyle=":", zorder=1)
            for o, op in enumerate(candidates):
                ax.plot(epochs, weights[:, e, o], color=op_color(op), marker=marker, markersize=3,
                        linewidth=2.8 if op == keep else 1.1, linestyle="--" if op == "none" else "-",
                        zorder=3 if op == keep else 2)
            ax.set_title(name, fontsize=8.5, pad=3, loc="left")
            if kept is not None:
                ax.set_title(keep if keep is not None else "dropped", fontsize=7.5, pad=3, loc="right",
                             color=op_color(keep) if keep is not None else "#8a8a8a",
                             fontweight="bold" if keep is not None else "normal")
            low, high = min(float(weights[:, e].min()), uniform), max(float(weights[:, e].max()), uniform)
            pad = max(0.08 * (high - low), 1e-4)
            ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
            margin = 0.5 if len(epochs) == 1 else 0.0  # a single epoch: a dot in the middle
            ax.set_xlim(epochs[0] - margin, epochs[-1] + margin)
            ax.tick_params(labelsize=6.5, length=2, labelbottom=(r + 1, k) not in used)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.grid(alpha=0.25, linewidth=0.5)
            if r == rows - 1:
                ax.set_xlabel("epoch", fontsize=7.5, labelpad=1)
            if k == 0:
                ax.set_ylabel("weight", fontsize=7.5, labelpad=2)
        top_in += section_h[c]
    handles = [Line2D([], [], color=op_color(op), linewidth=2, linestyle="--" if op == "none" else "-")
               for op in candidates]
    ncol = max(1, min(len(candidates), int((width - 0.4) / 1.4)))
    note = "each plot: its own y range; dotted: uniform (1/%d)" % len(candidates)
    if kept is not None:
        note += "; right of each title (thick line): the op the genotype keeps"
    if any(g[1] and "→" in g[1][0] for g in grids.values()):
        note += "\ntitles: source → target node, numbered as in genotype.json"
        if len(data[cell_types[0]][0]) != len(NB201_EDGES):
            note += " (0 = $c_{k-2}$, 1 = $c_{k-1}$, 2.. intermediate nodes)"
    fig.legend(handles, candidates, loc="center", bbox_to_anchor=(0.5, 1 - (legend_h / 2) / height),
               ncol=ncol, fontsize=8.5, frameon=False, handlelength=1.8, columnspacing=1.2,
               title=note, title_fontsize=8)
    _save_atomic(fig, path, fmt)


def _check_kept(kept: Mapping[str, Sequence[str | None]] | None, data: Mapping[str, np.ndarray],
                candidates: Sequence[str]) -> Mapping[str, Sequence[str | None]] | None:
    """``kept`` if it names a candidate (or ``None``) for every edge of every plotted cell type."""
    if kept is None:
        return None
    for c, weights in data.items():
        ops = kept.get(c)
        if ops is None or len(ops) != weights.shape[1]:
            raise ValueError(f"kept: expected one op (or None) per edge of cell type {c!r} "
                             f"({weights.shape[1]} edges), got {None if ops is None else len(ops)}")
        unknown = [op for op in ops if op is not None and op not in candidates]
        if unknown:
            raise ValueError(f"kept: unknown op {unknown[0]!r} for cell type {c!r}; candidates: "
                             f"{', '.join(candidates)}")
    return kept
