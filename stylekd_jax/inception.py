"""The FID Inception-v3 (pool3, 2048 features) in Flax, with both papers' input protocols.

Why: FID compares Inception pool3 statistics, and its value depends on the exact network and
preprocessing.  Both reference implementations use the TF "2015-12-05" Inception graph, not
torchvision's ImageNet model: pytorch-fid ported it as `fid_inception_v3()` (StyleKD's FID) and
NVlabs ship it as the TorchScript `inception-2015-12-05.pt` (StyleGAN2-ADA / StyleGAN3 FID).
This module is that graph, NHWC: torchvision's Inception-v3 layout, every conv = conv (no bias)
+ BatchNorm(eps=0.001, running statistics) + ReLU, average pools in the A / C / E blocks that
exclude the padding, and a 3x3 stride-1 *max* pool in the pool branch of the last block
(Mixed_7c), a quirk of the TF graph that pytorch-fid reproduces.  pool3 = the global average of
Mixed_7c.

No weights ship with any package and nothing may be downloaded at run time: convert a
user-supplied file once (`python tools/convert_torch_weights.py FILE OUTDIR`, torch-free) and
pass OUTDIR (or the file itself) to `convert.inception.load_params`.

The two protocols (`features(..., protocol=)`), which give different FIDs:
* 'stylekd' (pytorch-fid with `normalize_input=False`, as StyleKD / rosinality's fid.py call
  it): float images in [-1, 1] (uint8 is mapped by u / 127.5 - 1), bilinearly resized to 299 with
  half-pixel centres and no anti-aliasing (torch `F.interpolate(bilinear, align_corners=False)`).
* 'nvlabs': float images in [-1, 1] are quantised as NVlabs' metric code does,
  `clip(x * 127.5 + 128, 0, 255).astype(uint8)` (uint8 is used as is), then the TorchScript's
  own preprocessing: resize to 299 by `affine_grid` + `grid_sample(bilinear, padding 'border',
  align_corners=False)` with theta shifted so that output pixel i samples input position
  i * size / 299 (TF1 `resize_bilinear` without half-pixel centres, edges clamped), then
  (x - 128) / 128.  This follows the TorchScript code as publicly quoted (a `forward(img,
  return_features, use_fp16, no_output_bias)` that builds that theta); it was not checked
  against the real file here.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["InceptionV3FID", "features", "preprocess", "read_params_npz", "save_params",
           "InceptionWeightsNotFound", "FEATURE_DIM", "INPUT_SIZE", "PYTORCH_FID_FILE", "NVLABS_FILE"]

FEATURE_DIM = 2048
INPUT_SIZE = 299
MIN_SIZE = 75          # smallest input for which every stride-2 stage keeps >= 1 pixel
BN_EPS = 0.001
WEIGHTS_FILE = "inception.npz"   # inside a directory written by tools/convert_torch_weights.py

PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + PYTORCH_FID_FILE)
NVLABS_FILE = "inception-2015-12-05.pt"
NVLABS_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
              + NVLABS_FILE)
WHERE_TO_GET = (f"download pytorch-fid's {PYTORCH_FID_FILE} ({PYTORCH_FID_URL}) or NVlabs' "
                f"{NVLABS_FILE} ({NVLABS_URL}), then convert it once with "
                f"`python tools/convert_torch_weights.py FILE OUTDIR` and pass OUTDIR")


class InceptionWeightsNotFound(FileNotFoundError):
    """The Inception weights file or converted directory does not exist."""


# ---------------------------------------------------------------------------------------
# Network


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv(nn.Module):
    """conv (no bias) -> BatchNorm with running statistics (eps 0.001) -> ReLU.

    Params: kernel (HWIO), scale, bias, mean, var (torch: conv.weight, bn.weight, bn.bias,
    bn.running_mean, bn.running_var); all frozen, FID never trains them."""

    features: int
    kernel_size: int | Sequence[int]
    strides: int = 1
    padding: int | Sequence[int] = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kh, kw = _pair(self.kernel_size)
        ph, pw = _pair(self.padding)
        cin, cout = x.shape[-1], self.features
        zeros, ones = nn.initializers.zeros, nn.initializers.ones
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, cin, cout))
        scale = self.param("scale", ones, (cout,))
        bias = self.param("bias", zeros, (cout,))
        mean = self.param("mean", zeros, (cout,))
        var = self.param("var", ones, (cout,))
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), kernel.astype(self.dtype), (self.strides, self.strides),
            ((ph, ph), (pw, pw)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        mult = scale * jax.lax.rsqrt(var + BN_EPS)
        y = (y.astype(jnp.float32) - mean) * mult + bias
        return nn.relu(y).astype(self.dtype)


def _avg_pool_3x3(x):
    """3x3 stride-1 average over the valid pixels only (torch count_include_pad=False)."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d (pytorch-fid FIDInceptionA)."""

    pool_features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = lambda name, *a, **k: BasicConv(*a, dtype=self.dtype, name=name, **k)  # noqa: E731
        b1 = conv("branch1x1", 64, 1)(x)
        b5 = conv("branch5x5_2", 64, 5, padding=2)(conv("branch5x5_1", 48, 1)(x))
        d = conv("branch3x3dbl_1", 64, 1)(x)
        d = conv("branch3x3dbl_3", 96, 3, padding=1)(conv("branch3x3dbl_2", 96, 3, padding=1)(d))
        pool = conv("branch_pool", self.pool_features, 1)(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, d, pool], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction 35 -> 17)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = lambda name, *a, **k: BasicConv(*a, dtype=self.dtype, name=name, **k)  # noqa: E731
        b3 = conv("branch3x3", 384, 3, strides=2)(x)
        d = conv("branch3x3dbl_1", 64, 1)(x)
        d = conv("branch3x3dbl_3", 96, 3, strides=2)(conv("branch3x3dbl_2", 96, 3, padding=1)(d))
        return jnp.concatenate([b3, d, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """Mixed_6b..6e (pytorch-fid FIDInceptionC; factorised 7x7)."""

    channels_7x7: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = lambda name, *a, **k: BasicConv(*a, dtype=self.dtype, name=name, **k)  # noqa: E731
        c7 = self.channels_7x7
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        b1 = conv("branch1x1", 192, 1)(x)
        b7 = conv("branch7x7_1", c7, 1)(x)
        b7 = conv("branch7x7_3", 192, **col)(conv("branch7x7_2", c7, **row)(b7))
        d = conv("branch7x7dbl_1", c7, 1)(x)
        d = conv("branch7x7dbl_2", c7, **col)(d)
        d = conv("branch7x7dbl_3", c7, **row)(d)
        d = conv("branch7x7dbl_4", c7, **col)(d)
        d = conv("branch7x7dbl_5", 192, **row)(d)
        pool = conv("branch_pool", 192, 1)(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, d, pool], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction 17 -> 8)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = lambda name, *a, **k: BasicConv(*a, dtype=self.dtype, name=name, **k)  # noqa: E731
        b3 = conv("branch3x3_2", 320, 3, strides=2)(conv("branch3x3_1", 192, 1)(x))
        d = conv("branch7x7x3_1", 192, 1)(x)
        d = conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(d)
        d = conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(d)
        d = conv("branch7x7x3_4", 192, 3, strides=2)(d)
        return jnp.concatenate([b3, d, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b (avg pool, FIDInceptionE_1) and Mixed_7c (max pool, FIDInceptionE_2)."""

    max_pool: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = lambda name, *a, **k: BasicConv(*a, dtype=self.dtype, name=name, **k)  # noqa: E731
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        b1 = conv("branch1x1", 320, 1)(x)
        a = conv("branch3x3_1", 384, 1)(x)
        a = jnp.concatenate([conv("branch3x3_2a", 384, **row)(a),
                             conv("branch3x3_2b", 384, **col)(a)], axis=-1)
        d = conv("branch3x3dbl_2", 384, 3, padding=1)(conv("branch3x3dbl_1", 448, 1)(x))
        d = jnp.concatenate([conv("branch3x3dbl_3a", 384, **row)(d),
                             conv("branch3x3dbl_3b", 384, **col)(d)], axis=-1)
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        pool = conv("branch_pool", 192, 1)(pooled)
        return jnp.concatenate([b1, a, d, pool], axis=-1)


class InceptionV3FID(nn.Module):
    """pool3 features [N, 2048] (float32) of the FID Inception-v3.

    Input: NHWC float images ALREADY resized (299x299 is the real size; any size >= 75 runs) and
    scaled to [-1, 1], i.e. what pytorch-fid feeds its first conv after its own
    `2 * x - 1` on [0, 1] input.  Use `features()` for the full protocol.
    Params: pytorch-fid module names, e.g. params['Mixed_5b']['branch1x1']['kernel'].
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        if x.shape[1] < MIN_SIZE or x.shape[2] < MIN_SIZE:
            raise ValueError(f"Inception needs images of at least {MIN_SIZE}x{MIN_SIZE}, got "
                             f"{x.shape[1]}x{x.shape[2]} (resize to {INPUT_SIZE} first)")
        dt = self.dtype
        x = x.astype(dt)
        x = BasicConv(32, 3, strides=2, dtype=dt, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, 3, dtype=dt, name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, 3, padding=1, dtype=dt, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = BasicConv(80, 1, dtype=dt, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, 3, dtype=dt, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = InceptionA(32, dt, name="Mixed_5b")(x)
        x = InceptionA(64, dt, name="Mixed_5c")(x)
        x = InceptionA(64, dt, name="Mixed_5d")(x)
        x = InceptionB(dt, name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(c7, dt, name=name)(x)
        x = InceptionD(dt, name="Mixed_7a")(x)
        x = InceptionE(False, dt, name="Mixed_7b")(x)
        x = InceptionE(True, dt, name="Mixed_7c")(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def param_shapes(size: int = MIN_SIZE) -> dict:
    """The params tree as ShapeDtypeStructs (no computation)."""
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(InceptionV3FID().init, jax.random.PRNGKey(0), x)["params"]


# ---------------------------------------------------------------------------------------
# Preprocessing


def _resize_tf1_bilinear(x, size: int):
    """NVlabs' grid_sample resize: output pixel i samples input position i * in / size,
    bilinearly, positions clamped to the image (padding 'border'). x: NHWC float32."""

    def axis_weights(n_in):
        # Exact positions (float64, static). torch's float32 affine_grid arithmetic deviates from
        # them by up to ~3e-5 px at 256 px input, ~1e-4 px at 1024: invisible on real images.
        pos = np.clip(np.arange(size) * (n_in / size), 0, n_in - 1).astype(np.float32)
        lo = np.floor(pos).astype(np.int32)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    y0, y1, wy = axis_weights(x.shape[1])
    x0, x1, wx = axis_weights(x.shape[2])
    rows = (x[:, y0] * (1 - wy)[None, :, None, None] + x[:, y1] * wy[None, :, None, None])
    return rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]


def preprocess(images, protocol: str = "stylekd"):
    """NHWC images -> the network input [N, 299, 299, 3] in [-1, 1] (see the module docstring)."""
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected NHWC RGB images [N, H, W, 3], got shape {images.shape}")
    if protocol == "stylekd":
        if images.dtype == jnp.uint8:
            x = images.astype(jnp.float32) / 127.5 - 1
        else:
            x = images.astype(jnp.float32)
        if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
            x = jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), "linear",
                                 antialias=False)
        return x
    if protocol == "nvlabs":
        if images.dtype != jnp.uint8:
            images = jnp.clip(images.astype(jnp.float32) * 127.5 + 128, 0, 255).astype(jnp.uint8)
        x = _resize_tf1_bilinear(images.astype(jnp.float32), INPUT_SIZE)
        return (x - 128) / 128
    raise ValueError(f"unknown FID protocol {protocol!r}; use 'stylekd' or 'nvlabs'")


def _features(params, images, protocol):
    return InceptionV3FID().apply({"params": params}, preprocess(images, protocol))


_features_jit = jax.jit(_features, static_argnames=("protocol",))


def features(params, images_uint8_or_float, protocol: str = "stylekd") -> jax.Array:
    """pool3 features [N, 2048] float32 of NHWC images under a FID protocol (jitted).

    protocol 'stylekd': float in [-1, 1] (or uint8), bilinear (half-pixel) resize to 299.
    protocol 'nvlabs': quantise to uint8, NVlabs' TorchScript resize to 299, (x - 128) / 128.
    `params` from `load_params()`. Batch as large as memory allows; any H, W works."""
    if protocol not in ("stylekd", "nvlabs"):
        raise ValueError(f"unknown FID protocol {protocol!r}; use 'stylekd' or 'nvlabs'")
    return _features_jit(params, images_uint8_or_float, protocol)


# ---------------------------------------------------------------------------------------
# Weights


def save_params(path: str, params: dict) -> None:
    """Flat `.npz` with '/'-joined keys ('Mixed_5b/branch1x1/kernel')."""
    flat = {"/".join(str(getattr(k, "key", k)) for k in p): np.asarray(v, np.float32)
            for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    with open(path, "wb") as f:
        np.savez(f, **flat)


def read_params_npz(path: str) -> dict:
    params: dict = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            node = params
            *parents, leaf = key.split("/")
            for name in parents:
                node = node.setdefault(name, {})
            node[leaf] = data[key]
    return params


def check_params(params: dict, what: str) -> dict:
    """Raise ValueError unless `params` has exactly the network's names and shapes."""
    want = {jax.tree_util.keystr(p): tuple(v.shape)
            for p, v in jax.tree_util.tree_flatten_with_path(param_shapes())[0]}
    got = {jax.tree_util.keystr(p): tuple(np.shape(v))
           for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    missing = sorted(set(want) - set(got))
    wrong = [f"{k} has shape {got[k]}, expected {want[k]}"
             for k in sorted(set(want) & set(got)) if got[k] != want[k]]
    if missing or wrong:
        raise ValueError(f"{what} does not hold FID Inception-v3 weights: "
                         + "; ".join([f"missing {k}" for k in missing[:3]] + wrong[:3]))
    return params
