"""A zoo of published cells: DARTS-space genotypes exactly as their authors published them, plus
reference NAS-Bench-201 cells.

Every entry is the published text in the DARTS repository format (``Genotype(normal=[...], ...)``;
``range(2, 6)`` kept where the source wrote it) or an NB201 arch string. A comment above each entry
names the repository and file it was read from and any conversion made. ``get_genotype`` parses an
entry into an immutable genotype; ``list_genotypes`` lists the names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ops.genotype import Genotype

PUBLISHED: dict[str, str] = {
    # DARTS (first order), Liu et al., ICLR 2019.
    # Source: quark0/darts cnn/genotypes.py -- its stored copy (commit 8876e79) has this exact text
    # under the name DARTS; the names DARTS_V1/DARTS_V2 and both texts, verbatim, as copied from it
    # into yuhuixu1993/PC-DARTS genotypes.py and chenxin061/pdarts genotypes.py (identical in both).
    "DARTS_V1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",
    # DARTS (second order), Liu et al., ICLR 2019.
    # Source: DARTS_V2 in yuhuixu1993/PC-DARTS genotypes.py and chenxin061/pdarts genotypes.py (identical
    # copies of quark0/darts cnn/genotypes.py).
    "DARTS_V2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",
    # NASNet-A, Zoph et al., CVPR 2018.
    # Source: quark0/darts cnn/genotypes.py (NASNet); multi-line lists joined into one line.
    "NASNet": "Genotype(normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), ('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 1)], normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 1), ('sep_conv_7x7', 0), ('max_pool_3x3', 1), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 0), ('skip_connect', 3), ('avg_pool_3x3', 2), ('sep_conv_3x3', 2), ('max_pool_3x3', 1)], reduce_concat=[4, 5, 6])",
    # AmoebaNet-A, Real et al., AAAI 2019 (uses conv_7x1_1x7 in the reduction cell).
    # Source: quark0/darts cnn/genotypes.py (AmoebaNet); multi-line lists joined into one line.
    "AmoebaNet": "Genotype(normal=[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('avg_pool_3x3', 3), ('sep_conv_3x3', 1), ('skip_connect', 1), ('skip_connect', 0), ('avg_pool_3x3', 1)], normal_concat=[4, 5, 6], reduce=[('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('max_pool_3x3', 0), ('sep_conv_7x7', 2), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1), ('conv_7x1_1x7', 0), ('sep_conv_3x3', 5)], reduce_concat=[3, 4, 6])",
    # PNASNet, Liu et al., ECCV 2018.
    # Source: D-X-Y/AutoDL-Projects lib/nas_infer_model/DXYs/genotypes.py (PNASNet). Converted: that file
    # lists one ((op, input), (op, input)) pair per node; flattened here in order to the DARTS edge list,
    # and its extra fields connectN=None, connects=None dropped.
    "PNASNet": "Genotype(normal=[('sep_conv_5x5', 0), ('max_pool_3x3', 0), ('sep_conv_7x7', 1), ('max_pool_3x3', 1), ('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 4), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 0), ('max_pool_3x3', 0), ('sep_conv_7x7', 1), ('max_pool_3x3', 1), ('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 4), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 1)], reduce_concat=[2, 3, 4, 5, 6])",
    # ENAS micro-search cell, Pham et al., ICML 2018 (the file cites arxiv.org/pdf/1802.03268).
    # Source: D-X-Y/AutoDL-Projects lib/nas/genotypes.py (ENASNet). Converted: that file writes each edge
    # as (op, input, 1.0); the constant weight 1.0 is dropped. shuyao95/Understanding-NAS genotypes.py
    # (ENAS) transcribes a different reduction cell (node 2 uses avg_pool_3x3 on input 1,
    # reduce_concat=[2, 3, 6]); the D-X-Y text is kept here.
    "ENAS": "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 1), ('sep_conv_5x5', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 1), ('avg_pool_3x3', 0)], normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('avg_pool_3x3', 1), ('sep_conv_3x3', 1), ('avg_pool_3x3', 1), ('avg_pool_3x3', 1), ('sep_conv_5x5', 4), ('sep_conv_3x3', 5), ('sep_conv_5x5', 0)], reduce_concat=[2, 3, 4, 5, 6])",
    # PC-DARTS searched on CIFAR-10, Xu et al., ICLR 2020.
    # Source: yuhuixu1993/PC-DARTS genotypes.py (PC_DARTS_cifar), verbatim.
    "PC_DARTS": "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))",
    # PC-DARTS searched directly on ImageNet, Xu et al., ICLR 2020.
    # Source: yuhuixu1993/PC-DARTS genotypes.py (PC_DARTS_image), verbatim.
    "PC_DARTS_IMAGENET": "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 3)], reduce_concat=range(2, 6))",
    # GDAS, Dong & Yang, CVPR 2019 (the standard searched cell; the FRC variant is not included).
    # Source: D-X-Y/AutoDL-Projects lib/nas_infer_model/DXYs/genotypes.py (GDAS_V1). Converted from
    # per-node ((op, input), (op, input)) pairs to the flat DARTS edge list; connectN/connects dropped.
    # Same edges as GDAS_V1/DMS_V1 in D-X-Y/AutoDL-Projects lib/nas/genotypes.py (weights dropped).
    "GDAS": "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), ('sep_conv_5x5', 2), ('sep_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_5x5', 4), ('sep_conv_3x3', 3)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('sep_conv_5x5', 2), ('sep_conv_5x5', 1), ('dil_conv_5x5', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_5x5', 1)], reduce_concat=[2, 3, 4, 5])",
    # P-DARTS, Chen et al., ICCV 2019.
    # Source: chenxin061/pdarts genotypes.py (PDARTS); only spacing after commas normalised.
    "P_DARTS": "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))",
    # SNAS, mild resource constraint, Xie et al., ICLR 2019.
    # Source: SNAS-Series/SNAS-Series SNAS/genotypes.py (SNAS_mild); multi-line lists joined.
    "SNAS_MILD": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), ('sep_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('dil_conv_5x5', 2)], reduce_concat=range(2, 6))",
    # SNAS, moderate resource constraint, Xie et al., ICLR 2019.
    # Source: SNAS-Series/SNAS-Series SNAS/genotypes.py (SNAS_moderate); multi-line lists joined.
    "SNAS_MODERATE": "Genotype(normal=[('dil_conv_5x5', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), ('skip_connect', 1), ('skip_connect', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 1)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_5x5', 0), ('dil_conv_5x5', 1), ('sep_conv_5x5', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 0), ('sep_conv_5x5', 1)], reduce_concat=range(2, 6))",
    # DrNAS searched on CIFAR-10, Chen et al., ICLR 2021.
    # Source: xiangning-chen/DrNAS DARTS-space/genotypes.py (DrNAS_cifar10), verbatim. (An older
    # top-level genotypes.py in that repository lists a different DrNAS_cifar.)
    "DrNAS": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2), ('dil_conv_5x5', 3)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('dil_conv_5x5', 2), ('sep_conv_5x5', 1), ('sep_conv_5x5', 1), ('dil_conv_5x5', 3), ('skip_connect', 4), ('sep_conv_5x5', 1)], reduce_concat=range(2, 6))",
    # DrNAS searched directly on ImageNet, Chen et al., ICLR 2021.
    # Source: xiangning-chen/DrNAS DARTS-space/genotypes.py (DrNAS_imagenet), verbatim.
    "DrNAS_IMAGENET": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('dil_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 2), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1)], reduce_concat=range(2, 6))",
}
"""Zoo name -> published DARTS-space genotype text (one line each)."""

NB201_PUBLISHED: dict[str, str] = {
    # Best cell of NAS-Bench-201 on CIFAR-10 (test 94.37, index 6111).
    # Source: /work/shared/benchdata/README.md (the NAS-Bench-201 README of this project).
    "NB201_BEST": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    # All six edges skip_connect: the cell DARTS collapses to on NAS-Bench-201 (CIFAR-10 test 54.30,
    # per the same README).
    "NB201_ALL_SKIP": "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
}
"""Zoo name -> NAS-Bench-201 arch string."""


ALIASES: dict[str, str] = {
    # quark0/darts cnn/genotypes.py ends with ``DARTS = DARTS_V2``, and its train.py defaults to ``--arch DARTS``.
    "DARTS": "DARTS_V2",
}
"""Other names of zoo entries, as the original repositories use them."""


def list_genotypes() -> list[str]:
    """Sorted names of every zoo entry, DARTS-space and NAS-Bench-201, aliases included."""
    return sorted({**PUBLISHED, **NB201_PUBLISHED, **ALIASES})


def get_genotype(name: str) -> "Genotype":
    """The zoo entry ``name`` parsed into an immutable genotype.

    Raises ``ValueError`` naming the valid entries if ``name`` is unknown.
    """
    from ops.genotype import Genotype

    name = ALIASES.get(name, name)
    text = PUBLISHED.get(name, NB201_PUBLISHED.get(name))
    if text is None:
        raise ValueError(f"unknown genotype {name!r}; known: {', '.join(list_genotypes())}")
    return Genotype.parse(text)
