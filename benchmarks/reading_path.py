"""What a newcomer reads to follow one DARTS step: the project files that run, and how many of their lines.

Runs ``python -m search.darts --config quickstart.yaml`` for one epoch on the readable (``reference``) supernet or the
fused fast path, traces the second training step (``SearchModule.training_step``: architecture step, then weight
step, down to the ops) and prints every project file whose code ran in it, with its size and the lines that ran.
The entry point (``search/darts.py``) and the CLI (``search/cli.py``) that builds the module are listed apart: they
are read once, not per step. Lines are counted without blank lines, comments and docstrings (``code``), and as
they stand in the file (``lines``).

    python benchmarks/reading_path.py [--impl reference|fused] [--order 1|2]
"""
from __future__ import annotations

import argparse
import collections
import io
import sys
import tempfile
import threading
import tokenize
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ("search/darts.py", "search/cli.py")


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    source = path.read_text()
    docstring_lines: set[int] = set()
    previous = tokenize.INDENT
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and previous in (tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT):
            docstring_lines.update(range(token.start[0], token.end[0] + 1))
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token.type
    lines = source.splitlines()
    return sum(1 for i, line in enumerate(lines, 1)
               if line.strip() and not line.strip().startswith("#") and i not in docstring_lines)


def traced_step(impl: str, order: int) -> dict[str, set[int]]:
    """Project files (relative paths) -> line numbers that ran during the second training step."""
    from search import cli
    from search.module import SearchModule

    hits: dict[str, set[int]] = collections.defaultdict(set)
    root = str(ROOT) + "/"

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        name = frame.f_code.co_filename
        if name.startswith(root):
            hits[name[len(root):]].add(frame.f_lineno)
            return tracer
        return None

    step = SearchModule.training_step

    def traced(self: SearchModule, batch: Any, batch_idx: int) -> Any:
        if batch_idx != 1:
            return step(self, batch, batch_idx)
        sys.settrace(tracer)
        threading.settrace(tracer)
        try:
            return step(self, batch, batch_idx)
        finally:
            sys.settrace(None)
            threading.settrace(None)

    SearchModule.training_step = traced  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as out:
        code = cli.run_strategy("darts", [
            "--config", "quickstart.yaml", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--trainer.logger.init_args.save_dir", out,
            "--outputs.pictures", "false", "--model.strategy_args.order", str(order),
            "--model.supernet.init_args.impl", impl, "--trainer.enable_progress_bar", "false"])
    SearchModule.training_step = step  # type: ignore[method-assign]
    if code != 0:
        raise SystemExit(f"the traced search failed (exit {code})")
    return hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", choices=("reference", "fused"), default="reference")
    parser.add_argument("--order", type=int, choices=(1, 2), default=1)
    args = parser.parse_args(argv)
    hits = traced_step(args.impl, args.order)
    step_files = sorted(f for f in hits if f not in ENTRY)
    print(f"one DARTS step (order {args.order}, impl {args.impl}): files whose code ran, beside the entry point")
    print(f"{'file':<34}{'code':>6}{'lines':>7}{'ran':>6}")
    totals = [0, 0, 0]
    for group, files in (("step", step_files), ("entry", list(ENTRY))):
        for name in files:
            path = ROOT / name
            row = (code_lines(path), len(path.read_text().splitlines()), len(hits.get(name, ())))
            print(f"{name:<34}{row[0]:>6}{row[1]:>7}{row[2]:>6}")
            if group == "step":
                totals = [t + r for t, r in zip(totals, row)]
        if group == "step":
            print(f"{'= the step: ' + str(len(step_files)) + ' files':<34}{totals[0]:>6}{totals[1]:>7}{totals[2]:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
