"""CIFAR-10 and CIFAR-100 through torchvision (download and parsing), held in memory as uint8 tensors."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from nasdata.arrays import ArrayDataModule, ArraySplits


class _TorchvisionCifar(ArrayDataModule):
    """Shared CIFAR logic: torchvision downloads in ``prepare_data`` (rank 0), arrays are read in ``setup``.

    Augmentation: RandomCrop(32, padding=4) + RandomHorizontalFlip; normalisation with the data set's
    well-known channel mean/std.
    """

    title = ""
    folder = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    classes = 0
    dataset_class: type = CIFAR10

    def __init__(self, root: str = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.download = download

    def _missing(self) -> bool:
        return not os.path.isdir(os.path.join(self.root, self.folder))

    def _not_found(self) -> FileNotFoundError:
        where = os.path.join(self.root, self.folder)
        return FileNotFoundError(f"--data.root {self.root}: {self.title} not found under '{where}'; pass "
                                 "--data.download true or put the torchvision copy there")

    def prepare_data(self) -> None:
        """Download (or verify) the data set when ``download`` is True (Lightning runs this on rank 0 only);
        with ``download=False`` just check that it is there."""
        if not self.download:
            if self._missing():
                raise self._not_found()
            return
        for train in (True, False):
            self.dataset_class(self.root, train=train, download=True)

    def load_arrays(self) -> ArraySplits:
        if self._missing():
            self.prepare_data()
        try:
            parts = [self.dataset_class(self.root, train=train, download=False) for train in (True, False)]
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise self._not_found() from err
        train, test = parts
        return ArraySplits(train.data, np.asarray(train.targets), test.data, np.asarray(test.targets))

    @property
    def num_classes(self) -> int:
        return self.classes

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def image_size(self) -> int:
        return 32

    @property
    def crop_padding(self) -> int:
        return 4

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.mean, self.std


class CIFAR10DataModule(_TorchvisionCifar):
    """CIFAR-10 (50,000 train / 10,000 test 32×32 RGB images, 10 classes) via torchvision.

    Args:
        root: Folder holding (or to receive) torchvision's ``cifar-10-batches-py``.
        download: Download the data when it is missing.
        **kwargs: The options of :class:`ImageDataModule` (batch_size, cutout, search_split ...).
    """

    title = "CIFAR-10"
    folder = "cifar-10-batches-py"
    mean = (0.49139968, 0.48215827, 0.44653124)
    std = (0.24703233, 0.24348505, 0.26158768)
    classes = 10

    def __init__(self, root: str = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(root=root, download=download, **kwargs)


class CIFAR100DataModule(_TorchvisionCifar):
    """CIFAR-100 (50,000 train / 10,000 test 32×32 RGB images, 100 classes) via torchvision.

    Args:
        root: Folder holding (or to receive) torchvision's ``cifar-100-python``.
        download: Download the data when it is missing.
        **kwargs: The options of :class:`ImageDataModule` (batch_size, cutout, search_split ...).
    """

    title = "CIFAR-100"
    folder = "cifar-100-python"
    mean = (0.50707516, 0.48654887, 0.44091784)
    std = (0.26733429, 0.25643846, 0.27615047)
    classes = 100
    dataset_class = CIFAR100

    def __init__(self, root: str = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(root=root, download=download, **kwargs)
