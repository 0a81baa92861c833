"""Genotypes: round trips through every format, the published texts, the zoo, and bad input."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ops
from ops import DartsGenotype, Genotype, NB201Genotype
from ops.zoo import ALIASES, PUBLISHED, get_genotype, list_genotypes

OPS = ops.list_ops()
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------- strategies
@st.composite
def darts_cells(draw: st.DrawFn) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    """A valid DARTS cell: 1-5 intermediate nodes, two edges each from earlier nodes, a concat subset."""
    steps = draw(st.integers(1, 5))
    edges = tuple((draw(st.sampled_from(OPS)), draw(st.integers(0, node + 1)))
                  for node in range(steps) for _ in range(2))
    concat = draw(st.lists(st.sampled_from(range(2, steps + 2)), min_size=1, unique=True))
    return edges, tuple(concat)


@st.composite
def darts_genotypes(draw: st.DrawFn) -> DartsGenotype:
    (normal, normal_concat), (reduce, reduce_concat) = draw(darts_cells()), draw(darts_cells())
    return DartsGenotype(normal=normal, normal_concat=normal_concat, reduce=reduce, reduce_concat=reduce_concat)


nb201_genotypes = st.lists(st.sampled_from(OPS), min_size=6, max_size=6).map(lambda e: NB201Genotype(edges=e))


def _json_round_trip(genotype: Genotype, folder: Path) -> Genotype:
    path = folder / "genotype.json"
    genotype.save(path)
    assert [p.name for p in folder.iterdir()] == ["genotype.json"]  # no temporary file left behind
    return Genotype.load(path)


# ---------------------------------------------------------------------------------- round trips
@HYPOTHESIS
@given(genotype=darts_genotypes())
def test_darts_round_trips(genotype: DartsGenotype, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("darts")
    via_json = _json_round_trip(genotype, folder)
    via_text = Genotype.parse(genotype.to_text())
    via_str = Genotype.parse(str(genotype))
    via_dict = Genotype.from_dict(json.loads(json.dumps(genotype.to_dict())))
    for other in (via_json, via_text, via_str, via_dict):
        assert isinstance(other, DartsGenotype)
        assert other == genotype and hash(other) == hash(genotype)
        assert other.normal_concat == genotype.normal_concat  # order preserved, not sorted
    assert via_text.to_text() == genotype.to_text()
    assert genotype.steps == len(genotype.normal) // 2


@HYPOTHESIS
@given(genotype=nb201_genotypes)
def test_nb201_round_trips(genotype: NB201Genotype, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("nb201")
    text = genotype.to_arch_str()
    assert text == genotype.to_text() == str(genotype)
    assert re.fullmatch(r"\|[^|]+~0\|\+\|[^|]+~0\|[^|]+~1\|\+\|[^|]+~0\|[^|]+~1\|[^|]+~2\|", text)
    parsed = Genotype.parse(text)
    assert parsed == genotype and parsed.to_arch_str() == text
    assert NB201Genotype.from_arch_str(text) == genotype
    loaded = _json_round_trip(genotype, folder)
    assert loaded == genotype and hash(loaded) == hash(genotype)
    assert json.loads((folder / "genotype.json").read_text())["arch"] == text
    assert Genotype.from_dict(genotype.to_dict()) == genotype


# ------------------------------------------------------------------------------ published texts
# DARTS_V2 exactly as printed in the DARTS repository's cnn/genotypes.py.
DARTS_V2_TEXT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
                 "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
                 "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
                 "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
                 "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
DARTS_V2 = DartsGenotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=(2, 3, 4, 5))
# NASNet as laid out in the DARTS repository (multi-line, spaces around '=', trailing commas).
NASNET_TEXT = """Genotype(
  normal = [
    ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 0),
    ('sep_conv_5x5', 0),
    ('sep_conv_3x3', 0),
    ('avg_pool_3x3', 1),
    ('skip_connect', 0),
    ('avg_pool_3x3', 0),
    ('avg_pool_3x3', 0),
    ('sep_conv_3x3', 1),
    ('skip_connect', 1),
  ],
  normal_concat = [2, 3, 4, 5, 6],
  reduce = [
    ('sep_conv_5x5', 1),
    ('sep_conv_7x7', 0),
    ('max_pool_3x3', 1),
    ('sep_conv_7x7', 0),
    ('avg_pool_3x3', 1),
    ('sep_conv_5x5', 0),
    ('skip_connect', 3),
    ('avg_pool_3x3', 2),
    ('sep_conv_3x3', 2),
    ('max_pool_3x3', 1),
  ],
  reduce_concat = [4, 5, 6],
)
"""
NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_darts_v2_published_text() -> None:
    parsed = Genotype.parse(DARTS_V2_TEXT)
    assert parsed == DARTS_V2
    assert parsed.to_text() == DARTS_V2_TEXT  # prints back the published text, character for character
    with_range = DARTS_V2_TEXT.replace("[2, 3, 4, 5]", "range(2, 6)")
    assert with_range.count("range(2, 6)") == 2
    assert Genotype.parse(with_range) == DARTS_V2
    assert DartsGenotype.from_text(with_range) == DARTS_V2
    assert get_genotype("DARTS_V2") == DARTS_V2
    assert DARTS_V2.steps == 4


def test_nasnet_multiline_text() -> None:
    parsed = Genotype.parse(NASNET_TEXT)
    assert parsed == get_genotype("NASNet")
    assert parsed.steps == 5 and parsed.reduce_concat == (4, 5, 6)
    assert parsed.reduce[6] == ("skip_connect", 3)


def test_nb201_best_cell_string() -> None:
    parsed = Genotype.parse(NB201_BEST)
    assert parsed == NB201Genotype(edges=("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3",
                                          "skip_connect", "nor_conv_3x3", "nor_conv_1x1"))
    assert parsed.to_arch_str() == NB201_BEST
    assert str(parsed) == NB201_BEST
    assert ops.NB201_EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


# ------------------------------------------------------------------------------------------ zoo
@pytest.mark.parametrize("name", list_genotypes())
def test_zoo_entry_validates(name: str, tmp_path: Path) -> None:
    genotype = get_genotype(name)
    assert isinstance(genotype, (DartsGenotype, NB201Genotype))
    rebuilt = type(genotype)(**{f.name: getattr(genotype, f.name) for f in dataclasses.fields(genotype)})
    assert rebuilt == genotype  # the constructor's validation accepts it
    assert Genotype.parse(genotype.to_text()) == genotype
    assert _json_round_trip(genotype, tmp_path) == genotype
    assert Genotype.resolve(name) == genotype
    if isinstance(genotype, DartsGenotype):
        assert Genotype.parse(PUBLISHED[ALIASES.get(name, name)]) == genotype
        assert len(genotype.reduce) == len(genotype.normal), "both cells need the same number of nodes"
        for op, _ in genotype.normal + genotype.reduce:
            assert op != "none", "a discretized cell never keeps a none edge"


def test_zoo_names() -> None:
    names = list_genotypes()
    assert names == sorted(names)
    assert {"DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet", "NB201_BEST"} <= set(names)
    with pytest.raises(ValueError, match="unknown genotype 'DARTS_V3'.*DARTS_V2"):
        get_genotype("DARTS_V3")
    assert get_genotype("DARTS") == get_genotype("DARTS_V2")  # the original repository's default --arch


# -------------------------------------------------------------------------------------- resolve
def test_resolve_name_text_and_path(tmp_path: Path) -> None:
    assert Genotype.resolve("DARTS_V2") == DARTS_V2
    assert Genotype.resolve("  DARTS_V2\n") == DARTS_V2
    assert Genotype.resolve(DARTS_V2_TEXT) == DARTS_V2
    assert Genotype.resolve(NB201_BEST) == Genotype.parse(NB201_BEST)
    path = tmp_path / "found.json"
    DARTS_V2.save(path)
    assert Genotype.resolve(path) == DARTS_V2
    assert Genotype.resolve(str(path)) == DARTS_V2
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.json"))):
        Genotype.resolve(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="'DARTS_V9' is neither.*DARTS_V2"):
        Genotype.resolve("DARTS_V9")


# ------------------------------------------------------------------------ hashable and immutable
def test_hashable_and_immutable() -> None:
    from_lists = DartsGenotype(normal=[[op, src] for op, src in DARTS_V2.normal],
                               normal_concat=[2, 3, 4, 5], reduce=list(DARTS_V2.reduce),
                               reduce_concat=range(2, 6))
    assert from_lists == DARTS_V2 and hash(from_lists) == hash(DARTS_V2)
    assert isinstance(from_lists.normal, tuple) and isinstance(from_lists.normal[0], tuple)
    assert len({from_lists, DARTS_V2, get_genotype("DARTS_V1")}) == 2
    assert {DARTS_V2: "v2"}[from_lists] == "v2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        DARTS_V2.normal = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DARTS_V2.reduce_concat = (2,)  # type: ignore[misc]
    nb = Genotype.parse(NB201_BEST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        nb.edges = ("none",) * 6  # type: ignore[misc]
    assert hash(nb) == hash(Genotype.parse(NB201_BEST))
    assert DARTS_V2 != nb


# ------------------------------------------------------------------------------------ bad input
def _darts(normal=None, normal_concat=(2, 3), reduce=None, reduce_concat=(2, 3)) -> DartsGenotype:
    cell = (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("dil_conv_3x3", 2))
    return DartsGenotype(normal=cell if normal is None else normal, normal_concat=normal_concat,
                         reduce=cell if reduce is None else reduce, reduce_concat=reduce_concat)


@pytest.mark.parametrize("kwargs, message", [
    (dict(normal=(("sep_conv_3x3", 0), ("sep_conv_4x4", 1))), r"normal edge 1: unknown op 'sep_conv_4x4'"),
    (dict(reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("foo", 2), ("max_pool_3x3", 0))),
     r"reduce edge 2: unknown op 'foo'; registered ops: .*sep_conv_3x3"),
    (dict(normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 2))),
     r"normal edge 1 \('sep_conv_3x3', 2\): node 2 can only take inputs 0..1"),
    (dict(reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 3), ("max_pool_3x3", 0))),
     r"reduce edge 2 \('skip_connect', 3\): node 3 can only take inputs 0..2"),
    (dict(normal=(("sep_conv_3x3", -1), ("sep_conv_3x3", 0))), r"normal edge 0 .*-1.*inputs 0..1"),
    (dict(normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0))),
     r"normal: a cell needs two edges per intermediate node, got 3 edges"),
    (dict(reduce=()), r"reduce: .*got 0 edges"),
    (dict(normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1.0))), r"normal edge 1: expected \(op, input\)"),
    (dict(normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1, 1.0))), r"normal edge 1: expected \(op, input\)"),
    (dict(normal_concat=(2, 4)), r"normal_concat: node 4 out of range, the cell has intermediate nodes 2..3"),
    (dict(reduce_concat=(1, 2)), r"reduce_concat: node 1 out of range"),
    (dict(normal_concat=(2, 3, 2)), r"normal_concat has repeated nodes: \[2, 3, 2\]"),
    (dict(reduce_concat=()), r"reduce_concat is empty"),
])
def test_bad_darts_genotype(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _darts(**kwargs)


GOOD_TEXT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
             "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])")


@pytest.mark.parametrize("text, message", [
    (GOOD_TEXT[:-1], r"not well formed at column"),
    (GOOD_TEXT.replace("[2]", "[2", 1), r"not well formed"),
    (GOOD_TEXT.replace("Genotype(", "Genome(", 1), r"cannot parse genotype text.*Genotype\(normal="),
    (GOOD_TEXT.replace("Genotype(", "Genotype (", 1), r"cannot parse genotype text"),
    (GOOD_TEXT + " + 1", r"must be a call Genotype\("),
    (GOOD_TEXT.replace("normal=", "normals=", 1), r"unknown genotype field 'normals'"),
    (GOOD_TEXT[:-1] + ", extra=[1])", r"unknown genotype field 'extra'"),
    (GOOD_TEXT.replace(", reduce_concat=[2]", ""), r"genotype text is missing reduce_concat"),
    (GOOD_TEXT[:-1] + ", normal_concat=[2])", r"genotype field 'normal_concat' is given twice"),
    ("Genotype([('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], [2], [('max_pool_3x3', 0), ('max_pool_3x3', 1)], "
     "[2], [3])", r"5 positional values"),
    (GOOD_TEXT.replace("normal=[", "normal=foo + [", 1), r"normal must be a list of \('op', input\) pairs"),
    (GOOD_TEXT.replace("normal_concat=[2]", "normal_concat=range(2, 'a')"), r"normal_concat: range\(\) needs integer"),
    (GOOD_TEXT.replace("normal_concat=[2]", "normal_concat=nodes"), r"normal_concat must be a list of node indices"),
    (GOOD_TEXT.replace("'sep_conv_3x3', 1", "'sep_conv_9x9', 1"), r"normal edge 1: unknown op 'sep_conv_9x9'"),
    (GOOD_TEXT.replace("('max_pool_3x3', 1)", "('max_pool_3x3', 2)"),
     r"reduce edge 1 .*node 2 can only take inputs 0..1"),
    (GOOD_TEXT.replace("reduce_concat=[2]", "reduce_concat=[3]"), r"reduce_concat: node 3 out of range"),
    ("", r"cannot parse genotype text"),
])
def test_bad_darts_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Genotype.parse(text)


def test_wrong_call_name_in_darts_text() -> None:
    with pytest.raises(ValueError, match=r"must be a call Genotype\(normal=..."):
        DartsGenotype.from_text(GOOD_TEXT.replace("Genotype(", "Genome(", 1))


@pytest.mark.parametrize("text, message", [
    (NB201_BEST.replace("nor_conv_3x3~1", "nor_conv_3x3~2"),
     r"NB201 node 2: entry 'nor_conv_3x3~2' should read 'op~1'"),
    (NB201_BEST.replace("|nor_conv_3x3~0|+", "|nor_conv_3x3~1|+", 1), r"NB201 node 1: entry .* should read 'op~0'"),
    (NB201_BEST.replace("skip_connect~0", "skip_connect"), r"NB201 node 3: entry 'skip_connect' should read 'op~0'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", r"needs 3 '\+'-separated nodes, got 2"),
    (NB201_BEST + "+|none~0|", r"needs 3 '\+'-separated nodes, got 4"),
    (NB201_BEST.replace("|nor_conv_3x3~1|+", "|nor_conv_3x3~1|none~2|+"), r"NB201 node 2 needs 2 inputs, got 3"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
     r"node 2 needs 2 inputs, got 1"),
    (NB201_BEST.replace("|+|skip", "+|skip"), r"NB201 node 2: expected '\|op~src\|...\|'"),
    (NB201_BEST.replace("nor_conv_1x1", "conv_1x1"), r"NB201 edge 5 \(2, 3\): unknown op 'conv_1x1'"),
])
def test_bad_nb201_string(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Genotype.parse(text)


def test_bad_nb201_edges() -> None:
    with pytest.raises(ValueError, match="an NB201 cell has 6 edges, got 5"):
        NB201Genotype(edges=("none",) * 5)
    with pytest.raises(ValueError, match="NB201 edge 3: op must be a string, got 3"):
        NB201Genotype(edges=("none", "none", "none", 3, "none", "none"))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=2), r"unsupported genotype format_version 2; this version reads 1"),
    (lambda d: d.pop("format_version"), r"unsupported genotype format_version None"),
    (lambda d: d.update(space="enas"), r"unknown genotype space 'enas'; known: darts, nb201"),
    (lambda d: d.pop("reduce_concat"), r"genotype of space 'darts' is missing the key 'reduce_concat'"),
    (lambda d: d.pop("normal"), r"missing the key 'normal'"),
    (lambda d: d.update(normal="sep_conv_3x3"), r"normal: edges must be \[op, input\] pairs"),
    (lambda d: d.update(normal_concat=5), r"malformed genotype"),
    (lambda d: d["reduce"].__setitem__(0, ["max_pool_3x3", 0.5]), r"reduce edge 0: expected \(op, input\)"),
    (lambda d: d["normal"].__setitem__(3, ["sep_conv_3x3", 9]), r"normal edge 3 .*node 3 can only take inputs 0..2"),
], ids=["version", "no_version", "space", "no_reduce_concat", "no_normal", "edges_str", "concat_int", "float_input",
        "future_input"])
def test_bad_darts_json(change, message: str, tmp_path: Path) -> None:
    data = DARTS_V2.to_dict()
    change(data)
    with pytest.raises(ValueError, match=message):
        Genotype.from_dict(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": .*" + message):
        Genotype.load(path)


def test_bad_nb201_json() -> None:
    data = Genotype.parse(NB201_BEST).to_dict()
    del data["edges"]
    with pytest.raises(ValueError, match="genotype of space 'nb201' is missing the key 'edges'"):
        Genotype.from_dict(data)


@pytest.mark.parametrize("content, message", [
    ("{not json", r"is not valid JSON"),
    ("", r"is not valid JSON"),
    ("[1, 2]", r"a genotype must be a JSON object, got list"),
])
def test_bad_json_file(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        Genotype.load(path)


def test_invalid_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Genotype.load(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "genotype.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        Genotype.load(path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        Genotype.load(tmp_path)  # a folder is not a genotype file


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    DARTS_V2.save(path)
    get_genotype("DARTS_V1").save(path)
    assert Genotype.load(path) == get_genotype("DARTS_V1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genotype.json"]
    data = json.loads(path.read_text())
    assert data["format_version"] == 1 and data["space"] == "darts"
