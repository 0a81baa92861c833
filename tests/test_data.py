"""Tests of the nasdata package: split, transforms and every data module, on data made here (no network)."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from PIL import Image

import nasdata
from nasdata import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    Cutout,
    DigitsDataModule,
    ImageFolderDataModule,
    NpzDataModule,
    cutout,
    get_datamodule,
    split_indices,
)

# Lightning 2.6 itself triggers this one when it collates dict batches.
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# ---- split_indices -----------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(2, 400), portion=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_split_is_a_deterministic_partition(n: int, portion: float, seed: int) -> None:
    n_first = round(n * portion)
    if n_first in (0, n):
        with pytest.raises(ValueError):
            split_indices(n, portion, seed)
        return
    first, second = split_indices(n, portion, seed)
    assert len(first) == n_first and len(second) == n - n_first
    assert set(first).isdisjoint(second)
    assert sorted(first + second) == list(range(n))
    assert first == sorted(first) and second == sorted(second)
    assert all(isinstance(i, int) for i in first + second)
    assert split_indices(n, portion, seed) == (first, second)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(n=st.integers(64, 400), portion=st.floats(0.1, 0.9), seed=st.integers(0, 2**31))
def test_split_changes_with_the_seed(n: int, portion: float, seed: int) -> None:
    assert split_indices(n, portion, seed) != split_indices(n, portion, seed + 1)


@pytest.mark.parametrize(("n", "portion"), [(10, 0.0), (10, 1.0), (1, 0.5), (0, 0.5), (10, 0.01)])
def test_empty_split_raises_with_the_numbers(n: int, portion: float) -> None:
    with pytest.raises(ValueError) as err:
        split_indices(n, portion, 0)
    message = one_line(err)
    assert str(n) in message and "train_portion" in message


def test_split_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="train_portion"):
        split_indices(10, 1.5, 0)
    with pytest.raises(ValueError, match="seed"):
        split_indices(10, 0.5, -1)


# ---- cutout ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("center", "rows", "cols"), [
    ((5, 5), (3, 7), (3, 7)),  # fully inside: rows 3..6
    ((0, 0), (0, 2), (0, 2)),  # clipped at the top-left corner
    ((9, 1), (7, 10), (0, 3)),  # clipped at the bottom and left
])
def test_cutout_zeroes_exactly_a_clipped_square(center, rows, cols) -> None:
    img = torch.ones(3, 10, 10)
    out = cutout(img, 4, center)
    expected = torch.ones(3, 10, 10)
    expected[:, rows[0]:rows[1], cols[0]:cols[1]] = 0
    assert torch.equal(out, expected)
    assert torch.equal(img, torch.ones(3, 10, 10))  # the input is left alone


def test_cutout_transform_draws_a_square_anywhere() -> None:
    torch.manual_seed(0)
    transform = Cutout(6)
    seen_clipped = seen_full = False
    for _ in range(60):
        out = transform(torch.full((2, 12, 12), 2.0))
        zero = out == 0
        assert torch.equal(zero[0], zero[1])  # the same square on every channel
        rows, cols = zero[0].any(dim=1).nonzero().flatten(), zero[0].any(dim=0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert 3 <= height <= 6 and 3 <= width <= 6  # a centre inside the image keeps at least half a side
        assert int(zero[0].sum()) == height * width  # a solid rectangle
        assert rows[-1] - rows[0] + 1 == height and cols[-1] - cols[0] + 1 == width
        assert torch.all(out[~zero] == 2.0)
        seen_full |= height == width == 6
        seen_clipped |= height < 6 or width < 6
    assert seen_full and seen_clipped
    assert torch.equal(Cutout(0)(torch.ones(1, 4, 4)), torch.ones(1, 4, 4))


# ---- digits (the embedded default) -------------------------------------------------------------------------------
def test_digits_shapes_and_split() -> None:
    dm = DigitsDataModule(batch_size=32)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 8)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert len(train.dataset) == 1437 and len(val.dataset) == 360
    x, y = next(iter(train))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) <= 9
    assert len(dm.test_dataloader().dataset) == 360
    xs = torch.cat([b[0] for b in val])
    assert abs(float(xs.mean())) < 0.2 and abs(float(xs.std()) - 1) < 0.2  # normalised with train statistics


def test_digits_test_set_does_not_depend_on_the_seed() -> None:
    batches = []
    for seed in (0, 7):
        dm = DigitsDataModule(seed=seed, val_batch_size=360)
        dm.setup("test")
        batches.append(next(iter(dm.test_dataloader())))
    assert torch.equal(batches[0][0], batches[1][0]) and torch.equal(batches[0][1], batches[1][1])
    assert set(batches[0][1].tolist()) == set(range(10))


def test_digits_augmentation_is_crop_without_flip() -> None:
    dm = DigitsDataModule()
    steps = [type(t).__name__ for t in dm.train_transform().transforms]
    assert "RandomCrop" in steps and "RandomHorizontalFlip" not in steps
    assert dm.crop_padding == 1
    plain = DigitsDataModule(augment=False)
    assert [type(t).__name__ for t in plain.train_transform().transforms] == ["ToDtype", "Normalize"]


def test_subset_uses_the_first_images() -> None:
    dm = DigitsDataModule(subset=100, augment=False)
    dm.setup("fit")
    dataset = dm.train_dataloader().dataset
    assert len(dataset) == 100
    assert torch.equal(dataset[99][0], dm.make_dataset(True, dm.eval_transform())[99][0])


# ---- search mode -------------------------------------------------------------------------------------------------
def write_indexed_npz(path, n_train: int = 60, n_test: int = 12, size: int = 4) -> None:
    """Every training image is filled with its own index, so batches reveal which images they hold."""
    x_train = np.repeat(np.arange(n_train, dtype=np.uint8), size * size * 3).reshape(n_train, size, size, 3)
    x_test = np.full((n_test, size, size, 3), 200, dtype=np.uint8)
    y_train = np.arange(n_train) % 5
    y_test = np.arange(n_test) % 5
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def image_ids(loader, dm: NpzDataModule) -> list[int]:
    mean, std = dm.normalization()
    ids = []
    for x, _ in loader:
        pixel = x[:, 0, 0, 0] * std[0] + mean[0]
        ids += torch.round(pixel * 255).to(torch.int64).tolist()
    return ids


def test_search_loaders_are_disjoint_dicts(tmp_path) -> None:
    path = tmp_path / "indexed.npz"
    write_indexed_npz(path)
    dm = NpzDataModule(str(path), batch_size=8, augment=False, search_split=True, train_portion=0.6, seed=3)
    dm.setup("fit")
    loaders = dm.train_dataloader()
    assert set(loaders) == {"train", "val"}
    first, second = image_ids(loaders["train"], dm), image_ids(loaders["val"], dm)
    assert len(first) == 36 and len(second) == 24
    assert set(first).isdisjoint(second) and set(first) | set(second) == set(range(60))
    assert sorted(first) == dm.train_indices and sorted(second) == dm.val_indices
    assert loaders["train"].dataset.indices == dm.train_indices
    # per-epoch validation: the architecture part, in a fixed order
    val = dm.val_dataloader()
    assert image_ids(val, dm) == dm.val_indices == image_ids(val, dm)
    # Lightning wraps the dict like this; every batch is a dict of both parts
    combined = CombinedLoader(loaders, "max_size_cycle")
    batches = [batch for batch, _, _ in combined]
    assert len(batches) == 5 and all(set(b) == {"train", "val"} for b in batches)


def test_search_split_is_deterministic_under_the_seed() -> None:
    splits = []
    for seed in (0, 0, 1):
        dm = DigitsDataModule(search_split=True, seed=seed)
        dm.setup("fit")
        splits.append((dm.train_indices, dm.val_indices))
    assert splits[0] == splits[1] != splits[2]


def test_search_split_too_small_raises() -> None:
    dm = DigitsDataModule(subset=1, search_split=True)
    with pytest.raises(ValueError) as err:
        dm.setup("fit")
    assert "1 training images" in one_line(err)
    with pytest.raises(ValueError, match="train_portion"):
        DigitsDataModule(search_split=True, train_portion=1.0).setup("fit")


class _TwoLoaderProbe(L.LightningModule):
    """Checks what a search-time training step receives."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(64, 10)
        self.seen = 0

    def training_step(self, batch, batch_idx):
        assert set(batch) == {"train", "val"}
        (x_w, y_w), (x_a, _) = batch["train"], batch["val"]
        assert x_w.shape[1:] == x_a.shape[1:] == (1, 8, 8)
        self.seen += 1
        return torch.nn.functional.cross_entropy(self.net(x_w.flatten(1)), y_w)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x.flatten(1)), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_search_mode_runs_in_a_trainer() -> None:
    model = _TwoLoaderProbe()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=16, subset=200, search_split=True))
    assert model.seen == 3 and "val_loss" in trainer.callback_metrics


