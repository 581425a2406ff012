"""Independent PyTorch re-derivation of the BiSeNet face parser and StyleKD's mask (test-only).

Written from the published architecture of zllrunning/face-parsing.PyTorch as vendored by
CAGAN / StyleKD (`Util/face_parsing/{BiSeNet,resnet}.py`), with the same module names, so its
`state_dict()` has exactly the names of the released `79999_iter.pth`:

* `cp.resnet`: ResNet-18 (7x7/2 conv + BN + ReLU, 3x3/2 max pool, layer1..layer4 of two
  BasicBlocks each, 1x1/2 conv + BN `downsample` where the shape changes, no fc);
* `cp.arm16` / `cp.arm32`: attention refinement (3x3 ConvBNReLU, then x * sigmoid(BN(1x1 conv
  of the global average)));
* `cp.conv_avg` (1x1 ConvBNReLU of the global average of res5), `cp.conv_head32` /
  `cp.conv_head16` (3x3 ConvBNReLU after a nearest 2x upsampling);
* no spatial path: the released model feeds the res3 (1/8) feature to `ffm` instead;
* `ffm`: 1x1 ConvBNReLU of concat(res3, context), x + x * sigmoid(1x1 conv -> ReLU -> 1x1 conv
  of the global average) (squeeze 4);
* `conv_out` (256 -> 256 -> 19), `conv_out16` / `conv_out32` (128 -> 64 -> 19): 3x3
  ConvBNReLU then 1x1 conv, each upsampled bilinearly (align_corners=True) to the input size.

`official_face_mask` follows StyleKD's `Batch_Img_Parsing` + `Get_Masked_Tensor`
(`Util/content_aware_pruning.py`): [-1, 1] -> [0, 1] clamp, bilinear resize by
`scale_factor=512 / H` (align_corners=False), ImageNet mean/std, argmax of output 0, face =
class not in {0, 16}, resized back by `scale_factor=H / 512`, `> 0.5`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, ks=3, stride=1, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        r = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(short + r)


class Resnet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class AttentionRefinementModule(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        att = torch.sigmoid(self.bn_atten(self.conv_atten(F.avg_pool2d(feat, feat.shape[2:]))))
        return feat * att


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x):
        f8, f16, f32 = self.resnet(x)
        avg = self.conv_avg(F.avg_pool2d(f32, f32.shape[2:]))
        s32 = self.arm32(f32) + F.interpolate(avg, f32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(s32, f16.shape[2:], mode="nearest"))
        s16 = self.arm16(f16) + up32
        up16 = self.conv_head16(F.interpolate(s16, f8.shape[2:], mode="nearest"))
        return f8, up16, up32


class FeatureFusionModule(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp, fcp):
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        att = F.avg_pool2d(feat, feat.shape[2:])
        att = torch.sigmoid(self.conv2(F.relu(self.conv1(att))))
        return feat * att + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, cin, mid, n_classes):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    def __init__(self, n_classes=19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x):
        size = x.shape[2:]
        f8, cp8, cp16 = self.cp(x)
        outs = (self.conv_out(self.ffm(f8, cp8)), self.conv_out16(cp8), self.conv_out32(cp16))
        return tuple(F.interpolate(o, size, mode="bilinear", align_corners=True) for o in outs)


def random_model(seed: int = 0) -> BiSeNet:
    """BiSeNet in eval mode with random conv weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = BiSeNet(19)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.6, 1.4)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(80000)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=1)
    return model.eval()


def write_pth(model: BiSeNet, path, legacy: bool = True, drop=(), extra=None) -> None:
    """`torch.save(state_dict)` like the released 79999_iter.pth (a 2019 legacy-format file,
    num_batches_tracked buffers included); `drop` / `extra` make broken files for error tests."""
    sd = {k: v for k, v in model.state_dict().items() if k not in drop}
    sd.update(extra or {})
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)


@torch.no_grad()
def official_face_mask(model: BiSeNet, img: torch.Tensor, parse_size: int = 512):
    """StyleKD's mask for NCHW images in [-1, 1]: (logits at parse size, mask [N, H, W] float)."""
    x = ((img + 1) / 2).clamp(0, 1)
    x = F.interpolate(x, scale_factor=parse_size / img.shape[-1], mode="bilinear",
                      align_corners=False)
    for c in range(3):
        x[:, c] = (x[:, c] - MEAN[c]) / STD[c]
    logits = model(x)[0]
    parsing = logits.argmax(1)
    mask = ((parsing > 0) * (parsing != 16)).unsqueeze(0).float()
    mask = F.interpolate(mask, scale_factor=img.shape[-1] / parse_size, mode="bilinear",
                         align_corners=False)
    return logits, (mask[0] > 0.5).float()
