"""Genotypes: the immutable description of a found cell, the artifact that travels from search to retrain.

Two spaces:

* ``DartsGenotype`` -- a normal and a reduction cell, each a list of ``(op, input)`` edges, two per
  intermediate node (nodes 0 and 1 are the cell inputs, node ``k + 2`` the k-th intermediate node),
  plus the intermediate nodes concatenated into the output. Printed and parsed in the exact text the
  DARTS repository publishes: ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)``.
* ``NB201Genotype`` -- the six edge ops of a NAS-Bench-201 cell, printed as ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

Both save to and load from JSON carrying a format version and the space.
"""
from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ops.jsonfile import write_json
from ops.registry import Registry, check_op

FORMAT_VERSION = 1
MAX_NODES = 64
"""The most nodes a genotype's concat may name (bounds ``range(a, b)`` before it is expanded)."""
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""(source, target) node of each NB201 edge, in arch-string order."""

Edge = tuple[str, int]


class Genotype(ABC):
    """Common interface of all genotypes: JSON save/load, text form, parsing."""

    space: ClassVar[str]
    slot_unit: ClassVar[str]
    """What ``choices`` compares: ``edges`` or ``nodes``."""

    @abstractmethod
    def choices(self) -> dict[str, list[tuple[str, Any]]]:
        """Per cell type, the ``(slot name, choice)`` pairs that make the cell (what seeds agree or differ on)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``format_version`` and ``space``."""

    @abstractmethod
    def to_text(self) -> str:
        """The published text form of the genotype."""

    def __str__(self) -> str:
        return self.to_text()

    def save(self, path: str | os.PathLike) -> None:
        """Write the genotype as JSON (atomically: a temporary file renamed into place)."""
        write_json(path, self.to_dict(), indent=2)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Genotype":
        """Rebuild a genotype from ``to_dict`` output; unknown version or space raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"a genotype must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported genotype format_version {version!r}; this version reads {FORMAT_VERSION}")
        space = data.get("space")
        cls = GENOTYPES.get(space)
        try:
            return cls.from_fields(data)
        except KeyError as err:
            raise ValueError(f"genotype of space {space!r} is missing the key {err.args[0]!r}") from None
        except TypeError as err:
            raise ValueError(f"malformed genotype: {err}") from None

    @classmethod
    @abstractmethod
    def from_fields(cls, data: dict[str, Any]) -> "Genotype":
        """The genotype of this space from the fields of a ``to_dict`` dict (``KeyError`` if one is missing)."""

    @staticmethod
    def load(path: str | os.PathLike) -> "Genotype":
        """Read a genotype JSON file written by ``save`` (or by a search run)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"genotype file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"genotype file {path} is not valid JSON ({err})") from None
        try:
            return Genotype.from_dict(data)
        except ValueError as err:
            raise ValueError(f"genotype file {path}: {err}") from None

    @staticmethod
    def parse(text: str) -> "Genotype":
        """Parse the DARTS repository text (``Genotype(normal=[...], ...)``) or an NB201 arch string."""
        if not isinstance(text, str):
            raise TypeError(f"Genotype.parse expects genotype text (a str), got {type(text).__name__}")
        text = text.strip()
        if text.startswith("|"):
            return NB201Genotype.from_arch_str(text)
        if text.startswith("Genotype("):
            return DartsGenotype.from_text(text)
        raise ValueError("cannot parse genotype text: expected 'Genotype(normal=[...], ...)' "
                         f"or an NB201 string '|op~0|+|...|', got {text[:40]!r}")

    @staticmethod
    def resolve(spec: str | os.PathLike) -> "Genotype":
        """A genotype from a JSON path, a zoo name (``DARTS_V2``) or genotype text."""
        from ops.zoo import get_genotype, list_genotypes

        if not isinstance(spec, (str, os.PathLike)):
            raise TypeError(f"a genotype is a JSON path, a zoo name or genotype text, got {type(spec).__name__}")
        text = str(spec).strip()
        if not text:
            raise ValueError(f"the genotype is empty; expected a genotype.json path, a zoo name "
                             f"({', '.join(list_genotypes())}) or genotype text")
        if text in list_genotypes():
            return get_genotype(text)
        if text.startswith(("Genotype(", "|")):
            return Genotype.parse(text)
        if text.endswith(".json") or Path(text).is_file():
            return Genotype.load(text)
        raise ValueError(f"genotype {text!r} is neither a JSON file, a zoo name ({', '.join(list_genotypes())}) "
                         "nor genotype text")


def _edges(raw: Any, cell: str) -> tuple[Edge, ...]:
    try:
        return tuple((op, src) for op, src in raw)
    except (TypeError, ValueError):
        raise ValueError(f"{cell}: edges must be [op, input] pairs, got {raw!r}") from None


def _validate_cell(cell: str, edges: tuple[Edge, ...], concat: tuple[int, ...]) -> None:
    if not edges or len(edges) % 2:
        raise ValueError(f"{cell}: a cell needs two edges per intermediate node, got {len(edges)} edges")
    for position, edge in enumerate(edges):
        if not (isinstance(edge, tuple) and len(edge) == 2 and isinstance(edge[0], str)
                and isinstance(edge[1], int) and not isinstance(edge[1], bool)):
            raise ValueError(f"{cell} edge {position}: expected (op, input) with a str op and an int input, got {edge!r}")
        op, src = edge
        try:
            check_op(op)
        except ValueError as err:
            raise ValueError(f"{cell} edge {position}: {err}") from None
        node = position // 2 + 2
        if not 0 <= src < node:
            raise ValueError(f"{cell} edge {position} ({op!r}, {src}): node {node} can only take inputs 0..{node - 1}")
    steps = len(edges) // 2
    if not concat:
        raise ValueError(f"{cell}_concat is empty")
    for node in concat:
        if not isinstance(node, int) or not 2 <= node < steps + 2:
            raise ValueError(f"{cell}_concat: node {node!r} out of range, the cell has intermediate nodes 2..{steps + 1}")
    if len(set(concat)) != len(concat):
        raise ValueError(f"{cell}_concat has repeated nodes: {list(concat)}")


@dataclass(frozen=True)
class DartsGenotype(Genotype):
    """A DARTS-space cell pair. ``normal``/``reduce``: two ``(op, input)`` edges per intermediate node."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    space: ClassVar[str] = "darts"
    slot_unit: ClassVar[str] = "nodes"

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> "DartsGenotype":
        """From ``normal``, ``normal_concat``, ``reduce`` and ``reduce_concat``."""
        return cls(normal=_edges(data["normal"], "normal"), normal_concat=tuple(data["normal_concat"]),
                   reduce=_edges(data["reduce"], "reduce"), reduce_concat=tuple(data["reduce_concat"]))

    def __post_init__(self) -> None:
        for name in ("normal", "reduce"):
            object.__setattr__(self, name, tuple(tuple(e) if isinstance(e, list) else e for e in getattr(self, name)))
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _validate_cell("normal", self.normal, self.normal_concat)
        _validate_cell("reduce", self.reduce, self.reduce_concat)

    @property
    def steps(self) -> int:
        """Intermediate nodes of the normal cell."""
        return len(self.normal) // 2

    def choices(self) -> dict[str, list[tuple[str, Any]]]:
        """Per intermediate node (``"node 2"`` ...), the set of its ``(op, input)`` edges."""
        return {cell: [(f"node {k // 2 + 2}", frozenset(edges[k:k + 2])) for k in range(0, len(edges), 2)]
                for cell, edges in (("normal", self.normal), ("reduce", self.reduce))}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``format_version`` and ``space``."""
        return {"format_version": FORMAT_VERSION, "space": self.space,
                "normal": [list(e) for e in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(e) for e in self.reduce], "reduce_concat": list(self.reduce_concat)}

    def to_text(self) -> str:
        """The DARTS repository's text form."""
        return (f"Genotype(normal={list(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={list(self.reduce)}, reduce_concat={list(self.reduce_concat)})")

    @classmethod
    def from_text(cls, text: str) -> "DartsGenotype":
        """Parse ``Genotype(normal=[...], normal_concat=[...] or range(a, b), reduce=..., reduce_concat=...)``."""
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as err:
            raise ValueError(f"genotype text is not well formed at column {err.offset}: {text[:60]!r}") from None
        if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
            raise ValueError("genotype text must be a call Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)")
        fields = ("normal", "normal_concat", "reduce", "reduce_concat")
        if len(tree.args) > len(fields):
            raise ValueError(f"genotype text has {len(tree.args)} positional values; fields: {', '.join(fields)}")
        values: dict[str, Any] = dict(zip(fields, tree.args))
        for kw in tree.keywords:
            if kw.arg not in fields:
                raise ValueError(f"unknown genotype field {kw.arg!r}; fields: {', '.join(fields)}")
            if kw.arg in values:
                raise ValueError(f"genotype field {kw.arg!r} is given twice")
            values[kw.arg] = kw.value
        missing = [f for f in fields if f not in values]
        if missing:
            raise ValueError(f"genotype text is missing {', '.join(missing)}")
        return cls(normal=_literal_edges(values["normal"], "normal"),
                   normal_concat=_literal_concat(values["normal_concat"], "normal_concat"),
                   reduce=_literal_edges(values["reduce"], "reduce"),
                   reduce_concat=_literal_concat(values["reduce_concat"], "reduce_concat"))


