"""The training loop: StyleKD distillation, or plain StyleGAN2 / StyleGAN3 training when no teacher is set.

One iteration (rosinality / StyleKD order):
  1. D step: logistic loss on real images and fresh student fakes; every `r1_interval`
     steps a lazy R1 step.
  2. G step: non-saturating GAN loss + the StyleKD mimic losses against the teacher (L1,
     LPIPS, latent-direction KL, optional w-space L1), with the same z's, style-mixing index
     and direction offsets for teacher and student; every `pl_interval` steps a lazy
     path-length step.
  3. EMA of the student parameters.
Each phase is an Adam update with the lazy-regularisation correction (lr·c, β^c,
c = interval / (interval + 1)). The whole iteration is one jitted function with explicit
shardings over the device mesh, compiled once per kind of step (plain, with PL, with R1 and
PL: Python branches, not lax.cond, which makes XLA:CPU run convolutions ~180x slower).
"""

import argparse
import functools
import os
import signal
import threading
import time
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from stylekd_jax import (checkpoint, config as config_lib, evaluate, face_parsing, images, input_pipeline, losses,
                         progress, run_log, sharding)
from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig, StyleGAN3Config, count_params
from stylekd_jax.channel_selection import channel_scores
from stylekd_jax.generate import seed_latents
from stylekd_jax.lpips import load_params as load_lpips_params, lpips_fn
from stylekd_jax.networks import Discriminator, make_generator
from stylekd_jax.networks.generator import init_generator, num_params
from stylekd_jax.ops.upfirdn2d import gaussian_blur2d
from stylekd_jax.sefa import training_directions
from stylekd_jax.student import inherit_discriminator, init_student, student_config


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    g: Any          # student (or generator) variables {'params', 'buffers'}
    g_ema: Any      # EMA of g['params'] (buffers are copied from g)
    d: Any          # discriminator variables {'params'}
    g_opt: Any
    d_opt: Any
    pl_mean: jax.Array
    key: jax.Array


class Setup(NamedTuple):
    """What the step functions need besides the state (static, or constant arrays in `consts`)."""
    config: ml_collections.ConfigDict
    g_cfg: GeneratorConfig | StyleGAN3Config
    d_cfg: DiscriminatorConfig
    teacher_cfg: GeneratorConfig | StyleGAN3Config | None
    G: Any          # generator module (StyleGAN2 or StyleGAN3), see networks.make_generator
    D: Discriminator
    T: Any          # teacher module, or None
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    lpips: Any      # f(x, y) -> [N], or None
    batch_sharding: Any = None   # NamedSharding of batch-major arrays over 'data' (jit_train_step)


# ---------------------------------------------------------------------------------------
# Building blocks


def lazy_adam(config, interval: int, lr: float | None = None) -> optax.GradientTransformation:
    c = interval / (interval + 1)
    lr = config.lr if lr is None else lr
    return optax.adam(lr * c, b1=config.adam_b1 ** c, b2=config.adam_b2 ** c, eps=config.adam_eps)


