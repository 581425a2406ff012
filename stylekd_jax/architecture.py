"""Architecture descriptions of StyleGAN2 generators and discriminators.

A converted checkpoint stores these as JSON (`architecture.json`), so a user can read what
the network is and the code can rebuild it. The generator's synthesis channels are a
per-layer list in the StyleKD/CAGAN `generator_net_shape` convention, which covers both the
NVlabs teacher (channel_base / channel_max) and pruned students with uneven widths:

    channels[0]      channels of the learned 4x4 constant
    channels[i + 1]  output channels of conv layer i, where layer 0 is b4.conv1 and
                     layers 2k - 1, 2k are conv0 (upsampling) and conv1 of block 4 * 2**k.

Its length equals num_ws = 2 * log2(resolution) - 2.
"""

import dataclasses
import json
import math
import re
from typing import Any, Sequence

import numpy as np


def _check_resolution(resolution: int) -> int:
    log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
    if resolution < 4 or 2 ** log2 != resolution:
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    return log2


def nvlabs_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """Channels per resolution, `min(channel_base // r, channel_max)`, for r = 4 .. resolution."""
    log2 = _check_resolution(resolution)
    return {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, log2 + 1)}


def rosinality_channels(resolution: int, channel_multiplier: int = 2) -> dict[int, int]:
    """Channels per resolution of rosinality/StyleKD/CAGAN networks."""
    log2 = _check_resolution(resolution)
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {2 ** i: table[2 ** i] * (channel_multiplier if 2 ** i >= 64 else 1)
            for i in range(2, log2 + 1)}


