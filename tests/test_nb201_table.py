"""NB201Table on an excerpt of the real NAS-Bench-201 tables (tests/data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ops import NB201Genotype
from search.nb201_table import NB201Table, metric_dataset, metric_name

DATA = Path(__file__).parent / "data"
EXCERPT, HP12 = DATA / "nb201_excerpt.csv", DATA / "nb201_hp12_excerpt.csv"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
DISCONNECTED = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"  # index 10
ABSENT = "|none~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"  # a valid cell not in the excerpt


@pytest.fixture(scope="module")
def table() -> NB201Table:
    return NB201Table(EXCERPT, HP12)


def test_known_rows(table: NB201Table) -> None:
    assert len(table) == 48
    assert table.index(BEST) == 6111 and table.arch(6111) == BEST
    assert table.accuracy(BEST, "cifar10", "test") == pytest.approx(94.373333)
    assert table.accuracy(BEST, "cifar10", "valid", epochs=12) == pytest.approx(84.384)
    assert table.accuracy(BEST, "cifar100", "valtest") == table.value(BEST, "cifar100_valtest")
    assert table.params(BEST) == pytest.approx(1.073466)
    assert table.accuracy(ALL_SKIP) == pytest.approx(54.30, abs=0.005)
    assert table.index(ALL_SKIP) == 1835
    assert table.accuracy(DISCONNECTED) == 10.0 and table.index(DISCONNECTED) == 10
    assert table.params(ALL_SKIP) == pytest.approx(0.073306)  # the smallest network of the space
    assert table.flops(BEST, "imagenet16") == table.value(BEST, "flops_m_imagenet16") != table.flops(BEST)


def test_genotype_and_string_queries_agree(table: NB201Table) -> None:
    genotype = NB201Genotype.from_arch_str(BEST)
    assert table.row(genotype) == table.row(BEST)
    assert table.genotype(6111) == genotype
    assert genotype in table and ABSENT not in table and "garbage" not in table
    assert table.index("  " + BEST + " ") == 6111


def test_columns_align_with_rows(table: NB201Table) -> None:
    test_acc = table.column("cifar10_test")
    assert test_acc.max() == pytest.approx(94.373333) and table.archs[int(np.argmax(test_acc))] == BEST
    assert "cifar10_valid_12ep" in table.metrics and "params_m" not in table.metrics


@pytest.mark.parametrize("cell, message", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "malformed cell"),
    ("|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|", "malformed cell"),
    ("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "malformed cell"),
    (ABSENT, "is not in"),
])
def test_bad_cells_raise_one_line(table: NB201Table, cell: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        table.accuracy(cell)
    assert cell.strip() in str(info.value) and "\n" not in str(info.value)


def test_bad_queries(table: NB201Table) -> None:
    with pytest.raises(ValueError, match="valtest"):
        table.accuracy(BEST, "cifar10", "valtest")
    with pytest.raises(ValueError, match="unknown dataset"):
        table.accuracy(BEST, "mnist")
    with pytest.raises(ValueError, match="epochs"):
        table.accuracy(BEST, epochs=50)
    with pytest.raises(ValueError, match="arch_index 7"):
        table.arch(7)
    with pytest.raises(ValueError, match="hp12"):
        NB201Table(EXCERPT).accuracy(BEST, epochs=12)


def test_metric_names() -> None:
    assert metric_name("cifar100", "valid", 12) == "cifar100_valid_12ep"
    assert metric_dataset("cifar100_valid_12ep") == "cifar100" and metric_dataset("cifar10_test") == "cifar10"


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.csv")):
        NB201Table(tmp_path / "none.csv")


def _rewrite(src: Path, dst: Path, line: int, old: str, new: str) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    dst.write_text("".join(lines))
    return dst


def test_malformed_csv_value_names_line_and_column(tmp_path: Path) -> None:
    first = EXCERPT.read_text().splitlines()[1].split(",")
    bad = _rewrite(EXCERPT, tmp_path / "bad.csv", 2, f",{first[3]},", ",n/a,")
    with pytest.raises(ValueError, match=r"bad.csv:2: column 'cifar10_test' has a non-numeric value 'n/a'"):
        NB201Table(bad)


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="12-epoch layout"):
        NB201Table(HP12)
    no_flops = tmp_path / "no_flops.csv"
    no_flops.write_text(EXCERPT.read_text().replace(",flops_m,", ",flops,", 1))
    with pytest.raises(ValueError, match="missing column.*flops_m"):
        NB201Table(no_flops)
    mismatch = _rewrite(HP12, tmp_path / "hp12.csv", 2, "avg_pool_3x3~0", "none~0")
    with pytest.raises(ValueError, match="arch_index 0"):
        NB201Table(EXCERPT, mismatch)
    short = tmp_path / "short.csv"
    short.write_text("".join(HP12.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match="no row for arch_index 15133"):
        NB201Table(EXCERPT, short)