def freeze_mapping(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Leave params['mapping'] untouched (zero updates), train the rest with `tx`."""
    def labels(params):
        return {k: jax.tree_util.tree_map(lambda _: "frozen" if k == "mapping" else "train", v)
                for k, v in params.items()}
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def data_devices(s: Setup) -> int:
    """How many ways the step splits its batch: the mesh's 'data' size (1 outside jit_train_step)."""
    return 1 if s.batch_sharding is None else s.batch_sharding.mesh.shape["data"]


def split_over_data(x: jax.Array, s: Setup) -> jax.Array:
    """A batch-major array drawn inside the step, split over 'data' as the real images are.

    Without it XLA replicates the draw, and with it everything computed from it (the teacher,
    the student, LPIPS, D on fakes): every device then computed the whole global batch, so
    the per-device FLOPs grew with the number of devices (data 8: 9x the architecture count).
    A batch the 'data' devices do not divide is left to XLA (path_length_batch avoids one).
    """
    if s.batch_sharding is None or x.shape[0] % data_devices(s):
        return x
    return jax.lax.with_sharding_constraint(x, s.batch_sharding)


def sample_latents(key, batch: int, z_dim: int, num_ws: int, mixing_prob: float, s: Setup):
    """Two z's and a style-mixing cutoff (num_ws = no mixing), one cutoff per batch as NVlabs."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    z1 = split_over_data(jax.random.normal(k1, (batch, z_dim)), s)
    z2 = split_over_data(jax.random.normal(k2, (batch, z_dim)), s)
    mix = jax.random.uniform(k3) < mixing_prob
    cutoff = jnp.where(mix, jax.random.randint(k4, (), 1, num_ws), num_ws)
    return z1, z2, cutoff


def mixed_ws(model, variables, latents, update_w_avg: bool = False):
    """ws of z1 for layers < cutoff and of z2 after; returns (ws, updated buffers)."""
    z1, z2, cutoff = latents
    ws1, mutated = model.apply(variables, z1, update_w_avg=update_w_avg, method="map",
                               mutable=["buffers"])
    ws2 = model.apply(variables, z2, method="map")
    layer = jnp.arange(ws1.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, ws1, ws2), mutated["buffers"]


def discriminate(s: Setup, d_params, img: jax.Array, step: jax.Array) -> jax.Array:
    """D's logits; with `blur_init_sigma` > 0 (StyleGAN3-R) its input is blurred first, the
    sigma fading linearly to 0 over `blur_fade_kimg` thousand images (NVlabs run_D)."""
    c = s.config
    if c.blur_init_sigma > 0:
        seen = step.astype(jnp.float32) * c.batch_size
        fade = jnp.maximum(1.0 - seen / (c.blur_fade_kimg * 1e3), 0.0) if c.blur_fade_kimg > 0 else 1.0
        img = gaussian_blur2d(img, fade * c.blur_init_sigma, max_sigma=c.blur_init_sigma)
    return s.D.apply({"params": d_params}, img)


# ---------------------------------------------------------------------------------------
# Losses of one iteration


def d_main_loss(d_params, g_vars, real, key, step, s: Setup):
    c = s.config
    k_lat, k_noise = jax.random.split(key)
    latents = sample_latents(k_lat, real.shape[0], s.g_cfg.z_dim, s.g_cfg.num_ws, c.loss.style_mixing, s)
    ws, _ = mixed_ws(s.G, g_vars, latents)
    fake = s.G.apply(g_vars, ws, "random", method="synthesize", rngs={"noise": k_noise})
    fake = jax.lax.stop_gradient(fake)
    real_logits = discriminate(s, d_params, real, step)
    fake_logits = discriminate(s, d_params, fake, step)
    loss = losses.d_logistic(real_logits, fake_logits)
    return loss, {"d_loss": loss, "d_real": real_logits.mean(), "d_fake": fake_logits.mean()}


def d_r1_loss(d_params, real, step, s: Setup):
    penalty = losses.r1_penalty(lambda x: discriminate(s, d_params, x, step), real)
    return s.config.r1_gamma / 2 * penalty * s.config.r1_interval, {"r1": penalty}


class GStepDraws(NamedTuple):
    """The random inputs of one generator step (see `g_step_draws`)."""
    latents: tuple          # (z1 [B, z_dim], z2 [B, z_dim], style-mixing cutoff), sample_latents
    offsets: Any            # LD offsets [B, num_ws, w_dim] (ld_offsets), None without LD
    noise_s: jax.Array      # PRNG key of the student's per-pixel noise
    noise_t: jax.Array      # the teacher's: its own key, the student's with loss.shared_noise


def g_step_draws(key, consts, s: Setup) -> GStepDraws:
    """Every random draw of `g_main_loss`, in one place, so that a test can replay a step."""
    c = s.config
    k_lat, k_off, k_noise_s, k_noise_t = jax.random.split(key, 4)
    latents = sample_latents(k_lat, c.batch_size, s.g_cfg.z_dim, s.g_cfg.num_ws, c.loss.style_mixing, s)
    offsets = None
    if s.T is not None and c.loss.ld > 0:
        offsets = split_over_data(losses.ld_offsets(k_off, consts["directions"], c.batch_size,
                                                    s.g_cfg.num_ws, c.loss.ld_offset_weight), s)
    return GStepDraws(latents, offsets, k_noise_s, k_noise_s if c.loss.shared_noise else k_noise_t)


def g_main_loss(g_params, g_buffers, d_params, consts, key, step, s: Setup):
    """GAN loss + StyleKD mimic losses. Returns (loss, (metrics, new buffers)).

    The new buffers carry the student's updated `w_avg` and, for StyleGAN3, its layers'
    input-magnitude EMAs (NVlabs updates both in every generator forward of a training step).
    """
    c = s.config
    batch = c.batch_size
    draws = g_step_draws(key, consts, s)
    g_vars = {"params": g_params, "buffers": g_buffers}
    latents = draws.latents
    ws_s, new_buffers = mixed_ws(s.G, g_vars, latents, update_w_avg=not c.student.freeze_mapping)
    distill = s.T is not None
    use_ld = distill and c.loss.ld > 0
    if distill:
        ws_t, _ = mixed_ws(s.T, consts["teacher"], latents)
    if use_ld:
        # Both networks see [w, w + offset] along the same SeFa directions.
        offsets = draws.offsets
        ws_s_run = jnp.concatenate([ws_s, ws_s + offsets])
        ws_t_run = jnp.concatenate([ws_t, ws_t + offsets])
    else:
        ws_s_run = ws_s
        ws_t_run = ws_t if distill else None
    if isinstance(s.g_cfg, StyleGAN3Config):
        (img_s, aux_s), mutated = s.G.apply(g_vars, ws_s_run, "random", True, True,
                                            method="synthesize", mutable=["buffers"])
        new_buffers = {**new_buffers, "synthesis": mutated["buffers"]["synthesis"]}
    else:
        img_s, aux_s = s.G.apply(g_vars, ws_s_run, "random", True, method="synthesize",
                                 rngs={"noise": draws.noise_s})
    fake_logits = discriminate(s, d_params, img_s[:batch], step)
    gan = losses.g_nonsaturating(fake_logits)
    total = c.loss.gan * gan
    metrics = {"g_gan": gan}
    if distill:
        img_t, aux_t = s.T.apply(consts["teacher"], ws_t_run, "random", True,
                                 method="synthesize", rngs={"noise": draws.noise_t})
        img_t, aux_t = jax.lax.stop_gradient((img_t, aux_t))
        kd_s, kd_t = img_s[:batch], img_t[:batch]
        if c.loss.face_mask:
            # Official content-aware KD: the teacher image's face mask zeroes both final images
            # before L1 and LPIPS (not the intermediate RGBs of l1_intermediate).
            mask = face_parsing.face_mask(consts["face_parser"], kd_t)
            kd_s, kd_t = losses.masked(kd_s, mask), losses.masked(kd_t, mask)
        if c.loss.l1_intermediate:
            l1 = sum(losses.l1(a[:batch], b[:batch]) for a, b in zip(aux_s["images"], aux_t["images"]))
        else:
            l1 = losses.l1(kd_s, kd_t)
        metrics["kd_l1"] = l1
        total = total + c.loss.l1 * l1
        if c.loss.lpips > 0:
            lp = jnp.mean(s.lpips(consts["lpips"], kd_s, kd_t))
            metrics["kd_lpips"] = lp
            total = total + c.loss.lpips * lp
        if use_ld:
            ld = losses.ld_loss(aux_t["features"], aux_s["features"], batch, tuple(c.loss.ld_layers),
                                mode=c.loss.ld_similarity, group_size=c.loss.ld_group_size)
            metrics["kd_ld"] = ld
            total = total + c.loss.ld * ld
        if c.loss.w_l1 > 0:
            w_l1 = losses.l1(ws_s, ws_t)
            metrics["kd_w_l1"] = w_l1
            total = total + c.loss.w_l1 * w_l1
    metrics["g_loss"] = total
    return total, (metrics, new_buffers)


def path_length_batch(batch: int, shrink: int, data_devices: int) -> int:
    """The global batch of a path-length step: each data device's share shrunk by `shrink`,
    at least one sample per device.

    NVlabs shrinks each GPU's batch (batch_gpu // pl_batch_shrink). Shrinking the global batch
    instead gives, when the devices do not divide it (batch 32 over 32 devices: 16), a batch
    XLA can only replicate: every device then computed all 16 samples' double backward.
    On one device, or when the shares divide, this is batch // shrink.
    """
    per_device = batch // data_devices
    return max(1, per_device // shrink) * data_devices


def g_pl_loss(g_params, g_buffers, pl_mean, key, s: Setup):
    c = s.config
    k_lat, k_pl, k_noise = jax.random.split(key, 3)
    g_vars = {"params": g_params, "buffers": g_buffers}
    latents = sample_latents(k_lat, path_length_batch(c.batch_size, c.pl_batch_shrink, data_devices(s)),
                             s.g_cfg.z_dim, s.g_cfg.num_ws, c.loss.style_mixing, s)
    ws, _ = mixed_ws(s.G, g_vars, latents)
    synthesize = lambda w: s.G.apply(g_vars, w, "random", method="synthesize",  # noqa: E731
                                     rngs={"noise": k_noise})
    lengths, _ = losses.path_length(synthesize, ws, k_pl)
    penalty, new_mean = losses.path_length_penalty(lengths, pl_mean, c.pl_decay)
    return c.pl_weight * c.pl_interval * penalty, (new_mean, {"pl_penalty": penalty, "pl_mean": new_mean})


def ema_decay(config, step: jax.Array) -> jax.Array:
    """Per-step EMA decay; with `ema_rampup` r the half-life is at most r x (images seen so far)
    (NVlabs: beta = 0.5 ** (batch / min(ema_nimg, cur_nimg * r))), so short runs are not
    dominated by their first random weights; none with `init_from`, whose weights are trained."""
    if config.ema_rampup is None or config.init_from:
        return jnp.asarray(config.ema_decay, jnp.float32)
    ramp = 0.5 ** (1.0 / jnp.maximum(step.astype(jnp.float32) * config.ema_rampup, 1e-8))
    return jnp.minimum(config.ema_decay, ramp)


def log_interval(config) -> int:
    """`log_every_steps`, or with 0 (the default) about 100 points per run, at most every 50 steps."""
    return config.log_every_steps or min(50, max(1, config.total_steps // 100))


def lazy_phases(config, step: int) -> tuple[bool, bool]:
    """(R1, path length): which lazy regularisation phases step `step` runs."""
    return step % config.r1_interval == 0, config.pl_weight > 0 and step % config.pl_interval == 0


def train_step(state: TrainState, real: jax.Array, consts, s: Setup, r1: bool, pl: bool):
    """One full iteration on a uint8 [B, H, W, 3] batch of real images; returns (new state, metrics).

    `r1`, `pl` (static, from `lazy_phases`) add the lazy R1 and path-length phases; their
    metrics are NaN on the steps that skip them.
    """
    c = s.config
    real = images.to_float(real)   # on the device: the host sends a quarter of the bytes
    key, k_d, k_g, k_pl = jax.random.split(state.key, 4)
    nan = jnp.asarray(jnp.nan, jnp.float32)

    def adam_step(tx, loss_fn, params, opt, *args):
        grads, aux = jax.grad(loss_fn, has_aux=True)(params, *args)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, aux

    if r1 and c.r1_in_d_step:   # StyleKD: R1 joins the logistic loss in the iteration's one D step
        def d_loss_with_r1(d_params, *args):
            loss, m = d_main_loss(d_params, *args)
            reg, m_r1 = d_r1_loss(d_params, real, state.step, s)
            return loss + reg, {**m, **m_r1}
        d_params, d_opt, metrics = adam_step(s.d_tx, d_loss_with_r1, state.d["params"], state.d_opt,
                                             state.g, real, k_d, state.step, s)
    else:
        d_params, d_opt, metrics = adam_step(s.d_tx, d_main_loss, state.d["params"], state.d_opt,
                                             state.g, real, k_d, state.step, s)
        metrics["r1"] = nan
        if r1:   # NVlabs / rosinality: a D step of its own
            d_params, d_opt, m = adam_step(s.d_tx, d_r1_loss, d_params, d_opt, real, state.step, s)
            metrics.update(m)

    g_params, g_opt, (m, g_buffers) = adam_step(s.g_tx, g_main_loss, state.g["params"], state.g_opt,
                                                state.g["buffers"], d_params, consts, k_g, state.step, s)
    metrics.update(m)
    pl_mean, metrics["pl_penalty"] = state.pl_mean, nan
    if pl:
        g_params, g_opt, (pl_mean, m) = adam_step(s.g_tx, g_pl_loss, g_params, g_opt, g_buffers,
                                                  state.pl_mean, k_pl, s)
        metrics["pl_penalty"] = m["pl_penalty"]
    metrics["pl_mean"] = pl_mean

    g_ema = optax.incremental_update(g_params, state.g_ema, 1.0 - ema_decay(c, state.step))
    # NaN marks a skipped lazy phase; anything else non-finite is a real failure.
    metrics["finite"] = jnp.all(jnp.asarray([
        jnp.isfinite(v) | ((k in ("r1", "pl_penalty")) & jnp.isnan(v)) for k, v in metrics.items()]))
    new_state = TrainState(step=state.step + 1, g={"params": g_params, "buffers": g_buffers},
                           g_ema=g_ema, d={"params": d_params}, g_opt=g_opt, d_opt=d_opt,
                           pl_mean=pl_mean, key=key)
    return new_state, metrics


def jit_train_step(setup: Setup, mesh, state_sharding):
    """`train_step` jitted over the mesh: fn(state, real, consts, r1, pl), the state donated,
    (r1, pl) static, so each kind of step compiles to its own program."""
    setup = setup._replace(batch_sharding=sharding.batch_sharding(mesh))
    return jax.jit(lambda state, real, consts, r1, pl: train_step(state, real, consts, setup, r1, pl),
                   in_shardings=(state_sharding, sharding.batch_sharding(mesh), sharding.replicated(mesh)),
                   out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=(0,),
                   static_argnums=(3, 4))


# ---------------------------------------------------------------------------------------
# Set-up: networks, initial state, two-stage mapping mimic


def build(config) -> tuple[Setup, dict, dict, dict]:
    """(Setup, initial student/generator variables, D's init (a PRNG key, or the teacher's D
    variables with student.discriminator_init='inherit'), consts: the step's constant inputs
    {'teacher', 'directions', 'lpips', 'face_parser'})."""
    key = jax.random.PRNGKey(config.seed)
    if config.teacher:
        # A student never starts from the initial weights of a teacher trained with this seed
        # (pipeline.py trains teachers with the same config): with the mapping's lr x0.01 a
        # "random" mapping would otherwise stay next to the teacher's.
        key = jax.random.fold_in(key, 1)
    k_g, d_init = jax.random.split(key)
    teacher_cfg = teacher_vars = None
    consts: dict[str, Any] = {}
    if config.teacher:
        teacher_cfg, teacher_vars = checkpoint.load_generator(config.teacher)
        g_cfg = student_config(teacher_cfg, channels=config.student.channels,
                               keep_ratio=config.student.keep_ratio,
                               kernel_size=config.student.kernel_size,
                               mapping_features=config.student.mapping_features,
                               plain_mapping=config.student.mapping_init == "two_stage")
        mapping_init = "random" if config.student.mapping_init == "two_stage" else config.student.mapping_init
        scores = None
        if config.student.synthesis_init == "inherit":
            # CAGAN noises face pixels: the face parser when one is given (loss.face_parser).
            face = config.student.channel_selection == "content_aware" and config.loss.face_parser
            scores = channel_scores(
                config.student.channel_selection, teacher_cfg, teacher_vars, jax.random.fold_in(key, 2),
                samples=config.student.selection_samples, batch=config.student.selection_batch,
                mask_fn=face_parsing.face_mask if face else None,
                mask_params=face_parsing.load_params(config.loss.face_parser) if face else None)
        g_vars = init_student(teacher_cfg, teacher_vars, g_cfg, k_g, mapping_init=mapping_init,
                              synthesis_init=config.student.synthesis_init, channel_scores=scores)
        consts["teacher"] = teacher_vars
        if config.loss.ld > 0:
            consts["directions"] = jnp.asarray(training_directions(
                teacher_cfg, teacher_vars, mode=config.loss.ld_directions, ld_layers=config.loss.ld_layers))
    elif config.init_from:
        g_cfg, stored = initial_networks(config.init_from)
        g_vars = stored["g"] if "g" in stored else stored["g_ema"]
        if "d" in stored:
            d_init = stored["d"]   # D's variables instead of a key
    else:
        g_cfg = generator_config(config.generator)
        g_vars = init_generator(g_cfg, k_g)
    d_cfg = _discriminator_config(config, g_cfg if teacher_cfg is None else teacher_cfg)
    if config.teacher and config.student.discriminator_init == "inherit":
        d_init = inherit_discriminator(config.teacher, d_cfg)   # D's variables instead of a key
    lpips = None
    if config.teacher and config.loss.lpips > 0:
        consts["lpips"] = load_lpips_params(config.loss.lpips_weights or None)
        lpips = _lpips_apply(config.loss.lpips_size, jnp.dtype(config.dtype))
    if config.teacher and config.loss.face_mask:
        consts["face_parser"] = face_parsing.load_params(config.loss.face_parser)
    g_tx = lazy_adam(config, config.pl_interval)
    if config.student.freeze_mapping:
        g_tx = freeze_mapping(g_tx)
    dtype = jnp.dtype(config.dtype)
    setup = Setup(config, g_cfg, d_cfg, teacher_cfg, make_generator(g_cfg, dtype, remat=config.remat),
                  Discriminator(d_cfg, dtype=dtype, remat=config.remat),
                  make_generator(teacher_cfg, dtype) if teacher_cfg else None,
                  g_tx, lazy_adam(config, config.r1_interval, config.d_lr), lpips)
    return setup, g_vars, d_init, consts


@functools.lru_cache(maxsize=1)
def initial_networks(directory: str):
    """(generator cfg, {'g' and/or 'g_ema', maybe 'd': float32 variables}) of config.init_from,
    read once per run (`build` and `init_state` both need it)."""
    _, _, info = checkpoint.read_architecture(directory)
    stored = [n for n in ("g", "g_ema", "d") if n in info.get("networks", [])]
    if not {"g", "g_ema"} & set(stored):
        raise ValueError(f"config.init_from: {directory} holds no generator (networks: "
                         f"{info.get('networks', [])})")
    g_cfg, _, nets = checkpoint.load(directory, tuple(stored))
    nets = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), nets)
    logging.info("init_from %s: %s (D %s)", directory, ", ".join(stored),
                 "stored" if "d" in nets else "random: the checkpoint has none")
    return g_cfg, nets


def generator_config(gc: ml_collections.ConfigDict) -> GeneratorConfig | StyleGAN3Config:
    """The network `config.generator` describes (plain training, and a teacher trained first)."""
    mapping = dict(z_dim=gc.z_dim, w_dim=gc.w_dim, mapping_features=(gc.w_dim,) * gc.mapping_layers)
    if gc.family.startswith("stylegan3"):
        return StyleGAN3Config.teacher(gc.resolution, gc.family, gc.channel_base, gc.channel_max,
                                       num_layers=gc.num_layers, **mapping)
    return GeneratorConfig.teacher(gc.resolution, gc.channel_base, gc.channel_max,
                                   conv_clamp=gc.conv_clamp, **mapping)


def _discriminator_config(config, reference: GeneratorConfig) -> DiscriminatorConfig:
    """The teacher checkpoint's own D architecture when it has one, else channels per
    resolution taken from the (teacher) generator: a D as strong as the teacher's."""
    if config.teacher or config.init_from:
        _, d_cfg, _ = checkpoint.read_architecture(config.teacher or config.init_from)
        if d_cfg is not None:
            return d_cfg
    if isinstance(reference, StyleGAN3Config):
        # NVlabs trains StyleGAN3 with the StyleGAN2 discriminator of the run's --cbase/--cmax
        # (the R config doubles only G's channels), clamped at 256.
        gc = config.generator
        converted = config.teacher or config.init_from   # a checkpoint without its D
        base, cmax = (gc.channel_base, gc.channel_max) if not converted else (32768, 512)
        if not converted and gc.family == "stylegan3-r":
            base, cmax = base // 2, cmax // 2
        return DiscriminatorConfig.teacher(reference.resolution, base, cmax, conv_clamp=256.0)
    per_res = {r: reference.channels[max(2 * k, 1)] for k, r in enumerate(reference.block_resolutions)}
    return DiscriminatorConfig(resolution=reference.resolution, channels=tuple(per_res.items()),
                               conv_clamp=reference.conv_clamp)


