"""Independent PyTorch re-derivation of the StyleGAN3 (alias-free) generator (test-only).

Why this file exists: the Flax StyleGAN3 networks and the converter are tested against these
modules, so they must not share code (or bugs) with either.  Everything here is written from the
published definition (Karras et al. 2021, "Alias-Free Generative Adversarial Networks", and the
formulas of the official NVlabs/stylegan3 generator); it was checked offline against the official
`training/networks_stylegan3.py` (max |diff| ~1e-6 in float32 for small T and R configs).

Deliberately slow and literal formulation, different from the fused official kernels and from
the product: the modulated convolution loops over samples (one plain conv per sample, input gain
applied to the activations); separable resampling is an explicit matrix per axis (Y = M_y X M_x^T,
M built by pushing unit impulses through zero insertion, padding, the filter and decimation);
radial filters are a full 2-D convolution; negative padding crops via `F.pad`; and the
Fourier-feature sampling grid is computed analytically instead of with `affine_grid`.

Parameter and buffer names (`state_dict()`) are exactly the NVlabs ones (NCHW, OIHW), so official
state dicts load strictly.  As in NVlabs, `up_filter` / `down_filter` are registered as None
buffers when the layer has a single tap, so they are absent from `state_dict()`.

Precision: everything runs in the dtype of the module (float32 by default; `.double()` works).
The StyleGAN2 discriminator (which the stylegan3 repo trains with) is re-exported from
`torch_reference` as `RefDiscriminator`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

try:
    from .torch_reference import RefDiscriminator
except ImportError:  # tests/ on sys.path instead of imported as a package
    from torch_reference import RefDiscriminator

__all__ = [
    "SG3Config", "config", "InputSpec", "LayerSpec", "schedule", "design_lowpass_filter",
    "modulated_conv2d", "filtered_lrelu", "FullyConnectedLayer", "MappingNetwork", "SynthesisInput",
    "SynthesisLayer", "SynthesisNetwork", "Generator", "make_generator", "make_transform",
    "set_user_transform_", "RefDiscriminator",
]

SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------
# Hyperparameters and the layer schedule


@dataclasses.dataclass(frozen=True)
class SG3Config:
    """All hyperparameters of an NVlabs StyleGAN3 generator (defaults = the NVlabs class defaults)."""

    img_resolution: int
    img_channels: int = 3
    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    # mapping
    mapping_layers: int = 2
    mapping_lr: float = 0.01
    w_avg_beta: float = 0.998
    # synthesis network
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4
    # synthesis layers
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999

    @property
    def num_ws(self) -> int:
        """Fourier input + num_layers + ToRGB each take one w."""
        return self.num_layers + 2


def config(cfg: str, img_resolution: int, *, batch: int = 32, **overrides) -> SG3Config:
    """The generator that the stylegan3 repo's train.py builds for --cfg=stylegan3-{t,r}.

    `channel_base` / `channel_max` in `overrides` are the generator's actual values (train.py
    doubles --cbase / --cmax for R; the defaults here are the doubled ones for R: 65536 / 1024).
    magnitude_ema_beta = 0.5 ** (batch / 20000) as train.py sets it.
    """
    cfg = cfg.lower().removeprefix("stylegan3-")
    if cfg not in ("t", "r"):
        raise ValueError(f"cfg must be 't' or 'r', got {cfg!r}")
    kw = dict(img_resolution=img_resolution, magnitude_ema_beta=0.5 ** (batch / 20000))
    if cfg == "r":
        kw.update(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)
    kw.update(overrides)
    return SG3Config(**kw)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The Fourier-feature input: `channels` features on a `size`^2 grid at `sampling_rate`."""

    channels: int
    size: int
    sampling_rate: np.float64
    bandwidth: np.float64


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Everything that fixes the shape and resampling of one synthesis layer."""

    idx: int
    name: str                       # L{idx}_{out_size}_{out_channels}
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: np.bool_
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int          # rate at which the leaky ReLU is evaluated
    in_cutoff: np.float64
    out_cutoff: np.float64
    in_half_width: np.float64
    out_half_width: np.float64
    conv_kernel: int
    up_factor: int
    up_taps: int
    down_factor: int
    down_taps: int
    down_radial: bool
    padding: tuple                  # (x_lo, x_hi, y_lo, y_hi), in upsampled pixels; < 0 crops


def schedule(cfg: SG3Config) -> tuple[InputSpec, list[LayerSpec]]:
    """Per-layer cutoffs, stopbands, sampling rates, sizes and channels (paper section 3 / App. F).

    Cutoff f_c and minimum stopband f_t follow a geometric ramp from the first layer to the
    (num_layers - num_critical)-th, then stay at the image Nyquist values; the sampling rate is
    the smallest power of two >= 2 f_t (capped at the image resolution); the transition
    half-width is max(f_t, s/2) - f_c; feature maps carry `margin_size` extra pixels per side,
    except the last two (critically sampled) layers which are image sized.
    """
    n = cfg.num_layers
    res = cfg.img_resolution
    nyquist_cutoff = res / 2
    nyquist_stopband = nyquist_cutoff * cfg.last_stopband_rel
    progress = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (nyquist_cutoff / cfg.first_cutoff) ** progress
    stopbands = cfg.first_stopband * (nyquist_stopband / cfg.first_stopband) ** progress
    rates = np.exp2(np.ceil(np.log2(np.minimum(2 * stopbands, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + 2 * cfg.margin_size
    sizes[-2:] = res
    channels = np.rint(np.minimum(cfg.channel_base / 2 / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels

    inp = InputSpec(channels=int(channels[0]), size=int(sizes[0]), sampling_rate=rates[0], bandwidth=cutoffs[0])
    layers = []
    for i in range(n + 1):
        j = max(i - 1, 0)                       # layer 0 reads the Fourier features
        torgb = i == n
        in_sr, out_sr = int(rates[j]), int(rates[i])
        tmp_sr = max(in_sr, out_sr) * (1 if torgb else cfg.lrelu_upsampling)
        up, down = tmp_sr // in_sr, tmp_sr // out_sr
        if up * in_sr != tmp_sr or down * out_sr != tmp_sr:
            raise ValueError(f"layer {i}: sampling rates {in_sr} -> {tmp_sr} -> {out_sr} are not integer ratios")
        up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
        k = 1 if torgb else cfg.conv_kernel
        in_size, out_size = int(sizes[j]), int(sizes[i])
        # Pad (or crop) the upsampled conv output so that, after both 'valid' filters and the
        # decimation, exactly out_size samples remain, centred as in the symmetric
        # interpretation of sample positions (paper App. C.3): the extra half goes to the low side.
        needed = (out_size - 1) * down + 1 + (up_taps - 1) + (down_taps - 1)
        have = (in_size + k - 1) * up
        total = needed - have
        lo = (total + up) // 2
        critical = i >= n - cfg.num_critical
        layers.append(LayerSpec(
            idx=i, name=f"L{i}_{out_size}_{int(channels[i])}", is_torgb=torgb, is_critically_sampled=critical,
            use_fp16=rates[i] * 2 ** cfg.num_fp16_res > res,
            in_channels=int(channels[j]), out_channels=int(channels[i]), in_size=in_size, out_size=out_size,
            in_sampling_rate=in_sr, out_sampling_rate=out_sr, tmp_sampling_rate=tmp_sr,
            in_cutoff=cutoffs[j], out_cutoff=cutoffs[i], in_half_width=half_widths[j], out_half_width=half_widths[i],
            conv_kernel=k, up_factor=up, up_taps=up_taps, down_factor=down, down_taps=down_taps,
            down_radial=bool(cfg.use_radial_filters and not critical), padding=(lo, total - lo, lo, total - lo)))
    return inp, layers


# ----------------------------------------------------------------------------------------------
# Filters and primitive ops


def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """Windowed low-pass FIR filter (float32), None for the 1-tap identity.

    Separable: scipy's Kaiser-windowed `firwin` (1-D taps, applied along x and y).  Radial (R
    config down filters): the ideal circular low-pass, jinc(r) = J1(2 pi f_c r) / (pi r), times a
    separable Kaiser window with the firwin beta for the same length / transition width, 2-D,
    normalised to unit DC gain.
    """
    if numtaps < 1:
        raise ValueError("numtaps must be >= 1")
    if numtaps == 1:
        return None
    if not radial:
        return torch.tensor(scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs), dtype=torch.float32)
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs           # tap positions
    r = np.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    safe_r = np.where(r > 0, r, 1.0)
    jinc = np.where(r > 0, scipy.special.j1(2 * np.pi * cutoff * safe_r) / (np.pi * safe_r), cutoff)  # limit at 0
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = scipy.signal.windows.kaiser(numtaps, beta)
    f = jinc * window[:, None] * window[None, :]
    return torch.tensor(f / f.sum(), dtype=torch.float32)


def _upfirdn_1d(x, f, up=1, pad=(0, 0), down=1, gain=1.0):
    """One axis of upfirdn on rows x [B, L]: zero-insert x`up`, pad (negative crops), 'valid' true
    convolution with taps f * gain, keep every `down`-th sample."""
    if up > 1:
        z = x.new_zeros(x.shape[0], x.shape[1] * up)
        z[:, ::up] = x
        x = z
    x = F.pad(x, list(pad))
    if f is not None:
        x = F.conv1d(x[:, None], (f.to(x.dtype) * gain).flip(0)[None, None])[:, 0]
    elif gain != 1:
        x = x * gain
    return x[:, ::down]


def _axis_matrix(length, f, up, pad, down, gain, dtype):
    """The 1-D resampling of a length-`length` axis as an explicit [out, length] matrix (its
    columns are the responses to unit impulses)."""
    return _upfirdn_1d(torch.eye(length, dtype=dtype), f, up, pad, down, gain).t()


def _upfirdn_separable(x, f, up=1, padding=(0, 0, 0, 0), down=1, gain=1.0):
    """2-D upfirdn with a separable filter (1-D taps or None): Y = M_y X M_x^T per channel, the
    gain split evenly between the axes.  padding = (x_lo, x_hi, y_lo, y_hi)."""
    g = math.sqrt(gain)
    mx = _axis_matrix(x.shape[3], f, up, padding[0:2], down, g, x.dtype)
    my = _axis_matrix(x.shape[2], f, up, padding[2:4], down, g, x.dtype)
    return my @ x @ mx.t()


def _fir2d_down(x, f, down):
    """'Valid' true 2-D convolution of every channel with a non-separable filter, then keep
    every `down`-th sample (computed directly with a strided conv)."""
    c = x.shape[1]
    k = f.to(x.dtype).flip([0, 1])
    return F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c, stride=down)


def filtered_lrelu(x, bias, up_filter, down_filter, up, down, padding, gain, slope, clamp):
    """bias -> zero-insert x`up` -> pad/crop -> up filter (gain up^2: zero insertion lost a factor
    up per axis) -> lrelu * gain, clamp -> down filter -> keep every `down`-th sample.
    padding = (x_lo, x_hi, y_lo, y_hi); the up filter is always separable, the down filter is
    separable or (radial) 2-D."""
    x = x + bias.to(x.dtype)[None, :, None, None]
    x = _upfirdn_separable(x, up_filter, up=up, padding=padding, gain=up * up)
    x = torch.where(x >= 0, x, x * slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    if down_filter is not None and down_filter.ndim == 2:
        return _fir2d_down(x, down_filter, down)
    return _upfirdn_separable(x, down_filter, down=down)


def modulated_conv2d(x, weight, styles, demodulate, input_gain):
    """Per-sample modulated conv with 'full' padding (k - 1), one ordinary conv per sample.

    With demodulation, weights (per output channel) and styles (over the whole batch) are first
    scaled to unit RMS, which the demodulation cancels up to its epsilon: it only keeps fp16 in
    range in the official kernels.  `input_gain` (a scalar) scales the input activations.
    """
    k = weight.shape[-1]
    x = x * input_gain.to(x.dtype)
    if demodulate:
        weight = weight / weight.square().mean(dim=[1, 2, 3], keepdim=True).sqrt()
        styles = styles / styles.square().mean().sqrt()
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(F.conv2d(x[i:i + 1], w.to(x.dtype), padding=k - 1))
    return torch.cat(out)


def _normalize_2nd_moment(x, eps=1e-8):
    return x / (x.square().mean(dim=1, keepdim=True) + eps).sqrt()


# ----------------------------------------------------------------------------------------------
# Modules


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer: act(x @ (W * lr / sqrt(in)).T + b * lr); lrelu carries gain sqrt(2)."""

    def __init__(self, in_features, out_features, activation="linear", lr_multiplier=1, bias_init=0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation, self.lr_multiplier = activation, lr_multiplier
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        bias = torch.broadcast_to(torch.as_tensor(bias_init, dtype=torch.float32), (out_features,))
        self.bias = nn.Parameter(bias / lr_multiplier)

    def forward(self, x):
        gain = self.lr_multiplier / math.sqrt(self.in_features)
        y = x @ (self.weight * gain).t() + self.bias * self.lr_multiplier
        if self.activation == "lrelu":
            y = F.leaky_relu(y, 0.2) * SQRT2
        elif self.activation != "linear":
            raise ValueError(self.activation)
        return y


class MappingNetwork(nn.Module):
    """z (and c) -> num_ws copies of w; truncation lerps the first `cutoff` ws towards w_avg."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.lr_multiplier, self.w_avg_beta = num_layers, lr_multiplier, w_avg_beta
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], "lrelu", lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, truncation_psi=1, truncation_cutoff=None, *, c=None):
        x = _normalize_2nd_moment(z.to(self.w_avg.dtype))
        if self.c_dim > 0:
            if c is None:
                raise ValueError("this mapping network is conditional: pass c")
            x = torch.cat([x, _normalize_2nd_moment(self.embed(c.to(x.dtype)))], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x[:, None, :].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            head = self.w_avg + truncation_psi * (ws[:, :cut] - self.w_avg)
            ws = torch.cat([head, ws[:, cut:]], dim=1)
        return ws


def _random_freqs(channels, bandwidth, gen=None):
    """Frequencies spread over a disc of radius `bandwidth` (NVlabs init): a Gaussian direction
    g, rescaled to radius exp(-|g|^2 / 4) * bandwidth."""
    g = torch.randn(channels, 2, generator=gen)
    r = g.norm(dim=1, keepdim=True)
    return g / r * torch.exp(-r.square() / 4) * float(bandwidth)


class SynthesisInput(nn.Module):
    """Fourier features sin(2 pi (<f, T(x)> + phase)), rotated/translated by an affine of w and
    by the user transform, faded out when a frequency leaves the band, then mixed by a linear
    layer (weight / sqrt(C))."""

    def __init__(self, w_dim, spec: InputSpec):
        super().__init__()
        self.w_dim, self.spec = w_dim, spec
        c = spec.channels
        self.weight = nn.Parameter(torch.randn(c, c))
        self.affine = FullyConnectedLayer(w_dim, 4, bias_init=[1.0, 0.0, 0.0, 0.0])
        with torch.no_grad():
            self.affine.weight.zero_()
        # The *inverse* of the user's image transform (gen_images.py stores inv(make_transform)).
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", _random_freqs(c, spec.bandwidth))
        self.register_buffer("phases", torch.rand(c) - 0.5)

    def forward(self, w):
        spec, dtype = self.spec, self.weight.dtype
        t = self.affine(w.to(dtype))                                    # (cos, sin, tx, ty), unnormalised
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        n = w.shape[0]
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rot = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(n, 3, 3)
        shift = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(n, 3, 3)
        m = rot @ shift @ self.transform.to(dtype)                      # maps image coords to feature coords
        # sin(2 pi (f . (A p + b) + phase)) = sin(2 pi ((A^T f) . p + f . b + phase))
        freqs = self.freqs.to(dtype) @ m[:, :2, :2]                      # [N, C, 2]: rows f^T A
        phases = self.phases.to(dtype) + (self.freqs.to(dtype) @ m[:, :2, 2:]).squeeze(2)   # [N, C]
        nyquist = spec.sampling_rate / 2
        amp = (1 - (freqs.norm(dim=2) - spec.bandwidth) / (nyquist - spec.bandwidth)).clamp(0, 1)
        # Sample positions: pixel centres of a size^2 grid spaced 1/sampling_rate, centred on 0.
        pos = (torch.arange(spec.size, dtype=dtype) + 0.5 - spec.size / 2) / spec.sampling_rate
        px, py = pos[None, None, None, :], pos[None, None, :, None]         # x along width, y along height
        arg = px * freqs[:, :, 0, None, None] + py * freqs[:, :, 1, None, None] + phases[:, :, None, None]
        feats = torch.sin(2 * math.pi * arg) * amp[:, :, None, None]
        mix = self.weight / math.sqrt(spec.channels)
        return torch.einsum("oc,nchw->nohw", mix, feats)


class SynthesisLayer(nn.Module):
    """Modulated conv (demodulated except ToRGB, input gain 1/sqrt(magnitude_ema)), then the
    alias-free nonlinearity: upsample, leaky ReLU at the temporary rate, low-pass, downsample."""

    def __init__(self, w_dim, spec: LayerSpec, cfg: SG3Config):
        super().__init__()
        self.w_dim, self.spec, self.conv_clamp = w_dim, spec, cfg.conv_clamp
        self.magnitude_ema_beta = cfg.magnitude_ema_beta
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1.0)
        k = spec.conv_kernel
        self.weight = nn.Parameter(torch.randn(spec.out_channels, spec.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(
            spec.up_taps, spec.in_cutoff, 2 * spec.in_half_width, spec.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            spec.down_taps, spec.out_cutoff, 2 * spec.out_half_width, spec.tmp_sampling_rate, radial=spec.down_radial))

    def forward(self, x, w):
        s = self.spec
        styles = self.affine(w.to(self.weight.dtype))
        if s.is_torgb:      # ToRGB: equalised-lr gain on the styles, no demodulation
            styles = styles / math.sqrt(s.in_channels * s.conv_kernel ** 2)
        x = modulated_conv2d(x, self.weight, styles, demodulate=not s.is_torgb,
                             input_gain=self.magnitude_ema.rsqrt())
        x = filtered_lrelu(x, self.bias, self.up_filter, self.down_filter, s.up_factor, s.down_factor, s.padding,
                           gain=1.0 if s.is_torgb else SQRT2, slope=1.0 if s.is_torgb else 0.2,
                           clamp=self.conv_clamp)
        assert x.shape[1:] == (s.out_channels, s.out_size, s.out_size), (s.name, x.shape)
        return x


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image: input(ws[0]), then L0 .. L{num_layers} (ToRGB), * output_scale."""

    def __init__(self, cfg: SG3Config):
        super().__init__()
        self.cfg = cfg
        self.w_dim, self.num_ws = cfg.w_dim, cfg.num_ws
        inp, layers = schedule(cfg)
        self.input = SynthesisInput(cfg.w_dim, inp)
        self.layer_names = [spec.name for spec in layers]
        for spec in layers:
            setattr(self, spec.name, SynthesisLayer(cfg.w_dim, spec, cfg))

    def forward(self, ws):
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"expected ws [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        x = self.input(ws[:, 0])
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x, ws[:, i + 1])
        return x * self.cfg.output_scale


