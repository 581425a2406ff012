"""GAN, regularisation and distillation losses (pure jnp, jit-friendly).

Formulas follow rosinality's train.py (which StyleKD's distributed_train.py copies) and
StyleKD's `KD_loss` / `G_Loss_BackProp` (distributed_train.py:90-149, 190-207). Images are
NHWC; logits any shape (typically [N, 1]). Reductions run in float32.
"""

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

LD_MODES = ("kl", "mse")


def _f32(x):
    return jnp.asarray(x).astype(jnp.float32)


def g_nonsaturating(fake_logits: jax.Array) -> jax.Array:
    """Generator loss `mean softplus(-D(G(z)))`."""
    return jnp.mean(jax.nn.softplus(-_f32(fake_logits)))


def d_logistic(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Discriminator loss `mean softplus(D(G(z))) + mean softplus(-D(x))`."""
    return jnp.mean(jax.nn.softplus(_f32(fake_logits))) + jnp.mean(jax.nn.softplus(-_f32(real_logits)))


def r1_penalty(d_apply: Callable[[jax.Array], jax.Array], real_images: jax.Array) -> jax.Array:
    """`mean_N sum_{H,W,C} (dD(x)/dx)^2`, the gradient of `sum(D(x))` w.r.t. the real images.

    rosinality `d_r1_loss` (train.py:71-78). Differentiable w.r.t. whatever `d_apply` closes
    over (the discriminator parameters). The caller scales it by `gamma / 2 * d_reg_every`.
    """
    grad = jax.grad(lambda x: jnp.sum(_f32(d_apply(x))))(real_images)
    grad = _f32(grad).reshape(grad.shape[0], -1)
    return jnp.mean(jnp.sum(jnp.square(grad), axis=1))


def path_length(synthesize: Callable[[jax.Array], jax.Array], ws: jax.Array,
                key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sample path lengths [N] and the noise image used, rosinality `g_path_regularize`.

    `n = randn(img.shape) / sqrt(H * W)`, `g = d sum(img * n) / d ws` [N, num_ws, w_dim],
    `L = sqrt(mean over ws layers of sum over w_dim of g^2)` (train.py:87-94: the same
    `grad.pow(2).sum(2).mean(1)`). `synthesize` maps ws [N, num_ws, w_dim] to NHWC images.
    """
    img, vjp_fn = jax.vjp(synthesize, ws)
    h, w = img.shape[1], img.shape[2]
    noise = jax.random.normal(key, img.shape, jnp.float32) / math.sqrt(h * w)
    (grad,) = vjp_fn(noise.astype(img.dtype))
    grad = _f32(grad)
    lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grad), axis=2), axis=1))
    return lengths, noise


def path_length_penalty(lengths: jax.Array, pl_mean: jax.Array,
                        decay: float = 0.01) -> tuple[jax.Array, jax.Array]:
    """(penalty, new_pl_mean): `new = pl_mean + decay * (mean(L) - pl_mean)`, then
    `penalty = mean((L - new)^2)`: the mean is updated BEFORE use, as in rosinality
    (train.py:96-100) and NVlabs. As there, the penalty's gradient also flows through
    `mean(L)` inside `new`; the returned `new_pl_mean` is stop-gradient'ed (rosinality's
    `.detach()`), and starts at 0. The caller scales the penalty by
    `path_regularize (2) * g_reg_every`. With data parallelism rosinality keeps one
    `mean_path_length` per device (only its log is all-reduced).
    """
    lengths = _f32(lengths)
    pl_mean = _f32(pl_mean)
    new_mean = pl_mean + decay * (jnp.mean(lengths) - pl_mean)
    penalty = jnp.mean(jnp.square(lengths - new_mean))
    return penalty, jax.lax.stop_gradient(new_mean)


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference."""
    return jnp.mean(jnp.abs(_f32(a) - _f32(b)))


def masked(images: jax.Array, mask: jax.Array) -> jax.Array:
    """`images * mask` ([N, H, W, C] times [N, H, W, 1]), StyleKD's content-aware mimic input.

    The official `KD_loss` zeroes both images outside the face mask and then takes the plain
    mean (L1) and LPIPS over the whole image: masked-out pixels count as equal, they are not
    dropped from the average. A mask of ones leaves the images unchanged.
    """
    return images * mask.astype(images.dtype)


def _cosine_groups(a: jax.Array, b: jax.Array, eps: float) -> jax.Array:
    """a, b [G, g, D] -> [G, g, g]: (i, j) = cos(a_i, b_j), torch's eps convention."""
    a, b = _f32(a), _f32(b)
    a = a / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(a), axis=-1, keepdims=True)), eps)
    b = b / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(b), axis=-1, keepdims=True)), eps)
    # HIGHEST: no TF32 / bf16 passes for these long (up to C*H*W) dot products.
    return jnp.einsum("gid,gjd->gij", a, b, precision=jax.lax.Precision.HIGHEST)