def _lpips_apply(size: int, dtype=jnp.float32):
    """f(params, x, y) -> [N] with images larger than `size` resized first; the VGG convs run
    in `dtype` (config.dtype: the distillation step's largest block of FLOPs after the
    networks), the unit-normalisation, differences and heads in float32 (lpips.LPIPS)."""
    def apply(params, x, y):
        return lpips_fn(params, resize_to=size, dtype=dtype)(x, y)
    return apply


@jax.jit
def _copy_arrays(tree):
    """Fresh device buffers for every array of `tree` (a jit output never aliases its inputs)."""
    return jax.tree_util.tree_map(jnp.copy, tree)


def init_state(setup: Setup, g_vars, d_init) -> TrainState:
    """The step-0 state; `d_init` is D's PRNG key, or D's variables when inherited (`build`).
    G_ema starts as G, or as config.init_from's g_ema when it has one."""
    c = setup.config
    img = jnp.zeros((c.batch_size, setup.d_cfg.resolution, setup.d_cfg.resolution, 3))
    # Compiled, as init_generator: op by op, D's forward and a copy per array each compile once.
    d_vars = (_copy_arrays(d_init) if isinstance(d_init, dict) else jax.jit(setup.D.init)(d_init, img))
    g_vars = _copy_arrays(g_vars)   # own buffers: the state is donated
    stored = initial_networks(c.init_from)[1] if c.init_from else {}
    g_ema = stored["g_ema"]["params"] if "g_ema" in stored else g_vars["params"]
    return TrainState(step=jnp.asarray(0, jnp.int32), g=g_vars,
                      g_ema=_copy_arrays(g_ema), d=d_vars,
                      g_opt=jax.jit(setup.g_tx.init)(g_vars["params"]),
                      d_opt=jax.jit(setup.d_tx.init)(d_vars["params"]),
                      pl_mean=jnp.asarray(0.0, jnp.float32),
                      key=jax.random.PRNGKey(c.seed + 1))


