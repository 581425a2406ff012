"""FID statistics, Fréchet distance and KID against closed forms and direct NumPy/SciPy."""

import numpy as np
import pytest
import scipy.linalg

from stylekd_jax.metrics import FeatureStats, frechet_distance, kid


def test_frechet_diagonal_closed_form():
    rng = np.random.RandomState(0)
    mu1, mu2 = rng.randn(6), rng.randn(6)
    s1, s2 = rng.rand(6) + 0.1, rng.rand(6) + 0.1
    want = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(want, rel=1e-10)
    assert frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0, abs=1e-10)


def test_frechet_matches_direct_sqrtm():
    rng = np.random.RandomState(1)
    a, b = rng.randn(200, 8), rng.randn(300, 8) @ rng.randn(8, 8) + 0.5
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)


def test_frechet_singular_covariances_are_finite():
    rng = np.random.RandomState(2)
    a, b = rng.randn(3, 10), rng.randn(4, 10)  # fewer rows than dims: singular covariances
    d = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert np.isfinite(d)


@pytest.mark.parametrize("unbiased", [False, True])
def test_streaming_stats_equal_one_shot(unbiased):
    rng = np.random.RandomState(3)
    x = rng.randn(103, 5).astype(np.float32) * 3 + 1
    stats = FeatureStats()
    for chunk in np.array_split(x, 7):
        stats.update(chunk)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats.mean, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov(unbiased), np.cov(x64, rowvar=False, bias=not unbiased),
                               rtol=1e-10, atol=1e-12)


def _kid_direct(real, gen, num_subsets, max_subset_size, seed):
    rng = np.random.RandomState(seed)
    m, d = min(len(real), len(gen), max_subset_size), real.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    vals = []
    for _ in range(num_subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
        off = lambda q: (q.sum() - np.trace(q)) / (m * (m - 1))
        vals.append(off(kxx) + off(kyy) - 2 * kxy.mean())
    return np.mean(vals)


def test_kid_matches_direct_formula():
    rng = np.random.RandomState(4)
    real, gen = rng.randn(60, 7), rng.randn(50, 7) + 0.3
    got = kid(real, gen, num_subsets=5, max_subset_size=40, seed=3)
    assert got == pytest.approx(_kid_direct(real, gen, 5, 40, 3), rel=1e-10)
    assert got > 0


def test_save_load_roundtrip_and_key_mismatch(tmp_path):
    rng = np.random.RandomState(5)
    stats = FeatureStats(keep_features=True, key="ffhq256/pytorch-fid")
    stats.update(rng.randn(20, 4))
    path = tmp_path / "stats.npz"
    stats.save(path)
    loaded = FeatureStats.load(path, key="ffhq256/pytorch-fid")
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.cov(True), stats.cov(True))
    np.testing.assert_array_equal(loaded.features, stats.features)
    assert loaded.n == 20 and loaded.key == "ffhq256/pytorch-fid"
    with pytest.raises(ValueError, match=r"'ffhq256/pytorch-fid'.*'church256/nvlabs'"):
        FeatureStats.load(path, key="church256/nvlabs")
