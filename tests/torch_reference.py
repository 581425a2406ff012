"""Independent PyTorch re-derivation of the NVlabs StyleGAN2 generator and discriminator (test-only).

Why this file exists: the JAX networks and the checkpoint converter of `stylekd_jax` are tested
against these modules.  They are written from the published facts (papers, NVlabs state-dict names)
and were checked offline against the official NVlabs and StyleKD code, but they share no code
with it (nor with the JAX package under test).

Deliberate choice of formulation: every modulated convolution here uses the GROUPED ("fused")
form of the official inference path (per-sample weights W*s, demodulated, one grouped conv), and
the upsampling conv is `conv_transpose2d(stride 2)` followed by the [1,3,3,1] blur (x4).  The JAX
code uses the non-fused form (`conv(x*s, W) * d`, zero-insertion upsampling), so agreement
between the two checks both derivations.

Parameter names (`state_dict()`) are exactly the NVlabs ones, so official state dicts load
directly; `channels` follows StyleKD's per-layer `generator_net_shape` convention so pruned
students (and the `kernel_size=1` "heterogeneous" students) can be expressed too.

Note on attribute access: `RefGenerator.mapping(...)` / `.synthesis(...)` are *methods* (as
the project's API wants); the submodules are reachable as `G.mapping_net` / `G.synthesis_net`
(their state-dict prefixes are still `mapping.` / `synthesis.`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "generator_channels", "discriminator_channels", "setup_filter", "upfirdn2d", "upsample2d",
    "bias_act", "modulated_conv2d", "RefGenerator", "RefDiscriminator",
]

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2


# ----------------------------------------------------------------------------------------------
# Channel conventions


def generator_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> list[int]:
    """Per-layer channel list of the NVlabs teacher: [C4, C4, C8, C8, ..., Cres, Cres]."""
    log2 = _log2(resolution)
    out = []
    for i in range(2, log2 + 1):
        c = min(channel_base // 2 ** i, channel_max)
        out += [c, c]
    return out


def discriminator_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """{resolution: channels} for the NVlabs discriminator, from `resolution` down to 4."""
    return {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(_log2(resolution), 1, -1)}


def _log2(resolution: int) -> int:
    log2 = int(round(math.log2(resolution)))
    if resolution < 4 or 2 ** log2 != resolution:
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    return log2


# ----------------------------------------------------------------------------------------------
# Primitive ops (reference definitions)


def setup_filter(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """2-D separable low-pass filter: outer(taps, taps) normalised to sum 1 ([4,4] for [1,3,3,1])."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Upsample (zero insertion), pad (negative = crop), FIR-filter, downsample.

    `pad` is (x_before, x_after, y_before, y_after) in upsampled pixels; the filter is applied as a
    true convolution (flipped) and multiplied by `gain` (for a 2-D filter gain**(ndim/2) = gain).
    """
    n, c, h, w = x.shape
    x0, x1, y0, y1 = pad
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    k = (f.to(x.dtype) * gain).flip([0, 1])
    k = k[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x, f, up=2):
    """2x upsampling as used by the skip generator (pad [2,1], gain 4 for the 4-tap filter)."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, pad=(p0, p1, p0, p1), gain=up * up)


def bias_act(x, b=None, act="linear", gain=None, clamp=None):
    """x + b (channel axis 1), activation, times gain (default sqrt(2) for lrelu), clamp to +-clamp."""
    if b is not None:
        x = x + b.reshape(1, -1, *([1] * (x.ndim - 2)))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        def_gain = SQRT2
    elif act == "linear":
        def_gain = 1.0
    else:
        raise ValueError(act)
    gain = def_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, padding=0, resample_filter=None):
    """Modulated conv in the grouped ("fused") form: one grouped conv with per-sample weights.

    x [N,I,H,W], weight [O,I,k,k], styles [N,I].  With up=2: conv_transpose2d (stride 2, weight
    not flipped) then the blur upfirdn2d(f, pad [1,1] for k=3, gain 4), as the official code.
    """
    n, cin, h, w_ = x.shape
    cout, _, kh, kw = weight.shape
    w = weight[None] * styles[:, None, :, None, None]                  # [N,O,I,k,k]
    if demodulate:
        d = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()              # [N,O]
        w = w * d[:, :, None, None, None]
    x = x.reshape(1, n * cin, h, w_)
    if up == 1:
        x = F.conv2d(x, w.reshape(n * cout, cin, kh, kw), padding=padding, groups=n)
    else:
        wt = w.transpose(1, 2).reshape(n * cin, cout, kh, kw)            # [N*I, O, k, k]
        x = F.conv_transpose2d(x, wt, stride=up, groups=n)
        fw = resample_filter.shape[-1]
        p0 = padding + (fw + up - 1) // 2 - (kw - 1)
        p1 = padding + (fw - up) // 2 - (kw - up)
        x = upfirdn2d(x, resample_filter, pad=(p0, p1, p0, p1), gain=up * up)
    return x.reshape(n, cout, *x.shape[2:])