def similarity_matrix(features_orig: jax.Array, features_aug: jax.Array,
                      eps: float = 1e-8) -> jax.Array:
    """[B, B] cosine similarities of flattened features, row i: original i vs every augmented j.

    `a.b / (max(|a|, eps) * max(|b|, eps))`, torch `F.cosine_similarity(f1[:, None], f2[None],
    dim=2)` as in StyleKD (distributed_train.py:136). Inputs [B, *feature_dims]; the feature
    dims are flattened (NHWC here vs NCHW in torch: the order does not change the value).
    """
    if features_orig.shape != features_aug.shape:
        raise ValueError(f"features_orig {features_orig.shape} and features_aug "
                         f"{features_aug.shape} must have the same shape")
    b = features_orig.shape[0]
    return _cosine_groups(features_orig.reshape(1, b, -1), features_aug.reshape(1, b, -1), eps)[0]


def ld_loss(teacher_feats: Sequence[jax.Array], student_feats: Sequence[jax.Array], batch: int,
            layers: Sequence[int], mode: str = "kl", group_size: int | None = None) -> jax.Array:
    """StyleKD's latent-direction relation loss, summed over `layers`.

    `teacher_feats[i]`, `student_feats[i]`: block outputs on the 2B batch `[w; w + offset]`,
    [2B, ...]. `layers` index these lists; with the synthesis network's
    `return_features=True` block outputs (aux['features'], entry 0 = b4) the official `--mimic-layer 2 3 4 5` (which reads `feat_list[i - 1]`, a
    list starting at b8) are the SAME numbers here: b16, b32, b64, b128.

    Per layer: `S = cos_sim(f[:B], f[B:])` in each network's own features, then
    'kl': `KL(softmax(S_t) || softmax(S_s))` per row (softmax over the augmented index j, no
    temperature, teacher = target), averaged over rows: torch
    `F.kl_div(F.log_softmax(S_s, 1), F.softmax(S_t, 1), reduction='batchmean')`
    (distributed_train.py:144-147); 'mse': mean squared difference of the matrices
    (`F.mse_loss`, :142-143). The teacher side is under stop_gradient (torch.no_grad there).

    group_size: None builds one B x B matrix over the whole batch. An integer g (dividing B)
    builds B/g matrices of g x g over consecutive samples (original k*g..k*g+g-1 vs the same
    augmented samples), as the official run does per GPU (B = 4 per GPU, 4 GPUs), and
    averages: the mean over all rows (kl) or all matrix entries (mse), which is what DDP's
    gradient averaging of the per-GPU losses gives.
    """
    if mode not in LD_MODES:
        raise ValueError(f"mode must be one of {LD_MODES}, got {mode!r}")
    if len(teacher_feats) != len(student_feats):
        raise ValueError(f"{len(teacher_feats)} teacher vs {len(student_feats)} student feature maps")
    g = batch if group_size is None else int(group_size)
    if g < 1 or batch % g:
        raise ValueError(f"group_size {group_size} must divide the batch {batch}")
    total = jnp.zeros((), jnp.float32)
    for i in layers:
        if not -len(teacher_feats) <= i < len(teacher_feats):
            raise ValueError(f"mimic layer {i} out of range for {len(teacher_feats)} feature maps")
        t, s = teacher_feats[i], student_feats[i]
        for name, f in (("teacher", t), ("student", s)):
            if f.shape[0] != 2 * batch:
                raise ValueError(f"{name} features of layer {i} have batch {f.shape[0]}, "
                                 f"expected 2 * {batch} ([orig; augmented])")
        sims = []
        for f in (jax.lax.stop_gradient(t), s):
            f = f.reshape(2, batch // g, g, -1)
            sims.append(_cosine_groups(f[0], f[1], 1e-8))              # [G, g, g]
        s_t, s_s = sims
        if mode == "kl":
            log_p = jax.nn.log_softmax(s_t, axis=-1)
            log_q = jax.nn.log_softmax(s_s, axis=-1)
            total = total + jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1))
        else:
            total = total + jnp.mean(jnp.square(s_s - s_t))
    return total


def ld_offsets(key: jax.Array, directions: jax.Array, batch: int, num_ws: int,
               weight: float = 5.0) -> jax.Array:
    """Latent offsets [B, num_ws, w_dim] for the augmented half of the LD batch.

    StyleKD `G_Loss_BackProp` ('main' offset mode, distributed_train.py:194-207): each sample
    picks one of the K directions uniformly (with replacement), normalises it to unit L2
    norm, and scales it by `N(0, 1) * weight`; the same offset is added to every ws layer
    (there an [B, 1, w_dim] broadcast, here materialised). Add it after mapping, truncation
    and style mixing: the generator runs on `[ws; ws + offsets]`.
    """
    directions = _f32(directions)
    k_idx, k_scale = jax.random.split(key)
    idx = jax.random.randint(k_idx, (batch,), 0, directions.shape[0])
    d = directions[idx]
    d = d / jnp.linalg.norm(d, axis=1, keepdims=True)
    scale = jax.random.normal(k_scale, (batch, 1), jnp.float32) * weight
    return jnp.broadcast_to((d * scale)[:, None, :], (batch, num_ws, directions.shape[1]))