def pretrain_mapping(setup: Setup, g_vars, teacher_vars, writer) -> dict:
    """Two-stage initialisation: fit the student mapping to the teacher's, E_z D(S_s(z), S_t(z))."""
    ts = setup.config.student.two_stage
    tx = optax.adam(ts.lr)
    params = g_vars["params"]["mapping"]
    opt = tx.init(params)
    distance = (lambda a, b: jnp.mean(jnp.abs(a - b))) if ts.loss == "l1" else \
        (lambda a, b: jnp.mean(jnp.square(a - b)))

    @jax.jit
    def step(params, opt, key):
        z = jax.random.normal(key, (ts.batch_size, setup.g_cfg.z_dim))
        w_t = setup.T.apply(teacher_vars, z, method="map")[:, 0]

        def loss_fn(p):
            v = {"params": {**g_vars["params"], "mapping": p}, "buffers": g_vars["buffers"]}
            return distance(setup.G.apply(v, z, method="map")[:, 0], w_t)
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    key = jax.random.PRNGKey(setup.config.seed + 2)
    for i in range(ts.steps):
        key, sub = jax.random.split(key)
        params, opt, loss = step(params, opt, sub)
        if i % 500 == 0 or i == ts.steps - 1:
            writer.write_scalars(i, {f"two_stage/{ts.loss}": float(loss)})
    return {"params": {**g_vars["params"], "mapping": params}, "buffers": g_vars["buffers"]}