def normalize_2nd_moment(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------------------------
# Layers (class and attribute names follow NVlabs so the fixture writer can mirror them)


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer: y = act(x @ (W * lr/sqrt(in)).T + b * lr)."""

    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.lr_multiplier = lr_multiplier
        self.bias_init = bias_init
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        x = x.matmul((self.weight * self.weight_gain).t())
        b = None if self.bias is None else self.bias * self.bias_gain
        return bias_act(x, b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv (discriminator): optional 2x down (blur + stride), bias, act, clamp*gain."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear", down=1,
                 conv_clamp=None):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = SQRT2 if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x, gain=1.0):
        w = self.weight * self.weight_gain
        f = self.resample_filter
        fw = f.shape[-1]
        if self.down == 1:
            x = F.conv2d(x, w, padding=self.padding)
        else:
            p0 = self.padding + (fw - self.down + 1) // 2
            p1 = self.padding + (fw - self.down) // 2
            if self.kernel_size == 1:   # blur + subsample first, then the 1x1 conv
                x = upfirdn2d(x, f, down=self.down, pad=(p0, p1, p0, p1))
                x = F.conv2d(x, w)
            else:                       # blur, then strided VALID conv
                x = upfirdn2d(x, f, pad=(p0, p1, p0, p1))
                x = F.conv2d(x, w, stride=self.down)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    """Modulated conv + noise (after demodulation) + bias + lrelu*sqrt(2) + clamp(+-conv_clamp)."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, conv_clamp=None):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.kernel_size, self.up, self.conv_clamp = resolution, kernel_size, up, conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = SQRT2
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="const", noise=None, gain=1.0):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter)
        if noise is not None:
            x = x + noise * self.noise_strength
        elif noise_mode == "random":
            x = x + torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode != "none":
            raise ValueError(noise_mode)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act="lrelu", gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv, styles * 1/sqrt(C_in), no demodulation, + bias, clamp."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [const] / conv0 (up) , conv1, torgb; img upsampled + rgb."""

    def __init__(self, in_channels, mid_channels, out_channels, w_dim, resolution, img_channels, is_last,
                 kernel_size=3, conv_clamp=None):
        super().__init__()
        self.in_channels = in_channels          # 0 for the first (4x4) block, as in NVlabs
        self.mid_channels, self.out_channels = mid_channels, out_channels
        self.w_dim, self.resolution, self.img_channels, self.is_last = w_dim, resolution, img_channels, is_last
        self.kernel_size, self.conv_clamp = kernel_size, conv_clamp
        self.architecture = "skip"
        self.register_buffer("resample_filter", setup_filter())
        self.num_conv, self.num_torgb = 0, 1
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([mid_channels, resolution, resolution]))
            conv1_k = 3                         # b4.conv1 is always 3x3
        else:
            self.conv0 = SynthesisLayer(in_channels, mid_channels, w_dim, resolution, kernel_size=3, up=2,
                                        conv_clamp=conv_clamp)
            self.num_conv += 1
            conv1_k = kernel_size
        self.conv1 = SynthesisLayer(mid_channels, out_channels, w_dim, resolution, kernel_size=conv1_k,
                                    conv_clamp=conv_clamp)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)

    def forward(self, x, img, ws, noise_mode="const", noise=None):
        noise = noise if noise is not None else [None] * self.num_conv
        if self.in_channels == 0:
            x = self.const[None].repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[:, 0], noise_mode, noise[0])
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, noise[0])
            x = self.conv1(x, ws[:, 1], noise_mode, noise[1])
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """Blocks b4..b{res}; torgb of block r shares its w with conv0 of block 2r."""

    def __init__(self, w_dim, img_resolution, img_channels, channels, kernel_size=3, conv_clamp=None):
        super().__init__()
        log2 = _log2(img_resolution)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.channels, self.kernel_size, self.conv_clamp = list(channels), kernel_size, conv_clamp
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.num_ws = 2 * log2 - 2
        if len(self.channels) != self.num_ws:
            raise ValueError(f"channels must have {self.num_ws} entries for {img_resolution} px, got {len(channels)}")
        for k, res in enumerate(self.block_resolutions):
            if res == 4:
                block = SynthesisBlock(0, channels[0], channels[1], w_dim, 4, img_channels, res == img_resolution,
                                       kernel_size, conv_clamp)
            else:
                j = 2 * k - 1                   # layer index of conv0
                block = SynthesisBlock(channels[j], channels[j + 1], channels[j + 2], w_dim, res, img_channels,
                                       res == img_resolution, kernel_size, conv_clamp)
            setattr(self, f"b{res}", block)

    @property
    def num_layers(self):
        return self.num_ws - 1

    def forward(self, ws, noise_mode="const", noise=None):
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"expected ws [N,{self.num_ws},{self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_noise = None if noise is None else noise[w_idx: w_idx + block.num_conv]
            x, img = block(x, img, ws[:, w_idx: w_idx + block.num_conv + 1], noise_mode, block_noise)
            w_idx += block.num_conv
        return img


