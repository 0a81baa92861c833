"""Data modules shared by search and retrain (imports nothing else of this project).

``get_datamodule("digits", batch_size=32)`` builds one by short name; see :data:`DATAMODULES`.
"""
from __future__ import annotations

from typing import Any

from nasdata.arrays import ArrayDataModule, ArraySplits, NpzDataModule, TensorImageDataset, channel_stats
from nasdata.base import ImageDataModule
from nasdata.cifar import CIFAR10DataModule, CIFAR100DataModule
from nasdata.digits import DigitsDataModule, load_digits_splits
from nasdata.folder import ImageFolderDataModule
from nasdata.split import split_indices
from nasdata.transforms import (
    Cutout,
    crop_flip_transform,
    cutout,
    imagenet_eval_transform,
    imagenet_train_transform,
    tensor_eval_transform,
)

DATAMODULES: dict[str, type[ImageDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "imagefolder": ImageFolderDataModule,
    "npz": NpzDataModule,
    "digits": DigitsDataModule,
}


def get_datamodule(name: str, **kwargs: Any) -> ImageDataModule:
    """Instantiate the data module registered under ``name`` (a key of :data:`DATAMODULES`) with ``kwargs``."""
    try:
        cls = DATAMODULES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown data module {name!r}; valid names: {', '.join(sorted(DATAMODULES))}") from None
    return cls(**kwargs)


__all__ = [
    "ArrayDataModule", "ArraySplits", "CIFAR100DataModule", "CIFAR10DataModule", "Cutout", "DATAMODULES",
    "DigitsDataModule", "ImageDataModule", "ImageFolderDataModule", "NpzDataModule", "TensorImageDataset",
    "channel_stats", "crop_flip_transform", "cutout", "get_datamodule", "imagenet_eval_transform",
    "imagenet_train_transform", "load_digits_splits", "split_indices", "tensor_eval_transform",
]
