"""One self-contained ``report.html`` per run: what was found, how the search got there, and whether to trust it.

A one-shot run's report holds the genotype in all its text forms and how to load it, the cell pictures, the
op-weight history with the per-edge spread, the op-importance heatmap, the loss and accuracy curves (from the
logger's ``metrics.csv``), the collapse monitor's table and the supernet fidelity when they were measured, the
found cell's size as a standalone network (``retrain``), its predicted and real cost per epoch with a cost
objective, the resolved config and the command that reproduces the
run. A discrete search's report holds each seed's best cell, its trial history and Pareto front. Pictures are
embedded (base64), so the file can be mailed or attached as it is; it is written atomically.

``SearchOutputs`` writes it at the end of every search; for a finished (or killed) run, or to add op importance
from any of its checkpoints::

    python -m search.report runs/quickstart/version_0 [--checkpoint runs/quickstart/version_0/checkpoints/last.ckpt]
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ops import Genotype, NB201Genotype
from ops.jsonfile import write_text

REPORT = "report.html"
COMMAND = "command.txt"  # the command line that started the run (SearchOutputs writes it)
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto;font-size:.85em}img{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}.note{color:#555;font-size:.9em}"""


# ---- building blocks ---------------------------------------------------------------------------------------------
def image(path: Path, alt: str) -> str:
    """``<img>`` with the PNG at ``path`` embedded."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def pre(text: str) -> str:
    """Preformatted, escaped text."""
    return f"<pre>{html.escape(text)}</pre>"


def para(text: str, note: bool = False) -> str:
    """A paragraph of escaped text."""
    return f'<p{" class=note" if note else ""}>{html.escape(text)}</p>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table of escaped cells (floats with 4 significant digits)."""
    def cell(value: Any) -> str:
        return html.escape(f"{value:.4g}" if isinstance(value, float) else str(value))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A whole HTML document: ``sections`` are ``(heading, [html parts])``; empty sections are left out."""
    parts = [f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        if body:
            parts.append(f"<h2>{html.escape(heading)}</h2>" + "".join(body))
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ---- what a one-shot run folder holds ----------------------------------------------------------------------------
def edge_spread(probabilities: dict[str, list[list[float]]]) -> list[float]:
    """Per edge of every cell type, the largest minus the smallest op probability."""
    return [max(edge) - min(edge) for cell in probabilities.values() for edge in cell]


def spread_line(probabilities: dict[str, list[list[float]]], threshold: float = 0.1) -> str:
    """One line on how far the architecture moved from uniform: per-edge spread (largest minus smallest op
    probability), its median and maximum, and how many edges reach ``threshold``."""
    spread = edge_spread(probabilities)
    reached = sum(s >= threshold for s in spread)
    return (f"op-probability spread per edge (largest - smallest): median {statistics.median(spread):.3f}, "
            f"max {max(spread):.3f}; {reached} of {len(spread)} edges reach {threshold:g}")


def epoch_curves(metrics_csv: Path) -> dict[str, list[tuple[float, float]]]:
    """Per-epoch points of the loss and accuracy columns the logger wrote (``CSVLogger``'s ``metrics.csv``): the
    last value of each epoch-level column (``*_epoch`` names lose the suffix); step-level columns are left out."""
    if not metrics_csv.is_file():
        return {}
    with metrics_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    wanted = [k for k in (rows[0] if rows else {}) if ("loss" in k or "acc" in k) and not k.endswith("_step")]
    series: dict[str, dict[float, float]] = {}
    for row in rows:
        for key in wanted:
            value, epoch = row.get(key, ""), row.get("epoch", "")
            if value not in ("", None) and epoch not in ("", None):
                series.setdefault(key.removesuffix("_epoch"), {})[float(epoch) + 1] = float(value)
    return {k: sorted(v.items()) for k, v in series.items() if v}


def cell_size(genotype: Genotype) -> list[tuple[str, str]]:
    """Params and multiply-adds of the standalone network of ``genotype`` at the published retrain size."""
    from retrain.build import NETWORK_KINDS, build_network, count_macs, count_parameters, kinds_for

    kind = kinds_for(genotype)[0]
    spec = NETWORK_KINDS.get(kind)
    size = 224 if kind == "imagenet" else 32
    net = build_network(genotype, num_classes=spec.num_classes, kind=kind)
    return [("standalone network", f"{spec.label}, C={spec.channels}, {spec.layers_name} {spec.layers}, "
                                   f"{spec.num_classes} classes, {size}x{size} input"),
            ("parameters", f"{count_parameters(net) / 1e6:.3f} M"),
            ("multiply-adds", f"{count_macs(net, size) / 1e6:.1f} M")]


def genotype_forms(genotype: Genotype, path: Path) -> list[str]:
    """The genotype as text, as JSON, in NB201 notation where it applies, and how to use it elsewhere."""
    parts = [para("As text (Genotype.parse reads it):"), pre(genotype.to_text()),
             para(f"As JSON ({path.name}; Genotype.load reads it):"), pre(path.read_text())]
    if isinstance(genotype, NB201Genotype):
        parts += [para("NAS-Bench-201 notation (the table's arch string):"), pre(genotype.to_arch_str())]
    parts += [para("In another project:"), pre(
        "from ops import Genotype\nfrom retrain import build_network\n\n"
        f"genotype = Genotype.load({str(path)!r})\nnet = build_network(genotype)  # a plain nn.Module")]
    return parts


def _monitor_table(monitor: dict[str, Any]) -> list[str]:
    rows = [(r.get("epoch"), r.get("param_free_ops"), _fmt(r.get("eigenvalue")))
            for r in monitor.get("epochs", [])]
    if not rows:
        return []
    parts = [table(["epoch", "parameter-free ops in the genotype", "dominant Hessian eigenvalue"], rows)]
    if monitor.get("stop_epoch") is not None:
        parts.append(para(f"early-stop rule fired: epoch {monitor['stop_epoch']}"))
    return parts


def cost_line(record: dict[str, Any]) -> str:
    """One line on a cell's cost: predicted and real in the objective's kind, and the budget state."""
    kind, unit = record["kind"], record["unit"]
    line = (f"{kind} predicted {record['predicted'][kind]:.4g} {unit}, real {record['real'][kind]:.4g} {unit} "
            f"({record['network']})")
    if record.get("budget") is not None:
        state = "within" if record.get("within_budget") else "over"
        line += f"; budget {record['budget']:g} {unit}: {state} (multiplier {record['multiplier']:.3g})"
    return line


def _cost_part(cost: dict[str, Any]) -> list[str]:
    epochs = cost.get("epochs", [])
    if not epochs:
        return []
    kinds = list(epochs[-1]["predicted"])
    header = ["epoch", *[f"{k} predicted" for k in kinds], *[f"{k} real" for k in kinds],
              f"expected {epochs[-1]['kind']}", "multiplier", "cell"]
    rows = [(r["epoch"], *[r["predicted"][k] for k in kinds], *[r["real"].get(k, math.nan) for k in kinds],
             r["expected"], r["multiplier"], r["genotype"] if len(r["genotype"]) < 90 else r["genotype"][:87] + "...")
            for r in epochs]
    return [para(cost_line(epochs[-1])), para("Units: params in M, flops in M multiply-adds, latency in ms; "
                                              "predicted by the cost model, real from the standalone network.",
                                              note=True), table(header, rows)]


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"


def oneshot_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from what a one-shot search wrote there; returns its path."""
    from ops.figures import plot_curves

    run = Path(run_dir)
    genotype_path = run / "genotype.json"
    if not genotype_path.is_file():
        raise FileNotFoundError(f"{run}: no genotype.json (is this the folder of a finished search run?)")
    genotype = Genotype.load(genotype_path)
    history = _read_json(run / "alphas.json")
    epochs = history.get("epochs", [])
    last = epochs[-1] if epochs else {}
    title = f"Search run {run.name}: {history.get('strategy', '?')} on the {genotype.space} space"
    overview = [("run folder", str(run)), ("epochs", str(len(epochs)))]
    for key in ("val_acc", "val_loss", "train_acc"):
        if key in last:
            overview.append((f"supernet {key} (last epoch)", f"{last[key]:.4f}"))
    if last.get("probabilities"):
        overview.append(("architecture", spread_line(last["probabilities"])))
    overview += cell_size(genotype)
    cells = [image(run / f"cell_{c}.png", f"{c} cell") for c in ("normal", "reduce") if (run / f"cell_{c}.png").is_file()]
    curves = epoch_curves(run / "metrics.csv")
    curve_part: list[str] = []
    if curves:
        plot_curves(curves, run / "curves.png")
        curve_part = [image(run / "curves.png", "loss and accuracy per epoch")]
    importance = _read_json(run / "importance.json")
    importance_part = []
    if (run / "importance.png").is_file():
        importance_part = [para(f"Accuracy drop of the supernet when one op is removed from one edge, on "
                                f"{importance.get('batches', '?')} validation batches"
                                f"{' (' + importance['checkpoint'] + ')' if importance.get('checkpoint') else ''}:"
                                " a large drop on the kept op means the supernet relies on it; a kept op whose "
                                "removal costs nothing was chosen by its weight alone."),
                           image(run / "importance.png", "op importance")]
    fidelity = _read_json(run / "fidelity.json")
    fidelity_part = []
    if fidelity:
        fidelity_part = [para(fidelity.get("summary", ""))]
        if (run / "fidelity.png").is_file():
            fidelity_part.append(image(run / "fidelity.png", "supernet fidelity"))
    config = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else ""
    command = (run / COMMAND).read_text().strip() if (run / COMMAND).is_file() else ""
    reproduce = [para("As it was run:"), pre(command)] if command else []
    if config:
        strategy = str(history.get("strategy", "darts"))
        entry = f"search.{strategy}" if (Path(__file__).parent / f"{strategy}.py").is_file() else "search.darts"
        reproduce += [para("This run again, from its resolved config:"),
                      pre(f"python -m {entry} --config {run / 'config.yaml'}")]
    sections = [
        ("Overview", [table(["", ""], overview)]),
        ("Found cell", cells + genotype_forms(genotype, genotype_path)),
        ("Architecture weights per epoch", [image(run / "alphas.png", "op weights per epoch")]
         if (run / "alphas.png").is_file() else []),
        ("What the supernet relies on", importance_part),
        ("Loss and accuracy", curve_part),
        ("Cost of the found cell", _cost_part(_read_json(run / "cost.json"))),
        ("Collapse monitor", _monitor_table(_read_json(run / "monitor.json"))),
        ("Supernet fidelity", fidelity_part),
        ("Command", reproduce),
        ("Resolved config (config.yaml)", [pre(config)] if config else []),
    ]
    out = run / REPORT
    write_text(out, page(title, sections))
    return out


def discrete_report(run_dir: Path, summary: dict[str, Any], config_text: str, size: str, title: str) -> Path:
    """Write ``run_dir/report.html`` for a discrete search folder (``search.discrete.outputs.write_run``)."""
    runs = summary.get("runs", [])
    metric = next((k for k in runs[0] if k not in _SUMMARY_FIELDS), "metric") if runs else "metric"
    rows = [(r["seed"], r["best_arch"], r.get(metric, float("nan")), r["params_m"], r["flops_m"], r["evaluations"])
            for r in runs]
    sections: list[tuple[str, Sequence[str]]] = [
        ("Best cell per seed", [table(["seed", "cell", metric, "params (M)", "FLOPs (M)", "evaluations"], rows)])]
    for r in runs:
        seed_dir = run_dir / f"seed{r['seed']}"
        genotype = Genotype.load(seed_dir / "best_genotype.json")
        parts = [pre(genotype.to_text())]
        for name, alt in (("trials.png", "trial history"), ("pareto.png", f"Pareto front ({size})")):
            if (seed_dir / name).is_file():
                parts.append(image(seed_dir / name, alt))
        sections.append((f"Seed {r['seed']}", parts))
    sections.append(("Resolved config (config.yaml)", [pre(config_text)] if config_text else []))
    out = run_dir / REPORT
    write_text(out, page(title, sections))
    return out


_SUMMARY_FIELDS = {"seed", "best_arch", "best_step", "params_m", "flops_m", "evaluations", "total_cost", "cost_unit",
                   "rejected", "failures"}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def refresh(run_dir: Path, checkpoint: str | None, importance_batches: int) -> Path:
    """With ``checkpoint``: measure the op importance of that checkpoint's supernet (``importance.json`` /
    ``.png``); then rebuild ``report.html`` from the folder."""
    if checkpoint is not None and importance_batches > 0:
        import torch

        from search.callbacks import write_importance
        from search.cli import load_run
        from search.importance import op_importance, probe_set

        model, data = load_run(run_dir, checkpoint)
        genotype = model.genotype()
        probe = probe_set(data.val_dataloader(), importance_batches, torch.device("cpu"))
        write_importance(run_dir, op_importance(model.supernet, model.eval_weights(), probe), model, genotype,
                         importance_batches, checkpoint=Path(checkpoint).name)
    return oneshot_report(run_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m search.report RUN_DIR [--checkpoint CKPT] [--importance_batches N]``; exit 2 on bad input."""
    import argparse

    from configs.cli import fail

    parser = argparse.ArgumentParser(prog="python -m search.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="folder of a search run (runs/<name>/version_<n>)")
    parser.add_argument("--checkpoint", default=None,
                        help="measure the op importance of this checkpoint's supernet (e.g. checkpoints/last.ckpt)")
    parser.add_argument("--importance_batches", type=int, default=4, help="validation batches for the importance")
    args = parser.parse_args(argv)
    try:
        if args.importance_batches < 1:
            raise ValueError(f"--importance_batches must be >= 1, got {args.importance_batches}")
        out = refresh(args.run_dir, args.checkpoint, args.importance_batches)
    except (ValueError, FileNotFoundError, TypeError, KeyError) as err:
        return fail(parser.prog, err)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