# ---------------------------------------------------------------------------------------
# Samples and exports


def make_sampler(setup: Setup):
    """Jitted (g_vars, teacher_vars, z) -> (teacher images or None, student images), const noise."""
    @jax.jit
    def sample(g_vars, teacher_vars, z):
        student = setup.G.apply(g_vars, z, noise_mode="const")
        teacher = setup.T.apply(teacher_vars, z, noise_mode="const") if setup.T is not None else None
        return teacher, student
    return sample


def sample_grid(teacher, student) -> np.ndarray:
    """A uint8 grid: a teacher row above a student row (or student images only)."""
    rows = [np.asarray(student)] if teacher is None else [np.asarray(teacher), np.asarray(student)]
    batch = np.concatenate(rows)
    return images.grid(images.to_uint8(batch), columns=len(rows[-1]), pad=2)


def export_student(workdir: str, setup: Setup, state: TrainState) -> None:
    """Write the student as a generator checkpoint `generate` loads (EMA as g_ema); a run
    started from config.init_from records it and that checkpoint's own step."""
    host = jax.tree_util.tree_map(np.asarray, jax.device_get(
        {"g_ema": {"params": state.g_ema, "buffers": state.g["buffers"]}, "g": state.g, "d": state.d}))
    provenance = {}
    if setup.config.init_from:
        provenance = dict(init_from=setup.config.init_from,
                          init_from_step=checkpoint.read_architecture(setup.config.init_from)[2].get("step"))
    checkpoint.save(os.path.join(workdir, "student"), host, setup.g_cfg, setup.d_cfg, overwrite=True,
                    step=int(state.step), teacher=setup.config.teacher or None, **provenance)


