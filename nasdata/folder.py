"""Image-folder data (ImageNet layout): ``root/train/<class>/*`` and ``root/val/<class>/*``."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from nasdata.base import ImageDataModule
from nasdata.transforms import imagenet_eval_transform, imagenet_train_transform


class ImageFolderDataModule(ImageDataModule):
    """RGB images in class folders under ``root/train`` and ``root/val`` (the ImageNet layout), read with PIL.

    Training: RandomResizedCrop(image_size), horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.2) (with
    ``augment=False``: the evaluation resize + centre crop); evaluation: Resize(int(image_size / 0.875)) +
    CenterCrop(image_size). Normalised with the ImageNet mean/std. Classes are the sorted sub-folder names of
    ``root/train``; ``root/val`` must have the same ones.

    Args:
        root: Folder containing ``train/`` and ``val/``.
        image_size: Side of the square crops fed to the network.
        **kwargs: The options of :class:`ImageDataModule` (batch_size, num_workers, search_split ...).
    """

    def __init__(self, root: str, image_size: int = 224, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if image_size < 1:
            raise ValueError(f"--data.image_size must be >= 1, got {image_size}")
        self.root = root
        self._image_size = image_size
        self._classes: list[str] | None = None

    def _split_dir(self, split: str) -> str:
        path = os.path.join(self.root, split)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"image folder '{path}' not found; --data.root must contain train/ and val/, "
                                    f"each with one sub-folder of images per class")
        return path

    @property
    def classes(self) -> list[str]:
        """Sorted class names (sub-folders of ``root/train``), checked against ``root/val``."""
        if self._classes is None:
            found = {}
            for split in ("train", "val"):
                path = self._split_dir(split)
                found[split] = sorted(e.name for e in os.scandir(path) if e.is_dir())
            if not found["train"]:
                raise FileNotFoundError(f"no class folders in '{self._split_dir('train')}'")
            if found["train"] != found["val"]:
                only_train = sorted(set(found["train"]) - set(found["val"]))
                only_val = sorted(set(found["val"]) - set(found["train"]))
                raise ValueError(f"class folders of '{self.root}' differ between train/ and val/: only in train "
                                 f"{only_train}, only in val {only_val}")
            self._classes = found["train"]
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def image_size(self) -> int:
        return self._image_size

    def train_transform(self) -> Callable:
        return imagenet_train_transform(self._image_size, self.augment, self.cutout)

    def eval_transform(self) -> Callable:
        return imagenet_eval_transform(self._image_size)

    def make_dataset(self, train: bool, transform: Callable) -> Dataset:
        self.classes  # validates the layout with a one-line error before torchvision scans it
        return ImageFolder(self._split_dir("train" if train else "val"), transform=transform)
