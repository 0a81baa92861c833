"""Pictures of cells and of architecture-weight histories."""
from __future__ import annotations

import math
import random
import re
import struct
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from ops import DartsGenotype, Genotype, NB201_EDGES, search_space
from ops import draw
from ops.draw import draw_cell, op_color, plot_alpha_history
from ops.spaces import DartsSpace
from ops.zoo import get_genotype, list_genotypes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NB201_WITH_NONE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a valid PNG file (asserts the signature and the IHDR chunk)."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    assert len(data) > 10_000, f"{path.name} is only {len(data)} bytes"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def _svg_texts(path: Path) -> list[str]:
    """The text elements of an SVG written with ``svg.fonttype = none`` (text kept as text)."""
    texts = re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(), re.S)
    return [re.sub(r"\s*\n\s*", "", re.sub(r"<[^>]+>", "", t)).strip() for t in texts]  # mathtext: one tspan per glyph


def _draw_svg(genotype: Genotype, cell: str, path: Path) -> list[str]:
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        draw_cell(genotype, cell, path)
    return _svg_texts(path)


@pytest.mark.parametrize("name, cell", [("DARTS_V2", "normal"), ("DARTS_V2", "reduce"), ("NASNet", "reduce")])
def test_draw_darts_cell_png(name: str, cell: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}_{cell}.png"
    draw_cell(get_genotype(name), cell, path)
    width, height = _png_size(path)
    assert width > 600 and height > 300
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temporary file was renamed away


def test_draw_nb201_cell_png(tmp_path: Path) -> None:
    path = tmp_path / "nb201.png"
    draw_cell(Genotype.parse(NB201_WITH_NONE), path=path)
    width, height = _png_size(path)
    assert width > 600 and height > 300


