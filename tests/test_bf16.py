"""bfloat16 compute with float32 where precision matters (config.dtype='bfloat16').

The policy: parameters, Adam moments and the EMA stay float32; convolutions (G, D, teacher,
LPIPS-VGG) run in bfloat16; losses, R1 / path-length gradients' squares, demodulation,
normalisations and the ToRGB layers run in float32. Checked on the tiny teacher: the bf16
generator against float32 (PSNR), a 50-step bf16 distillation against float32, R1's double
backward, and the step's own program (which dtype each convolution and each transcendental
runs in).
"""

import functools

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np
import pytest

from stylekd_jax import checkpoint
from stylekd_jax.config import base_config
from stylekd_jax.images import to_float
from stylekd_jax.networks import make_generator
from stylekd_jax.train import build, d_r1_loss, g_pl_loss, init_state, train_step
from tests.conftest import tiny_overrides

STEPS = 50


def psnr(a, b, peak: float = 2.0) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2, as 255 for uint8)."""
    return float(10 * np.log10(peak ** 2 / np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b)))))


def test_bf16_generator_matches_float32_on_the_teacher(tiny_teacher):
    cfg, variables = checkpoint.load_generator(tiny_teacher)
    z = jnp.asarray(np.random.RandomState(0).randn(32, cfg.z_dim), jnp.float32)
    images = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        model = make_generator(cfg, dtype)
        images[dtype] = jax.jit(lambda v, z, m=model: m.apply(v, z, noise_mode="const"))(variables, z)
    assert images[jnp.bfloat16].dtype == jnp.float32          # the image itself is float32
    value = psnr(images[jnp.float32], images[jnp.bfloat16])
    assert value >= 40.0, value
    assert value < 90.0, value                                  # and bf16 really ran


@functools.cache
def _float32_generator(cfg):
    """Compiled once per architecture (op by op, each small op would compile on its own)."""
    return jax.jit(lambda v, z: make_generator(cfg).apply(v, z, noise_mode="const"))


def _teacher_student_l1(setup, teacher_vars, student_vars) -> float:
    """Mean |T(z) - S(z)| of 64 fixed z, both networks in float32, constant noise."""
    z = jnp.asarray(np.random.RandomState(123).randn(64, setup.g_cfg.z_dim), jnp.float32)
    t = _float32_generator(setup.teacher_cfg)(teacher_vars, z)
    s = _float32_generator(setup.g_cfg)(student_vars, z)
    return float(jnp.mean(jnp.abs(t - s)))


@pytest.fixture(scope="module")
def runs(tiny_teacher):
    """{dtype: dict(setup, inputs, state after STEPS steps, kd_l1 per step, T-S L1 before/after)}:
    the same seed, data and draws in both dtypes; the plain kind of step (R1 and path length
    are checked on their own below)."""
    out = {}
    for dtype in ("float32", "bfloat16"):
        config = base_config()
        config.update_from_flattened_dict(tiny_overrides(tiny_teacher, "unused", dtype=dtype))
        setup, g_vars, d_init, consts = build(config)
        state = init_state(setup, g_vars, d_init)
        first = state
        real = jnp.asarray(np.random.RandomState(0).randint(0, 256, (config.batch_size, 16, 16, 3), np.uint8))
        step = jax.jit(lambda st, r, c, s=setup: train_step(st, r, c, s, False, False))
        l1 = []
        for _ in range(STEPS):
            state, metrics = step(state, real, consts)
            l1.append(float(metrics["kd_l1"]))
            assert bool(metrics["finite"])
        out[dtype] = dict(setup=setup, inputs=(first, real, consts), state=state, kd_l1=np.array(l1),
                          before=_teacher_student_l1(setup, consts["teacher"], g_vars),
                          after=_teacher_student_l1(setup, consts["teacher"], state.g))
    return out


def test_bf16_distillation_tracks_float32(runs):
    f32, bf16 = runs["float32"], runs["bfloat16"]
    assert f32["before"] == pytest.approx(bf16["before"])       # the same initial student
    for r in (f32, bf16):
        assert r["after"] < 0.9 * r["before"], (r["before"], r["after"])   # both learned
    assert abs(bf16["after"] / f32["after"] - 1) < 0.05, (f32["after"], bf16["after"])
    # The loss the step reports follows the same curve (last 10 steps).
    assert abs(bf16["kd_l1"][-10:].mean() / f32["kd_l1"][-10:].mean() - 1) < 0.05


def test_bf16_keeps_parameters_adam_moments_and_ema_float32(runs):
    state = runs["bfloat16"]["state"]
    for name in ("g", "g_ema", "d", "g_opt", "d_opt"):
        leaves = [x for x in jax.tree_util.tree_leaves(getattr(state, name))
                  if jnp.issubdtype(x.dtype, jnp.floating)]
        assert leaves and all(x.dtype == jnp.float32 for x in leaves), name


def _flops_by_dtype(jaxpr, out=None) -> dict:
    """{'conv' | 'dot': {dtype: FLOPs}} and {'transcendental': {dtype: count}} of a jaxpr, sub-jaxprs included."""
    out = out if out is not None else {"conv": {}, "dot": {}, "transcendental": {}}
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            lhs, rhs = (v.aval for v in eqn.invars)
            outshape = eqn.outvars[0].aval.shape
            rhs_out_dim = eqn.params["dimension_numbers"].rhs_spec[0]
            flops = 2 * np.prod(outshape) * np.prod(rhs.shape) / rhs.shape[rhs_out_dim]
            out["conv"][str(lhs.dtype)] = out["conv"].get(str(lhs.dtype), 0) + flops
        elif name == "dot_general":
            lhs = eqn.invars[0].aval
            (contract, _), _ = eqn.params["dimension_numbers"]
            flops = 2 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs.shape[d] for d in contract])
            out["dot"][str(lhs.dtype)] = out["dot"].get(str(lhs.dtype), 0) + flops
        elif name in ("rsqrt", "sqrt", "exp", "log", "log1p", "logistic"):
            dtype = str(eqn.invars[0].aval.dtype)
            out["transcendental"][dtype] = out["transcendental"].get(dtype, 0) + 1
        for sub in jax_core.jaxprs_in_params(eqn.params):
            _flops_by_dtype(sub, out)
    return out


def test_bf16_step_runs_convolutions_in_bf16_and_normalisations_in_float32(runs):
    counts = {}
    for dtype in ("float32", "bfloat16"):
        r = runs[dtype]
        jaxpr = jax.make_jaxpr(lambda st, x, c, s=r["setup"]: train_step(st, x, c, s, True, True))(*r["inputs"])
        counts[dtype] = _flops_by_dtype(jaxpr.jaxpr)
    assert set(counts["float32"]["conv"]) == {"float32"}
    conv = counts["bfloat16"]["conv"]
    # Every big convolution (G, D, teacher, LPIPS-VGG, forward and backward) is bf16; float32
    # ones are the ToRGB layers and LPIPS' one-channel heads.
    assert conv.get("bfloat16", 0) / sum(conv.values()) > 0.9, conv
    # rsqrt (demodulation, z normalisation), sqrt (LPIPS unit-normalise, path lengths),
    # exp/log (softplus GAN losses, LD softmax) never run in bf16.
    assert set(counts["bfloat16"]["transcendental"]) == {"float32"}, counts["bfloat16"]["transcendental"]


def test_r1_and_path_length_gradients_in_bf16_are_finite_and_close(runs):
    """R1 on one batch; path length on 4 draws (its random image-space direction makes single
    draws' bf16 error spread: 4-23% measured on this network, median 7-9%)."""
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])  # noqa: E731
    grads = {}
    for dtype in ("float32", "bfloat16"):
        r = runs[dtype]
        state, real, _ = r["inputs"]
        setup = r["setup"]
        r1 = jax.jit(jax.grad(lambda p, s=setup: d_r1_loss(p, to_float(real), state.step, s)[0]))(state.d["params"])
        pl = jax.jit(jax.grad(lambda p, key, s=setup: g_pl_loss(p, state.g["buffers"], jnp.float32(1.0),
                                                                  key, s)[0]))
        grads[dtype] = {"R1": [flat(r1)],
                        "path length": [flat(pl(state.g["params"], jax.random.PRNGKey(k))) for k in range(4)]}
    for name in ("R1", "path length"):
        errors = []
        for a, b in zip(grads["float32"][name], grads["bfloat16"][name]):
            assert np.all(np.isfinite(b)), name                     # no NaN from the double backward
            assert np.linalg.norm(a) > 0, name
            errors.append(np.linalg.norm(b - a) / np.linalg.norm(a))
        assert max(errors) < 0.3 and np.median(errors) < 0.1, (name, errors)
