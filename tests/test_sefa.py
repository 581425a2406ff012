"""SeFa latent directions vs NumPy eigendecompositions of the same stacked affine weights."""

import jax
import numpy as np
import pytest

from stylekd_jax.architecture import GeneratorConfig
from stylekd_jax.networks.generator import init_generator
from stylekd_jax.sefa import sefa_directions

# 32px: blocks b4, b8, b16, b32 -> three blocks after b4. Uneven channels to catch axis mix-ups.
CFG = GeneratorConfig(resolution=32, channels=(8, 8, 12, 12, 10, 10, 6, 6), z_dim=16, w_dim=24,
                      mapping_features=(24, 24))


def _random_vars(cfg, seed):
    """Generator variables with the real tree structure (no compilation) and random values."""
    shapes = jax.eval_shape(lambda k: init_generator(cfg, k), jax.random.PRNGKey(0))
    rng = np.random.RandomState(seed)
    return jax.tree_util.tree_map(lambda s: np.asarray(rng.randn(*s.shape), np.float32), shapes)


def _block_matrix(params, res):
    """Our [in, out] affine weights of b{res}.conv0 and conv1, concatenated on the style axis
    (StyleKD: np.concatenate((w1, w2), axis=0).T of rosinality's [out, in] weights)."""
    b = params["synthesis"][f"b{res}"]
    return np.concatenate([np.asarray(b["conv0"]["affine"]["weight"], np.float64),
                           np.asarray(b["conv1"]["affine"]["weight"], np.float64)], axis=1)


def _numpy_top(w, k):
    w = w / np.linalg.norm(w, axis=0, keepdims=True)        # each column / its L2 norm
    m = w @ w.T
    vals, vecs = np.linalg.eigh(m)
    order = np.argsort(vals)[::-1][:k]
    v = vecs[:, order].T
    for row in v:                                            # largest |component| positive
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return v, vals[order], m


@pytest.fixture(scope="module")
def g_vars():
    return _random_vars(CFG, 0)


def test_split_matches_numpy_eigh_per_block(g_vars):
    got = sefa_directions(CFG, g_vars, mode="split", num_blocks=3, per_block=4)
    assert got.shape == (12, 24) and got.dtype == np.float32
    for j, res in enumerate((8, 16, 32)):
        want, vals, m = _numpy_top(_block_matrix(g_vars["params"], res), 4)
        np.testing.assert_allclose(got[4 * j: 4 * j + 4], want, atol=1e-6)
        # Ordering: Rayleigh quotients descend and equal the top eigenvalues.
        rq = np.einsum("kd,de,ke->k", got[4 * j: 4 * j + 4].astype(np.float64), m,
                       got[4 * j: 4 * j + 4].astype(np.float64))
        np.testing.assert_allclose(rq, vals, rtol=1e-5)
        assert np.all(np.diff(rq) <= 1e-9)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    rows = got[np.arange(12), np.argmax(np.abs(got), axis=1)]
    assert np.all(rows > 0)


def test_split_agrees_with_the_official_eig_up_to_sign(g_vars):
    # StyleKD: _, v = np.linalg.eig(w.dot(w.T)); v[:, :5].T. Sort eig's output by eigenvalue
    # (its order is unspecified) and compare up to sign.
    got = sefa_directions(CFG, g_vars, mode="split", num_blocks=2, per_block=3)
    for j, res in enumerate((8, 16)):
        w = _block_matrix(g_vars["params"], res)
        w = w / np.linalg.norm(w, axis=0, keepdims=True)
        vals, vecs = np.linalg.eig(w.dot(w.T))
        order = np.argsort(-vals.real)[:3]
        official = vecs[:, order].real.T
        np.testing.assert_allclose(np.abs(np.sum(official * got[3 * j: 3 * j + 3], axis=1)), 1.0,
                                   atol=1e-5)


def test_global_stacks_the_same_blocks(g_vars):
    got = sefa_directions(CFG, g_vars, mode="global", num_blocks=3, total=7)
    assert got.shape == (7, 24)
    w = np.concatenate([_block_matrix(g_vars["params"], r) for r in (8, 16, 32)], axis=1)
    want, _, _ = _numpy_top(w, 7)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # Accepts the params alone, too.
    np.testing.assert_array_equal(sefa_directions(CFG, g_vars["params"], mode="global",
                                                  num_blocks=3, total=7), got)


def test_b4_torgb_and_weight_scale_do_not_matter(g_vars):
    base = sefa_directions(CFG, g_vars, num_blocks=3, per_block=5)
    v = jax.tree_util.tree_map(np.array, g_vars)
    syn = v["params"]["synthesis"]
    syn["b4"]["conv1"]["affine"]["weight"] *= -7.0
    for r in (4, 8, 16, 32):
        syn[f"b{r}"]["torgb"]["affine"]["weight"] += 3.0
    # Column normalisation: scaling one style column changes nothing.
    syn["b16"]["conv1"]["affine"]["weight"][:, 2] *= 100.0
    np.testing.assert_allclose(sefa_directions(CFG, v, num_blocks=3, per_block=5), base, atol=1e-6)
    # ... while the used blocks do.
    syn["b8"]["conv0"]["affine"]["weight"] += 1.0
    assert np.abs(sefa_directions(CFG, v, num_blocks=3, per_block=5)[:5] - base[:5]).max() > 1e-2


def test_real_initialised_generator():
    cfg = GeneratorConfig.teacher(16, channel_base=128, channel_max=8, z_dim=16, w_dim=16,
                                  mapping_features=(16, 16))
    variables = init_generator(cfg, jax.random.PRNGKey(1))
    d = sefa_directions(cfg, variables, num_blocks=2, per_block=5)
    assert d.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6)
    # Within a block the directions are orthonormal.
    np.testing.assert_allclose(d[:5] @ d[:5].T, np.eye(5), atol=1e-5)


def test_errors(g_vars):
    with pytest.raises(ValueError, match="mode"):
        sefa_directions(CFG, g_vars, mode="local")
    with pytest.raises(ValueError, match="num_blocks"):
        sefa_directions(CFG, g_vars, num_blocks=4)     # only 3 blocks after b4 at 32px
    with pytest.raises(ValueError, match="num_blocks"):
        sefa_directions(CFG, g_vars, num_blocks=0)
    with pytest.raises(ValueError, match="per_block"):
        sefa_directions(CFG, g_vars, num_blocks=1, per_block=25)
    with pytest.raises(ValueError, match="total"):
        sefa_directions(CFG, g_vars, mode="global", num_blocks=1, total=0)