class MappingNetwork(nn.Module):
    """normalize_2nd_moment(z), `num_layers` lrelu FC layers (lr 0.01), broadcast, truncation."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.lr_multiplier, self.w_avg_beta = num_layers, lr_multiplier, w_avg_beta
        embed = w_dim if c_dim > 0 else 0
        feats = [z_dim + embed] + [w_dim] * num_layers
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(feats[i], feats[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, truncation_psi=1.0, truncation_cutoff=None):
        if self.c_dim > 0:
            raise NotImplementedError("conditional mapping is not implemented in the reference")
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x[:, None].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cut] = self.w_avg + truncation_psi * (x[:, :cut] - self.w_avg)
        return x


# ----------------------------------------------------------------------------------------------
# Networks


class RefGenerator(nn.Module):
    """StyleGAN2 generator (skip architecture), NVlabs semantics and state-dict names.

    channels: per-layer list of length num_ws = 2*log2(res)-2 (StyleKD `generator_net_shape`):
    channels[0] = const channels; layer 0 (b4.conv1) maps channels[0] -> channels[1]; layer j >= 1
    is b{r}.conv0 (odd j, upsampling 3x3) or b{r}.conv1 (even j, `kernel_size`) mapping
    channels[j] -> channels[j+1]; b{r}.torgb reads the block's last channels.
    """

    def __init__(self, resolution, channels, z_dim=512, w_dim=512, mapping_layers=8, mapping_lr=0.01,
                 kernel_size=3, conv_clamp=None, img_channels=3, c_dim=0):
        super().__init__()
        self.resolution, self.z_dim, self.w_dim, self.c_dim = resolution, z_dim, w_dim, c_dim
        self.img_channels, self.kernel_size, self.conv_clamp = img_channels, kernel_size, conv_clamp
        self.channels = [int(c) for c in channels]
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, self.channels, kernel_size, conv_clamp)
        self.num_ws = self._modules["synthesis"].num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, mapping_layers, mapping_lr)

    # The class-level methods below shadow the submodule attributes; use these to reach them.
    @property
    def mapping_net(self) -> MappingNetwork:
        return self._modules["mapping"]

    @property
    def synthesis_net(self) -> SynthesisNetwork:
        return self._modules["synthesis"]

    @property
    def num_layers(self) -> int:
        """Number of noise-carrying conv layers (= num_ws - 1)."""
        return self.num_ws - 1

    def noise_shapes(self, batch=1):
        """[N,1,H,W] shapes of the per-layer noise inputs (b4.conv1, b8.conv0, b8.conv1, ...)."""
        shapes = [(batch, 1, 4, 4)]
        for res in self.synthesis_net.block_resolutions[1:]:
            shapes += [(batch, 1, res, res)] * 2
        return shapes

    def mapping(self, z, truncation_psi=1.0, truncation_cutoff=None):
        """z [N,z_dim] -> ws [N,num_ws,w_dim] (with truncation towards mapping.w_avg)."""
        return self.mapping_net(z, truncation_psi, truncation_cutoff)

    def synthesis(self, ws, noise_mode="const", noise=None):
        """ws -> NCHW float32 image.  noise_mode const|random|none; `noise` (list of per-layer
        [N,1,H,W] tensors, see noise_shapes) replaces the noise source and ignores noise_mode."""
        if noise is not None and len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise tensors, got {len(noise)}")
        return self.synthesis_net(ws, noise_mode, noise)

    def forward(self, z, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const"):
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode)

    def randomize_(self, seed):
        """Fill every parameter/buffer (except the fixed blur filters) with non-trivial values."""
        gen = torch.Generator().manual_seed(int(seed))

        def rn(t, scale=1.0, offset=0.0):
            return torch.randn(t.shape, generator=gen) * scale + offset

        with torch.no_grad():
            for name, t in list(self.named_parameters()) + list(self.named_buffers()):
                leaf = name.rsplit(".", 1)[-1]
                if leaf == "resample_filter":
                    continue
                if name.startswith("mapping.fc") or name.startswith("mapping.embed"):
                    lr = self.mapping_net.lr_multiplier if name.startswith("mapping.fc") else 1.0
                    t.copy_(rn(t, 1.0 / lr) if leaf == "weight" else rn(t, 0.5 / lr))
                elif name == "mapping.w_avg":
                    t.copy_(rn(t, 0.5))
                elif ".affine." in name:
                    t.copy_(rn(t) if leaf == "weight" else rn(t, 0.3, 1.0))
                elif leaf == "bias":
                    t.copy_(rn(t, 0.3))
                elif leaf == "noise_strength":
                    t.copy_(rn(t, 0.3))
                else:   # conv/torgb weights, const, noise_const
                    t.copy_(rn(t))
        return self


class MinibatchStdLayer(nn.Module):
    """Append the group stddev (groups formed with stride: sample i with i + k*N/G)."""

    def __init__(self, group_size=4, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])          # [n/G, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """ResNet block: [fromrgb], conv0, conv1 (down) * sqrt(.5) + skip (down, 1x1, no bias) * sqrt(.5)."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels, conv_clamp=None):
        super().__init__()
        self.in_channels, self.tmp_channels, self.out_channels = in_channels, tmp_channels, out_channels
        self.resolution, self.img_channels, self.conv_clamp = resolution, img_channels, conv_clamp
        self.architecture = "resnet"
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        # NVlabs builds the skip layer without conv_clamp (checked against the official code).
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    @property
    def num_layers(self):
        return 4 if self.in_channels == 0 else 3

    def forward(self, x, img):
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """4x4 epilogue: minibatch stddev, conv 3x3, fc (NCHW flatten) lrelu, out."""

    def __init__(self, in_channels, resolution, img_channels, mbstd_group_size=4, mbstd_num_channels=1,
                 conv_clamp=None):
        super().__init__()
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.mbstd_group_size, self.mbstd_num_channels, self.conv_clamp = mbstd_group_size, mbstd_num_channels, conv_clamp
        self.architecture = "resnet"
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x):
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


