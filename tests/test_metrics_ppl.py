"""PPL: closed form on a linear fake generator, sampling modes, the percentile filter, the StyleKD
variant, and a smoke run on a tiny real generator with real LPIPS."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylekd_jax.metrics import path_length, percentile_filter_mean
from tests.conftest import set_noise_strength

EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class _Cfg:
    z_dim: int


class LinearG(nn.Module):
    """w = z repeated over 2 layers; image [N, 2, D, 1] = scale * ws (linear in w, no noise)."""

    cfg: _Cfg
    scale: float = 0.5

    def map(self, z):
        return jnp.repeat(z[:, None], 2, axis=1)

    def synthesize(self, ws, noise_mode="const", return_features=False):
        return self.scale * ws[..., None]


def sq_l2(x, y):
    return jnp.sum(jnp.square(x - y), axis=(1, 2, 3))


def test_percentile_filter_is_inclusive_lower_higher():
    x = np.arange(1000.0) ** 2
    np.random.RandomState(0).shuffle(x)
    assert percentile_filter_mean(x) == pytest.approx(np.mean(np.arange(9, 991) ** 2.0), rel=1e-12)


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_linear_generator_closed_form(sampling):
    # image difference = scale * eps * (w1 - w0) on 2 layers: dist/eps^2 = 2 scale^2 |z1 - z0|^2,
    # E = 2 * scale^2 * 2 * D = D for scale 0.5 (the 1-99 filter moves it by < 0.2%).
    d = 256
    G = LinearG(_Cfg(d))
    ppl = path_length(G, {}, sq_l2, jax.random.PRNGKey(0), num_samples=1000, batch=250,
                      epsilon=EPS, sampling=sampling)
    assert ppl == pytest.approx(d, rel=0.02)


def test_end_and_full_agree_for_linear_and_stylekd_variant_scales_by_eps2():
    G = LinearG(_Cfg(64))
    key = jax.random.PRNGKey(1)
    kw = dict(num_samples=100, batch=50, epsilon=EPS, return_distances=True)
    end, d_end = path_length(G, {}, sq_l2, key, sampling="end", **kw)
    full, d_full = path_length(G, {}, sq_l2, key, sampling="full", **kw)
    np.testing.assert_allclose(d_full, d_end, rtol=1e-2)  # float32 lerp round-off only
    sk, d_sk = path_length(G, {}, sq_l2, key, sampling="end", stylekd_variant=True, **kw)
    np.testing.assert_allclose(d_sk, d_end * EPS ** 2, rtol=1e-12)
    assert sk == pytest.approx(end * EPS ** 2, rel=1e-12)
    assert d_end.shape == (100,)


def test_num_samples_not_multiple_of_batch_and_progress():
    G = LinearG(_Cfg(8))
    seen = []
    _, d = path_length(G, {}, sq_l2, jax.random.PRNGKey(2), num_samples=7, batch=3,
                       return_distances=True, progress=lambda done, total: seen.append((done, total)))
    assert d.shape == (7,) and seen == [(3, 7), (6, 7), (7, 7)]


def test_tiny_generator_with_lpips_same_noise_vs_independent_noise(tiny_gen, lpips16):
    G, g_vars = tiny_gen
    key = jax.random.PRNGKey(3)
    kw = dict(num_samples=16, batch=8, return_distances=True)
    ppl, d = path_length(G, g_vars, lpips16, key, sampling="full", **kw)
    assert np.isfinite(ppl) and ppl > 0
    _, d_sk = path_length(G, g_vars, lpips16, key, sampling="full", stylekd_variant=True, **kw)
    # independent noise per image dominates StyleKD's (un-normalised) distances
    assert np.median(d_sk) > 100 * np.median(d) * EPS ** 2
    ppl_z = path_length(G, g_vars, lpips16, key, space="z", num_samples=8, batch=8)
    assert np.isfinite(ppl_z)


def tiny_generator(seed=0, noise_strength=0.2):
    """A 16px generator with random weights and non-zero noise strengths."""
    from stylekd_jax.architecture import GeneratorConfig
    from stylekd_jax.networks.generator import Generator, init_generator
    cfg = GeneratorConfig.teacher(16, channel_base=256, channel_max=16, z_dim=16, w_dim=16,
                                  mapping_features=(16, 16))
    variables = jax.tree_util.tree_map(np.asarray, init_generator(cfg, jax.random.PRNGKey(seed)))
    set_noise_strength(variables, noise_strength)
    return Generator(cfg), variables


@pytest.fixture(scope="module")
def tiny_gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def lpips16():
    from stylekd_jax.lpips import lpips_fn
    return lpips_fn()


def test_face_crop_of_a_1024px_image_is_box_downsampled_by_4_like_nvlabs():
    from stylekd_jax.metrics.ppl import _crop_and_resize
    img = np.random.RandomState(0).randn(1, 1024, 1024, 3).astype(np.float32)
    out = np.asarray(_crop_and_resize(jnp.asarray(img), crop=True, bilinear=False))
    c = 1024 // 8   # NVlabs: img[:, :, 3c:7c, 2c:6c], then factor = img_resolution // 256 = 4
    expected = img[:, 3 * c:7 * c, 2 * c:6 * c].reshape(1, 128, 4, 128, 4, 3).mean(axis=(2, 4))
    assert out.shape == (1, 128, 128, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_face_crop_window_rows_3_to_7_eighths_columns_2_to_6():
    from stylekd_jax.metrics.ppl import _crop_and_resize
    rows, cols = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    img = np.stack([rows, cols, rows * 0], axis=-1)[None].astype(np.float32)   # [1, 16, 16, 3]
    out = np.asarray(_crop_and_resize(jnp.asarray(img), crop=True, bilinear=False))
    assert out.shape == (1, 8, 8, 3)
    np.testing.assert_array_equal(out[0, :, 0, 0], np.arange(6, 14))   # rows 3c..7c-1, c = 2
    np.testing.assert_array_equal(out[0, 0, :, 1], np.arange(4, 12))   # columns 2c..6c-1
    same = np.asarray(_crop_and_resize(jnp.asarray(img), crop=False, bilinear=False))
    np.testing.assert_array_equal(same, img)