# ---------------------------------------------------------------------------------------
# The loop


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class TrainingInterrupted(KeyboardInterrupt):
    """Training left on Ctrl-C or SIGTERM after checkpointing the step it had reached."""

    def __init__(self, signum: int, step: int, directory):
        super().__init__(f"stopped by {signal_name(signum)} at step {step}: its checkpoint is in "
                         f"{directory}/{step}; run the same command to resume")
        self.signum = signum


class StopRequest:
    """Ctrl-C or SIGTERM (a preemption, `scancel`, `kill`) asks the training loop to checkpoint
    the step it is on and leave, so no step is lost between periodic checkpoints. A second
    signal stops at once (the last checkpoint on disk stays the resume point). Single-process
    runs only: the processes of a multi-process run would have to agree on the step; there the
    signals keep their default effect."""

    def __init__(self):
        self.signum = None   # SIGINT or SIGTERM once asked
        self._previous = {}

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                # A script's background job starts with SIGINT ignored: it stays so.
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._ask)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _ask(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt   # asked twice: stop now
        self.signum = signum
        how = signal_name(signum)
        print(f"\n{how}: saving a checkpoint of the step reached, then stopping ({how} again stops "
              f"at once, losing the steps since the last checkpoint)", flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    config_lib.validate(config)
    workdir = os.path.abspath(workdir)
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
    if config.batch_size % (mesh.shape["data"]) or config.batch_size % jax.process_count():
        raise ValueError(f"config.batch_size={config.batch_size} must divide evenly over the "
                         f"{mesh.shape['data']} data-parallel devices and {jax.process_count()} processes")
    is_main = jax.process_index() == 0
    from clu import metric_writers   # TensorBoard (TensorFlow): only the training loop writes it
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    if is_main:   # and the same scalars as JSON lines, for reports (run_log.py)
        writer = metric_writers.MultiWriter([writer, run_log.JsonlWriter(workdir)])

    setup, g_vars, d_init, consts = build(config)
    _print_networks(setup, consts)
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))
    abstract = jax.eval_shape(lambda: init_state(setup, g_vars, d_init))
    state_sharding = sharding.param_sharding(mesh, abstract)
    latest = manager.latest_step()
    if latest is not None:
        target = jax.tree_util.tree_map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                        abstract, state_sharding)
        try:
            state = manager.restore(latest, args=ocp.args.StandardRestore(target))
        except (ValueError, KeyError, TypeError) as e:   # orbax: a tree or shape mismatch
            raise ValueError(
                f"cannot resume {manager.directory} at step {latest}: its checkpoint holds other "
                f"networks than this config builds ({str(e).splitlines()[0][:200]}); the teacher "
                f"or the student changed since the run started: use a new --workdir, or the config "
                f"the run was started with") from None
        logging.info("resumed from %s step %d", manager.directory, latest)
    else:
        if config.teacher and config.student.mapping_init == "two_stage":
            g_vars = pretrain_mapping(setup, g_vars, consts["teacher"], writer)
        state = jax.device_put(init_state(setup, g_vars, d_init), state_sharding)
    consts = jax.device_put(consts, sharding.replicated(mesh))

    step_fn = jit_train_step(setup, mesh, state_sharding)
    compiled = {}   # (r1, pl) -> the compiled step of that kind
    sampler = make_sampler(setup)
    sample_z = jnp.asarray(seed_latents(list(config.sample_seeds), setup.g_cfg.z_dim))

    start = int(state.step)
    local_batch = config.batch_size // jax.process_count()
    data = input_pipeline.make_dataset(config.data.source, setup.d_cfg.resolution, local_batch,
                                       seed=config.seed, start_step=start,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count(), flip=config.data.flip)
    print(input_pipeline.describe(config.data.source), flush=True)
    batches = sharding.prefetch_to_mesh(data, mesh)
    speed = progress.TrainingProgress(start, config.total_steps, config.batch_size)
    log_every = log_interval(config)
    pending = []
    saving = None   # the step whose asynchronous checkpoint write may still be running
    with StopRequest() as stop:
        # Every way out of this loop (an error, a NaN, a second Ctrl-C) first waits for that write
        # (_stop); Ctrl-C or SIGTERM checkpoints the step reached before leaving (StopRequest).
        try:
            if start == config.total_steps:   # stopped between its last checkpoint and the export?
                _export_if_missing(workdir, setup, state, manager)
            for step in range(start, config.total_steps):
                if stop.signum is not None:   # asked between steps (while compiling or evaluating)
                    _leave(stop, workdir, setup, state, manager, saving)
                real = next(batches)
                phases = lazy_phases(config, step)
                if phases not in compiled:
                    names = " + ".join(n for n, on in zip(("R1", "path length"), phases) if on) or "no"
                    print(f"step {step}/{config.total_steps}: compiling the training step with {names} "
                          f"regularisation (a minute on a CPU, seconds on a GPU/TPU) ...", flush=True)
                    started = time.time()
                    compiled[phases] = step_fn.lower(state, real, consts, *phases).compile()
                    # Processes that finish compiling at different times meet here, not at a collective.
                    sharding.wait_for_all_processes(f"training step {phases} compiled in {workdir}")
                    speed.compiling(time.time() - started)   # not part of steps/s and the ETA
                state, metrics = compiled[phases](state, real, consts)
                pending.append(metrics)
                done = step + 1
                is_last = done == config.total_steps
                log_now = done % log_every == 0 or is_last or done % config.checkpoint_every_steps == 0
                # A failed background write stops the run now, not at the next save: checked every
                # step once it has ended (one process), and waited for at every log step (the same
                # steps on all processes).
                if saving is not None and (log_now or jax.process_count() == 1
                                           and not manager.is_saving_in_progress()):
                    saving = _finish_save(manager, saving)
                if log_now:
                    _check_finite(pending, done)
                    host = jax.device_get(pending)
                    summary = {k: float(np.nanmean([m[k] for m in host])) for k in host[-1]
                               if k != "finite" and not np.all(np.isnan([m[k] for m in host]))}
                    if is_main:
                        summary.update(speed.measure(done))
                    writer.write_scalars(done, summary)
                    pending = []
                if done % config.sample_every_steps == 0 or is_last:
                    teacher_img, student_img = sampler({"params": state.g_ema, "buffers": state.g["buffers"]},
                                                       consts.get("teacher"), sample_z)
                    grid = sample_grid(teacher_img, student_img)
                    writer.write_images(done, {"samples/teacher_over_student": grid[None]})
                    if is_main:
                        os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
                        images.save_png(os.path.join(workdir, "samples", f"{done:07d}.png"), grid)
                if done % config.checkpoint_every_steps == 0 or is_last:
                    saving = _start_save(manager, done, state)   # async: training goes on
                    _export(workdir, setup, state, manager)
                periodic = config.eval.every_steps and done % config.eval.every_steps == 0
                if config.eval.metrics and (periodic or is_last):
                    metrics = (config.eval.metrics if is_last
                               else config.eval.every_metrics or config.eval.metrics)
                    writer.write_scalars(done, run_evaluation(setup, state, consts, config, metrics))
            if saving is not None:
                saving = _finish_save(manager, saving)
            if stop.signum is not None:   # asked during the last step: its checkpoint is written
                _leave(stop, workdir, setup, state, manager, saving)
        except BaseException as error:
            _stop(error, manager, writer)
    writer.close()
    manager.close()
    return state


