"""BiSeNet face parsing and StyleKD's face mask (CAGAN's content-aware distillation).

Why: on FFHQ the official StyleKD generator step (`KD_loss` in its distributed_train.py)
parses every teacher image with a pretrained BiSeNet and multiplies teacher and student
images by the face mask before the L1 and LPIPS mimic losses, so the student is not taught
the background and clothes.  CAGAN's content-aware channel selection uses the same mask.

The network is the one of zllrunning/face-parsing.PyTorch as vendored by CAGAN / StyleKD
(`Util/face_parsing`), whose released weights are `79999_iter.pth` (19 CelebAMask-HQ classes;
0 = background, 16 = cloth).  NHWC, eval mode (BatchNorm with running statistics, eps 1e-5):

* context path: ResNet-18 without fc gives res3 (1/8), res4 (1/16), res5 (1/32); the global
  average of res5 through a 1x1 ConvBNReLU is added to the attention-refined res5 (`arm32`),
  upsampled 2x (nearest) into `conv_head32`, added to the attention-refined res4 (`arm16`),
  upsampled 2x (nearest) into `conv_head16`;
* no spatial path: the released model feeds res3 to the feature fusion module instead
  (concat -> 1x1 ConvBNReLU -> x + x * channel attention);
* heads `conv_out` (fused, the one used), `conv_out16`, `conv_out32` (auxiliary training
  heads, computed for completeness; XLA drops them when unused), each upsampled bilinearly
  with align_corners=True to the input size.

Param names mirror the torch state dict (`layer1.0` -> `layer1_0`, `downsample.0/.1` ->
`downsample_conv/_bn`, conv `weight` -> `kernel` HWIO, BN `weight/bias/running_mean/
running_var` -> `scale/bias/mean/var`); `stylekd_jax.convert.bisenet` maps the file.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BiSeNet", "face_mask", "parse_logits", "load_params", "param_shapes",
           "FACE_PARSER_FILE", "NUM_CLASSES", "PARSE_SIZE", "NON_FACE_CLASSES"]

FACE_PARSER_FILE = "79999_iter.pth"
NUM_CLASSES = 19
PARSE_SIZE = 512                 # StyleKD parses at 512 x 512 whatever the generator's size
NON_FACE_CLASSES = (0, 16)       # background, cloth
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-5


# ---------------------------------------------------------------------------------------
# Resampling with torch F.interpolate's index arithmetic (static numpy indices, float32)


def _linear_taps(n_in: int, n_out: int, align_corners: bool):
    """Source indices (lo, hi) and the weight of hi for each output position along one axis."""
    dst = np.arange(n_out, dtype=np.float32)
    if align_corners:
        scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
        src = dst * scale
    else:
        src = np.maximum((dst + np.float32(0.5)) * np.float32(n_in / n_out) - np.float32(0.5), 0)
    lo = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_bilinear(x: jax.Array, height: int, width: int, align_corners: bool = False) -> jax.Array:
    """NHWC bilinear resize equal to torch `F.interpolate(mode='bilinear', align_corners=...)`
    without anti-aliasing (also when shrinking): width first, then height, as torch does."""
    if x.shape[1:3] == (height, width):
        return x
    y0, y1, wy = _linear_taps(x.shape[1], height, align_corners)
    x0, x1, wx = _linear_taps(x.shape[2], width, align_corners)
    wx = wx[None, None, :, None]
    rows = x[:, :, x0] * (1 - wx) + x[:, :, x1] * wx
    wy = wy[None, :, None, None]
    return rows[:, y0] * (1 - wy) + rows[:, y1] * wy


def resize_nearest(x: jax.Array, height: int, width: int) -> jax.Array:
    """torch `F.interpolate(mode='nearest')`: source index floor(dst * in / out)."""
    def idx(n_in, n_out):
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out))
                          .astype(np.int32), n_in - 1)
    return x[:, idx(x.shape[1], height)][:, :, idx(x.shape[2], width)]


# ---------------------------------------------------------------------------------------
# Network


class Conv(nn.Module):
    """Bias-free convolution, kernel HWIO, symmetric zero padding (torch Conv2d, bias=False)."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: int = 1

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        p = self.padding
        return jax.lax.conv_general_dilated(x, kernel, (self.strides, self.strides), ((p, p), (p, p)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


class BatchNorm(nn.Module):
    """Inference BatchNorm: (x - mean) / sqrt(var + 1e-5) * scale + bias; all four frozen params."""

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        return (x - mean) * (scale * jax.lax.rsqrt(var + BN_EPS)) + bias


class ConvBNReLU(nn.Module):
    features: int
    kernel_size: int = 3
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        pad = self.kernel_size // 2
        x = Conv(self.features, self.kernel_size, self.strides, pad, name="conv")(x)
        return nn.relu(BatchNorm(name="bn")(x))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 conv + BN shortcut where the shape changes."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        r = nn.relu(BatchNorm(name="bn1")(Conv(self.features, 3, self.strides, 1, name="conv1")(x)))
        r = BatchNorm(name="bn2")(Conv(self.features, 3, 1, 1, name="conv2")(r))
        if x.shape[-1] != self.features or self.strides != 1:
            x = Conv(self.features, 1, self.strides, 0, name="downsample_conv")(x)
            x = BatchNorm(name="downsample_bn")(x)
        return nn.relu(x + r)


class ResNet18(nn.Module):
    """ResNet-18 trunk; returns the 1/8, 1/16 and 1/32 features (layer2, layer3, layer4)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(BatchNorm(name="bn1")(Conv(64, 7, 2, 3, name="conv1")(x)))
        x = nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
        feats = []
        for i, (features, strides) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            x = BasicBlock(features, strides, name=f"layer{i}_0")(x)
            x = BasicBlock(features, 1, name=f"layer{i}_1")(x)
            feats.append(x)
        return feats[1], feats[2], feats[3]


def _global_mean(x):
    return jnp.mean(x, axis=(1, 2), keepdims=True)


class AttentionRefinement(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        feat = ConvBNReLU(self.features, 3, name="conv")(x)
        att = Conv(self.features, 1, 1, 0, name="conv_atten")(_global_mean(feat))
        return feat * jax.nn.sigmoid(BatchNorm(name="bn_atten")(att))


class ContextPath(nn.Module):
    @nn.compact
    def __call__(self, x):
        f8, f16, f32 = ResNet18(name="resnet")(x)
        avg = ConvBNReLU(128, 1, name="conv_avg")(_global_mean(f32))   # broadcast = nearest up
        s32 = AttentionRefinement(128, name="arm32")(f32) + avg
        up32 = ConvBNReLU(128, 3, name="conv_head32")(resize_nearest(s32, *f16.shape[1:3]))
        s16 = AttentionRefinement(128, name="arm16")(f16) + up32
        up16 = ConvBNReLU(128, 3, name="conv_head16")(resize_nearest(s16, *f8.shape[1:3]))
        return f8, up16, up32


class FeatureFusion(nn.Module):
    features: int

    @nn.compact
    def __call__(self, spatial, context):
        feat = ConvBNReLU(self.features, 1, name="convblk")(jnp.concatenate([spatial, context], -1))
        att = nn.relu(Conv(self.features // 4, 1, 1, 0, name="conv1")(_global_mean(feat)))
        att = jax.nn.sigmoid(Conv(self.features, 1, 1, 0, name="conv2")(att))
        return feat * att + feat


class OutputHead(nn.Module):
    mid: int
    classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x):
        return Conv(self.classes, 1, 1, 0, name="conv_out")(ConvBNReLU(self.mid, 3, name="conv")(x))


class BiSeNet(nn.Module):
    """[N, H, W, 3] normalised images -> (logits, logits16, logits32), each [N, H, W, 19]."""

    @nn.compact
    def __call__(self, x):
        h, w = x.shape[1:3]
        f8, cp8, cp16 = ContextPath(name="cp")(x)
        outs = (OutputHead(256, name="conv_out")(FeatureFusion(256, name="ffm")(f8, cp8)),
                OutputHead(64, name="conv_out16")(cp8),
                OutputHead(64, name="conv_out32")(cp16))
        return tuple(resize_bilinear(o, h, w, align_corners=True) for o in outs)


def param_shapes(size: int = 64) -> dict:
    """The params tree as ShapeDtypeStructs (no computation)."""
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(BiSeNet().init, jax.random.PRNGKey(0), x)["params"]


# ---------------------------------------------------------------------------------------
# StyleKD's mask


def _check_images(images) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected NHWC RGB images [N, H, W, 3] in [-1, 1], got shape {images.shape}")
    return images.astype(jnp.float32)


def parse_logits(params, images, parse_size: int = PARSE_SIZE) -> jax.Array:
    """Main BiSeNet logits [N, parse_size, parse_size, 19] for NHWC images in [-1, 1], with
    StyleKD's `Batch_Img_Parsing` preprocessing: (x + 1) / 2 clamped to [0, 1], bilinear resize
    to parse_size (align_corners=False, no anti-aliasing), ImageNet mean / std."""
    x = jnp.clip((_check_images(images) + 1) / 2, 0, 1)
    x = resize_bilinear(x, parse_size, parse_size)
    x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    return BiSeNet().apply({"params": params}, x)[0]


def face_mask(params, images, parse_size: int = PARSE_SIZE) -> jax.Array:
    """StyleKD's face mask [N, H, W, 1] (float32, 0 or 1) for NHWC images [N, H, W, 3] in [-1, 1].

    Pure and jit-friendly; `params` from `load_params`.  The official steps
    (`Batch_Img_Parsing` + `Get_Masked_Tensor`): parse at `parse_size` (512, see `parse_logits`),
    argmax over the 19 classes, face = every class but background (0) and cloth (16), that
    0/1 map resized bilinearly (align_corners=False, no anti-aliasing) to H x W and kept where
    > 0.5.  Not differentiable (argmax / threshold); multiply images by it.  Images are
    expected square, as StyleGAN's are (the official code scales both axes by 512 / W).
    """
    images = _check_images(images)
    classes = jnp.argmax(parse_logits(params, images, parse_size), axis=-1)
    face = jnp.ones(classes.shape, bool)
    for c in NON_FACE_CLASSES:
        face = face & (classes != c)
    mask = resize_bilinear(face.astype(jnp.float32)[..., None], *images.shape[1:3])
    return (mask > 0.5).astype(jnp.float32)


def load_params(path: str) -> dict:
    """BiSeNet params (jnp float32) from the released `79999_iter.pth` (converted torch-free at
    load; a few seconds).  Raises CheckpointError with a one-line message on a bad file."""
    from stylekd_jax.convert.bisenet import convert_file
    return jax.tree_util.tree_map(jnp.asarray, convert_file(path))
