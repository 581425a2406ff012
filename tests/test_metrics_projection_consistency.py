"""Projection into W+ and noise, and teacher-student consistency, on tiny 16px generators."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylekd_jax.metrics import consistency, project
from stylekd_jax.metrics.projection import noise_maps, random_noise, synthesize_with_noise
from tests.test_metrics_ppl import tiny_generator
from tests.conftest import set_noise_strength


@pytest.fixture(scope="module")
def gens():
    return tiny_generator(0), tiny_generator(1)


@pytest.fixture(scope="module")
def lpips16():
    from stylekd_jax.lpips import lpips_fn
    return lpips_fn()


def test_synthesize_with_noise_equals_const_mode(gens):
    (G, v), _ = gens
    ws = G.apply(v, jax.random.normal(jax.random.PRNGKey(0), (3, 16)), method="map")
    maps = {k: jnp.broadcast_to(m, (3,) + m.shape) for k, m in noise_maps(v).items()}
    want = G.apply(v, ws, noise_mode="const", method="synthesize")
    synth = jax.jit(lambda v, ws, maps: synthesize_with_noise(G, v, ws, maps))
    np.testing.assert_allclose(synth(v, ws, maps), want, atol=1e-5)
    other = synth(v, ws, random_noise(jax.random.PRNGKey(1), v, 3))
    assert float(jnp.abs(other - want).max()) > 1e-3


def test_projection_reduces_mse(gens, lpips16):
    (G, v), _ = gens
    ws = G.apply(v, jax.random.normal(jax.random.PRNGKey(5), (2, 16)), method="map")
    target = G.apply(v, ws, noise_mode="const", method="synthesize")
    seen = []
    res = project(G, v, target, lpips16, steps=20, lr=0.1, key=jax.random.PRNGKey(7),
                  progress=lambda d, t: seen.append(d))
    mse = np.mean((np.asarray(res.images) - np.asarray(target)) ** 2, axis=(1, 2, 3))
    assert res.history.shape == (20,) and res.history[-1] < 0.5 * res.history[0]
    assert np.all(mse < 0.5 * res.history[0])  # loss history: MSE + LPIPS per target
    assert res.ws.shape == (2, G.cfg.num_ws, 16) and res.images.shape == target.shape
    assert set(res.noises) == set(noise_maps(v)) and seen[-1] == 20
    assert res.psnr.shape == (2,) and res.lpips.shape == (2,)
    clipped = [np.clip(np.asarray(x, np.float64), -1, 1) for x in (res.images, target)]
    want = 10 * np.log10(4 / np.mean((clipped[0] - clipped[1]) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(res.psnr, want, rtol=1e-6)


def test_lbfgs_recovers_a_target_of_the_same_generator():
    """An 8px generator's own image (other W+, noise = the projector's initial draw) is found
    again to > 35 dB by L-BFGS in 40 steps; both PSNRs are reported."""
    from stylekd_jax.architecture import GeneratorConfig
    from stylekd_jax.metrics.psnr import psnr_official_compat
    from stylekd_jax.networks.generator import Generator, init_generator
    cfg = GeneratorConfig.teacher(8, channel_base=128, channel_max=8, z_dim=8, w_dim=8,
                                  mapping_features=(8, 8))
    v = jax.tree_util.tree_map(np.asarray, init_generator(cfg, jax.random.PRNGKey(0)))
    set_noise_strength(v, 0.2)
    G, key = Generator(cfg), jax.random.PRNGKey(7)
    ws = G.apply(v, jax.random.normal(jax.random.PRNGKey(5), (1, 8)), method="map")
    ws = ws + 0.3 * jax.random.normal(jax.random.PRNGKey(6), ws.shape)       # off the mean
    target = synthesize_with_noise(G, v, ws, random_noise(jax.random.split(key)[1], v, 1))
    mse_only = lambda x, y: jnp.zeros(x.shape[0])
    res = project(G, v, target, mse_only, steps=40, optimizer="lbfgs", key=key)
    assert res.history[0] > 1.0 and res.history[-1] < 1e-3 * res.history[0]
    assert res.psnr[0] > 35.0
    np.testing.assert_allclose(res.psnr_compat, psnr_official_compat(np.asarray(res.images),
                                                                     np.asarray(target)))
    assert res.mean_psnr_compat == pytest.approx(float(res.psnr_compat[0]))


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_consistency_self_is_exact_and_others_differ(gens, lpips16, noise_mode):
    (G, v), (G2, v2) = gens
    kw = dict(num_samples=10, batch=4, seed=0, noise_mode=noise_mode)
    same = consistency(G, v, G, v, lpips16, **kw)
    assert same["l1"] == 0 and same["lpips"] == 0 and same["mapping_l1"] == 0
    assert same["psnr"] == math.inf and same["num_samples"] == 10
    diff = consistency(G, v, G2, v2, lpips16, **kw)
    assert diff["l1"] > 0 and diff["lpips"] > 0 and diff["mapping_l1"] > 0
    assert np.isfinite(diff["psnr"])


def test_consistency_shares_the_teachers_const_noise(gens, lpips16):
    # Same weights, different noise buffers: with the teacher's maps shared, outputs are equal.
    (G, v), _ = gens
    v_other = jax.tree_util.tree_map(lambda x: x, v)
    v_other = {**v_other, "buffers": jax.tree_util.tree_map(lambda x: x, v["buffers"])}
    from stylekd_jax.metrics.projection import with_noise
    v_other = with_noise(v, random_noise(jax.random.PRNGKey(9), v))
    r = consistency(G, v, G, v_other, lpips16, num_samples=4, batch=4, noise_mode="const")
    assert r["l1"] == 0 and r["psnr"] == math.inf
