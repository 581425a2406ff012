"""Turning generator outputs into pictures: uint8 conversion, grids, PNG files."""

import math

import numpy as np
from PIL import Image


def to_float(images):
    """uint8 NHWC (the input pipeline's batches) -> float32 in [-1, 1]: x / 127.5 - 1. Works on
    NumPy and (inside jit, on the device) JAX arrays."""
    return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] float NHWC -> uint8, rounded as NVlabs does: clip(x * 127.5 + 128)."""
    return np.clip(np.asarray(images, np.float32) * 127.5 + 128, 0, 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int | None = None, pad: int = 0) -> np.ndarray:
    """Tile uint8 NHWC images into one HWC image, row-major, near-square by default."""
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        out[r * (h + pad): r * (h + pad) + h, col * (w + pad): col * (w + pad) + w] = img
    return out


def save_png(path: str, image: np.ndarray) -> None:
    """Save one uint8 HWC image (1 or 3 channels)."""
    if image.shape[-1] == 1:
        image = image[..., 0]
    Image.fromarray(image).save(path)