def run_evaluation(setup: Setup, state: TrainState, consts, config, metrics: str) -> dict:
    """`metrics` (e.g. 'consistency,fdvgg2k') of the EMA student, as {'eval/NAME': value} (and
    'eval/seconds')."""
    start = time.time()
    e = config.eval
    args = argparse.Namespace(
        data=config.data.source, inception=e.inception, fid_protocol=e.fid_protocol, batch=e.batch,
        seed=0, ppl_samples=e.ppl_samples, ppl_crop=e.ppl_crop, consistency_samples=e.consistency_samples,
        cache_dir=os.path.expanduser("~/.cache/stylekd_jax/fid"), targets=None, json=None,
        lpips_weights=config.loss.lpips_weights or None)
    lpips_params = consts.get("lpips") or load_lpips_params(config.loss.lpips_weights or None)
    student = jax.device_get({"params": state.g_ema, "buffers": state.g["buffers"]})
    teacher = (setup.T, consts["teacher"]) if setup.T is not None else None
    results = evaluate.run_metrics(evaluate.parse_metrics(metrics), setup.G, student,
                                   lpips_fn(lpips_params, resize_to=256), args, teacher)
    return {**{f"eval/{k}": v for k, v in results.items()}, "eval/seconds": time.time() - start}


# ---------------------------------------------------------------------------------------
# Stopping without losing what is written