class Generator(nn.Module):
    """StyleGAN3 generator: `G(z, psi, cutoff, c=None)`, `G.mapping(z, ...)`, `G.synthesis(ws)`.

    State-dict prefixes are `synthesis.` then `mapping.` as in NVlabs.
    """

    def __init__(self, cfg: SG3Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = cfg.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.c_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers,
                                      cfg.mapping_lr, cfg.w_avg_beta)

    def forward(self, z, truncation_psi=1, truncation_cutoff=None, *, c=None):
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff, c=c))

    def randomize_(self, seed):
        """Non-trivial values for every term: random weights and biases, magnitude_ema in
        [0.3, 3], non-zero input affine weights and w_avg, fresh frequencies / phases.
        Filters and the user transform are left alone."""
        gen = torch.Generator().manual_seed(int(seed))

        def rn(t, scale=1.0, offset=0.0):
            return torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype) * scale + offset

        with torch.no_grad():
            mp = self.mapping
            for fc in mp.children():
                g = fc.lr_multiplier
                fc.weight.copy_(rn(fc.weight, 1 / g))
                fc.bias.copy_(rn(fc.bias, 0.3 / g))
            mp.w_avg.copy_(rn(mp.w_avg, 0.5))
            inp = self.synthesis.input
            inp.weight.copy_(rn(inp.weight))
            inp.affine.weight.copy_(rn(inp.affine.weight, 0.3))
            inp.affine.bias.copy_(rn(inp.affine.bias, 0.1) + torch.tensor([1.0, 0.0, 0.0, 0.0]))
            inp.freqs.copy_(_random_freqs(inp.spec.channels, inp.spec.bandwidth, gen))
            inp.phases.copy_(torch.rand(inp.phases.shape, generator=gen) - 0.5)
            for name in self.synthesis.layer_names:
                layer = getattr(self.synthesis, name)
                layer.weight.copy_(rn(layer.weight))
                layer.bias.copy_(rn(layer.bias, 0.3))
                layer.affine.weight.copy_(rn(layer.affine.weight))
                layer.affine.bias.copy_(rn(layer.affine.bias, 0.3, 1.0))
                layer.magnitude_ema.fill_(0.3 + 2.7 * torch.rand([], generator=gen).item())
        return self


def make_generator(cfg="t", img_resolution=16, seed=0, **overrides) -> Generator:
    """A randomized reference generator: `config(cfg, img_resolution, **overrides)`, eval mode."""
    return Generator(config(cfg, img_resolution, **overrides)).randomize_(seed).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# User transform (gen_images.py)


def make_transform(translate=(0.0, 0.0), angle=0.0) -> np.ndarray:
    """3x3 float64 image transform as gen_images.py builds it: rotation by `angle` degrees
    ([[c, s, tx], [-s, c, ty], [0, 0, 1]]) and translation (in units of the image size)."""
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]])


def set_user_transform_(G: Generator, translate=(0.0, 0.0), angle=0.0) -> Generator:
    """As gen_images.py: synthesis.input.transform = inv(make_transform(translate, angle))."""
    m = np.linalg.inv(make_transform(translate, angle))
    with torch.no_grad():
        G.synthesis.input.transform.copy_(torch.from_numpy(m))
    return G
