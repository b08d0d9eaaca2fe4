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

__all__ = ["digits_arrays", "digits_dataset", "PIXEL_SCALE"]

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
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    if split == "all":
        return pixels, labels
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not one of 'train', 'test', 'all'")
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                           stratify=labels)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    return pixels[chosen], labels[chosen]


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