class _NonFiniteLoss(FloatingPointError):
    """A NaN/Inf loss at `step`; reworded by `_stop` once the checkpoint on disk is known."""

    def __init__(self, step: int):
        super().__init__(f"non-finite loss at step {step}")
        self.step = step


def _check_finite(pending, step: int) -> None:
    """Stop on a NaN/Inf loss before anything is saved; the last good checkpoint stays intact."""
    bad = [i for i, m in enumerate(pending) if not bool(m["finite"])]
    if bad:
        raise _NonFiniteLoss(step - len(pending) + bad[0] + 1)


def _latest_on_disk(manager) -> int | None:
    """The newest checkpoint step that is complete on disk (re-read, not orbax's cached list)."""
    try:
        manager.reload()
        return manager.latest_step()
    except Exception:   # the directory itself is unreadable
        return None


def _on_disk(manager) -> str:
    latest = _latest_on_disk(manager)
    if latest is None:
        return f"No checkpoint is on disk in {manager.directory} yet, so a rerun starts from step 0"
    return f"The checkpoint of step {latest} ({manager.directory}/{latest}) is on disk, complete"


def _save_failed(what: str, path, error: BaseException, manager) -> checkpoint.CheckpointSaveError:
    """One line: what could not be written where and why, the free space there, what is on disk."""
    reason = " ".join(str(error).split())[:200] or "no message"
    free = checkpoint.free_bytes(str(path))
    latest = _latest_on_disk(manager)
    size = checkpoint.folder_bytes(os.path.join(str(manager.directory), str(latest))) if latest else 0
    space = "" if free is None else f"; {free / 2 ** 30:.2f} GiB free on that disk" + (
        f", a checkpoint takes {size / 2 ** 20:.1f} MiB" if size else "")
    return checkpoint.CheckpointSaveError(
        f"writing {what} to {path} failed ({type(error).__name__}: {reason}){space}. "
        f"{_on_disk(manager)}: free some space (or fix the path), then rerun the same command")


def _start_save(manager, step: int, state: TrainState) -> int:
    """Start the asynchronous checkpoint of `step`; returns the step."""
    try:
        manager.save(step, args=ocp.args.StandardSave(state))
    except Exception as e:   # an earlier write's failure, or this one's synchronous part
        raise _save_failed(f"checkpoint step {step}", manager.directory / str(step), e, manager) from None
    return step


def _finish_save(manager, step: int) -> None:
    """Wait for the checkpoint write of `step`; a failed one stops training with one line."""
    path = manager.directory / str(step)
    try:
        manager.wait_until_finished()
        manager.check_for_errors()
        if not (path.exists() and ocp.utils.is_checkpoint_finalized(path)):
            raise OSError("the write ended without completing the checkpoint")
    except Exception as e:
        raise _save_failed(f"checkpoint step {step}", path, e, manager) from None
    return None


def _export(workdir: str, setup: Setup, state: TrainState, manager) -> None:
    """export_student; a failed write (the previous export stays whole) stops with one line."""
    try:
        export_student(workdir, setup, state)
    except Exception as e:
        raise _save_failed(f"the student export of step {int(state.step)}",
                           os.path.join(workdir, "student"), e, manager) from None


def _export_if_missing(workdir: str, setup: Setup, state: TrainState, manager) -> None:
    """A run resumed at its last step: export the student unless that export is complete."""
    needed = not checkpoint.is_complete(os.path.join(workdir, "student"), step=int(state.step))
    sharding.wait_for_all_processes(f"export of {workdir} checked")   # nobody writes before all looked
    if needed:
        _export(workdir, setup, state, manager)


def _leave(stop: StopRequest, workdir: str, setup: Setup, state: TrainState, manager, saving) -> None:
    """Checkpoint and export the step reached (unless its checkpoint is written already), then
    raise TrainingInterrupted: what Ctrl-C or SIGTERM asked for (StopRequest)."""
    step = int(state.step)
    if saving is not None:
        _finish_save(manager, saving)
    if manager.latest_step() != step:
        _finish_save(manager, _start_save(manager, step, state))
        _export(workdir, setup, state, manager)
    raise TrainingInterrupted(stop.signum, step, manager.directory)


def _stop(error: BaseException, manager, writer) -> None:
    """Leave the loop on `error` only after the checkpoint being written is on disk (or has
    failed), then re-raise it; a NaN stop names the checkpoint really on disk."""
    try:
        manager.wait_until_finished()
    except Exception:
        pass   # the failed write is not on disk, which the messages below go by
    try:
        writer.flush()
    except Exception:
        pass
    if isinstance(error, _NonFiniteLoss):
        raise FloatingPointError(
            f"non-finite loss at step {error.step}; training stopped. {_on_disk(manager)}: lower "
            f"config.lr or check the data, then rerun the same command") from None
    if isinstance(error, input_pipeline.DataError):
        raise input_pipeline.DataError(f"{error}. {_on_disk(manager)}: fix the data, then rerun "
                                       f"the same command") from None
    raise error


def _print_networks(setup: Setup, consts) -> None:
    g_params = num_params(setup.g_cfg)
    lines = [f"generator  {setup.g_cfg.resolution}px channels {list(setup.g_cfg.channels)} "
             f"kernel {setup.g_cfg.kernel_size}: {g_params / 1e6:.2f}M params"]
    if setup.teacher_cfg is not None:
        t_params = count_params(consts["teacher"]["params"])
        lines.append(f"teacher    {t_params / 1e6:.2f}M params (compression {t_params / g_params:.1f}x)")
    for line in lines:
        logging.info(line)
