"""The embedded default data set: scikit-learn's 1,797 real 8×8 handwritten digits (no download needed)."""
from __future__ import annotations

from functools import lru_cache
import numpy as np

from nasdata.arrays import ArrayDataModule, ArraySplits

DIGITS_TEST_SIZE = 360


@lru_cache(maxsize=1)
def load_digits_splits() -> ArraySplits:
    """The digits as uint8 ``[N, 8, 8]`` images (0..16 scaled to 0..255) in a fixed split of 1,437 train /
    360 test images, drawn by ``numpy.random.default_rng(0)`` (independent of any seed option)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    splits = ArraySplits(images[train], labels[train], images[test], labels[test])
    for array in splits:
        array.setflags(write=False)
    return splits


class DigitsDataModule(ArrayDataModule):
    """scikit-learn's bundled handwritten digits: 10 classes, 1 channel, 8×8, 1,437 train / 360 test images.

    Fast and download-free: the default data set of the quickstart and the tests. Training augmentation is a
    random crop with 1 pixel of padding (no flips: digits are not mirror-symmetric).

    Args:
        **kwargs: The options of :class:`ImageDataModule` (batch_size, subset, search_split ...).
    """

    hflip = False

    @property
    def crop_padding(self) -> int:
        return 1

    def load_arrays(self) -> ArraySplits:
        return load_digits_splits()
