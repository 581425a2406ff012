"""Channel scores of a StyleGAN2 teacher: which channels an inherited, thinner synthesis keeps.

Every selector gives one score per channel of every slot of the per-layer `channels` list
(slot 0 the 4x4 const, slot i + 1 the output of conv layer i; see `architecture`); the
student keeps the highest-scoring channels of each slot (`student.init_student`).

* `magnitude` (data-free, instant): L1 norm of the weights that produce each channel (the
  const itself for slot 0, conv layer i's kernel per output channel for slot i + 1).
* `content_aware` (CAGAN, Liu et al., CVPR 2021, `Util/content_aware_pruning.py`): how much a
  channel's weights would have to change to reproduce salt-and-pepper noise on the face.
  For each batch of 10 samples z, L = sum |noisy - G(z)| where `noisy` is the image with 5% of
  its face pixels set to -1 or +1 (all colours alike; BiSeNet face mask, classes other than
  background and cloth) and held constant; score = mean |dL/dW| over kernel taps and output
  channels, summed over batches (400 samples). Cost: 400 forward+backward passes.
* `diversity_aware` (DCP-GAN, Chung et al., CVPR 2024, `Util/diversity_aware_pruning.py`): how
  differently a channel reacts to different latent edits. PCA of 10,000 mapped w's; each batch
  of 5 samples draws 10 principal directions d (with replacement, probability = explained
  variance ratio); for each d, L_d = sum |G(w + 5 d) - G(w)| and s_d = mean |dL_d/dW| as above,
  with the gradient flowing through both images (the official `generator.requires_grad = False`
  is a plain attribute and stops nothing) and each image drawing its own noise; score = sum
  over batches of sum_d (s_d - mean_d s_d)^2 (the spread over directions, not the mean).
  Cost: 5000 samples x 10 directions x 2 images, ~250x content_aware.

Both gradient scores follow the official code in which layer scores which slot: the weight
of the layer that *reads* the slot (b4.conv1 reads the const, conv layer i reads slot i, the
last ToRGB reads the last slot), per input channel; |.| is taken after summing the gradient
over the batch, so the batch size is part of the recipe. The stored weights are NVlabs' raw
weights and the score is the same function of them as of rosinality's (its 1/sqrt(fan_in)
gain cancels in demodulated convs and equals our style gain in ToRGB), so a converted teacher
gets the official scores up to the random draws. z, noise and salt-and-pepper draws come from
JAX keys; the official directions are signed as scikit-learn >= 1.5 does (largest |entry|
positive). StyleGAN2 only: StyleGAN3 students start from a random synthesis network.
"""

import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.architecture import GeneratorConfig, StyleGAN3Config
from stylekd_jax.networks.generator import Generator

SELECTORS = ("magnitude", "content_aware", "diversity_aware")
# Official defaults: (samples, batch). CAGAN prune.py: --n_sample 400 --batch_size 10;
# DCP-GAN prune.py: --n_sample 5000 --batch_size 5.
OFFICIAL = {"content_aware": (400, 10), "diversity_aware": (5000, 5)}
NOISE_PROB = 0.05          # CAGAN --noise_prob: salt-and-pepper density on face pixels
EDIT_STRENGTH = 5.0        # DCP-GAN --edit_strength (alpha)
NUM_DIRECTIONS = 10        # DCP-GAN --n_direction, per batch
PCA_SAMPLES = 10_000       # DCP-GAN: w's whose principal directions are edited along

MaskFn = Callable[[Any, jax.Array], jax.Array]   # (parser params, images [N,H,W,3]) -> [N,H,W,1]


# ----------------------------------------------------------------------------------------------
# Layer bookkeeping


def conv_layers(cfg: GeneratorConfig) -> list[tuple[str, str]]:
    """(block, layer) names of conv layer i (input slot i, output slot i + 1)."""
    layers = [("b4", "conv1")]
    for res in cfg.block_resolutions[1:]:
        layers += [(f"b{res}", "conv0"), (f"b{res}", "conv1")]
    return layers