def _literal_edges(node: ast.expr, field: str) -> tuple[Edge, ...]:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{field} must be a list of ('op', input) pairs") from None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field} must be a list of ('op', input) pairs, got {value!r}")
    return tuple(tuple(e) if isinstance(e, (list, tuple)) else e for e in value)


def _literal_concat(node: ast.expr, field: str) -> tuple[int, ...]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords:
        try:
            bounds = [ast.literal_eval(a) for a in node.args]
            span = range(*bounds)
        except (ValueError, TypeError):
            raise ValueError(f"{field}: range() needs integer bounds") from None
        if len(span) > MAX_NODES:  # checked before the range is expanded
            raise ValueError(f"{field}: {ast.unparse(node)} spans {len(span)} nodes; a cell has at most {MAX_NODES}")
        return tuple(span)
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{field} must be a list of node indices or range(a, b)") from None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field} must be a list of node indices or range(a, b), got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class NB201Genotype(Genotype):
    """A NAS-Bench-201 cell: the ops of its six edges in arch-string order (see ``NB201_EDGES``)."""

    edges: tuple[str, ...]
    space: ClassVar[str] = "nb201"
    slot_unit: ClassVar[str] = "edges"

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> "NB201Genotype":
        """From ``edges`` (a list of op names)."""
        edges = data["edges"]
        if not isinstance(edges, (list, tuple)):
            raise ValueError(f"an NB201 genotype's edges must be a list of {len(NB201_EDGES)} op names, "
                             f"got {type(edges).__name__} {edges!r:.60}")
        return cls(edges=tuple(edges))

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple(self.edges))
        if len(self.edges) != len(NB201_EDGES):
            raise ValueError(f"an NB201 cell has {len(NB201_EDGES)} edges, got {len(self.edges)}")
        for position, op in enumerate(self.edges):
            if not isinstance(op, str):
                raise ValueError(f"NB201 edge {position}: op must be a string, got {op!r}")
            try:
                check_op(op)
            except ValueError as err:
                raise ValueError(f"NB201 edge {position} {NB201_EDGES[position]}: {err}") from None

    def choices(self) -> dict[str, list[tuple[str, Any]]]:
        """The op of every edge (``"src->dst"``)."""
        return {"normal": [(f"{src}->{dst}", op) for op, (src, dst) in zip(self.edges, NB201_EDGES)]}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``format_version``, ``space`` and the arch string for readers."""
        return {"format_version": FORMAT_VERSION, "space": self.space,
                "edges": list(self.edges), "arch": self.to_arch_str()}

    def to_arch_str(self) -> str:
        """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
        nodes: list[list[str]] = [[], [], []]
        for op, (src, dst) in zip(self.edges, NB201_EDGES):
            nodes[dst - 1].append(f"{op}~{src}")
        return "+".join("|" + "|".join(node) + "|" for node in nodes)

    def to_text(self) -> str:
        """Same as ``to_arch_str``."""
        return self.to_arch_str()

    @classmethod
    def from_arch_str(cls, text: str) -> "NB201Genotype":
        """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; errors name the node and the problem."""
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise ValueError(f"NB201 string needs 3 '+'-separated nodes, got {len(nodes)}: {text!r}")
        ops: list[str] = []
        for index, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError(f"NB201 node {index}: expected '|op~src|...|', got {node!r}")
            entries = node[1:-1].split("|")
            if len(entries) != index:
                raise ValueError(f"NB201 node {index} needs {index} inputs, got {len(entries)} in {node!r}")
            for expected_src, entry in enumerate(entries):
                op, sep, src = entry.partition("~")
                if not sep or src != str(expected_src):
                    raise ValueError(f"NB201 node {index}: entry {entry!r} should read 'op~{expected_src}'")
                ops.append(op)
        return cls(edges=tuple(ops))


GENOTYPES: Registry[type[Genotype]] = Registry("genotype space", listing="known")
"""The genotype class of each space, by the space's name (what ``to_dict`` stores as ``space``)."""
GENOTYPES.register(DartsGenotype.space, DartsGenotype)
GENOTYPES.register(NB201Genotype.space, NB201Genotype)