# ---- npz ---------------------------------------------------------------------------------------------------------
def test_npz_module(tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), y_train=np.arange(20) % 4,
             x_test=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), y_test=np.array([0, 1, 2, 3, 4, 0]))
    dm = NpzDataModule(str(path), batch_size=5, cutout=8)
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.crop_padding) == (5, 3, 32, 4)
    mean, std = dm.normalization()
    x = np.load(path)["x_train"] / 255.0
    assert np.allclose(mean, x.mean(axis=(0, 1, 2))) and np.allclose(std, x.std(axis=(0, 1, 2)))
    steps = [type(t).__name__ for t in dm.train_transform().transforms]
    assert steps == ["RandomCrop", "RandomHorizontalFlip", "ToDtype", "Normalize", "Cutout"]
    dm.setup("fit")
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (5, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert len(dm.val_dataloader().dataset) == 6


def test_npz_grey_images(tmp_path) -> None:
    path = tmp_path / "grey.npz"
    np.savez(path, x_train=np.zeros((4, 6, 6), np.uint8), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((2, 6, 6), np.uint8), y_test=np.array([1, 0]))
    dm = NpzDataModule(str(path), hflip=False)
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.crop_padding) == (2, 1, 6, 1)
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))[0].shape == (2, 1, 6, 6)