@pytest.mark.parametrize("name, cell", [("DARTS_V2", "normal"), ("DARTS_V2", "reduce"), ("NASNet", "reduce")])
def test_darts_cell_labels(name: str, cell: str, tmp_path: Path) -> None:
    """Every edge is labelled with its op; every node appears once, numbered as in genotype.json (inputs 0 and 1,
    intermediate nodes from 2); the footnote names the concat nodes by those numbers and states the convention."""
    genotype = get_genotype(name)
    edges = genotype.normal if cell == "normal" else genotype.reduce
    concat = genotype.normal_concat if cell == "normal" else genotype.reduce_concat
    texts = _draw_svg(genotype, cell, tmp_path / "cell.svg")
    for op in {op for op, _ in edges}:
        assert texts.count(op) == sum(o == op for o, _ in edges), op
    for node in range(2, len(edges) // 2 + 2):
        assert texts.count(str(node)) == 1
    assert "0:ck−2" in texts and "1:ck−1" in texts and "ck" in texts  # mathtext c_{k-2} etc.
    assert ("normal cell" if cell == "normal" else "reduction cell") in texts
    footnote = next(t for t in texts if t.startswith("output = concat of nodes"))
    assert footnote.startswith("output = concat of nodes " + ", ".join(str(n) for n in concat))
    assert "numbered as in genotype.json" in "".join(texts)
    unused = [n for n in range(2, len(edges) // 2 + 2) if n not in concat]
    assert ("not concatenated" in footnote) == bool(unused)


@pytest.mark.parametrize("name", ["DARTS_V2", "NASNet", "P_DARTS"])
def test_picture_edges_match_genotype_json(name: str) -> None:
    """Every (op, input) of genotype.json is an edge of the picture from node ``input`` to the node it feeds,
    with the numbers genotype.json uses."""
    genotype = get_genotype(name)
    raw = genotype.to_dict()
    for cell in ("normal", "reduce"):
        _, edges, _, _ = draw._cell_graph(genotype, cell)
        drawn = sorted((e.op, int(e.src), int(e.dst)) for e in edges if e.op is not None)
        assert drawn == sorted((op, src, 2 + k // 2) for k, (op, src) in enumerate(raw[cell]))


def test_nasnet_reduce_output_fed_by_concat_only() -> None:
    """Nodes 4, 5, 6 feed c_k; nodes 2 and 3 are drawn as unused."""
    nodes, edges, _, _ = draw._cell_graph(get_genotype("NASNet"), "reduce")
    assert sorted(e.src for e in edges if e.dst == "out") == ["4", "5", "6"]
    assert all(e.op is None for e in edges if e.dst == "out")
    kinds = {n.key: n.kind for n in nodes}
    assert [kinds[k] for k in "23456"] == ["unused", "unused", "inner", "inner", "inner"]
    assert sum(e.op is not None for e in edges) == 10


def test_nb201_labels_and_none_edges(tmp_path: Path) -> None:
    genotype = Genotype.parse(NB201_WITH_NONE)
    texts = _draw_svg(genotype, "normal", tmp_path / "nb201.svg")
    assert texts.count("none") == 2
    assert texts.count("nor_conv_3x3") == 2 and texts.count("skip_connect") == 1
    assert NB201_WITH_NONE in texts
    assert any("'none' edges" in t for t in texts)
    _, edges, _, _ = draw._cell_graph(genotype, "normal")
    assert [(int(e.src), int(e.dst)) for e in edges] == list(NB201_EDGES)


@pytest.mark.parametrize("name", list_genotypes())
def test_layout_keeps_edges_off_other_nodes(name: str) -> None:
    """No routed edge passes through a node it does not connect, for every cell of the zoo."""
    genotype = get_genotype(name)
    for cell in ("normal", "reduce") if hasattr(genotype, "reduce") else ("normal",):
        nodes, edges, _, _ = draw._cell_graph(genotype, cell)
        draw._place_nodes(nodes, edges)
        draw._route(nodes, edges)
        xs = sorted({n.x for n in nodes})
        assert [n.x for n in nodes if n.kind == "input"] == [xs[0]] * sum(n.kind == "input" for n in nodes)
        assert max(n.x for n in nodes if n.kind == "output") == xs[-1]
        for e in edges:
            for n in nodes:
                if n.key not in (e.src, e.dst):
                    clearance = np.hypot(*(e.curve - [n.x, n.y]).T).min()
                    assert clearance > draw._NODE_R, f"{name} {cell}: edge {e.src}->{e.dst} crosses node {n.key}"


@pytest.mark.parametrize("seed", range(40))
def test_layout_of_random_cells(seed: int) -> None:
    """Random valid cells (1-5 nodes, parallel edges, any concat): edges keep clear of other nodes."""
    rng = random.Random(seed)
    steps = rng.randint(1, 5)
    edges = tuple((rng.choice(search_space("darts")), rng.randint(0, node + 1))
                  for node in range(steps) for _ in range(2))
    concat = tuple(rng.sample(range(2, steps + 2), rng.randint(1, steps)))
    nodes, graph, _, _ = draw._cell_graph(DartsGenotype(edges, concat, edges, concat), "normal")
    draw._place_nodes(nodes, graph)
    draw._route(nodes, graph)
    assert len({(n.x, n.y) for n in nodes}) == len(nodes)
    for e in graph:
        for n in nodes:
            if n.key not in (e.src, e.dst):
                assert np.hypot(*(e.curve - [n.x, n.y]).T).min() > draw._NODE_R


def test_parallel_edges_one_step(tmp_path: Path) -> None:
    cell = (("max_pool_3x3", 1), ("max_pool_3x3", 1))
    genotype = DartsGenotype(normal=cell, normal_concat=(2,), reduce=cell, reduce_concat=(2,))
    texts = _draw_svg(genotype, "reduce", tmp_path / "one.svg")
    assert texts.count("max_pool_3x3") == 2
    assert "output = concat of node 2" in texts
    nodes, edges, _, _ = draw._cell_graph(genotype, "reduce")
    draw._place_nodes(nodes, edges)
    draw._route(nodes, edges)
    first, second = (e.curve for e in edges if e.op is not None)
    assert np.abs(first - second).max() > 0.2, "parallel edges must bend apart"


def test_svg_by_suffix_and_bad_suffix(tmp_path: Path) -> None:
    path = tmp_path / "cell.svg"
    draw_cell(get_genotype("DARTS_V2"), "reduce", path)
    assert "<svg" in path.read_text()[:2000]
    with pytest.raises(ValueError, match=r"picture format .*\.png, \.svg"):
        draw_cell(get_genotype("DARTS_V2"), "normal", tmp_path / "cell.jpg")
    with pytest.raises(TypeError, match="path"):
        draw_cell(get_genotype("DARTS_V2"), "normal")


def test_bad_cell_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown cell 'reduction'.*valid: normal, reduce"):
        draw_cell(get_genotype("DARTS_V2"), "reduction", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"unknown cell 'reduce'.*valid: normal"):
        draw_cell(Genotype.parse(NB201_WITH_NONE), "reduce", tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_failed_save_keeps_old_picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cell.png"
    draw_cell(get_genotype("DARTS_V2"), "normal", path)
    before = path.read_bytes()

    def broken_savefig(self: Figure, fname, **kwargs) -> None:
        Path(fname).write_bytes(b"\x89PNG half written")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        draw_cell(get_genotype("DARTS_V1"), "normal", path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cell.png"]


def test_op_colors_stable_and_distinct() -> None:
    darts = [op_color(op) for op in search_space("darts")]
    assert len(set(darts)) == len(darts)
    assert op_color("my_custom_op") == op_color("my_custom_op")
    assert re.fullmatch(r"#[0-9a-f]{6}", op_color("my_custom_op"))


# ------------------------------------------------------------------------------- alpha history
def _history(epochs: int, n_edges: int, n_ops: int, cells: tuple[str, ...], seed: int = 0) -> list[dict]:
    """Softmax weights drifting from uniform, one op (index 3) gaining on every edge."""
    rng = np.random.default_rng(seed)
    drift = {c: rng.normal(0, 0.1, (n_edges, n_ops)) for c in cells}
    history = []
    for epoch in range(epochs):
        record = {}
        for c in cells:
            logits = epoch * drift[c]
            logits[:, 3] += 0.1 * epoch
            p = np.exp(logits)
            record[c] = (p / p.sum(1, keepdims=True)).tolist()
        history.append(record)
    return history


def test_alpha_history_darts(tmp_path: Path) -> None:
    candidates = search_space("darts")
    history = _history(12, 14, len(candidates), ("normal", "reduce"))
    path = tmp_path / "alphas.png"
    plot_alpha_history(history, candidates, path)
    width, height = _png_size(path)
    assert height > width > 1000  # two sections of a 4 x 5 triangular grid
    assert [p.name for p in tmp_path.iterdir()] == ["alphas.png"]


def test_alpha_history_titles_and_winners(tmp_path: Path) -> None:
    candidates = search_space("darts")
    history = _history(3, 14, len(candidates), ("normal", "reduce"))
    history[-1]["reduce"][13] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    path = tmp_path / "alphas.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_alpha_history(history, candidates, path, cell="reduce")
    texts = _svg_texts(path)
    assert "reduce cell: architecture weights per edge" in texts
    assert not any(t.startswith("normal cell") for t in texts)
    for title in ("0 → 2", "1 → 5", "2 → 5", "4 → 5"):  # numbered as in genotype.json
        assert title in texts, title
    assert "1.5" not in texts  # epochs are whole numbers
    for op in candidates:
        assert op in texts  # the shared legend
    assert "dropped" not in texts  # no genotype given: no kept op named


def test_alpha_history_nb201_single_epoch(tmp_path: Path) -> None:
    candidates = search_space("nb201")
    path = tmp_path / "nb201.png"
    plot_alpha_history(_history(1, 6, len(candidates), ("cell",)), candidates, path)
    width, height = _png_size(path)
    assert width > 800 and height > 600
    grid, titles, rows, cols = draw._edge_grid(6)
    assert titles == ["0 → 1", "0 → 2", "1 → 2", "0 → 3", "1 → 3", "2 → 3"]
    assert (rows, cols) == (3, 3) and len(set(grid)) == 6


@pytest.mark.parametrize("n_edges, rows, cols", [(2, 1, 2), (5, 2, 3), (14, 4, 5), (20, 5, 6), (7, 3, 3)])
def test_edge_grid(n_edges: int, rows: int, cols: int) -> None:
    grid, titles, r, c = draw._edge_grid(n_edges)
    assert (r, c) == (rows, cols)
    assert len(grid) == len(titles) == n_edges == len(set(grid))
    assert all(0 <= i < r and 0 <= j < c for i, j in grid)
    assert math.prod((r, c)) >= n_edges


def test_alpha_history_bad_input(tmp_path: Path) -> None:
    candidates = search_space("darts")
    good = _history(3, 14, 8, ("normal", "reduce"))
    path = tmp_path / "a.png"
    with pytest.raises(ValueError, match="history is empty"):
        plot_alpha_history([], candidates, path)
    with pytest.raises(ValueError, match="unknown cell type 'reduction'; the history has: normal, reduce"):
        plot_alpha_history(good, candidates, path, cell="reduction")
    with pytest.raises(ValueError, match=r"epoch 0, cell 'normal': expected one row of 5 op weights"):
        plot_alpha_history(good, candidates[:5], path)
    short = [dict(r) for r in good]
    short[2] = {"normal": good[2]["normal"][:9], "reduce": good[2]["reduce"]}
    with pytest.raises(ValueError, match=r"epoch 2, cell 'normal': 9 edges, epoch 0 had 14"):
        plot_alpha_history(short, candidates, path)
    missing = [dict(r) for r in good]
    del missing[1]["reduce"]
    with pytest.raises(ValueError, match=r"epoch 1: no weights for cell type 'reduce'"):
        plot_alpha_history(missing, candidates, path)
    nan = [dict(r) for r in good]
    nan[0] = {"normal": [[float("nan")] * 8] * 14, "reduce": good[0]["reduce"]}
    with pytest.raises(ValueError, match="epoch 0, cell 'normal': weights contain NaN"):
        plot_alpha_history(nan, candidates, path)
    assert not list(tmp_path.iterdir())


def test_alpha_history_marks_the_kept_op_and_numbers_nodes_as_genotype_json(tmp_path: Path) -> None:
    """The DARTS history titles edges ``source -> node`` with genotype.json's numbers; each plot names the op the
    genotype keeps there (``dropped`` where it keeps none); a ``kept`` that does not fit is refused."""
    _, titles, _, _ = draw._edge_grid(14)
    assert titles[:5] == ["0 → 2", "1 → 2", "0 → 3", "1 → 3", "2 → 3"] and titles[-1] == "4 → 5"
    genotype = get_genotype("DARTS_V2")
    kept = DartsSpace().kept_ops(genotype)
    for cell in ("normal", "reduce"):
        named = [(op, titles[e]) for e, op in enumerate(kept[cell]) if op is not None]
        assert sorted(named) == sorted((op, f"{src} → {2 + k // 2}") for k, (op, src) in
                                       enumerate(getattr(genotype, cell)))
    candidates = search_space("darts")
    path = tmp_path / "kept.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_alpha_history(_history(3, 14, 8, ("normal", "reduce")), candidates, path, kept=kept)
    texts = _svg_texts(path)
    assert texts.count("dropped") == 2 * (14 - 8)
    assert texts.count("sep_conv_3x3") == 1 + sum(op == "sep_conv_3x3" for c in kept.values() for op in c)
    with pytest.raises(ValueError, match="kept: expected one op"):
        plot_alpha_history(_history(3, 14, 8, ("normal", "reduce")), candidates, path, kept={"normal": kept["normal"]})
    with pytest.raises(ValueError, match="unknown op 'conv'"):
        plot_alpha_history(_history(3, 14, 8, ("normal",)), candidates, path, kept={"normal": ["conv"] * 14})
