"""The demo data set: scikit-learn's 8x8 handwritten digits, upscaled, with a fixed split.

The data ships inside scikit-learn (1797 images, 10 classes), so nothing is downloaded. Pixels are
integers 0..16; the model sees ``pixel / 16`` (exact in binary floating point, so an integer
pipeline can take the raw 0..16 values with a scale of 1/16) upscaled by pixel repetition
(nearest neighbour), which keeps every value on that grid. No mean/std normalisation: the stem's BN
absorbs it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["digits_arrays", "digits_indices", "digits_dataset", "PIXEL_SCALE"]

PIXEL_SCALE = 1.0 / 16.0  # model input = raw digit pixel (0..16) * PIXEL_SCALE


def digits_arrays(split: str = "test", seed: int = 0, test_fraction: float = 0.2):
    """Return raw ``(pixels uint8 [N, 8, 8], labels int64 [N])`` of one split.

    Parameters
    ----------
    split : str
        ``'train'``, ``'test'`` or ``'all'``.
    seed : int
        Seed of the stratified split; the demo model uses 0.
    test_fraction : float
        Share of each class held out for ``'test'`` (0.2: 360 of 1797 images).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    if split == "all":
        return pixels, labels
    chosen = digits_indices(split, seed, test_fraction, labels)
    return pixels[chosen], labels[chosen]


def digits_indices(split: str = "test", seed: int = 0, test_fraction: float = 0.2,
                   labels: np.ndarray | None = None) -> np.ndarray:
    """Return the sorted indices into ``load_digits()`` of one split (see :func:`digits_arrays`).

    ``golden.events`` uses them to seed each image's events by its index in the whole set, so an
    image gets the same events whichever split or subset it is drawn in.
    """
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test", "all"):
        raise ValueError(f"split={split!r} is not one of 'train', 'test', 'all'")
    if labels is None:
        from sklearn.datasets import load_digits
        labels = load_digits().target.astype(np.int64)
    idx = np.arange(len(labels))
    if split == "all":
        return idx
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                           stratify=labels)
    return np.sort(train_idx if split == "train" else test_idx)


def upscale(pixels: np.ndarray, img_size: int) -> torch.Tensor:
    """Return ``[N, 1, img_size, img_size]`` float32 model inputs from raw 8x8 pixels."""
    if img_size % 8:
        raise ValueError(f"img_size={img_size} must be a multiple of 8 (digits are 8x8)")
    factor = img_size // 8
    x = torch.from_numpy(pixels.astype(np.float32) * PIXEL_SCALE).unsqueeze(1)
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3).contiguous()


def digits_dataset(img_size: int = 32, split: str = "test", seed: int = 0) -> TensorDataset:
    """Return a ``TensorDataset`` of ``(image [1, S, S] float32, label int64)`` for one split.

    ``quant/`` and the simulators use ``digits_dataset(32, 'test', 0)`` to evaluate the demo model
    on the same held-out images it was never trained on.
    """
    pixels, labels = digits_arrays(split, seed)
    return TensorDataset(upscale(pixels, img_size), torch.from_numpy(labels))