class RefDiscriminator(nn.Module):
    """StyleGAN2 ResNet discriminator, NVlabs semantics and state-dict names."""

    def __init__(self, resolution, channels=None, conv_clamp=None, mbstd_group_size=4, mbstd_num_channels=1,
                 img_channels=3, channel_base=32768, channel_max=512):
        super().__init__()
        log2 = _log2(resolution)
        if resolution < 8:
            raise ValueError("the discriminator needs resolution >= 8")
        self.resolution, self.img_channels, self.conv_clamp = resolution, img_channels, conv_clamp
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.channel_base, self.channel_max = channel_base, channel_max
        if channels is None:
            channels = discriminator_channels(resolution, channel_base, channel_max)
        self.channels = {int(r): int(c) for r, c in channels.items()}
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        for res in self.block_resolutions:
            in_ch = self.channels[res] if res < resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, self.channels[res], self.channels[res // 2], res,
                                                        img_channels, conv_clamp))
        self.b4 = DiscriminatorEpilogue(self.channels[4], 4, img_channels, mbstd_group_size, mbstd_num_channels,
                                        conv_clamp)

    def forward(self, img):
        img = img.to(torch.float32)
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)

    def randomize_(self, seed):
        """Fill every weight and bias with random values (blur filters stay fixed)."""
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, t in self.named_parameters():
                scale = 1.0 if name.endswith("weight") else 0.3
                t.copy_(torch.randn(t.shape, generator=gen) * scale)
        return self
