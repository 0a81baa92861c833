"""The common LightningDataModule: batch/loader options, subsets and the search-time two-way split."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from nasdata.split import split_indices


class ImageDataModule(L.LightningDataModule, ABC):
    """Base data module for image classification, used both to search (``search_split=True``) and to retrain.

    Search mode splits the (subset of the) training set into two disjoint parts with :func:`split_indices`;
    ``train_dataloader()`` returns ``{"train": weight_loader, "val": arch_loader}`` (both shuffled, both with
    the *training* transform, as in DARTS) and ``val_dataloader()`` the architecture part with the evaluation
    transform, for per-epoch validation accuracy. Retrain mode trains on the whole (subset of the) training set
    and validates/tests on the test set. ``test_dataloader()`` is always the test set.

    Subclasses implement ``num_classes``, ``in_channels``, ``image_size``, ``train_transform``,
    ``eval_transform`` and ``make_dataset``.

    Args:
        batch_size: Images per training batch (each of the two search loaders uses it).
        num_workers: DataLoader worker processes (0 = load in the main process).
        subset: Use only the first N training images (quick runs); None = all.
        seed: Seed of the search split (the split is the same on every DDP rank).
        cutout: Cutout square side in pixels on training images, applied after normalisation (0 = off).
        augment: Apply the dataset's standard training augmentation (crop / flip ...); cutout is separate.
        search_split: Split the training set into weight and architecture parts (architecture search).
        train_portion: Fraction of the training images used for weights in search mode; the rest is for
            the architecture.
        val_batch_size: Batch size of the validation and test loaders; None = batch_size.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        subset: int | None = None,
        seed: int = 0,
        cutout: int = 0,
        augment: bool = True,
        search_split: bool = False,
        train_portion: float = 0.5,
        val_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        checks = [
            (batch_size >= 1, f"--data.batch_size must be >= 1, got {batch_size}"),
            (num_workers >= 0, f"--data.num_workers must be >= 0, got {num_workers}"),
            (subset is None or subset >= 1, f"--data.subset must be >= 1 or null, got {subset}"),
            (seed >= 0, f"--data.seed must be >= 0, got {seed}"),
            (cutout >= 0, f"--data.cutout must be >= 0, got {cutout}"),
            (0.0 <= train_portion <= 1.0, f"--data.train_portion must be between 0 and 1, got {train_portion}"),
            (val_batch_size is None or val_batch_size >= 1,
             f"--data.val_batch_size must be >= 1 or null, got {val_batch_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.subset = subset
        self.seed = seed
        self.cutout = cutout
        self.augment = augment
        self.search_split = search_split
        self.train_portion = train_portion
        self.val_batch_size = val_batch_size if val_batch_size is not None else batch_size
        self.train_indices: list[int] = []
        self.val_indices: list[int] = []
        self._train_set: Dataset | None = None
        self._search_sets: tuple[Dataset, Dataset, Dataset] | None = None
        self._test_set: Dataset | None = None

    # ---- what a concrete dataset provides -------------------------------------------------------------------
    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of classes."""

    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Channels of an input image (3 for RGB, 1 for grey)."""

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side of the (square) images the loaders yield."""

    @abstractmethod
    def train_transform(self) -> Callable:
        """Transform of training images (augmentation if enabled, normalisation, cutout if enabled)."""

    @abstractmethod
    def eval_transform(self) -> Callable:
        """Transform of evaluation images (normalisation only, or resize + centre crop)."""

    @abstractmethod
    def make_dataset(self, train: bool, transform: Callable) -> Dataset:
        """The full training (``train=True``) or test set, yielding ``(image, label)`` through ``transform``."""

    # ---- Lightning hooks ------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``/``validate``: training side; ``test``: test set)."""
        fitting = stage in (None, "fit", "validate")
        if fitting and self.cutout >= self.image_size:
            raise ValueError(f"--data.cutout {self.cutout} is not smaller than the images' side {self.image_size}: "
                             f"it would blank (nearly) every training pixel; use 0 (off) or < {self.image_size}")
        if fitting and self.search_split:
            self._setup_search()
        elif fitting and self._train_set is None:
            train_full = self.make_dataset(True, self.train_transform())
            self._train_set = Subset(train_full, self._subset_range(len(train_full)))
        needs_test = stage in (None, "test") or (fitting and not self.search_split)
        if needs_test and self._test_set is None:
            self._test_set = self.make_dataset(False, self.eval_transform())

    def _subset_range(self, n: int) -> list[int]:
        if self.subset is not None and self.subset > n:
            raise ValueError(f"--data.subset {self.subset} exceeds the {n} training images of {type(self).__name__}: "
                             f"use at most {n}, or null for all")
        return list(range(n if self.subset is None else self.subset))

    def _setup_search(self) -> None:
        if self._search_sets is not None:
            return
        train_full = self.make_dataset(True, self.train_transform())
        n = len(self._subset_range(len(train_full)))
        self.train_indices, self.val_indices = split_indices(n, self.train_portion, self.seed)
        eval_full = self.make_dataset(True, self.eval_transform())
        self._search_sets = (
            Subset(train_full, self.train_indices),
            Subset(train_full, self.val_indices),
            Subset(eval_full, self.val_indices),
        )

    def _loader(self, dataset: Dataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() (or let the Trainer do it) before asking "
                               "for a dataloader")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """Retrain: one shuffled loader. Search: ``{"train": weight part, "val": architecture part}``."""
        if self.search_split:
            parts = self._search_sets or (None, None, None)
            return {"train": self._loader(parts[0], self.batch_size, True),
                    "val": self._loader(parts[1], self.batch_size, True)}
        return self._loader(self._train_set, self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        """Search: the architecture part without augmentation. Retrain: the test set. Not shuffled."""
        if self.search_split:
            return self._loader(self._search_sets[2] if self._search_sets else None, self.val_batch_size, False)
        return self._loader(self._test_set, self.val_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        """The test set, not shuffled."""
        return self._loader(self._test_set, self.val_batch_size, False)

