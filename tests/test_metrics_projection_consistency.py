"""Projection into W+ and noise, and teacher-student consistency, on tiny 16px generators."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylekd_jax.metrics import consistency, project
from stylekd_jax.metrics.projection import noise_maps, random_noise, synthesize_with_noise
from tests.test_metrics_ppl import tiny_generator


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


def test_projection_lbfgs_mse_only():
    G, v = tiny_generator(0)
    ws = G.apply(v, jax.random.normal(jax.random.PRNGKey(5), (1, 16)), method="map")
    target = G.apply(v, ws, noise_mode="const", method="synthesize")
    zero = lambda x, y: jnp.zeros(x.shape[0])
    res = project(G, v, target, zero, steps=5, optimizer="lbfgs", key=jax.random.PRNGKey(7))
    assert res.history[-1] < 0.5 * res.history[0]


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
