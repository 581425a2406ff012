"""Losses vs independent NumPy computations of the official formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylekd_jax import losses


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_gan_losses():
    rng = np.random.RandomState(0)
    real, fake = rng.randn(6, 1).astype(np.float32) * 3, rng.randn(6, 1).astype(np.float32) * 3
    np.testing.assert_allclose(losses.g_nonsaturating(fake), _softplus(-fake).mean(), rtol=1e-6)
    np.testing.assert_allclose(losses.d_logistic(real, fake),
                               _softplus(fake).mean() + _softplus(-real).mean(), rtol=1e-6)
    a, b = rng.randn(2, 5, 3), rng.randn(2, 5, 3)
    np.testing.assert_allclose(losses.l1(a, b), np.abs(a - b).mean(), rtol=1e-6)


def test_r1_penalty_closed_form():
    rng = np.random.RandomState(1)
    x = rng.randn(3, 4, 4, 2).astype(np.float32)
    a = rng.rand(4, 4, 2).astype(np.float32)
    d_apply = lambda imgs: jnp.sum(a * imgs ** 2, axis=(1, 2, 3))[:, None]      # grad = 2 a x
    want = np.mean(np.sum((2 * a * x).reshape(3, -1) ** 2, axis=1))
    np.testing.assert_allclose(losses.r1_penalty(d_apply, x), want, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(losses.r1_penalty, static_argnums=0)(d_apply, x), want, rtol=1e-5)
    # Differentiable w.r.t. what d_apply closes over: d/dc of mean_N sum (2 c a x)^2 = 2 * pen / c.
    f = lambda c: losses.r1_penalty(lambda imgs: c * d_apply(imgs), x)
    np.testing.assert_allclose(jax.grad(f)(1.5), 2 * f(1.5) / 1.5, rtol=1e-5)


def test_path_length_linear_generator():
    rng = np.random.RandomState(2)
    n, num_ws, w_dim, h, w, c = 3, 4, 5, 6, 7, 3
    A = rng.randn(num_ws, w_dim, h, w, c).astype(np.float32)
    ws = rng.randn(n, num_ws, w_dim).astype(np.float32)
    synthesize = lambda v: jnp.einsum("nld,ldhwc->nhwc", v, A)
    lengths, noise = losses.path_length(synthesize, ws, jax.random.PRNGKey(0))
    noise = np.asarray(noise)
    assert noise.shape == (n, h, w, c)
    # noise = randn / sqrt(H * W): its variance is 1 / (H W).
    assert abs(noise.var() * h * w - 1) < 0.35
    g = np.einsum("ldhwc,nhwc->nld", A.astype(np.float64), noise)         # d sum(img n) / d ws
    want = np.sqrt(np.mean(np.sum(g ** 2, axis=2), axis=1))               # rosinality
    np.testing.assert_allclose(lengths, want, rtol=1e-5)


def test_path_length_penalty_uses_the_updated_mean():
    L = np.array([0.5, 1.0, 2.0, 0.7], np.float32)
    pl_mean = 0.8
    new = pl_mean + 0.01 * (L.mean() - pl_mean)
    pen, got_mean = losses.path_length_penalty(L, pl_mean)
    np.testing.assert_allclose(got_mean, new, rtol=1e-6)
    np.testing.assert_allclose(pen, np.mean((L - new) ** 2), rtol=1e-6)
    pen0, mean0 = losses.path_length_penalty(L, 0.0, decay=0.5)                   # starts at 0
    np.testing.assert_allclose(mean0, 0.5 * L.mean(), rtol=1e-6)
    # As in torch (path_mean not detached inside the penalty): the gradient also flows
    # through mean(L) in the new mean: dP/dL_i = 2/N (L_i - m) - 2 decay/N^2 sum_j (L_j - m).
    grad = jax.grad(lambda x: losses.path_length_penalty(x, pl_mean)[0])(L)
    N = len(L)
    want = 2 / N * (L - new) - 2 * 0.01 / N ** 2 * np.sum(L - new)
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)
    # The returned running mean carries no gradient.
    assert jax.grad(lambda x: losses.path_length_penalty(x, pl_mean)[1])(L).sum() == 0


def _np_cos(f1, f2):
    f1 = f1.reshape(len(f1), -1).astype(np.float64)
    f2 = f2.reshape(len(f2), -1).astype(np.float64)
    n1 = np.maximum(np.linalg.norm(f1, axis=1), 1e-8)
    n2 = np.maximum(np.linalg.norm(f2, axis=1), 1e-8)
    return (f1 @ f2.T) / n1[:, None] / n2[None, :]


def _np_log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _np_ld(t_feats, s_feats, batch, layers, mode, group):
    total = 0.0
    for i in layers:
        t, s = t_feats[i], s_feats[i]
        per_group = []
        for k in range(0, batch, group):
            st = _np_cos(t[k:k + group], t[batch + k: batch + k + group])
            ss = _np_cos(s[k:k + group], s[batch + k: batch + k + group])
            if mode == "kl":                     # KL(softmax(St) || softmax(Ss)), batchmean
                p = np.exp(_np_log_softmax(st))
                per_group.append(np.sum(p * (np.log(p) - _np_log_softmax(ss))) / group)
            else:
                per_group.append(np.mean((ss - st) ** 2))
        total += np.mean(per_group)
    return total


def _feats(rng, batch):
    shapes = [(2 * batch, 4, 4, 3), (2 * batch, 8, 8, 2), (2 * batch, 5), (2 * batch, 2, 2, 6)]
    return [rng.randn(*s).astype(np.float32) for s in shapes]


def test_similarity_matrix():
    rng = np.random.RandomState(3)
    a, b = rng.randn(5, 3, 3, 4), rng.randn(5, 3, 3, 4)
    b[2] = 0.0                                                  # eps path: zeros, no NaN
    got = np.asarray(losses.similarity_matrix(a, b))
    np.testing.assert_allclose(got, _np_cos(a, b), atol=1e-6)
    assert got.shape == (5, 5) and np.all(got[:, 2] == 0)
    with pytest.raises(ValueError, match="same shape"):
        losses.similarity_matrix(a, b[:4])


@pytest.mark.parametrize("mode", ["kl", "mse"])
@pytest.mark.parametrize("group", [None, 2, 3])
def test_ld_loss_vs_numpy(mode, group):
    rng = np.random.RandomState(4)
    batch = 6
    t, s = _feats(rng, batch), _feats(rng, batch)
    layers = [1, 2, 3]
    got = losses.ld_loss(t, s, batch, layers, mode=mode, group_size=group)
    want = _np_ld(t, s, batch, layers, mode, batch if group is None else group)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert want > 0
    jitted = jax.jit(losses.ld_loss, static_argnames=("batch", "layers", "mode", "group_size"))
    np.testing.assert_allclose(jitted(t, s, batch=batch, layers=(1, 2, 3), mode=mode,
                                      group_size=group), want, rtol=1e-5)


def test_ld_loss_matches_torch_kl_div_batchmean():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.RandomState(5)
    batch = 4
    t, s = _feats(rng, batch), _feats(rng, batch)
    want = 0.0
    for i in (0, 2):   # StyleKD KD_loss, NCHW vs NHWC flattening does not matter
        f1, f2 = [torch.from_numpy(x.reshape(2 * batch, -1)) for x in (s[i], s[i])]
        s_simi = F.cosine_similarity(f1[:batch][:, None, :], f2[batch:][None, :, :], dim=2)
        g1 = torch.from_numpy(t[i].reshape(2 * batch, -1))
        t_simi = F.cosine_similarity(g1[:batch][:, None, :], g1[batch:][None, :, :], dim=2)
        want += float(F.kl_div(F.log_softmax(s_simi, dim=1), F.softmax(t_simi, dim=1),
                               reduction="batchmean"))
    np.testing.assert_allclose(losses.ld_loss(t, s, batch, [0, 2]), want, rtol=1e-5)


def test_ld_loss_properties():
    rng = np.random.RandomState(6)
    batch = 4
    t, s = _feats(rng, batch), _feats(rng, batch)
    # Identical relations -> 0; the teacher side receives no gradient.
    assert float(losses.ld_loss(t, t, batch, [0, 1])) == pytest.approx(0.0, abs=1e-7)
    g_t, g_s = jax.grad(lambda a, b: losses.ld_loss(a, b, batch, [0, 1]), argnums=(0, 1))(t, s)
    assert all(float(jnp.abs(x).max()) == 0 for x in g_t)
    assert float(jnp.abs(g_s[0]).max()) > 0 and float(jnp.abs(g_s[2]).max()) == 0   # layer 2 unused
    with pytest.raises(ValueError, match="divide"):
        losses.ld_loss(t, s, batch, [0], group_size=3)
    with pytest.raises(ValueError, match="2 \\* 3"):
        losses.ld_loss(t, s, 3, [0])
    with pytest.raises(ValueError, match="mode"):
        losses.ld_loss(t, s, batch, [0], mode="l1")
    with pytest.raises(ValueError, match="out of range"):
        losses.ld_loss(t, s, batch, [4])


def test_ld_offsets():
    rng = np.random.RandomState(7)
    K, w_dim, batch, num_ws = 6, 8, 4096, 5
    raw = rng.randn(K, w_dim).astype(np.float32) * rng.rand(K, 1).astype(np.float32) * 3
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    off = np.asarray(losses.ld_offsets(jax.random.PRNGKey(0), raw, batch, num_ws, weight=5.0))
    assert off.shape == (batch, num_ws, w_dim)
    np.testing.assert_array_equal(off, np.broadcast_to(off[:, :1], off.shape))   # same on every layer
    o = off[:, 0].astype(np.float64)
    scale = np.linalg.norm(o, axis=1)
    # Each offset is +-|scale| times one of the normalised directions.
    cos = np.abs(o @ unit.T) / scale[:, None]
    idx = np.argmax(cos, axis=1)
    np.testing.assert_allclose(cos[np.arange(batch), idx], 1.0, atol=1e-5)
    signed = np.sum(o * unit[idx], axis=1)                       # N(0, 1) * 5
    assert abs(signed.mean()) < 0.3 and abs(signed.std() - 5.0) < 0.25
    counts = np.bincount(idx, minlength=K)                      # uniform choice
    assert counts.min() > batch / K * 0.8 and counts.max() < batch / K * 1.2
    np.testing.assert_array_equal(
        off, np.asarray(losses.ld_offsets(jax.random.PRNGKey(0), raw, batch, num_ws, weight=5.0)))
    assert math.isclose(float(np.abs(losses.ld_offsets(jax.random.PRNGKey(1), raw, 3, 2, weight=0.0)).max()), 0.0)
