"""Golden tests of the discretizers: hand-set weights, genotypes worked out by hand."""
from __future__ import annotations

import pytest
import torch

from ops import DartsGenotype, Genotype, NB201Genotype, search_space
from supernet import ArchParameters, DartsSearchNetwork, discretize, discretize_darts, discretize_nb201

DARTS_OPS = search_space("darts")  # none, max_pool, avg_pool, skip, sep3, sep5, dil3, dil5
NB201_OPS = search_space("nb201")  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3


def _cell(entries: dict[int, dict[str, float]], candidates: tuple[str, ...] = DARTS_OPS,
          num_edges: int = 14) -> torch.Tensor:
    """Weights where `none` is 0.6 and every other op 0.05, except the hand-set entries."""
    weights = torch.full((num_edges, len(candidates)), 0.05)
    if "none" in candidates:
        weights[:, candidates.index("none")] = 0.6
    for edge, ops in entries.items():
        for op, value in ops.items():
            weights[edge, candidates.index(op)] = value
    return weights


# Edge index -> (node, input): 0:(2,0) 1:(2,1) | 2:(3,0) 3:(3,1) 4:(3,2) | 5..8:(4,0..3) | 9..13:(5,0..4)
NORMAL = _cell({
    0: {"sep_conv_3x3": 0.5},
    1: {"none": 0.9, "skip_connect": 0.3},              # none strongest: ignored, skip kept
    2: {"dil_conv_3x3": 0.4},
    3: {"none": 0.95, "max_pool_3x3": 0.2},            # strongest edge of node 3 only through none: dropped
    4: {"sep_conv_5x5": 0.6},
    5: {"avg_pool_3x3": 0.3},                          # ties edge 7 for second place: input 0 wins
    6: {"sep_conv_3x3": 0.7},
    7: {"dil_conv_5x5": 0.3},
    9: {"sep_conv_3x3": 0.45, "dil_conv_3x3": 0.45},   # op tie: sep_conv_3x3 comes first in the list
    13: {"skip_connect": 0.8},
})
NORMAL_GENE = (("sep_conv_3x3", 0), ("skip_connect", 1),
               ("sep_conv_5x5", 2), ("dil_conv_3x3", 0),
               ("sep_conv_3x3", 1), ("avg_pool_3x3", 0),
               ("skip_connect", 4), ("sep_conv_3x3", 0))
REDUCE = _cell({
    0: {"max_pool_3x3": 0.5}, 1: {"max_pool_3x3": 0.4},
    2: {"skip_connect": 0.3}, 3: {"max_pool_3x3": 0.35}, 4: {"dil_conv_5x5": 0.2},
    5: {"avg_pool_3x3": 0.45}, 7: {"sep_conv_3x3": 0.5},
    10: {"sep_conv_5x5": 0.3}, 12: {"dil_conv_3x3": 0.4},
})
REDUCE_GENE = (("max_pool_3x3", 0), ("max_pool_3x3", 1),
               ("max_pool_3x3", 1), ("skip_connect", 0),
               ("sep_conv_3x3", 2), ("avg_pool_3x3", 0),
               ("dil_conv_3x3", 3), ("sep_conv_5x5", 1))


def test_darts_golden() -> None:
    genotype = discretize_darts({"normal": NORMAL, "reduce": REDUCE}, DARTS_OPS)
    assert isinstance(genotype, DartsGenotype)
    assert genotype.normal == NORMAL_GENE
    assert genotype.reduce == REDUCE_GENE
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert Genotype.parse(genotype.to_text()) == genotype


def test_darts_ignores_none_even_when_it_dominates_everything() -> None:
    weights = torch.full((14, 8), 0.01)
    weights[:, 0] = 0.99
    weights[3, DARTS_OPS.index("dil_conv_5x5")] = 0.02
    genotype = discretize_darts({"normal": weights, "reduce": weights}, DARTS_OPS)
    assert all(op != "none" for op, _ in genotype.normal + genotype.reduce)
    # node 3: edge (3, 1) is strongest; the tie between inputs 0 and 2 goes to input 0, whose ops tie too
    assert genotype.normal[2:4] == (("dil_conv_5x5", 1), ("max_pool_3x3", 0))


