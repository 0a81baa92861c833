"""Bad input gets one line: every case of the reliability issue, as a command (exit status 2, one line on stderr
naming the flag or file, nothing written) or as an API call (the exception type and message)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ops import Genotype
from ops.genotype import NB201Genotype
from ops.zoo import get_genotype
from retrain import build_network
from retrain.cli import main as retrain_main
from search.cli import main as search_main
from search.discrete.cli import main as discrete_main
from search.nb201_table import NB201Table

DATA = Path(__file__).parent / "data"
SEARCH = ["--config", "quickstart.yaml", "--trainer.max_epochs", "1", "--data.subset", "64", "--data.batch_size", "16",
          "--model.supernet.channels", "4", "--model.supernet.layers", "3", "--model.supernet.steps", "2",
          "--model.supernet.multiplier", "2", "--trainer.enable_progress_bar", "false"]
RETRAIN = ["--config", "retrain_quick", "--model.channels", "4", "--model.layers", "3", "--data.subset", "16",
           "--data.batch_size", "8", "--trainer.enable_progress_bar", "false"]
EVOLUTION = ["--config", "nb201_evolution.yaml", "--table", str(DATA / "nb201_excerpt.csv"),
             "--hp12_table", str(DATA / "nb201_hp12_excerpt.csv")]


def _files(tmp: Path) -> None:
    """The malformed files the cases point at."""
    (tmp / "binary.yaml").write_bytes(b"\x00\x01\x02binary")
    (tmp / "empty.yaml").write_text("")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "corrupt.npz").write_bytes(b"junk")
    (tmp / "a_file").write_text("")


COMMANDS = {
    # search
    "binary config": (search_main, ["--config", "binary.yaml"], ["--config binary.yaml", "not a text file"]),
    "empty config": (search_main, ["--config", "empty.yaml"], ["--config empty.yaml", "holds nothing", "mapping"]),
    "list config": (search_main, ["--config", "list.yaml"], ["--config list.yaml", "holds a list", "mapping"]),
    "corrupt npz": (search_main, SEARCH + ["--data", "nasdata.NpzDataModule", "--data.path", "corrupt.npz"],
                    ["--data.path corrupt.npz", "not a readable .npz", "x_train"]),
    "string for an int": (search_main, SEARCH + ["--model.supernet.channels", "abc"],
                          ["--model.supernet.channels", "expected an int", "'abc'"]),
    "no gpu": (search_main, SEARCH + ["--trainer.accelerator", "gpu"],
               ["--trainer.accelerator gpu", "no gpu device", "cpu or auto"]),
    # retrain
    "retrain max_epochs 0": (retrain_main, RETRAIN + ["--genotype", "DARTS_V2", "--trainer.max_epochs", "0"],
                             ["--trainer.max_epochs must be >= 1", "got 0"]),
    "retrain missing data": (retrain_main, ["--config", "retrain_cifar.yaml", "--genotype", "DARTS_V2",
                                            "--data.root", "missing", "--data.download", "false"],
                             ["--data.root missing", "CIFAR-10 not found", "--data.download true"]),
    "retrain negative lr": (retrain_main, RETRAIN + ["--genotype", "DARTS_V2", "--model.lr", "-1"],
                            ["--model.lr must be > 0", "got -1"]),
    "retrain empty genotype": (retrain_main, RETRAIN + ["--genotype", ""], ["genotype is empty", "DARTS_V2"]),
    "retrain conflicting classes": (retrain_main, RETRAIN + ["--genotype", "DARTS_V2", "--model.num_classes", "3"],
                                    ['"model.num_classes" must be given via "data.num_classes"']),
    # discrete search
    "out_dir is a file": (lambda argv: discrete_main("evolution", argv), EVOLUTION + ["--out_dir", "a_file/sub"],
                          ["--out_dir a_file/sub", "a_file is a file"]),
}


@pytest.mark.parametrize("case", list(COMMANDS))
def test_a_bad_command_gives_one_line_and_writes_nothing(case, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    _files(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    command, argv, needles = COMMANDS[case]
    assert command(argv) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert {p for p in tmp_path.rglob("*")} == before


def _table(tmp: Path, name: str, body: bytes) -> Path:
    path = tmp / name
    path.write_bytes(body)
    return path


HEADER = (DATA / "nb201_excerpt.csv").read_text().splitlines()[0]
FIRST_ROW = (DATA / "nb201_excerpt.csv").read_text().splitlines()[1]
EDGES = [("skip_connect", 0), ("skip_connect", 1)] * 4
CALLS = {
    "parse a number": (lambda tmp: Genotype.parse(123), TypeError, "expects genotype text"),
    "huge range": (lambda tmp: Genotype.parse(f"Genotype(normal={EDGES}, normal_concat=range(2, 5000000), "
                                              f"reduce={EDGES}, reduce_concat=range(2, 6))"),
                   ValueError, "spans 4999998 nodes"),
    "edges as a string": (lambda tmp: NB201Genotype.from_fields({"edges": "skip_connect"}), ValueError,
                          "must be a list of 6 op names"),
    "wrong channels": (lambda tmp: build_network("DARTS_V2", channels=4, layers=3)(torch.zeros(1, 1, 32, 32)),
                       ValueError, r"expects images of shape \[N, 3, H, W\], got \[1, 1, 32, 32\]"),
    "table with an unknown op": (lambda tmp: NB201Table(_table(tmp, "op.csv", f"{HEADER}\n{FIRST_ROW}\n".replace(
        "skip_connect", "skip_connnect", 1).encode())), ValueError, r"op.csv:2: .*unknown op 'skip_connnect'"),
    "binary table": (lambda tmp: NB201Table(_table(tmp, "bin.csv", b"\x00\xff\xfe")), ValueError,
                     "bin.csv: not a text CSV file"),
    "table with only a header": (lambda tmp: NB201Table(_table(tmp, "head.csv", f"{HEADER}\n".encode())),
                                 ValueError, "head.csv: only a header, no cells"),
}


@pytest.mark.parametrize("case", list(CALLS))
def test_a_bad_call_raises_one_clear_error(case, tmp_path):
    call, error, match = CALLS[case]
    with pytest.raises(error, match=match) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)


def test_darts_is_the_original_repositorys_alias_of_darts_v2():
    assert Genotype.resolve("DARTS") == get_genotype("DARTS_V2")