def test_npz_errors(tmp_path) -> None:
    missing = tmp_path / "nothing.npz"
    with pytest.raises(FileNotFoundError) as err:
        NpzDataModule(str(missing)).setup("fit")
    message = one_line(err)
    assert str(missing) in message and "x_train, y_train, x_test, y_test" in message
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError) as err:
        _ = NpzDataModule(str(partial)).num_classes
    message = one_line(err)
    assert "'y_test'" in message and str(partial) in message and "x_train, y_train, x_test, y_test" in message
    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=np.zeros((2, 4, 4, 3)), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 4, 4, 3)), y_test=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="uint8"):
        NpzDataModule(str(floats)).setup("fit")


# ---- CIFAR and image folders -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "folder"), [(CIFAR10DataModule, "cifar-10-batches-py"),
                                             (CIFAR100DataModule, "cifar-100-python")])
def test_cifar_without_download_on_an_empty_dir(tmp_path, cls, folder) -> None:
    dm = cls(root=str(tmp_path), download=False)
    assert dm.in_channels == 3 and dm.image_size == 32 and dm.num_classes in (10, 100)
    for step in (dm.prepare_data, lambda: dm.setup("fit")):
        with pytest.raises(FileNotFoundError) as err:
            step()
        message = one_line(err)
        assert str(tmp_path / folder) in message and "--data.download true" in message


def make_image_folder(root, classes=("cat", "dog"), per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


def test_image_folder(tmp_path) -> None:
    make_image_folder(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), image_size=16, batch_size=4, cutout=4)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (2, 3, 16)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape == (4, 3, 16, 16) and yv.tolist() == [0, 0, 0, 1]
    steps = [type(t).__name__ for t in dm.eval_transform().transforms]
    assert steps == ["ToImage", "Resize", "CenterCrop", "ToDtype", "Normalize"]
    assert dm.eval_transform().transforms[1].size == [18]  # int(16 / 0.875)
    search = ImageFolderDataModule(str(tmp_path), image_size=16, batch_size=2, search_split=True)
    search.setup("fit")
    assert {k: len(v.dataset) for k, v in search.train_dataloader().items()} == {"train": 3, "val": 3}


def test_image_folder_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        ImageFolderDataModule(str(tmp_path / "none")).setup("fit")
    assert str(tmp_path / "none" / "train") in one_line(err)
    make_image_folder(tmp_path, per_class=1)
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(ValueError) as err:
        _ = ImageFolderDataModule(str(tmp_path)).num_classes
    assert "bird" in one_line(err)


# ---- registry and argument checks --------------------------------------------------------------------------------
def test_registry() -> None:
    assert set(nasdata.DATAMODULES) == {"cifar10", "cifar100", "imagefolder", "npz", "digits"}
    dm = get_datamodule("digits", batch_size=8)
    assert isinstance(dm, DigitsDataModule) and dm.batch_size == 8 and dm.val_batch_size == 8
    assert isinstance(get_datamodule("cifar10", root="nowhere", download=False), CIFAR10DataModule)
    with pytest.raises(ValueError) as err:
        get_datamodule("mnist")
    message = one_line(err)
    assert "'mnist'" in message and all(name in message for name in nasdata.DATAMODULES)
    assert set(nasdata.__all__) <= set(dir(nasdata))


@pytest.mark.parametrize(("kwargs", "flag"), [({"batch_size": 0}, "batch_size"), ({"subset": 0}, "subset"),
                                              ({"cutout": -1}, "cutout"), ({"train_portion": 2.0}, "train_portion"),
                                              ({"num_workers": -1}, "num_workers")])
def test_bad_options_name_the_flag(kwargs, flag) -> None:
    with pytest.raises(ValueError, match=f"--data.{flag}"):
        DigitsDataModule(**kwargs)


def test_dataloader_before_setup_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().train_dataloader()