def scored_layers(cfg: GeneratorConfig) -> list[tuple[str, str]]:
    """(block, layer) whose weight gradient scores slot i: the conv layers, then the last ToRGB."""
    return conv_layers(cfg) + [(f"b{cfg.resolution}", "torgb")]


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` largest scores, in increasing index order (ties: lower index first)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return np.sort(order[:n])


def magnitude_scores(cfg: GeneratorConfig, params: dict) -> list[np.ndarray]:
    """Slot 0: L1 norm of each const channel; slot i + 1: `sum |W[kh, kw, in, o]|` of conv
    layer i per output channel. Raw stored weights: the equalised-lr gain is one constant per
    layer and changes no ranking."""
    syn = params["synthesis"]
    scores = [np.abs(np.asarray(syn["b4"]["const"], np.float64)).sum(axis=(0, 1))]
    for block, layer in conv_layers(cfg):
        scores.append(np.abs(np.asarray(syn[block][layer]["weight"], np.float64)).sum(axis=(0, 1, 2)))
    return scores


# ----------------------------------------------------------------------------------------------
# Per-batch gradient scores (jitted once per config and batch shape)


def _weights(cfg, params) -> list:
    syn = params["synthesis"]
    return [syn[b][l]["weight"] for b, l in scored_layers(cfg)]


def _synthesize(cfg, variables, weights, ws, noise_mode, key):
    """Image of ws with the scored weights replaced by `weights` (the differentiated inputs)."""
    syn = dict(variables["params"]["synthesis"])
    for (b, l), w in zip(scored_layers(cfg), weights):
        syn[b] = {**syn[b], l: {**syn[b][l], "weight": w}}
    v = {"params": {**variables["params"], "synthesis": syn}, "buffers": variables["buffers"]}
    return Generator(cfg).apply(v, ws, noise_mode, method="synthesize", rngs={"noise": key})


def _l1(x: jax.Array) -> jax.Array:
    """sum |x| with torch's derivative sign(x), 0 at 0 (jnp.abs has 1 there, which would make
    every unchanged pixel of the official losses count)."""
    return jnp.sum(x * jax.lax.stop_gradient(jnp.sign(x)))


def _input_channel_scores(grads) -> list:
    """mean |g| over kernel taps and output channels, per input channel (HWIO weights)."""
    return [jnp.mean(jnp.abs(g), axis=(0, 1, 3)) for g in grads]


@functools.lru_cache(maxsize=None)
def _content_aware_fn(cfg, mask_fn, noise_mode):
    def step(variables, z, uniform, sign, noise_key, mask_params, noise_prob):
        ws = Generator(cfg).apply(variables, z, method="map")

        def loss(weights):
            img = _synthesize(cfg, variables, weights, ws, noise_mode, noise_key)
            ref = jax.lax.stop_gradient(img)
            hit = uniform < noise_prob
            if mask_fn is not None:
                hit = hit & (mask_fn(mask_params, ref) > 0.5)
            noisy = jnp.where(hit, sign, ref)      # a constant target, as the official clone
            return _l1(noisy - img)
        return _input_channel_scores(jax.grad(loss)(_weights(cfg, variables["params"])))
    return jax.jit(step)


def content_aware_batch(cfg, variables, z, uniform, sign, noise_key, *, noise_prob=NOISE_PROB,
                        mask_fn: MaskFn | None = None, mask_params=None,
                        noise_mode: str = "random") -> list[np.ndarray]:
    """CAGAN scores of one batch: per scored layer, mean |dL/dW| per input channel.

    z [N, z_dim]; uniform [N,H,W,1] in [0, 1) (a pixel is noised where uniform < noise_prob
    and it is face); sign [N,H,W,1] of -1/+1 (the noise value, the same for every colour);
    noise_key: the generator's per-pixel noise (noise_mode 'random', as official).
    """
    out = _content_aware_fn(cfg, mask_fn, noise_mode)(
        variables, z, uniform, sign, noise_key, mask_params, jnp.float32(noise_prob))
    return [np.asarray(s, np.float64) for s in out]


@functools.lru_cache(maxsize=None)
def _diversity_fn(cfg, noise_mode):
    def step(variables, z, directions, keys, strength):
        ws = Generator(cfg).apply(variables, z, method="map")
        weights = _weights(cfg, variables["params"])

        def one(args):
            d, key = args
            k_a, k_b = jax.random.split(key)

            def loss(weights):
                a = _synthesize(cfg, variables, weights, ws, noise_mode, k_a)
                b = _synthesize(cfg, variables, weights, ws + strength * d, noise_mode, k_b)
                return _l1(b - a)
            return _input_channel_scores(jax.grad(loss)(weights))
        # Sequential over directions: the memory of one official step, whatever the count.
        return jax.lax.map(one, (directions, keys))
    return jax.jit(step)


def diversity_batch(cfg, variables, z, directions, keys, *, strength=EDIT_STRENGTH,
                    noise_mode: str = "random") -> list[np.ndarray]:
    """DCP-GAN per-direction scores of one batch: per scored layer an array [D, C_in].

    z [N, z_dim]; directions [D, w_dim] (unit norm), added x strength to w on every layer;
    keys [D, 2]: per direction, the noise of its two images.
    """
    out = _diversity_fn(cfg, noise_mode)(variables, z, directions, keys, jnp.float32(strength))
    return [np.asarray(s, np.float64) for s in out]


def diversity_spread(per_direction: Sequence[np.ndarray]) -> list[np.ndarray]:
    """sum_d (s_d - mean_d s_d)^2 per channel: one batch's DCP-GAN score."""
    return [np.sum(np.square(s - s.mean(axis=0)), axis=0) for s in per_direction]


def pca_directions(cfg, variables, key, num: int = PCA_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """(unit principal directions [K, w_dim] by decreasing spread, explained variance ratios [K])
    of `num` mapped w's (no truncation), as DCP-GAN's PCA estimator."""
    z = jax.random.normal(key, (num, cfg.z_dim), jnp.float32)
    w = jax.jit(lambda v, z: Generator(cfg).apply(v, z, method="map")[:, 0])(variables, z)
    x = np.asarray(w, np.float64)
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    vt *= np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])[:, None]
    stdev = (x @ vt.T).std(axis=0)
    order = np.argsort(-stdev, kind="stable")
    vt, stdev = vt[order], stdev[order]
    vt /= np.linalg.norm(vt, axis=1, keepdims=True)
    return vt.astype(np.float32), stdev ** 2 / x.var(axis=0).sum()


# ----------------------------------------------------------------------------------------------
# Whole scorers


def _batch_sizes(samples: int, batch: int) -> list[int]:
    """The official split: full batches, the remainder added to the last one."""
    if samples <= batch:
        return [samples]
    n = samples // batch
    return [batch] * (n - 1) + [batch + samples % batch]


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _content_aware_draws(key, n, res, z_dim):
    """(next key, z, uniform [n,res,res,1], sign of -1/+1, the generator's noise key)."""
    key, k_z, k_u, k_s, k_n = jax.random.split(key, 5)
    z = jax.random.normal(k_z, (n, z_dim), jnp.float32)
    uniform = jax.random.uniform(k_u, (n, res, res, 1), jnp.float32)
    sign = jnp.where(jax.random.bernoulli(k_s, 0.5, (n, res, res, 1)), 1.0, -1.0)
    return key, z, uniform, sign, k_n


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _diversity_draws(key, n, z_dim, num_directions):
    """(next key, z, the noise keys of the directions)."""
    key, k_z, k_n = jax.random.split(key, 3)
    return key, jax.random.normal(k_z, (n, z_dim), jnp.float32), jax.random.split(k_n, num_directions)


class _Progress:
    """A progress line about every 10% of the samples (and at the end)."""

    def __init__(self, what: str, total: int, log: Callable[[str], None]):
        self.what, self.total, self.log = what, total, log
        self.done, self.next, self.start = 0, max(1, total // 10), time.time()

    def update(self, n: int):
        self.done += n
        if self.done >= self.next or self.done == self.total:
            elapsed = time.time() - self.start
            left = elapsed / self.done * (self.total - self.done)
            self.log(f"channel selection ({self.what}): {self.done}/{self.total} samples, "
                     f"{elapsed:.1f} s, ~{left:.0f} s left")
            self.next = self.done + max(1, self.total // 10)


def content_aware_scores(cfg, variables, key, *, samples: int = 400, batch: int = 10,
                         noise_prob: float = NOISE_PROB, mask_fn: MaskFn | None = None,
                         mask_params=None, noise_mode: str = "random",
                         log: Callable[[str], None] = print) -> list[np.ndarray]:
    """CAGAN content-aware scores per slot (module docstring). `mask_fn(mask_params, images)`
    gives the face mask ([N,H,W,1], > 0.5 is face); without it the whole image counts as face."""
    if mask_fn is None:
        log("channel selection (content_aware): no face parser given, the whole image counts "
            "as face (CAGAN noises face pixels only)")
    total = None
    progress = _Progress("content_aware", samples, log)
    res = cfg.resolution
    for n in _batch_sizes(samples, batch):
        key, z, uniform, sign, k_n = _content_aware_draws(key, n, res, cfg.z_dim)
        s = content_aware_batch(cfg, variables, z, uniform, sign, k_n, noise_prob=noise_prob,
                                mask_fn=mask_fn, mask_params=mask_params, noise_mode=noise_mode)
        total = s if total is None else [a + b for a, b in zip(total, s)]
        progress.update(n)
    return total


def diversity_aware_scores(cfg, variables, key, *, samples: int = 5000, batch: int = 5,
                           strength: float = EDIT_STRENGTH, num_directions: int = NUM_DIRECTIONS,
                           pca_samples: int = PCA_SAMPLES, noise_mode: str = "random",
                           log: Callable[[str], None] = print) -> list[np.ndarray]:
    """DCP-GAN diversity-aware scores per slot (module docstring)."""
    key, k_pca, k_rng = jax.random.split(key, 3)
    directions, var_ratio = pca_directions(cfg, variables, k_pca, pca_samples)
    p = var_ratio / var_ratio.sum()
    rng = np.random.RandomState(int(jax.random.randint(k_rng, (), 0, 2 ** 31 - 1)))
    total = None
    progress = _Progress("diversity_aware", samples, log)
    for n in _batch_sizes(samples, batch):
        key, z, keys = _diversity_draws(key, n, cfg.z_dim, num_directions)
        chosen = directions[rng.choice(len(p), num_directions, p=p)]
        s = diversity_spread(diversity_batch(cfg, variables, z, chosen, keys,
                                             strength=strength, noise_mode=noise_mode))
        total = s if total is None else [a + b for a, b in zip(total, s)]
        progress.update(n)
    return total


def channel_scores(method: str, cfg, variables: dict, key: jax.Array | None = None, *,
                   samples: int | None = None, batch: int | None = None,
                   mask_fn: MaskFn | None = None, mask_params=None,
                   log: Callable[[str], None] = print) -> list[np.ndarray]:
    """Per-slot channel scores of a teacher by `method` (one of SELECTORS); higher = keep.

    samples / batch default to the official 400 / 10 (content_aware) and 5000 / 5
    (diversity_aware); magnitude needs neither data nor `key`.
    """
    if method not in SELECTORS:
        raise ValueError(f"channel selection must be one of {SELECTORS}, got {method!r}")
    if isinstance(cfg, StyleGAN3Config):
        raise ValueError(f"synthesis_init='inherit' (channel selection {method!r}) is "
                         f"implemented for StyleGAN2 teachers only; StyleGAN3 students start "
                         f"from a random synthesis network (synthesis_init='random')")
    if method == "magnitude":
        return magnitude_scores(cfg, variables["params"])
    official_samples, official_batch = OFFICIAL[method]
    samples = official_samples if samples is None else int(samples)
    batch = official_batch if batch is None else int(batch)
    if samples < 1 or batch < 1:
        raise ValueError(f"channel selection {method!r}: samples and batch must be >= 1, "
                         f"got {samples} and {batch}")
    if key is None:
        raise ValueError(f"channel selection {method!r} draws samples: give a PRNG key")
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    if method == "content_aware":
        return content_aware_scores(cfg, variables, key, samples=samples, batch=batch,
                                    mask_fn=mask_fn, mask_params=mask_params, log=log)
    return diversity_aware_scores(cfg, variables, key, samples=samples, batch=batch, log=log)
