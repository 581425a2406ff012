"""Flax StyleGAN3 (alias-free) generator, configs T and R, NHWC, with NVlabs parameter names.

    z -> mapping (2 layers) -> ws [N, num_ws, w_dim]
    ws[:, 0]        -> SynthesisInput: Fourier features on a (size x size) grid, rotated and
                       translated by an affine of w and the user transform
    ws[:, 1 + i]    -> layer L{i}: modulated conv (input gain 1/sqrt(magnitude_ema)),
                       filtered leaky ReLU (bias, up-filter, lrelu, clamp, down-filter)
    ws[:, -1]       -> ToRGB (the last layer: 1x1, no demodulation, linear), x output_scale

Layer modules are named `L0 .. L{num_layers}` (NVlabs: `L{i}_{size}_{channels}`; the converter
renames), so a student with other channel counts has the teacher's names. The mapping network
is StyleGAN2's, with 2 layers.

Variables: 'params' (trained) and 'buffers' (not trained): `mapping.w_avg`; the input's
`transform` (the user's inverse transform, identity by default), `freqs`, `phases`; every
layer's `magnitude_ema` (a running mean of its input's second moment, updated in training)
and its `up_filter` / `down_filter` (designed at init, read from the file on conversion).

The modulated convolution is computed in its non-fused form, as the StyleGAN2 one:
`conv(x * s * input_gain, W) * d`, with NVlabs' pre-normalisation of W (per output channel)
and of s. NVlabs normalises s by its mean square over the whole batch; here it is per sample,
so an image never depends on its batch. Demodulation cancels that scale exactly (up to its
1e-8 epsilon), so both give the same images; ToRGB, which is not demodulated, has no
pre-normalisation in either.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.architecture import SG3Layer, StyleGAN3Config
from stylekd_jax.networks.layers import FullyConnected, _constant, _normal, conv2d
from stylekd_jax.networks.mapping import MappingNetwork
from stylekd_jax.ops.filtered_lrelu import filtered_lrelu, lowpass_filter


def _mean_square(x: jax.Array, axes) -> jax.Array:
    return jnp.mean(jnp.square(x.astype(jnp.float32)), axis=axes, keepdims=True)


class SynthesisInput(nn.Module):
    """Fourier features [N, size, size, channels] for w [N, w_dim]."""

    channels: int
    size: int
    sampling_rate: float
    bandwidth: float

    @nn.compact
    def __call__(self, w: jax.Array) -> jax.Array:
        c = self.channels

        def init_freqs():
            # Uniform on a disc of radius `bandwidth` (NVlabs' random frequencies).
            key = self.make_rng("params")
            freqs = jax.random.normal(key, (c, 2))
            radii = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1, keepdims=True))
            return freqs / (radii * jnp.exp(jnp.square(radii)) ** 0.25) * self.bandwidth

        weight = self.param("weight", _normal(), (c, c))           # [in, out]
        transform = self.variable("buffers", "transform", lambda: jnp.eye(3, dtype=jnp.float32))
        freqs = self.variable("buffers", "freqs", init_freqs)
        phases = self.variable("buffers", "phases",
                               lambda: jax.random.uniform(self.make_rng("params"), (c,)) - 0.5)
        # The affine starts at (cos, sin, tx, ty) = (1, 0, 0, 0): no rotation, no translation.
        t = FullyConnected(4, name="affine", weight_init=0.0,
                           bias_init=(1.0, 0.0, 0.0, 0.0))(w.astype(jnp.float32))
        t = t / jnp.linalg.norm(t[:, :2], axis=1, keepdims=True)
        cos, sin, tx, ty = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
        one, zero = jnp.ones_like(cos), jnp.zeros_like(cos)
        rotate = jnp.stack([jnp.stack([cos, -sin, zero], -1), jnp.stack([sin, cos, zero], -1),
                            jnp.stack([zero, zero, one], -1)], axis=1)          # [N, 3, 3]
        translate = jnp.stack([jnp.stack([one, zero, -tx], -1), jnp.stack([zero, one, -ty], -1),
                               jnp.stack([zero, zero, one], -1)], axis=1)
        # Rotate the image, then translate it, then apply the user's transform (all inverse maps).
        m = rotate @ translate @ transform.value[None]
        f = freqs.value[None]                                                  # [1, C, 2]
        ph = phases.value[None] + (f @ m[:, :2, 2:])[..., 0]                   # [N, C]
        f = f @ m[:, :2, :2]                                                   # [N, C, 2]
        # Fade out frequencies that the user transform pushed beyond the band.
        amplitudes = jnp.clip(1 - (jnp.linalg.norm(f, axis=2) - self.bandwidth)
                              / (self.sampling_rate / 2 - self.bandwidth), 0, 1)
        # Pixel centres of the grid, in units of the sampling rate, centred on the image.
        grid = (jnp.arange(self.size, dtype=jnp.float32) + 0.5 - self.size / 2) / self.sampling_rate
        x = (grid[None, None, :, None] * f[:, None, None, :, 0]
             + grid[None, :, None, None] * f[:, None, None, :, 1] + ph[:, None, None, :])
        x = jnp.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        return x @ (weight / math.sqrt(c))


class SynthesisLayer(nn.Module):
    """Layer L{i}: modulated conv + filtered leaky ReLU at 2x (or 4x) the output rate."""

    layer: SG3Layer
    w_dim: int
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, update_emas: bool = False) -> jax.Array:
        L = self.layer
        k, c_in = L.conv_kernel, L.in_channels
        magnitude_ema = self.variable("buffers", "magnitude_ema", lambda: jnp.ones((), jnp.float32))
        # Layers without a filter (ToRGB) have no filter buffer, as in NVlabs' state dicts.
        up_filter = self.variable("buffers", "up_filter", _design, L, "up") if L.up_taps > 1 else None
        down_filter = (self.variable("buffers", "down_filter", _design, L, "down")
                       if L.down_taps > 1 else None)
        styles = FullyConnected(c_in, bias_init=1.0, name="affine")(w.astype(jnp.float32))
        weight = self.param("weight", _normal(), (k, k, c_in, L.out_channels))
        bias = self.param("bias", _constant(0.0), (L.out_channels,))

        if update_emas:
            current = jnp.mean(jnp.square(jax.lax.stop_gradient(x).astype(jnp.float32)))
            magnitude_ema.value = current + self.magnitude_ema_beta * (magnitude_ema.value - current)
        input_gain = jax.lax.rsqrt(magnitude_ema.value)

        if L.is_torgb:
            styles = styles * (1.0 / math.sqrt(c_in * k * k))
        else:
            weight = weight * jax.lax.rsqrt(_mean_square(weight, (0, 1, 2)))
            styles = styles * jax.lax.rsqrt(_mean_square(styles, (1,)))
        x = x.astype(self.dtype) * (styles * input_gain)[:, None, None, :].astype(self.dtype)
        # "Full" convolution (padding k - 1). Padded explicitly: XLA:CPU's gradient of a conv
        # whose padding exceeds k // 2 is ~15x slower than that of a VALID conv.
        x = jnp.pad(x, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
        x = conv2d(x, weight)
        if not L.is_torgb:
            dcoefs = jax.lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1)) + 1e-8)
            x = x * dcoefs[:, None, None, :].astype(x.dtype)
        gain, slope = (1.0, 1.0) if L.is_torgb else (math.sqrt(2), 0.2)
        x = filtered_lrelu(x.astype(jnp.float32), up_filter and up_filter.value,
                           down_filter and down_filter.value, bias,
                           up=L.up_factor, down=L.down_factor, padding=L.padding, gain=gain,
                           slope=slope, clamp=self.conv_clamp)
        return x


def _design(L: SG3Layer, which: str):
    """The layer's up- or down-filter as NVlabs designs it."""
    tmp_rate = L.in_sampling_rate * L.up_factor      # the rate at which the lrelu runs
    if which == "up":
        f = lowpass_filter(L.up_taps, L.in_cutoff, L.in_half_width * 2, tmp_rate)
    else:
        f = lowpass_filter(L.down_taps, L.out_cutoff, L.out_half_width * 2, tmp_rate,
                           radial=L.down_radial)
    return jnp.asarray(f)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, H, W, img_channels] (float32, unclipped).

    `remat`: each layer's activations are recomputed in the backward pass instead of kept
    (jax.checkpoint per layer): less memory for a training step, about a third more FLOPs.
    """

    cfg: StyleGAN3Config
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, ws: jax.Array, noise_mode: str = "const", return_features: bool = False,
                 update_emas: bool = False):
        """`noise_mode` is accepted for StyleGAN2 compatibility: StyleGAN3 has no noise.

        With `return_features`, returns (image, aux): aux['features'] holds the output of
        every layer L0 .. L{num_layers - 1} (ToRGB excluded), aux['images'] the final image.
        """
        cfg = self.cfg
        if ws.shape[1] != cfg.num_ws:
            raise ValueError(f"expected ws with {cfg.num_ws} layers, got shape {ws.shape}")
        size, rate, bandwidth = cfg.input_geometry()
        ws = ws.astype(jnp.float32)
        x = SynthesisInput(cfg.channels[0], size, rate, bandwidth, name="input")(ws[:, 0])
        layer_module = nn.remat(SynthesisLayer, static_argnums=(3,)) if self.remat else SynthesisLayer
        features = []
        for i, layer in enumerate(cfg.layers()):
            x = layer_module(layer, cfg.w_dim, conv_clamp=cfg.conv_clamp,
                             magnitude_ema_beta=cfg.magnitude_ema_beta, dtype=self.dtype,
                             name=f"L{i}")(x, ws[:, i + 1], update_emas)
            if not layer.is_torgb:
                features.append(x)
        img = x * cfg.output_scale if cfg.output_scale != 1 else x
        return (img, {"features": features, "images": [img]}) if return_features else img


class Generator(nn.Module):
    """StyleGAN3 generator with submodules `mapping` and `synthesis`, the interface of the
    StyleGAN2 `Generator` (`map`, `synthesize`, `__call__`)."""

    cfg: StyleGAN3Config
    dtype: Any = jnp.float32
    remat: bool = False   # recompute each synthesis layer's activations in the backward pass

    def setup(self):
        cfg = self.cfg
        self.mapping = MappingNetwork(cfg.mapping_features, cfg.num_ws,
                                      lr_multiplier=cfg.mapping_lr_multiplier,
                                      normalize_z=cfg.mapping_normalize_z,
                                      w_avg_beta=cfg.w_avg_beta)
        self.synthesis = SynthesisNetwork(cfg, dtype=self.dtype, remat=self.remat)

    def map(self, z: jax.Array, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
            update_w_avg: bool = False) -> jax.Array:
        return self.mapping(z, truncation_psi, truncation_cutoff, update_w_avg)

    def synthesize(self, ws: jax.Array, noise_mode: str = "const", return_features: bool = False,
                   update_emas: bool = False):
        return self.synthesis(ws, noise_mode, return_features, update_emas)

    def __call__(self, z: jax.Array, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, noise_mode: str = "const") -> jax.Array:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode)
