"""What a search found and why: op importance, supernet fidelity, the run report, TensorBoard pictures."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ops import NB201_EDGES, Genotype, search_space
from ops.spaces import NB201Space
from search.discrete import NB201Space as NB201Cells
from search.fidelity import rank_fidelity, reestimate, shared_weight_accuracy
from search.importance import op_importance
from search.strategies.probe import ProbeSet
from supernet import CellWeights, NB201SearchNetwork
from tests.test_search_cli import TINY

CLASSES = 4


class Decisive(nn.Module):
    """Two edges, ops (none, a, b): the class comes only through op b of edge 1; ops a of both edges and op b of
    edge 0 add noise."""

    candidates = ("none", "a", "b")

    def forward(self, x: torch.Tensor, weights: dict) -> torch.Tensor:
        w = weights["normal"].ops
        signal = F.one_hot(x[:, 0].long(), CLASSES).float()
        return 12.0 * w[1, 2] * signal + (w[0, 1] + w[0, 2] + w[1, 1]) * x[:, 1:]


def test_importance_ranks_the_decisive_op_first() -> None:
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, CLASSES, (256,), generator=generator)
    x = torch.cat([y[:, None].float(), torch.randn(256, CLASSES, generator=generator)], dim=1)
    probe = ProbeSet(4)
    for chunk in range(4):
        probe.add((x[64 * chunk:64 * (chunk + 1)], y[64 * chunk:64 * (chunk + 1)]))
    weights = {"normal": CellWeights(ops=torch.full((2, 3), 1 / 3))}
    base, drops = op_importance(Decisive(), weights, probe)
    table = torch.tensor(drops["normal"])
    assert base > 0.9
    assert divmod(int(table.argmax()), 3) == (1, 2)  # edge 1, op b
    assert table[1, 2] > 0.5 and (table[:, 0] == 0).all()  # `none` costs nothing to remove
    assert table.flatten().sort(descending=True).values[1] <= 0.05  # nothing else matters


class CountsConvs(nn.Module):
    """A stand-in NB201 supernet whose single path is right on a fraction ``convs / 6`` of the images, ``convs``
    being the number of ``nor_conv_3x3`` edges; it has a BatchNorm whose statistics the evaluation re-estimates."""

    search_space = NB201Space()
    num_ops = 5

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(1)

    def forward(self, x: torch.Tensor, weights: dict) -> torch.Tensor:
        self.norm(x[:, :1])
        convs = weights["normal"].ops[:, self.search_space.index("nor_conv_3x3")].sum()
        index, y = x[:, 1], x[:, 2].long()
        right = (index % 6) < convs
        wrong = (y + 1) % CLASSES
        return F.one_hot(torch.where(right, y, wrong), CLASSES).float()


def test_fidelity_of_a_supernet_with_a_known_ranking_is_perfect() -> None:
    rng = np.random.default_rng(0)
    cells = [NB201Cells().sample(rng) for _ in range(30)]
    n = 60
    x = torch.stack([torch.randn(n), torch.arange(n).float(), torch.randint(0, CLASSES, (n,)).float()], dim=1)
    batches = [(x, x[:, 2].long())]
    supernet = CountsConvs()
    scores = shared_weight_accuracy(supernet, cells, batches, batches)
    truth = [sum(op == "nor_conv_3x3" for op in c.edges) for c in cells]
    assert scores == [100.0 * t / 6 for t in truth]
    result = rank_fidelity(scores, truth, top_k=5)
    assert result.kendall_tau == pytest.approx(1.0) and result.spearman_rho == pytest.approx(1.0)
    assert rank_fidelity([-s for s in scores], truth).kendall_tau == pytest.approx(-1.0)
    assert supernet.norm.num_batches_tracked == 0  # statistics put back


def test_reestimated_statistics_are_the_mean_of_the_batch_statistics() -> None:
    torch.manual_seed(0)
    norm = nn.BatchNorm1d(3)
    module = nn.Module()
    module.norm = norm
    module.forward = lambda x, path: norm(x)  # type: ignore[method-assign]
    batches = [(torch.randn(16, 3) * (i + 1) + i, None) for i in range(3)]
    reestimate(module, {}, batches)
    assert torch.allclose(norm.running_mean, torch.stack([x.mean(0) for x, _ in batches]).mean(0), atol=1e-6)
    assert torch.allclose(norm.running_var, torch.stack([x.var(0) for x, _ in batches]).mean(0), atol=1e-5)
    assert not norm.training


def test_shared_weight_evaluation_leaves_a_real_supernet_untouched() -> None:
    torch.manual_seed(0)
    supernet = NB201SearchNetwork(channels=4, cells_per_stage=1, num_classes=CLASSES)
    supernet.train()
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, CLASSES, (8,))) for _ in range(2)]
    cells = [Genotype.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),
             Genotype.parse("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")]
    first = shared_weight_accuracy(supernet, cells, batches, batches)
    assert first == shared_weight_accuracy(supernet, cells, batches, batches)  # deterministic
    assert supernet.training
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())


def test_rank_fidelity_top_k_and_bad_input() -> None:
    result = rank_fidelity([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 1, 2], top_k=2)
    assert result.top_k_overlap == 0.0 and result.kendall_tau < -0.8
    assert rank_fidelity([1, 2, 3, 9], [1, 2, 3, 9], top_k=2).top_k_overlap == 1.0
    with pytest.raises(ValueError, match="equally long"):
        rank_fidelity([1, 2], [1, 2, 3])


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            a = dict(attrs)
            self.images.append((a["alt"], a["src"]))
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def _tiny_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Path:
    from search.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(TINY + ["--trainer.logger.init_args.name", "tiny", *extra]) == 0
    return tmp_path / "runs" / "tiny" / "version_0"


def test_a_search_writes_a_self_contained_report(tmp_path, monkeypatch, capsys) -> None:
    run = _tiny_run(tmp_path, monkeypatch, "--outputs.importance_batches", "1")
    out = capsys.readouterr().out
    assert "op-probability spread per edge" in out and "of 10 edges reach 0.1" in out
    page = (run / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    parser.close()
    alts = [alt for alt, _ in parser.images]
    assert alts == ["normal cell", "reduce cell", "op weights per epoch", "op importance", "loss and accuracy per epoch"]
    for alt, src in parser.images:
        assert src.startswith("data:image/png;base64,"), alt
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n", alt
    for heading in ("Found cell", "What the supernet relies on", "Loss and accuracy", "Command",
                    "Resolved config (config.yaml)"):
        assert heading in parser.headings
    genotype = Genotype.load(run / "genotype.json")
    assert genotype.to_text().replace("'", "&#x27;") in page
    assert "--config quickstart.yaml" in (run / "command.txt").read_text() and "--config quickstart.yaml" in page
    importance = json.loads((run / "importance.json").read_text())
    assert len(importance["drop"]["normal"]) == 5 and len(importance["drop"]["normal"][0]) == 8
    assert not list(run.rglob("*.tmp"))  # written atomically

    from search.report import main as report_main

    (run / "report.html").unlink()
    assert report_main([str(run), "--checkpoint", str(run / "checkpoints" / "last.ckpt"),
                        "--importance_batches", "1"]) == 0
    assert json.loads((run / "importance.json").read_text())["checkpoint"] == "last.ckpt"
    assert (run / "report.html").is_file()


@pytest.mark.parametrize("argv, needle", [
    (["missing_run"], "no genotype.json"),
    (["RUN", "--checkpoint", "nope.ckpt"], "--checkpoint nope.ckpt: no such file"),
    (["RUN", "--importance_batches", "0"], "--importance_batches must be >= 1"),
])
def test_report_command_bad_input(tmp_path, capsys, argv, needle) -> None:
    from search.report import main as report_main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")
    argv = [str(run) if a == "RUN" else str(tmp_path / a) if a == "missing_run" else a for a in argv]
    assert report_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_fidelity_command_refuses_a_darts_space_run(tmp_path, monkeypatch, capsys) -> None:
    from search.fidelity import main as fidelity_main

    run = _tiny_run(tmp_path, monkeypatch, "--outputs.importance_batches", "0")
    capsys.readouterr()
    table = Path(__file__).parent / "data" / "nb201_excerpt.csv"
    assert fidelity_main([str(run), "--table", str(table), "--cells", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'darts' space" in err and len(err.splitlines()) == 1


def test_fidelity_command_on_an_nb201_run(tmp_path, monkeypatch, capsys) -> None:
    from search.cli import main
    from search.fidelity import main as fidelity_main

    monkeypatch.chdir(tmp_path)
    assert main(["--config", "nb201_darts.yaml", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
                 "--data", "nasdata.DigitsDataModule", "--data.search_split", "true", "--data.subset", "64",
                 "--data.batch_size", "16", "--model.supernet.init_args.channels", "4",
                 "--model.supernet.init_args.cells_per_stage", "1", "--trainer.enable_progress_bar", "false",
                 "--trainer.logger.init_args.name", "nb"]) == 0
    run = tmp_path / "runs" / "nb" / "version_0"
    capsys.readouterr()
    table = Path(__file__).parent / "data" / "nb201_excerpt.csv"
    assert fidelity_main([str(run), "--table", str(table), "--cells", "12", "--bn_batches", "1",
                          "--val_batches", "1", "--top_k", "3"]) == 0
    assert "Kendall tau" in capsys.readouterr().out
    saved = json.loads((run / "fidelity.json").read_text())
    assert saved["cells"] == 12 and len({c["arch"] for c in saved["cells_scored"]}) == 12
    assert -1.0 <= saved["kendall_tau"] <= 1.0 and saved["top_k"] == 3
    assert (run / "fidelity.png").is_file() and "Supernet fidelity" in (run / "report.html").read_text()
    assert fidelity_main([str(run), "--table", str(table), "--cells", "1"]) == 2
    assert "--cells must be >= 2" in capsys.readouterr().err


def test_tensorboard_gets_histograms_and_pictures(tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    from search.cli import main

    assert main(TINY + ["--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
                        "--trainer.logger.init_args.save_dir", "tb", "--trainer.logger.init_args.name", "tiny",
                        "--outputs.importance_batches", "1"]) == 0
    events = EventAccumulator(str(tmp_path / "tb" / "tiny" / "version_0"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"op_probabilities/normal", "op_probabilities/reduce"} <= set(tags["histograms"])
    assert {"pictures/alphas", "pictures/cell_normal", "pictures/importance"} <= set(tags["images"])
    assert (tmp_path / "tb" / "tiny" / "version_0" / "report.html").is_file()


def test_nb201_edges_are_named_alike_everywhere() -> None:
    """History titles, cell pictures and the NB201 string all use node numbers 0..3 of ``op~source``."""
    from ops import draw

    _, titles, _, _ = draw._edge_grid(6)
    genotype = Genotype.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    kept = NB201Space().kept_ops(genotype)["normal"]
    _, edges, _, _ = draw._cell_graph(genotype, "normal")
    for (src, dst), title, op, edge in zip(NB201_EDGES, titles, kept, edges):
        assert title == f"{src} → {dst}" and (edge.src, edge.dst, edge.op) == (str(src), str(dst), op)
        assert f"{op}~{src}" in genotype.to_arch_str()
    assert len(search_space("nb201")) == 5
