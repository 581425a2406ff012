"""An independent PyTorch Inception-v3 as used for FID, and writers for its two weight files (test-only).

Why: tests cannot download the real weights, so the Flax network and the converter are checked
against this re-derivation run with random weights.  It is written from the architecture
description of pytorch-fid's `fid_inception_v3()` (the TF 2015-12-05 graph ported to torch):
torchvision's Inception-v3 layout, every conv is conv (no bias) + BatchNorm(eps=0.001) + ReLU,
the average pools of the A / C / E blocks exclude the padding (`count_include_pad=False`), and the
pool branch of the last E block (Mixed_7c) is a 3x3 stride-1 *max* pool.  pool3 = global average
of Mixed_7c, 2048 features.

Writers:
* `write_pytorch_fid_pth`: `torch.save(state_dict)` with pytorch-fid names
  (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`, ..., `fc.weight`).
* `write_nvlabs_style_torchscript`: a TorchScript archive shaped like NVlabs'
  `inception-2015-12-05.pt` as far as it is publicly described (top-level `layers` with the TF
  graph names `conv`, `conv_1`, ..., `pool0`, `mixed`, ..., `mixed_10`, and `output`; its
  `forward` does NVlabs' resize + `(x - 128) / 128`).  The tensor names inside each conv
  (`weight`, `beta`, `mean`, `var`; BatchNorm without a scale, as in the TF graph) are a guess:
  the real file was not available.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 0.001


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=EPS)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):  # Mixed_5b/c/d
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x))], 1)


class BlockB(nn.Module):  # Mixed_6a
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):  # Mixed_6b/c/d/e
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class BlockD(nn.Module):  # Mixed_7a
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        d = x
        for i in range(1, 5):
            d = getattr(self, f"branch7x7x3_{i}")(d)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), d, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # Mixed_7b (avg pool) / Mixed_7c (max pool)
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        a = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), a, d, self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """pool3 features [N, 2048] of NCHW input already resized and scaled to [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def random_model(seed=0, unit_gamma=False) -> FIDInceptionV3:
    """Random weights that keep activations O(1) through all 94 layers; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    model = FIDInceptionV3().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(torch.ones(n) if unit_gamma else 0.8 + 0.4 * torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0, 0.02, generator=gen)
                module.bias.normal_(0, 0.02, generator=gen)
    return model


def pytorch_fid_preprocess(x01: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's InceptionV3 input step: bilinear resize to 299 (align_corners=False), 2x - 1."""
    x = F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


def write_pytorch_fid_pth(model: FIDInceptionV3, path, legacy=False) -> None:
    """The pytorch-fid weights file: a plain torch.save of the state dict."""
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)


# ----------------------------------------------------------------------------------------
# NVlabs-style TorchScript (names from the TF graph; see the module docstring)

_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_MIXED = ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"]


def _tf_names(block: str) -> dict[str, str]:
    """TF-graph path inside a mixed block -> pytorch-fid branch name (written independently of
    the converter's table, from the TF graph's tower naming)."""
    if block in ("5b", "5c", "5d"):
        return {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
                "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
                "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
    if block == "6a":
        return {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1",
                "tower.conv_1": "branch3x3dbl_2", "tower.conv_2": "branch3x3dbl_3"}
    if block.startswith("6"):
        out = {"conv": "branch1x1", "tower_2.conv": "branch_pool"}
        out.update({("tower.conv" + (f"_{i}" if i else "")): f"branch7x7_{i + 1}" for i in range(3)})
        out.update({("tower_1.conv" + (f"_{i}" if i else "")): f"branch7x7dbl_{i + 1}" for i in range(5)})
        return out
    if block == "7a":
        out = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2"}
        out.update({("tower_1.conv" + (f"_{i}" if i else "")): f"branch7x7x3_{i + 1}" for i in range(4)})
        return out
    return {"conv": "branch1x1", "tower.conv": "branch3x3_1", "tower.mixed.conv": "branch3x3_2a",
            "tower.mixed.conv_1": "branch3x3_2b", "tower_1.conv": "branch3x3dbl_1",
            "tower_1.conv_1": "branch3x3dbl_2", "tower_1.mixed.conv": "branch3x3dbl_3a",
            "tower_1.mixed.conv_1": "branch3x3dbl_3b", "tower_2.conv": "branch_pool"}


class _TSConv(nn.Module):
    def __init__(self, basic: BasicConv2d):
        super().__init__()
        self.weight = nn.Parameter(basic.conv.weight.detach().clone())
        self.beta = nn.Parameter(basic.bn.bias.detach().clone())
        self.register_buffer("mean", basic.bn.running_mean.detach().clone())
        self.register_buffer("var", basic.bn.running_var.detach().clone())

    def forward(self, x):
        return x


class _TSGroup(nn.Module):
    def forward(self, x):
        return x


def _attach(root: nn.Module, dotted: str, child: nn.Module) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        if not hasattr(root, name):
            root.add_module(name, _TSGroup())
        root = getattr(root, name)
    root.add_module(leaf, child)


class NVlabsStyleInception(nn.Module):
    """Module tree + preprocessing of an NVlabs-style TorchScript; forward = preprocessing only."""

    def __init__(self, model: FIDInceptionV3):
        super().__init__()
        self.layers = _TSGroup()
        for tf_name, name in _STEM.items():
            _attach(self.layers, tf_name, _TSConv(getattr(model, name)))
        for i, block in enumerate(_MIXED):
            mixed = "mixed" + (f"_{i}" if i else "")
            for tf_name, name in _tf_names(block).items():
                _attach(self.layers, f"{mixed}.{tf_name}",
                        _TSConv(getattr(getattr(model, f"Mixed_{block}"), name)))
        self.output = nn.Linear(2048, 1008)
        self.output.load_state_dict(model.fc.state_dict())

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """NVlabs' published preprocessing: uint8 NCHW -> float, affine_grid/grid_sample resize
        to 299 (bilinear, border, align_corners=False, theta shifted to TF1's corner-aligned
        sampling), then (x - 128) / 128."""
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float32)
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += theta[0, 0] / width - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / height - theta[1, 1] / 299
        theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])
        grid = F.affine_grid(theta, [batch_size, channels, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return (x - 128) / 128


def write_nvlabs_style_torchscript(model: FIDInceptionV3, path) -> None:
    """torch.jit.script + save of `NVlabsStyleInception(model)` (needs unit BN scales)."""
    torch.jit.script(NVlabsStyleInception(model)).save(str(path))
