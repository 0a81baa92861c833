"""Image transforms shared by the data modules: DARTS cutout and the standard pipelines (torchvision v2)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cutout(img: Tensor, length: int, center: tuple[int, int]) -> Tensor:
    """Return a copy of ``img`` (``[..., H, W]``) with a ``length`` x ``length`` square zeroed on all channels.

    The square spans rows ``cy - length // 2`` to ``cy - length // 2 + length`` (same for columns), clipped at
    the image borders, as in DARTS (for odd ``length`` DARTS zeroes ``length - 1`` pixels a side; here it is
    exactly ``length``).
    """
    h, w = img.shape[-2:]
    cy, cx = center
    y1, x1 = max(cy - length // 2, 0), max(cx - length // 2, 0)
    y2, x2 = min(cy - length // 2 + length, h), min(cx - length // 2 + length, w)
    out = img.clone()
    if length > 0 and y2 > y1 and x2 > x1:
        out[..., y1:y2, x1:x2] = 0
    return out


class Cutout(nn.Module):
    """DARTS cutout as a v2-compatible transform: zero a ``length`` square whose centre is uniform over the image.

    Meant to run after normalisation (the square becomes the dataset mean). Uses the torch RNG, so DataLoader
    workers seeded by torch / Lightning give reproducible, worker-distinct squares.
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        if length < 0:
            raise ValueError(f"cutout length must be >= 0, got {length} (--data.cutout)")
        self.length = length

    def forward(self, img: Tensor) -> Tensor:
        """Apply cutout to one image ``[C, H, W]``."""
        if self.length == 0:
            return img
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, (1,)))
        cx = int(torch.randint(w, (1,)))
        return cutout(img, self.length, (cy, cx))

    def extra_repr(self) -> str:
        return f"length={self.length}"


def finish(mean: Sequence[float], std: Sequence[float], cutout_length: int = 0) -> list[Callable]:
    """The common tail of every pipeline: uint8 image -> float in [0, 1] -> normalised -> optional cutout."""
    steps: list[Callable] = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if cutout_length > 0:
        steps.append(Cutout(cutout_length))
    return steps


def crop_flip_transform(
    size: int, padding: int, flip: bool, mean: Sequence[float], std: Sequence[float], cutout_length: int = 0
) -> v2.Compose:
    """Training transform for uint8 ``[C, H, W]`` tensors: random crop with zero padding, optional horizontal
    flip, then scale, normalise and optional cutout (CIFAR: ``size=32, padding=4, flip=True``)."""
    steps: list[Callable] = [v2.RandomCrop(size, padding=padding)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + finish(mean, std, cutout_length))


def tensor_eval_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Evaluation transform for uint8 ``[C, H, W]`` tensors: scale and normalise only."""
    return v2.Compose(finish(mean, std))


def imagenet_train_transform(size: int, augment: bool = True, cutout_length: int = 0) -> v2.Compose:
    """ImageNet-style training transform for PIL images: RandomResizedCrop, flip, ColorJitter(0.4, 0.4, 0.4, 0.2)
    (or Resize + CenterCrop when ``augment`` is False), then scale, normalise and optional cutout."""
    if not augment:
        resize: list[Callable] = [v2.Resize(int(size / 0.875), antialias=True), v2.CenterCrop(size)]
        return v2.Compose([v2.ToImage(), *resize, *finish(IMAGENET_MEAN, IMAGENET_STD, cutout_length)])
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(0.4, 0.4, 0.4, 0.2),
        *finish(IMAGENET_MEAN, IMAGENET_STD, cutout_length),
    ])


def imagenet_eval_transform(size: int) -> v2.Compose:
    """ImageNet-style evaluation transform: Resize(int(size / 0.875)), CenterCrop(size), scale, normalise."""
    return imagenet_train_transform(size, augment=False)