def test_pc_darts_edge_weights_change_the_chosen_edges() -> None:
    uniform = torch.cat([torch.full((n,), 1.0 / n) for n in (2, 3, 4, 5)])
    edges = uniform.clone()
    edges[2:5] = torch.tensor([0.1, 0.7, 0.2])  # node 3: 0.4*0.1, 0.2*0.7 (max_pool), 0.6*0.2
    genotype = discretize_darts({"normal": NORMAL, "reduce": REDUCE}, DARTS_OPS,
                                edge_weights={"normal": edges, "reduce": uniform})
    expected = NORMAL_GENE[:2] + (("max_pool_3x3", 1), ("sep_conv_5x5", 2)) + NORMAL_GENE[4:]
    assert genotype.normal == expected
    assert genotype.reduce == REDUCE_GENE  # uniform weights within a node change nothing


def test_darts_concat_steps_and_candidates_without_none() -> None:
    candidates = ("skip_connect", "sep_conv_3x3", "max_pool_3x3")
    normal = _cell({0: {"max_pool_3x3": 0.9}, 3: {"skip_connect": 0.7}, 4: {"sep_conv_3x3": 0.8}},
                   candidates, num_edges=9)
    genotype = discretize_darts({"normal": normal, "reduce": normal}, candidates, steps=3, multiplier=2)
    assert genotype.normal == (("max_pool_3x3", 0), ("skip_connect", 1),
                               ("sep_conv_3x3", 2), ("skip_connect", 1),
                               ("skip_connect", 0), ("skip_connect", 1))
    assert genotype.normal_concat == (3, 4)


def test_darts_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(14, 8\)"):
        discretize_darts({"normal": NORMAL[:9], "reduce": REDUCE}, DARTS_OPS)
    with pytest.raises(ValueError, match="'reduce'"):
        discretize_darts({"normal": NORMAL}, DARTS_OPS)
    with pytest.raises(ValueError, match="multiplier"):
        discretize_darts({"normal": NORMAL, "reduce": REDUCE}, DARTS_OPS, multiplier=5)


def test_nb201_golden() -> None:
    weights = torch.tensor([
        [0.9, 0.05, 0.02, 0.02, 0.01],  # 1<-0: none strongest -> none
        [0.1, 0.2, 0.3, 0.3, 0.1],      # 2<-0: tie 1x1 / 3x3 -> nor_conv_1x1 (earlier)
        [0.1, 0.6, 0.1, 0.1, 0.1],      # 2<-1: skip_connect
        [0.0, 0.1, 0.1, 0.7, 0.1],      # 3<-0: nor_conv_3x3
        [0.1, 0.1, 0.1, 0.1, 0.6],      # 3<-1: avg_pool_3x3
        [0.3, 0.3, 0.2, 0.1, 0.1],      # 3<-2: tie none / skip -> none (earlier)
    ])
    genotype = discretize_nb201(weights, NB201_OPS)
    assert isinstance(genotype, NB201Genotype)
    assert genotype.to_arch_str() == ("|none~0|+|nor_conv_1x1~0|skip_connect~1|"
                                      "+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|")
    assert discretize("nb201", {"normal": weights}, NB201_OPS, edge_weights={"normal": torch.rand(6)}) == genotype
    with pytest.raises(ValueError, match=r"\(6, 5\)"):
        discretize_nb201(weights[:5], NB201_OPS)


def test_dispatch() -> None:
    assert discretize("darts", {"normal": NORMAL, "reduce": REDUCE}, DARTS_OPS).normal == NORMAL_GENE
    with pytest.raises(ValueError, match="'nasnet'"):
        discretize("nasnet", NORMAL, DARTS_OPS)
    with pytest.raises(TypeError, match="steps"):
        discretize("nb201", NORMAL[:6, :5], NB201_OPS, steps=4)


def test_from_arch_parameters_of_a_network() -> None:
    torch.manual_seed(0)
    net = DartsSearchNetwork(channels=4, layers=3, steps=3, multiplier=3)
    arch = ArchParameters.for_network(net, edge_betas=True)
    edges = {cell: arch.edge_weights(cell).detach() for cell in net.cell_types}
    genotype = discretize(net.space, arch.probabilities(), net.candidates, steps=net.steps,
                          multiplier=net.multiplier, edge_weights=edges)
    assert genotype.steps == 3 and genotype.normal_concat == (2, 3, 4)
