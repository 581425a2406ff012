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
    w_avg_beta: float = 0.995
    kernel_size: int = 3                 # of the non-upsampling convs of blocks 8..res
    conv_clamp: float | None = None
    img_channels: int = 3

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
    g = GeneratorConfig.from_dict(doc.pop("generator")) if "generator" in doc else None
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


def generator_macs(cfg: GeneratorConfig) -> int:
    """Multiply-accumulates per generated image.

    Counts mapping, affine and convolution layers; an upsampling conv counts as the
    transposed convolution it is (k*k*C_in*C_out per input pixel). This is the convention of
    the StyleKD/CAGAN papers: 45.1 G for the 256px config-f teacher, 4.1 G for the
    70%-pruned student, 74.3 G at 1024px.
    """
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
