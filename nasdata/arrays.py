"""In-memory image data: a uint8 tensor dataset, a data module base over arrays, and the .npz data module."""
from __future__ import annotations

import os
import zipfile
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from nasdata.base import ImageDataModule
from nasdata.transforms import crop_flip_transform, finish, tensor_eval_transform

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor ``[N, C, H, W]`` with int64 labels; ``transform`` runs per item on the
    uint8 ``[C, H, W]`` tensor (no PIL round trip)."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable | None = None) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be a uint8 tensor [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


class ArraySplits(NamedTuple):
    """Train and test arrays: images uint8 ``[N, H, W, C]`` (or ``[N, H, W]`` for grey), labels integer ``[N]``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std, in [0, 1] units, of uint8 images ``[N, C, H, W]`` (float64, in chunks)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros(images.shape[1], dtype=torch.float64)
    for start in range(0, images.shape[0], 4096):
        chunk = images[start:start + 4096].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def _images_to_tensor(x: np.ndarray, name: str, source: str) -> Tensor:
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[0] == 0:
        raise ValueError(f"{source}: {name} must be non-empty uint8 images N×H×W×C or N×H×W, "
                         f"got {x.dtype} {x.shape}")
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"{source}: {name} images are {x.shape[1]}×{x.shape[2]}; only square images are supported")
    t = torch.from_numpy(np.array(x, order="C"))  # a private, writable copy
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def _labels_to_tensor(y: np.ndarray, n: int, name: str, source: str) -> Tensor:
    if y.ndim != 1 or y.shape[0] != n or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise ValueError(f"{source}: {name} must be {n} non-negative integer labels, got {y.dtype} {y.shape}")
    return torch.from_numpy(y.astype(np.int64))


class ArrayDataModule(ImageDataModule):
    """Base for data sets that fit in memory as uint8 arrays (CIFAR, digits, .npz).

    Training augmentation (``augment=True``): random crop with ``crop_padding`` zero pixels of padding and,
    when ``hflip``, a random horizontal flip. Normalisation uses :meth:`normalization` (by default the channel
    mean/std of the full training array). Subclasses implement :meth:`load_arrays`; it is called once, lazily.
    """

    hflip: bool = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tensors: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @abstractmethod
    def load_arrays(self) -> ArraySplits:
        """Load the raw train/test arrays (raise FileNotFoundError with a one-line hint if they are missing)."""

    @property
    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x_train, y_train, x_test, y_test)`` as uint8 ``[N, C, H, W]`` and int64 tensors (loaded once)."""
        if self._tensors is None:
            arrays = self.load_arrays()
            source = type(self).__name__
            x_train = _images_to_tensor(arrays.x_train, "x_train", source)
            x_test = _images_to_tensor(arrays.x_test, "x_test", source)
            if x_train.shape[1:] != x_test.shape[1:]:
                raise ValueError(f"{source}: x_train images {tuple(x_train.shape[1:])} and x_test images "
                                 f"{tuple(x_test.shape[1:])} differ in shape")
            y_train = _labels_to_tensor(arrays.y_train, x_train.shape[0], "y_train", source)
            y_test = _labels_to_tensor(arrays.y_test, x_test.shape[0], "y_test", source)
            self._tensors = (x_train, y_train, x_test, y_test)
        return self._tensors

    @property
    def num_classes(self) -> int:
        """Largest label in the train or test set, plus one."""
        _, y_train, _, y_test = self.tensors
        return int(max(y_train.max(), y_test.max())) + 1

    @property
    def in_channels(self) -> int:
        return self.tensors[0].shape[1]

    @property
    def image_size(self) -> int:
        return self.tensors[0].shape[2]

    @property
    def crop_padding(self) -> int:
        """Zero padding of the random crop: image_size / 8 rounded, at least 1 (4 for 32×32 images)."""
        return max(1, round(self.image_size / 8))

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel ``(mean, std)`` in [0, 1] units; by default computed from the full training array."""
        if self._stats is None:
            self._stats = channel_stats(self.tensors[0])
        return self._stats

    def train_transform(self) -> Callable:
        mean, std = self.normalization()
        if not self.augment:
            return v2.Compose(finish(mean, std, self.cutout))
        return crop_flip_transform(self.image_size, self.crop_padding, self.hflip, mean, std, self.cutout)

    def eval_transform(self) -> Callable:
        return tensor_eval_transform(*self.normalization())

    def make_dataset(self, train: bool, transform: Callable) -> Dataset:
        x_train, y_train, x_test, y_test = self.tensors
        return TensorImageDataset(x_train, y_train, transform) if train else TensorImageDataset(x_test, y_test,
                                                                                               transform)


class NpzDataModule(ArrayDataModule):
    """Images from an ``.npz`` file with arrays ``x_train, y_train, x_test, y_test`` (uint8 N×H×W×C or N×H×W
    images, integer labels), held in memory. num_classes comes from the labels, mean/std from ``x_train``.

    Args:
        path: The .npz file (e.g. the project's shared ``cifar10.npz``).
        hflip: Random horizontal flips in training augmentation (turn off for data that is not mirror-symmetric).
        **kwargs: The options of :class:`ImageDataModule` (batch_size, subset, search_split ...).
    """

    def __init__(self, path: str, hflip: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.hflip = hflip

    def load_arrays(self) -> ArraySplits:
        required = ", ".join(NPZ_KEYS)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"npz file '{self.path}' not found (--data.path); it must hold arrays {required}")
        unreadable = f"--data.path {self.path}: not a readable .npz archive; it must hold arrays {required}"
        try:
            npz = np.load(self.path, allow_pickle=False)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile):
            raise ValueError(unreadable) from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"'{self.path}' is not an .npz archive; it must hold arrays {required}")
        with npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise ValueError(f"npz file '{self.path}' has no array {', '.join(repr(k) for k in missing)}; "
                                 f"required: {required}")
            try:
                return ArraySplits(*(npz[key] for key in NPZ_KEYS))
            except (OSError, EOFError, ValueError, zipfile.BadZipFile):
                raise ValueError(unreadable) from None
