"""Reader of the NAS-Bench-201 tabular results (``nb201.csv`` and, optionally, ``nb201_hp12.csv``).

The 200-epoch table has one row per cell: ``arch_index, arch``, accuracies ``<dataset>_<split>`` for
datasets ``cifar10, cifar100, imagenet16`` and splits ``valid, test`` (``valtest`` for cifar100 and
imagenet16), and sizes ``params_m, flops_m`` (CIFAR-10 head) plus ``params_m_<dataset>, flops_m_<dataset>``.
The 12-epoch table has ``arch_index, arch`` and ``<dataset>_<split>_12ep`` columns for the same cells.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Union

import numpy as np

from ops import NB201Genotype

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16")
SPLITS: tuple[str, ...] = ("valid", "test", "valtest")
LAYOUT_200 = "arch_index, arch, <dataset>_<split> accuracies, params_m, flops_m, ..."
LAYOUT_12 = "arch_index, arch, <dataset>_<split>_12ep accuracies"
_KEY_COLUMNS = ("arch_index", "arch")
_REQUIRED_200 = ("cifar10_valid", "cifar10_test", "params_m", "flops_m")

Cell = Union[str, NB201Genotype]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"NAS-Bench-201 table not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            if "\x00" in handle.read(4096):
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL byte")
            handle.seek(0)
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty file, expected a CSV header ({LAYOUT_200})")
            rows = [row for row in reader if row]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file; expected a NAS-Bench-201 table ({LAYOUT_200})") from None
    if not rows:
        raise ValueError(f"{path}: only a header, no cells; expected one row per cell below it")
    return [h.strip() for h in header], rows


def _columns(path: Path, header: list[str], rows: list[list[str]]) -> dict[str, np.ndarray]:
    """Numeric columns (all but ``arch``) as float arrays; malformed values raise naming file, line and column."""
    data: dict[str, np.ndarray] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
    for col, name in enumerate(header):
        if name == "arch":
            continue
        values = np.empty(len(rows), dtype=np.float64)
        for i, row in enumerate(rows):
            try:
                values[i] = float(row[col])
            except ValueError:
                raise ValueError(f"{path}:{i + 2}: column {name!r} has a non-numeric value {row[col]!r}") from None
        data[name] = values
    return data


class NB201Table:
    """The NAS-Bench-201 results, queried by arch string or ``NB201Genotype``.

    Args:
        path: the 200-epoch CSV (layout of ``nb201.csv``).
        hp12: optional 12-epoch CSV (layout of ``nb201_hp12.csv``) for the same cells; adds ``*_12ep`` metrics.
    """

    def __init__(self, path: str | os.PathLike, hp12: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        header, rows = _read_csv(self.path)
        if "params_m" not in header and any(h.endswith("_12ep") for h in header):
            raise ValueError(f"{self.path} has the 12-epoch layout; pass the 200-epoch table as path "
                             "and this one as hp12")
        missing = [c for c in (*_KEY_COLUMNS, *_REQUIRED_200) if c not in header]
        if missing:
            raise ValueError(f"{self.path}: missing column(s) {', '.join(missing)}; expected layout: {LAYOUT_200}")
        self._data = _columns(self.path, header, rows)
        arch_col = header.index("arch")
        self.archs: list[str] = [row[arch_col].strip() for row in rows]
        for line, arch in enumerate(self.archs, start=2):
            try:
                NB201Genotype.from_arch_str(arch)
            except ValueError as err:
                raise ValueError(f"{self.path}:{line}: {err}") from None
        self.indices = self._data.pop("arch_index").astype(np.int64)
        self._row_of: dict[str, int] = {}
        for row, arch in enumerate(self.archs):
            if arch in self._row_of:
                raise ValueError(f"{self.path}:{row + 2}: cell {arch!r} appears twice")
            self._row_of[arch] = row
        self._row_of_index = {int(i): row for row, i in enumerate(self.indices)}
        if len(self._row_of_index) != len(self.indices):
            raise ValueError(f"{self.path}: repeated arch_index values")
        self.hp12_path: Path | None = None
        if hp12 is not None:
            self._add_hp12(Path(hp12))

    def _add_hp12(self, path: Path) -> None:
        header, rows = _read_csv(path)
        missing = [c for c in _KEY_COLUMNS if c not in header]
        extra = [h for h in header if h.endswith("_12ep")]
        if missing or not extra:
            raise ValueError(f"{path}: not a 12-epoch table; expected layout: {LAYOUT_12}")
        data = _columns(path, header, rows)
        arch_col = header.index("arch")
        order = np.full(len(self.archs), -1, dtype=np.int64)
        for i, (index, row) in enumerate(zip(data["arch_index"].astype(np.int64), rows)):
            own = self._row_of_index.get(int(index))
            if own is None:
                continue
            if row[arch_col].strip() != self.archs[own]:
                raise ValueError(f"{path}:{i + 2}: arch_index {index} is {row[arch_col]!r} here "
                                 f"but {self.archs[own]!r} in {self.path}")
            order[own] = i
        if (order < 0).any():
            index = int(self.indices[int(np.argmax(order < 0))])
            raise ValueError(f"{path}: no row for arch_index {index} of {self.path}")
        for name in extra:
            self._data[name] = data[name][order]
        self.hp12_path = path

    # ----------------------------------------------------------------------------------------- lookup
    def __len__(self) -> int:
        return len(self.archs)

    def __contains__(self, cell: object) -> bool:
        try:
            self._row(cell)  # type: ignore[arg-type]
        except ValueError:
            return False
        return True

    @property
    def metrics(self) -> list[str]:
        """Names of the accuracy columns (search metrics), e.g. ``cifar10_valid``, ``cifar10_valid_12ep``."""
        return [n for n in self._data if not n.startswith(("params_m", "flops_m")) and n != "n_seeds_200ep"
                and n != "hp200_params_mismatch"]

    @property
    def columns(self) -> list[str]:
        """All numeric columns."""
        return list(self._data)

    def _row(self, cell: Cell) -> int:
        if isinstance(cell, NB201Genotype):
            arch = cell.to_arch_str()
        elif isinstance(cell, str):
            arch = cell.strip()
        else:
            raise ValueError(f"cell {cell!r}: expected an arch string or NB201Genotype, got {type(cell).__name__}")
        row = self._row_of.get(arch)
        if row is not None:
            return row
        try:
            arch = NB201Genotype.from_arch_str(arch).to_arch_str()
        except ValueError as err:
            raise ValueError(f"malformed cell {arch!r}: {err}") from None
        row = self._row_of.get(arch)
        if row is None:
            raise ValueError(f"cell {arch!r} is not in {self.path} ({len(self)} rows)")
        return row

    def index(self, cell: Cell) -> int:
        """Benchmark index (``arch_index``) of a cell."""
        return int(self.indices[self._row(cell)])

    def arch(self, index: int) -> str:
        """Arch string of benchmark index ``index``."""
        row = self._row_of_index.get(int(index))
        if row is None:
            raise ValueError(f"arch_index {index} is not in {self.path}")
        return self.archs[row]

    def genotype(self, index: int) -> NB201Genotype:
        """``NB201Genotype`` of benchmark index ``index``."""
        return NB201Genotype.from_arch_str(self.arch(index))

    def value(self, cell: Cell, column: str) -> float:
        """Raw value of ``column`` (any numeric column name) for a cell."""
        if column not in self._data:
            hint = " (12-epoch columns need the hp12 table)" if column.endswith("_12ep") and not self.hp12_path else ""
            raise ValueError(f"unknown column {column!r}{hint}; available: {', '.join(self.columns)}")
        return float(self._data[column][self._row(cell)])

    def accuracy(self, cell: Cell, dataset: str = "cifar10", split: str = "test", epochs: int = 200) -> float:
        """Top-1 accuracy (%) of a cell on ``dataset``/``split`` after ``epochs`` (200, or 12 with the hp12 table)."""
        return self.value(cell, metric_name(dataset, split, epochs))

    def params(self, cell: Cell, dataset: str = "cifar10") -> float:
        """Parameters in millions of the network for ``dataset``."""
        return self.value(cell, size_column("params_m", dataset))

    def flops(self, cell: Cell, dataset: str = "cifar10") -> float:
        """Multiply-adds in millions of the network for ``dataset``."""
        return self.value(cell, size_column("flops_m", dataset))

    def column(self, name: str) -> np.ndarray:
        """A copy of a whole numeric column, in row order (aligned with ``archs`` and ``indices``)."""
        if name not in self._data:
            raise ValueError(f"unknown column {name!r}; available: {', '.join(self.columns)}")
        return self._data[name].copy()

    def row(self, cell: Cell) -> dict[str, float | int | str]:
        """All values of a cell's row, ``arch_index`` and ``arch`` included."""
        r = self._row(cell)
        out: dict[str, float | int | str] = {"arch_index": int(self.indices[r]), "arch": self.archs[r]}
        out.update({name: float(col[r]) for name, col in self._data.items()})
        return out


def metric_name(dataset: str, split: str, epochs: int = 200) -> str:
    """Column name of an accuracy: ``metric_name("cifar10", "valid", 12) == "cifar10_valid_12ep"``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if epochs not in (12, 200):
        raise ValueError(f"epochs must be 200 or 12 (the two NAS-Bench-201 schedules), got {epochs}")
    if split == "valtest" and (dataset == "cifar10" or epochs == 12):
        raise ValueError(f"split 'valtest' is not recorded for {dataset} at {epochs} epochs; use valid or test")
    return f"{dataset}_{split}" + ("_12ep" if epochs == 12 else "")


def metric_dataset(metric: str) -> str:
    """The dataset a metric column belongs to (``cifar100_valid_12ep`` -> ``cifar100``)."""
    for dataset in sorted(DATASETS, key=len, reverse=True):
        if metric.startswith(dataset + "_"):
            return dataset
    raise ValueError(f"metric {metric!r} names no dataset; metrics start with one of {', '.join(DATASETS)}")


def size_column(kind: str, dataset: str) -> str:
    """Column of a size: ``size_column("params_m", "cifar100") == "params_m_cifar100"`` (CIFAR-10: no suffix)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return kind if dataset == "cifar10" else f"{kind}_{dataset}"