def layer_channels(per_resolution: dict[int, int]) -> tuple[int, ...]:
    """Per-layer generator list from channels per resolution: [C4, C4, C8, C8, ...]."""
    return tuple(per_resolution[r] for r in sorted(per_resolution) for _ in range(2))


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """A StyleGAN2 generator (skip architecture): mapping network + synthesis network."""

    resolution: int
    channels: tuple[int, ...]            # per-layer list, see the module docstring
    z_dim: int = 512
    w_dim: int = 512
    mapping_features: tuple[int, ...] = (512,) * 8   # output width of each mapping layer
    mapping_lr_multiplier: float = 0.01
    # False: no 2nd-moment normalisation of z (the official StyleKD `--mlp_cfg` mapping of
    # Table 2's two-stage students is plain EqualLinear layers, lr x1, no PixelNorm).
    mapping_normalize_z: bool = True
    w_avg_beta: float = 0.995
    kernel_size: int = 3                 # of the non-upsampling convs of blocks 8..res
    conv_clamp: float | None = None
    img_channels: int = 3

    family = "stylegan2"

    def __post_init__(self):
        log2 = _check_resolution(self.resolution)
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "mapping_features", tuple(int(c) for c in self.mapping_features))
        if len(self.channels) != 2 * log2 - 2:
            raise ValueError(
                f"a {self.resolution}px generator needs {2 * log2 - 2} per-layer channels "
                f"(const + one per conv layer), got {len(self.channels)}: {list(self.channels)}")
        if min(self.channels) < 1:
            raise ValueError(f"channels must be positive, got {list(self.channels)}")
        if not self.mapping_features or self.mapping_features[-1] != self.w_dim:
            raise ValueError(f"the last mapping layer must output w_dim={self.w_dim}, "
                             f"got mapping_features={list(self.mapping_features)}")
        if self.kernel_size not in (1, 3):
            raise ValueError(f"kernel_size must be 1 or 3, got {self.kernel_size}")

    @property
    def num_ws(self) -> int:
        return len(self.channels)

    @property
    def block_resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def feature_map_unit(self) -> str:
        """What `loss.ld_layers` indexes: one feature map per block (0 = 4x4)."""
        return "block"

    @property
    def num_feature_maps(self) -> int:
        return len(self.block_resolutions)

    @classmethod
    def teacher(cls, resolution: int, channel_base: int = 32768, channel_max: int = 512,
                **kwargs) -> "GeneratorConfig":
        """The NVlabs generator for `channel_base`/`channel_max` (32768/512 is config-f)."""
        return cls(resolution=resolution,
                   channels=layer_channels(nvlabs_channels(resolution, channel_base, channel_max)),
                   **kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        d["mapping_features"] = list(self.mapping_features)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        return cls(**_known_fields(cls, d))


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """A StyleGAN2 residual discriminator."""

    resolution: int
    channels: tuple[tuple[int, int], ...]   # (resolution, channels) for 4 .. resolution
    conv_clamp: float | None = None
    mbstd_group_size: int | None = 4      # None: the whole batch is one group
    mbstd_num_channels: int = 1
    img_channels: int = 3

    def __post_init__(self):
        log2 = _check_resolution(self.resolution)
        channels = tuple(sorted((int(r), int(c)) for r, c in dict(self.channels).items()))
        object.__setattr__(self, "channels", channels)
        expected = [2 ** i for i in range(2, log2 + 1)]
        if [r for r, _ in channels] != expected:
            raise ValueError(f"discriminator channels must list resolutions {expected}, "
                             f"got {[r for r, _ in channels]}")

    @property
    def channels_dict(self) -> dict[int, int]:
        return dict(self.channels)

    @classmethod
    def teacher(cls, resolution: int, channel_base: int = 32768, channel_max: int = 512,
                **kwargs) -> "DiscriminatorConfig":
        return cls(resolution=resolution,
                   channels=tuple(nvlabs_channels(resolution, channel_base, channel_max).items()),
                   **kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = {str(r): c for r, c in self.channels}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiscriminatorConfig":
        d = _known_fields(cls, d)
        d["channels"] = tuple((int(r), int(c)) for r, c in d["channels"].items())
        return cls(**d)


# ---------------------------------------------------------------------------------------
# StyleGAN3 (alias-free) generators


@dataclasses.dataclass(frozen=True)
class SG3Layer:
    """Geometry of one StyleGAN3 synthesis layer, derived from the network's hyperparameters."""

    name: str                 # NVlabs name, L{i}_{size}_{channels}
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    is_torgb: bool
    is_critically_sampled: bool
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int              # 1: no up-filter
    down_taps: int            # 1: no down-filter
    down_radial: bool         # radially symmetric (2-D, non-separable) down-filter
    padding: tuple[int, int, int, int]   # x0, x1, y0, y1 of the upsampled signal


@dataclasses.dataclass(frozen=True)
class StyleGAN3Config:
    """A StyleGAN3 generator (NVlabs `networks_stylegan3.Generator`), configs T and R.

    `channels[i]` is the output width of layer i (i = 0 is the Fourier-feature input, whose
    width equals that of layer 0); the last layer (ToRGB) outputs `img_channels`. Everything
    else (cutoffs, stopbands, sampling rates, sizes, filter lengths, padding) follows from the
    hyperparameters as in the paper's Appendix F: cutoffs and minimum stopbands grow
    geometrically from `first_cutoff` / `first_stopband` to `resolution / 2` over the first
    `num_layers - num_critical` layers; the sampling rate is the smallest power of two above
    twice the stopband (capped at the resolution); every layer but the last two works on
    `sampling_rate + 2 * margin_size` pixels. Config R is `conv_kernel=1,
    use_radial_filters=True` with twice the channels (channel_base 65536, channel_max 1024).
    """

    resolution: int
    channels: tuple[int, ...]            # num_layers entries (see above)
    z_dim: int = 512
    w_dim: int = 512
    mapping_features: tuple[int, ...] = (512, 512)
    mapping_lr_multiplier: float = 0.01
    mapping_normalize_z: bool = True     # see GeneratorConfig
    w_avg_beta: float = 0.998
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999
    img_channels: int = 3

    family = "stylegan3"

    def __post_init__(self):
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "mapping_features", tuple(int(c) for c in self.mapping_features))
        if len(self.channels) != self.num_layers:
            raise ValueError(f"a StyleGAN3 generator with num_layers={self.num_layers} needs "
                             f"{self.num_layers} per-layer channels, got {len(self.channels)}: "
                             f"{list(self.channels)}")
        if min(self.channels) < 1:
            raise ValueError(f"channels must be positive, got {list(self.channels)}")
        if not self.mapping_features or self.mapping_features[-1] != self.w_dim:
            raise ValueError(f"the last mapping layer must output w_dim={self.w_dim}, "
                             f"got mapping_features={list(self.mapping_features)}")
        if self.conv_kernel not in (1, 3):
            raise ValueError(f"conv_kernel must be 1 (config R) or 3 (config T), got {self.conv_kernel}")
        if not 0 < self.num_critical < self.num_layers:
            raise ValueError(f"num_critical must be in [1, num_layers), got {self.num_critical}")

    @property
    def num_ws(self) -> int:
        """One w for the input's affine transform, one per layer, one for ToRGB."""
        return self.num_layers + 2

    @property
    def feature_map_unit(self) -> str:
        """What `loss.ld_layers` indexes: one feature map per layer but ToRGB (0 = L0)."""
        return "layer"

    @property
    def num_feature_maps(self) -> int:
        return self.num_layers

    @property
    def config_name(self) -> str:
        return "R" if self.use_radial_filters else "T"

    @property
    def kernel_size(self) -> int:
        """The convolution kernel of every layer but ToRGB (StyleGAN2's name for it)."""
        return self.conv_kernel

    @classmethod
    def teacher(cls, resolution: int, config: str = "t", channel_base: int | None = None,
                channel_max: int | None = None, **kwargs) -> "StyleGAN3Config":
        """The NVlabs StyleGAN3-T or -R generator (`--cfg stylegan3-t|r`, default --cbase/--cmax)."""
        config = config.lower().removeprefix("stylegan3-")
        if config not in ("t", "r"):
            raise ValueError(f"config must be 't' or 'r', got {config!r}")
        radial = config == "r"
        channel_base = channel_base or (65536 if radial else 32768)
        channel_max = channel_max or (1024 if radial else 512)
        kwargs.setdefault("conv_kernel", 1 if radial else 3)
        kwargs.setdefault("use_radial_filters", radial)
        probe = cls(resolution=resolution, channels=(1,) * kwargs.get("num_layers", 14), **kwargs)
        cutoffs = probe._schedule()[0]
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))[:-1]
        return dataclasses.replace(probe, channels=tuple(int(c) for c in channels))

    def _schedule(self):
        """Per layer (input first, ToRGB last): cutoffs, half widths, sampling rates, sizes."""
        last_cutoff = self.resolution / 2
        last_stopband = last_cutoff * self.last_stopband_rel
        exponents = np.minimum(np.arange(self.num_layers + 1) / (self.num_layers - self.num_critical), 1)
        cutoffs = self.first_cutoff * (last_cutoff / self.first_cutoff) ** exponents
        stopbands = self.first_stopband * (last_stopband / self.first_stopband) ** exponents
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.resolution))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + self.margin_size * 2
        sizes[-2:] = self.resolution
        return cutoffs, half_widths, rates, sizes

    def layers(self) -> list[SG3Layer]:
        """The num_layers + 1 synthesis layers, L0 first, ToRGB last."""
        cutoffs, half_widths, rates, sizes = self._schedule()
        channels = list(self.channels) + [self.img_channels]
        out = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            is_torgb = idx == self.num_layers
            critical = idx >= self.num_layers - self.num_critical
            kernel = 1 if is_torgb else self.conv_kernel
            in_rate, out_rate = int(rates[prev]), int(rates[idx])
            tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else self.lrelu_upsampling)
            up, down = tmp_rate // in_rate, tmp_rate // out_rate
            up_taps = self.filter_size * up if up > 1 and not is_torgb else 1
            down_taps = self.filter_size * down if down > 1 and not is_torgb else 1
            in_size, out_size = int(sizes[prev]), int(sizes[idx])
            # Padding that gives out_size after both filters, with the sample locations of the
            # symmetric interpretation (paper, Appendix C.3).
            pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
            pad_lo = (pad_total + up) // 2
            pad_hi = pad_total - pad_lo
            out.append(SG3Layer(
                name=f"L{idx}_{out_size}_{channels[idx]}", in_channels=channels[prev],
                out_channels=channels[idx], in_size=in_size, out_size=out_size,
                in_sampling_rate=in_rate, out_sampling_rate=out_rate,
                in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
                in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
                is_torgb=is_torgb, is_critically_sampled=critical, conv_kernel=kernel,
                up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
                down_radial=self.use_radial_filters and not critical,
                padding=(pad_lo, pad_hi, pad_lo, pad_hi)))
        return out

    def input_geometry(self) -> tuple[int, float, float]:
        """(size, sampling_rate, bandwidth) of the Fourier-feature input (= layer 0's input)."""
        cutoffs, _, rates, sizes = self._schedule()
        return int(sizes[0]), float(rates[0]), float(cutoffs[0])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        d["mapping_features"] = list(self.mapping_features)
        return {"family": self.family, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StyleGAN3Config":
        d = {k: v for k, v in d.items() if k != "family"}
        return cls(**_known_fields(cls, d))


def generator_config_from_dict(d: dict[str, Any]):
    """GeneratorConfig or StyleGAN3Config, by the dict's 'family' (StyleGAN2 when absent)."""
    family = d.get("family", "stylegan2")
    if family == "stylegan3":
        return StyleGAN3Config.from_dict(d)
    if family != "stylegan2":
        raise ValueError(f"unknown generator family {family!r}; expected stylegan2 or stylegan3")
    return GeneratorConfig.from_dict({k: v for k, v in d.items() if k != "family"})


def _known_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    return dict(d)


def count_params(tree) -> int:
    """Number of scalars in a pytree of arrays."""
    import jax
    return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def dumps(generator: GeneratorConfig | None, discriminator: DiscriminatorConfig | None,
          **extra: Any) -> str:
    """The human-readable `architecture.json` text."""
    doc = {"format": "stylekd_jax/v1"}
    if generator is not None:
        doc["generator"] = generator.to_dict()
    if discriminator is not None:
        doc["discriminator"] = discriminator.to_dict()
    doc.update(extra)
    text = json.dumps(doc, indent=2)
    # Keep number lists (channel lists) on one line so the file reads like the architecture.
    return re.sub(r"\[\s+([-\d.,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(m.group(1).split(",")).replace("  ", "").replace("\n", "") + "]",
                  text)


