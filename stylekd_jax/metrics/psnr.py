"""PSNR between images, computed correctly, and the official CAGAN/StyleKD variant.

Why: the paper's PSNR column (Table 3) comes from CAGAN's projection evaluation, run by StyleKD's
`get_psnr.py`.  There the projected image becomes a uint8 picture with `Convert_Tensor_To_Image`
(torchvision `make_grid(normalize=True, range=(-1, 1))`, then `mul(255).add_(0.5).clamp_(0, 255)`
and a uint8 cast: ROUNDED, half up), the target is the uint8 picture itself, and `psnr`
(`Evaluation/image_projection/image_projector.py`) subtracts the two **uint8** numpy arrays, so
`img1 - img2` and `** 2` wrap around modulo 256; it returns 100 when that MSE is 0.  `psnr` here
is the real PSNR (float64, per image); the official number is `psnr_official_compat` (built from
`to_uint8_cagan` and `psnr_uint8_wraparound`), kept only to reproduce published numbers.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "psnr_from_mse", "psnr_official_compat", "psnr_uint8_wraparound",
           "to_uint8_cagan"]


def psnr_from_mse(mse, data_range: float = 2.0) -> np.ndarray:
    """10 log10(range^2 / mse) in float64; inf where mse == 0."""
    mse = np.asarray(mse, np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range ** 2 / mse)


def psnr(a, b, data_range: float = 2.0):
    """PSNR of images a vs b (default range 2: images in [-1, 1]), in float64.

    [N, H, W, C] inputs give one value per image ([N]); a single [H, W, C] image gives a float.
    Identical images give inf.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.ndim == 3:
        return float(psnr_from_mse(np.mean((a - b) ** 2), data_range))
    return psnr_from_mse(np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim))), data_range)


def to_uint8_cagan(images) -> np.ndarray:
    """CAGAN's `Convert_Tensor_To_Image` on images in [-1, 1]: clamp, (x + 1) / 2, * 255, + 0.5,
    clamp to [0, 255], cast to uint8 -- i.e. rounded half up, in float32 as torch computes it.

    A picture read as `u / 127.5 - 1` comes back as exactly `u` (truncation would not).
    """
    x = np.clip(np.asarray(images, np.float32), np.float32(-1), np.float32(1))
    x = (x + np.float32(1)) / np.float32(2)
    x = np.clip(x * np.float32(255) + np.float32(0.5), np.float32(0), np.float32(255))
    return x.astype(np.uint8)


def psnr_uint8_wraparound(a, b):
    """The official CAGAN/StyleKD PSNR, bug included: DO NOT use for new results.

    a, b: uint8 images [H, W, C] (or [N, H, W, C] for one value per image).  The difference and
    its square are taken in uint8 arithmetic, i.e. modulo 256, then averaged; 20 log10(255 /
    sqrt(mse)), and 100 when that mse is 0.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise TypeError(f"psnr_uint8_wraparound reproduces uint8 arithmetic; got {a.dtype}, {b.dtype}")

    def one(x, y):
        d = x - y                       # uint8: wraps modulo 256
        mse = np.mean(d * d)            # uint8 square: wraps again; mean in float64
        return 100.0 if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse))

    if a.ndim == 3:
        return one(a, b)
    return np.array([one(x, y) for x, y in zip(a, b)])


def psnr_official_compat(images, targets):
    """The PSNR `get_psnr.py` reports: `psnr_uint8_wraparound(target_uint8, to_uint8_cagan(image))`.

    images: generator outputs in [-1, 1] ([H, W, C] or [N, H, W, C]); targets: the uint8 target
    pictures, or float targets in [-1, 1] (converted with `to_uint8_cagan`, exact for pictures
    read as `u / 127.5 - 1`).
    """
    targets = np.asarray(targets)
    if targets.dtype != np.uint8:
        targets = to_uint8_cagan(targets)
    return psnr_uint8_wraparound(targets, to_uint8_cagan(images))
