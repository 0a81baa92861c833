"""retrain networks: published sizes, NAS-Bench-201 golden sizes, shapes, drop-path, export, bad arguments."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ops import Genotype
from ops.zoo import get_genotype
from retrain import (DartsNetworkCIFAR, DartsNetworkImageNet, NB201Network, build_network, count_macs,
                     count_parameters, drop_path)
from retrain.darts_net import DartsCell


# (zoo name, kind, published size in M params, exact count computed here). Published: DARTS 3.3M / 4.7M (Liu et
# al. 2019, Tables 1-2; the exact 3,349,342 is also what quark0/darts' train.py prints as "param size"),
# PC-DARTS 3.6M / 5.3M (Xu et al. 2020, Tables 1, 3), GDAS 3.4M (Dong & Yang 2019, CIFAR-10),
# P-DARTS 3.4M / 4.9M (Chen et al. 2019), DrNAS ImageNet-searched 5.7M (Chen et al. 2021).
# The auxiliary head is not counted.
PUBLISHED = [
    ("DARTS_V2", "cifar", 3.3, 3_349_342),
    ("DARTS_V2", "imagenet", 4.7, 4_718_752),
    ("PC_DARTS", "cifar", 3.6, 3_634_678),
    ("PC_DARTS", "imagenet", 5.3, 5_270_560),
    ("PC_DARTS_IMAGENET", "imagenet", 5.3, 5_342_464),
    ("GDAS", "cifar", 3.4, 3_368_782),
    ("P_DARTS", "cifar", 3.4, 3_433_798),
    ("P_DARTS", "imagenet", 4.9, 4_944_352),
    ("DrNAS_IMAGENET", "imagenet", 5.7, 5_726_368),
]

# NAS-Bench-201 golden sizes: column params_m of /work/shared/benchdata/nb201.csv (the benchmark's CIFAR-10
# network, C=16, N=5; params_m_cifar100 for 100 classes), rows given by arch_index.
NB201_GOLDEN = [
    # index 6111, the best cell: params_m 1.073466, flops_m 153.272970
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", 10, 1_073_466),
    # index 6111 with the CIFAR-100 head: params_m_cifar100 1.079316
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", 100, 1_079_316),
    # index 0: params_m 0.129306
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", 10, 129_306),
    # index 1835, all skip_connect: params_m 0.073306
    ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|", 10, 73_306),
    # index 3, with none edges: params_m 0.073306
    ("|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|", 10, 73_306),
]


def _on_meta(**kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return build_network(**kwargs)


@pytest.mark.parametrize("name, kind, published, exact", PUBLISHED)
def test_published_parameter_counts(name: str, kind: str, published: float, exact: int) -> None:
    num_classes = 10 if kind == "cifar" else 1000
    net = _on_meta(genotype=name, num_classes=num_classes, kind=kind, auxiliary=True)
    params = count_parameters(net)
    assert params == exact
    assert round(params / 1e6, 1) == published
    assert count_parameters(net, include_auxiliary=True) > params  # the head exists but is not counted


@pytest.mark.parametrize("arch, num_classes, params", NB201_GOLDEN)
def test_nb201_parameter_counts_match_the_benchmark_table(arch: str, num_classes: int, params: int) -> None:
    net = _on_meta(genotype=arch, num_classes=num_classes)
    assert isinstance(net, NB201Network)
    assert count_parameters(net) == params


def test_nb201_macs_match_the_benchmark_table() -> None:
    # flops_m of index 6111 is 153.272970; the table also counts the 10 additions of the classifier bias.
    net = build_network(get_genotype("NB201_BEST"))
    assert count_macs(net, 32) + 10 == 153_272_970


def test_defaults_follow_the_network_kind() -> None:
    assert isinstance(_on_meta(genotype="DARTS_V2"), DartsNetworkCIFAR)
    assert len(_on_meta(genotype="DARTS_V2").cells) == 20
    imagenet = _on_meta(genotype="DARTS_V2", kind="imagenet", num_classes=1000)
    assert isinstance(imagenet, DartsNetworkImageNet) and len(imagenet.cells) == 14
    assert len(_on_meta(genotype="NB201_BEST").cells) == 17  # 3 stages of 5 cells + 2 residual blocks


def test_reductions_and_auxiliary_position() -> None:
    net = build_network("DARTS_V2", channels=4, layers=7, auxiliary=True)
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 4]
    assert net.aux_position == 4
    assert type(net.cells[3].preprocess0).__name__ == "FactorizedReduce"  # its s0 comes from before cell 2
    assert type(net.cells[1].preprocess0).__name__ == "ReLUConvBN"


@pytest.mark.parametrize("kind, size, in_channels", [("cifar", 32, 3), ("cifar", 8, 1), ("cifar", 20, 2),
                                                    ("imagenet", 64, 3), ("imagenet", 96, 1)])
def test_output_shapes_for_any_image_size(kind: str, size: int, in_channels: int) -> None:
    torch.manual_seed(0)
    net = build_network("DARTS_V2", num_classes=7, channels=4, layers=3, auxiliary=True, kind=kind,
                        in_channels=in_channels)
    x = torch.randn(2, in_channels, size, size)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (2, 7)
    out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)


def test_nb201_network_forward() -> None:
    net = build_network("NB201_BEST", num_classes=5, channels=4, layers=1, in_channels=1)
    assert net(torch.randn(3, 1, 16, 16)).shape == (3, 5)


def test_drop_path_is_identity_in_eval_and_keeps_the_expected_fraction_in_training() -> None:
    x = torch.ones(20_000, 2, 3, 3)
    assert torch.equal(drop_path(x, 0.3, training=False), x)
    assert torch.equal(drop_path(x, 0.0, training=True), x)
    torch.manual_seed(0)
    out = drop_path(x, 0.3, training=True)
    kept = out[:, 0, 0, 0] != 0
    assert torch.all((out == 0) | torch.isclose(out, torch.tensor(1 / 0.7)))  # survivors scaled by 1 / keep
    assert torch.all(out == out[:, :1, :1, :1])  # one decision per sample
    # keep ratio 0.7; the standard error of 20,000 Bernoulli draws is 0.0032, allow 5 of them
    assert abs(kept.float().mean().item() - 0.7) < 0.016
    assert abs(out.mean().item() - 1.0) < 0.025


def test_drop_path_skips_identities_only() -> None:
    geno = Genotype.parse("Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), "
                          "('skip_connect', 2)], normal_concat=[2, 3], reduce=[('skip_connect', 0), "
                          "('max_pool_3x3', 1), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3])")
    normal = DartsCell(geno, 8, 8, 4, reduction=False, reduction_prev=False)
    reduce = DartsCell(geno, 8, 8, 4, reduction=True, reduction_prev=False)
    assert normal.droppable == (False, False, True, False)
    assert reduce.droppable == (True, True, False, True)  # a strided skip_connect is a FactorizedReduce
    all_skip = Genotype.parse("Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], "
                              "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])")
    cell = DartsCell(all_skip, 8, 8, 8, reduction=False, reduction_prev=False).train()
    s = torch.randn(4, 8, 5, 5)
    assert torch.equal(cell(s, s, 0.9), cell(s, s, 0.0))  # nothing to drop
    torch.manual_seed(1)
    assert not torch.equal(normal(s, s, 0.9), normal(s, s, 0.0))


def test_drop_path_probability_reaches_the_cells() -> None:
    torch.manual_seed(0)
    net = build_network("DARTS_V2", channels=4, layers=3, drop_path_prob=0.0).train()
    x = torch.randn(8, 3, 8, 8)
    a, b = net(x), net(x)
    assert torch.allclose(a, b)  # no randomness at p = 0 (batch-norm uses batch statistics)
    net.drop_path_prob = 0.5
    assert not torch.allclose(net(x), a)


@pytest.mark.parametrize("genotype, kind, size", [("DARTS_V2", "cifar", 8), ("NB201_BEST", "cifar", 8)])
def test_export_round_trip(genotype: str, kind: str, size: int) -> None:
    torch.manual_seed(0)
    net = build_network(genotype, num_classes=4, channels=4, layers=3 if genotype.startswith("DARTS") else 1,
                        auxiliary=genotype.startswith("DARTS"), drop_path_prob=0.2, kind=kind, in_channels=1)
    net.train()(torch.randn(4, 1, size, size))  # move the batch-norm statistics away from their init
    net.eval()
    x = torch.randn(2, 1, size, size)
    program = torch.export.export(net, (x,))
    torch.testing.assert_close(program.module()(x), net(x))


def test_genotype_arguments_are_resolved(tmp_path) -> None:
    geno = get_genotype("DARTS_V1")
    path = tmp_path / "genotype.json"
    geno.save(path)
    a = build_network(path, channels=4, layers=3)
    b = build_network(str(path), channels=4, layers=3)
    c = build_network(geno.to_text(), channels=4, layers=3)
    d = build_network("DARTS_V1", channels=4, layers=3)
    assert len({count_parameters(n) for n in (a, b, c, d)}) == 1


def _message(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("kwargs, culprit", [
    ({"genotype": "DARTS_V2", "num_classes": 1}, "num_classes must be an integer >= 2"),
    ({"genotype": "DARTS_V2", "layers": 2}, "layers must be an integer >= 3"),
    ({"genotype": "NB201_BEST", "layers": 0}, "cells per stage"),
    ({"genotype": "DARTS_V2", "kind": "nb201"}, "needs a genotype of the 'nb201' space"),
    ({"genotype": "NB201_BEST", "kind": "imagenet"}, "needs a genotype of the 'darts' space"),
    ({"genotype": "DARTS_V2", "kind": "mobile"}, "kind must be one of cifar, imagenet, nb201"),
    ({"genotype": "DARTS_V2", "kind": "imagenet", "channels": 7}, "channels must be even"),
    ({"genotype": "DARTS_V2", "drop_path_prob": 1.0}, "drop_path_prob must be in [0, 1)"),
    ({"genotype": "NB201_BEST", "auxiliary": True}, "the NB201 network has none"),
    ({"genotype": "NOT_A_CELL"}, "neither a JSON file, a zoo name"),
    ({"genotype": "Genotype(normal=[('warp_conv', 0), ('skip_connect', 1)], normal_concat=[2], "
                  "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])"}, "unknown op 'warp_conv'"),
    ({"genotype": "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"}, "unknown op 'nor_conv_9x9'"),
])
def test_bad_arguments_raise_one_line(kwargs: dict, culprit: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        build_network(**kwargs)
    assert culprit in _message(excinfo)


def test_bad_genotype_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as excinfo:
        build_network(tmp_path / "missing.json")
    assert "missing.json" in _message(excinfo)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format_version": 1, "space": "darts", "normal": [')
    with pytest.raises(ValueError) as excinfo:
        build_network(corrupt)
    assert "not valid JSON" in _message(excinfo)


def test_retrain_imports_neither_search_nor_supernet() -> None:
    import ast
    from pathlib import Path

    import retrain

    imported = set()
    for path in Path(retrain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert {"ops", "nasdata"} <= imported
    assert not imported & {"search", "supernet", "benchmarks"}


def test_zoo_cells_are_timm_models() -> None:
    import timm

    from retrain import TIMM_MODELS

    assert {"darts_v2_cifar", "darts_v2_imagenet", "pc_darts_cifar", "nb201_best"} <= set(TIMM_MODELS)
    assert "darts_v2_cifar" in timm.list_models("darts*")
    with torch.device("meta"):
        assert count_parameters(timm.create_model("darts_v2_cifar")) == 3_349_342
        assert count_parameters(timm.create_model("darts_v2_imagenet")) == 4_718_752
    net = timm.create_model("nb201_best", num_classes=3, in_chans=1, channels=4, layers=1, drop_path_rate=0.1)
    assert isinstance(net, NB201Network) and net.drop_path_prob == 0.1
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("darts_v2_cifar", pretrained=True)