def loads(text: str) -> tuple[GeneratorConfig | None, DiscriminatorConfig | None, dict[str, Any]]:
    doc = json.loads(text)
    g = generator_config_from_dict(doc.pop("generator")) if "generator" in doc else None
    d = DiscriminatorConfig.from_dict(doc.pop("discriminator")) if "discriminator" in doc else None
    return g, d, doc


def sequence_str(values: Sequence[int]) -> str:
    """Compact '[154]*10 + [77, 77, 39, 39]'-style rendering of a channel list."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return " + ".join(f"[{v}]*{n}" if n > 1 else f"[{v}]" for v, n in runs)


def generator_macs(cfg) -> int:
    """Multiply-accumulates per generated image (StyleGAN2 or StyleGAN3).

    Counts mapping, affine and convolution layers; an upsampling conv counts as the
    transposed convolution it is (k*k*C_in*C_out per input pixel). This is the convention of
    the StyleKD/CAGAN papers: 45.1 G for the 256px config-f teacher, 4.1 G for the
    70%-pruned student, 74.3 G at 1024px.
    """
    if isinstance(cfg, StyleGAN3Config):
        return stylegan3_macs(cfg)
    widths = (cfg.z_dim,) + cfg.mapping_features
    total = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    c = cfg.channels
    for k, res in enumerate(cfg.block_resolutions):
        if k == 0:
            layers = [(c[0], c[1], 3, res * res)]
        else:
            layers = [(c[2 * k - 1], c[2 * k], 3, (res // 2) ** 2),            # transposed conv
                      (c[2 * k], c[2 * k + 1], cfg.kernel_size, res * res)]
        for c_in, c_out, ks, pixels in layers:
            total += cfg.w_dim * c_in + ks * ks * c_in * c_out * pixels
        c_last = layers[-1][1]
        total += cfg.w_dim * c_last + c_last * cfg.img_channels * res * res  # torgb
    return total


def stylegan3_macs(cfg: StyleGAN3Config) -> int:
    """Multiply-accumulates per image of a StyleGAN3 generator, in the convention above.

    Mapping layers, every affine, the input's Fourier-feature mixing (size^2 * C^2) and each
    layer's convolution over its padded output (`(in_size + k - 1)^2` pixels, k^2 * C_in *
    C_out each). Like the StyleGAN2 count (which leaves out the [1,3,3,1] blurs), the
    filtered leaky ReLU's up- and down-filters are not counted. Computed polyphase they add
    3% to the 256 px T network and 32% to R, whose radial (2-D) down-filters have 144 taps.
    """
    widths = (cfg.z_dim,) + cfg.mapping_features
    total = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    size, _, _ = cfg.input_geometry()
    total += cfg.w_dim * 4 + size * size * cfg.channels[0] ** 2
    for layer in cfg.layers():
        k = layer.conv_kernel
        total += cfg.w_dim * layer.in_channels
        total += (layer.in_size + k - 1) ** 2 * k * k * layer.in_channels * layer.out_channels
    return total


def discriminator_macs(cfg: DiscriminatorConfig) -> int:
    """Multiply-accumulates per image of the residual discriminator (downsampling convs count
    at their stride-2 output resolution)."""
    ch = cfg.channels_dict
    total = 0
    res = cfg.resolution
    while res > 4:
        c, c_next, half = ch[res], ch[res // 2], (res // 2) ** 2
        if res == cfg.resolution:
            total += cfg.img_channels * c * res * res               # fromrgb
        total += 9 * c * c * res * res + 9 * c * c_next * half + c * c_next * half
        res //= 2
    c4 = ch[4]
    return total + 9 * (c4 + cfg.mbstd_num_channels) * c4 * 16 + 16 * c4 * c4 + c4
