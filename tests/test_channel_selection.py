"""Channel selection for inherited synthesis, inherited D, plain two-stage mapping.

The gradient scores are checked against torch autograd on the independent PyTorch
re-derivation (tests/torch_reference.py) holding the same weights, with the same z,
salt-and-pepper draws and latent directions; zero noise strengths make both sides
deterministic while the scorers keep their official random-noise programs (compiled once
per file and shared with the end-to-end test). One 8px generator with uneven channels
[6, 6, 5, 5] covers every kind of scored layer (b4.conv1, the upsampling b8.conv0, b8.conv1,
the last ToRGB).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from stylekd_jax import channel_selection as cs
from stylekd_jax import checkpoint
from stylekd_jax.architecture import DiscriminatorConfig
from stylekd_jax.config import base_config, validate
from stylekd_jax.convert.stylegan2 import build_generator
from stylekd_jax.networks import Discriminator, Generator
from stylekd_jax.student import inherit_discriminator, init_student, student_config
from tests.torch_reference import RefGenerator

CHANNELS = [6, 6, 5, 5]
SCORED = ["b4.conv1", "b8.conv0", "b8.conv1", "b8.torgb"]
Z = 8


@pytest.fixture(scope="module")
def pair():
    """(torch reference generator, our config, our variables with the same weights)."""
    G = RefGenerator(8, CHANNELS, z_dim=Z, w_dim=Z, mapping_layers=2).randomize_(3)
    sd = {k: v.detach().numpy() for k, v in G.state_dict().items()}
    cfg, variables = build_generator(sd)
    return G, cfg, jax.tree_util.tree_map(jnp.asarray, variables)


@pytest.fixture(scope="module")
def quiet(pair):
    """The pair without per-pixel noise (noise strengths 0), so random noise changes nothing."""
    G, cfg, variables = pair
    Q = RefGenerator(8, CHANNELS, z_dim=Z, w_dim=Z, mapping_layers=2)
    Q.load_state_dict(G.state_dict())
    with torch.no_grad():
        for name, t in Q.named_parameters():
            if name.endswith("noise_strength"):
                t.zero_()
    sd = {k: v.detach().numpy() for k, v in Q.state_dict().items()}
    return Q, cfg, jax.tree_util.tree_map(jnp.asarray, build_generator(sd)[1])


def torch_scores(G, loss_fn) -> list[np.ndarray]:
    """mean |dL/dW| per input channel of each scored weight ([O, I, k, k] in torch)."""
    G.zero_grad()
    loss_fn().backward()
    params = dict(G.named_parameters())
    return [params[f"synthesis.{n}.weight"].grad.abs().mean(dim=(0, 2, 3)).double().numpy()
            for n in SCORED]


def assert_scores_close(got, want):
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        assert np.abs(w).max() > 0
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-5 * np.abs(w).max())


def red_over_green(params, images):
    """A content-dependent stand-in for the face parser: 'face' where red > green."""
    del params
    return (images[..., :1] > images[..., 1:2]).astype(jnp.float32)


def test_content_aware_batch_matches_torch_autograd(quiet):
    G, cfg, variables = quiet
    rng = np.random.RandomState(0)
    z = rng.randn(2, Z).astype(np.float32)
    uniform = rng.rand(2, 8, 8, 1).astype(np.float32)
    sign = np.where(rng.rand(2, 8, 8, 1) < 0.5, -1.0, 1.0).astype(np.float32)
    got = cs.content_aware_batch(cfg, variables, z, uniform, sign, jax.random.PRNGKey(0),
                                 noise_prob=0.3, mask_fn=red_over_green)

    def loss():
        img = G.synthesis(G.mapping(torch.from_numpy(z)), noise_mode="none")
        ref = img.detach()
        hit = (torch.from_numpy(uniform).permute(0, 3, 1, 2) < 0.3) & (ref[:, :1] > ref[:, 1:2])
        noisy = torch.where(hit, torch.from_numpy(sign).permute(0, 3, 1, 2), ref)
        assert 0 < int(hit.sum()) < hit.numel()       # the mask and the density both bite
        return (noisy - img).abs().sum()
    assert_scores_close(got, torch_scores(G, loss))


def test_diversity_batch_matches_torch_autograd(quiet):
    G, cfg, variables = quiet
    rng = np.random.RandomState(1)
    z = rng.randn(2, Z).astype(np.float32)
    dirs = rng.randn(10, Z).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    got = cs.diversity_batch(cfg, variables, z, dirs, jax.random.split(jax.random.PRNGKey(0), 10),
                             strength=5.0)
    want = []
    for d in dirs:
        def loss():
            ws = G.mapping(torch.from_numpy(z))
            a = G.synthesis(ws, noise_mode="none")
            b = G.synthesis(ws + 5.0 * torch.from_numpy(d), noise_mode="none")
            return (b - a).abs().sum()        # the gradient flows through both images
        want.append(torch_scores(G, loss))
    want = [np.stack([w[i] for w in want]) for i in range(len(SCORED))]   # [D, C] per layer
    assert_scores_close(got, want)
    # The batch's score is the spread over directions: D x the population variance.
    for g, w in zip(cs.diversity_spread(got), want):
        np.testing.assert_allclose(g, 10 * np.var(w, axis=0), rtol=1e-3)


def test_pca_directions_match_an_eigendecomposition(pair):
    G, cfg, variables = pair
    key = jax.random.PRNGKey(5)
    comps, ratio = cs.pca_directions(cfg, variables, key, num=400)
    z = np.asarray(jax.random.normal(key, (400, Z), jnp.float32))   # the draw it makes
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z))[:, 0].double().numpy()
    evals, evecs = np.linalg.eigh(np.cov(w.T, bias=True))
    evals, evecs = evals[::-1], evecs[:, ::-1].T
    np.testing.assert_allclose(ratio, evals / evals.sum(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.abs(np.sum(comps * evecs, axis=1)), 1.0, atol=1e-3)
    biggest = comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)]
    assert (biggest > 0).all()            # scikit-learn's sign convention


def test_content_aware_without_parser_says_whole_image_is_face(pair, monkeypatch):
    _, cfg, variables = pair
    calls = []
    monkeypatch.setattr(cs, "content_aware_batch",
                        lambda *a, **kw: calls.append(kw["mask_fn"]) or [np.ones(c) for c in CHANNELS])
    log = []
    scores = cs.channel_scores("content_aware", cfg, variables, jax.random.PRNGKey(1),
                               samples=5, batch=2, log=log.append)
    assert "whole image counts as face" in log[0]
    assert calls == [None, None]                  # official split: batches of 2 and 2 + 1
    assert log[-1].startswith("channel selection (content_aware): 5/5 samples")
    np.testing.assert_array_equal(scores[0], 2 * np.ones(6))


def test_scorers_end_to_end_pick_the_top_channels(pair):
    G, cfg, variables = pair
    log = []
    ca = cs.channel_scores("content_aware", cfg, variables, jax.random.PRNGKey(1),
                           samples=4, batch=2, mask_fn=red_over_green, log=log.append)
    assert [line.split(",")[0] for line in log] == [
        "channel selection (content_aware): 2/4 samples", "channel selection (content_aware): 4/4 samples"]
    # Each batch draws fresh z, noise and salt-and-pepper: two batches give a different sum
    # than one batch counted twice.
    one = cs.channel_scores("content_aware", cfg, variables, jax.random.PRNGKey(1),
                            samples=2, batch=2, mask_fn=red_over_green, log=lambda s: None)
    assert not np.allclose(ca[0], 2 * one[0])
    dcp = cs.channel_scores("diversity_aware", cfg, variables, jax.random.PRNGKey(2),
                            samples=4, batch=2, log=lambda s: None)
    for scores in (ca, dcp):
        assert [s.shape for s in scores] == [(c,) for c in CHANNELS]
        assert all(np.isfinite(s).all() and (s >= 0).all() for s in scores)
    assert not np.allclose(ca[1] / ca[1].sum(), dcp[1] / dcp[1].sum())
    # Random noise: the two images of a direction draw their own noise maps (official), so
    # even a zero-strength edit gives non-zero gradients.
    zero = cs.diversity_batch(cfg, variables, np.zeros((2, Z), np.float32),
                              np.zeros((10, Z), np.float32),
                              jax.random.split(jax.random.PRNGKey(0), 10), strength=0.0)
    assert np.abs(zero[0]).max() > 0
    # The student keeps exactly the top-k of each slot and slices the teacher with them.
    small = student_config(cfg, channels=[3, 4, 2, 3])
    student = init_student(cfg, variables, small, jax.random.PRNGKey(3),
                           synthesis_init="inherit", channel_scores=dcp)
    kept = [np.sort(np.argsort(-s)[:n]) for s, n in zip(dcp, small.channels)]
    t, s = variables["params"]["synthesis"], student["params"]["synthesis"]
    np.testing.assert_array_equal(s["b4"]["const"], np.asarray(t["b4"]["const"])[:, :, kept[0]])
    np.testing.assert_array_equal(s["b8"]["conv0"]["weight"],
                                  np.asarray(t["b8"]["conv0"]["weight"])[:, :, kept[1]][..., kept[2]])
    np.testing.assert_array_equal(s["b8"]["torgb"]["affine"]["bias"],
                                  np.asarray(t["b8"]["torgb"]["affine"]["bias"])[kept[3]])
    # keep ratio 1: every selector reproduces the teacher exactly.
    full = student_config(cfg, keep_ratio=1.0)
    z = np.random.RandomState(4).randn(3, Z).astype(np.float32)
    apply = jax.jit(lambda v, z: Generator(full).apply(v, z))
    teacher_img = np.asarray(apply(variables, z))
    for scores in (ca, dcp, None):
        st = init_student(cfg, variables, full, jax.random.PRNGKey(3), synthesis_init="inherit",
                          channel_scores=scores)
        jax.tree_util.tree_map(np.testing.assert_array_equal, st, variables)
        np.testing.assert_array_equal(np.asarray(apply(st, z)), teacher_img)


def test_scorer_errors(pair):
    _, cfg, variables = pair
    with pytest.raises(ValueError, match="must be one of"):
        cs.channel_scores("random", cfg, variables, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="samples and batch must be >= 1"):
        cs.channel_scores("content_aware", cfg, variables, jax.random.PRNGKey(0), samples=0)
    with pytest.raises(ValueError, match="expected one array per slot"):
        init_student(cfg, variables, cfg, jax.random.PRNGKey(0), synthesis_init="inherit",
                     channel_scores=[np.ones(6)] * 3)
    from stylekd_jax.architecture import StyleGAN3Config
    sg3 = StyleGAN3Config.teacher(16, "stylegan3-t", 256, 32, num_layers=4, z_dim=8, w_dim=8,
                                  mapping_features=(8, 8))
    with pytest.raises(ValueError, match="StyleGAN2 teachers only"):
        cs.channel_scores("diversity_aware", sg3, {}, jax.random.PRNGKey(0))


def _config(**student):
    c = base_config()
    c.data.source = "folder:/nowhere"
    c.teacher = "/teacher"
    for k, v in student.items():
        c.student[k] = v
    return c


def test_config_keys_are_validated():
    validate(_config(synthesis_init="inherit", channel_selection="diversity_aware",
                     selection_samples=4, discriminator_init="inherit"))
    for kw, match in [(dict(channel_selection="cagan"), "student.channel_selection: must be one of"),
                      (dict(channel_selection="content_aware"), "synthesis_init=inherit"),
                      (dict(synthesis_init="inherit", selection_batch=0), "student.selection_batch"),
                      (dict(discriminator_init="teacher"), "student.discriminator_init")]:
        with pytest.raises(ValueError, match=match):
            validate(_config(**kw))


# ----------------------------------------------------------------------------------------------
# Inherited discriminator (official --load 1)


def test_inherited_discriminator_gives_the_teachers_logits(tmp_path, pair):
    from stylekd_jax.train import build, init_state
    _, g_cfg, g_vars = pair
    g_vars = jax.tree_util.tree_map(np.asarray, g_vars)
    d_cfg = DiscriminatorConfig.teacher(8, channel_base=64, channel_max=8)
    shapes = jax.eval_shape(Discriminator(d_cfg).init, jax.random.PRNGKey(7), jnp.zeros((4, 8, 8, 3)))
    rng = np.random.RandomState(7)   # random weights without compiling D's initialiser
    d_vars = jax.tree_util.tree_map(lambda a: rng.randn(*a.shape).astype(np.float32), shapes)
    path, no_d = str(tmp_path / "teacher_with_d"), str(tmp_path / "teacher_without_d")
    checkpoint.save(path, {"g_ema": g_vars, "d": d_vars}, g_cfg, d_cfg)
    checkpoint.save(no_d, {"g_ema": g_vars}, g_cfg, d_cfg)
    config = base_config()
    config.teacher, config.batch_size = path, 4
    config.loss.lpips = config.loss.ld = 0.0
    config.student.discriminator_init = "inherit"
    config.student.synthesis_init = "inherit"      # (all inherited: no G initialiser to compile)
    setup, g_init, d_init, _ = build(config)
    state = init_state(setup, g_init, d_init)
    images = np.random.RandomState(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    apply = jax.jit(Discriminator(d_cfg).apply)
    np.testing.assert_array_equal(np.asarray(apply(state.d, images)), np.asarray(apply(d_vars, images)))
    # The random default differs; a teacher without D, or a D of another shape, is one clear error.
    config.student.discriminator_init = "random"
    _, _, d_key, _ = build(config)
    assert not isinstance(d_key, dict)
    with pytest.raises(ValueError, match="has no discriminator"):
        inherit_discriminator(no_d, d_cfg)
    wider = DiscriminatorConfig.teacher(8, channel_base=128, channel_max=16)
    with pytest.raises(ValueError, match="does not match the student's D"):
        inherit_discriminator(path, wider)


# ----------------------------------------------------------------------------------------------
# Two-stage compressed mapping: plain linear layers (StyleKD --mlp_cfg)


def test_two_stage_mapping_is_plain_linear(pair):
    _, cfg, variables = pair
    plain = student_config(cfg, mapping_features=(6, Z), plain_mapping=True)
    assert (plain.mapping_lr_multiplier, plain.mapping_normalize_z) == (1.0, False)
    default = student_config(cfg, mapping_features=(6, Z))
    assert (default.mapping_lr_multiplier, default.mapping_normalize_z) == (0.01, True)
    params = {"fc0": {"weight": np.random.RandomState(0).randn(Z, 6).astype(np.float32),
                      "bias": np.float32([0.1, -0.2, 0.3, 0.0, 0.5, -0.4])},
              "fc1": {"weight": np.random.RandomState(1).randn(6, Z).astype(np.float32),
                      "bias": np.linspace(-0.5, 0.5, Z).astype(np.float32)}}
    z = 3.0 * np.random.RandomState(2).randn(4, Z).astype(np.float32)
    v = {"params": {"mapping": params}, "buffers": {"mapping": {"w_avg": np.zeros(Z, np.float32)}}}
    got = np.asarray(Generator(plain).apply(v, z, method="map"))
    # rosinality EqualLinear(activation='fused_lrelu'), lr_mul 1: lrelu(x W / sqrt(in) + b) * sqrt 2,
    # on z as it is (no PixelNorm).
    x = z.astype(np.float64)
    for fc in (params["fc0"], params["fc1"]):
        y = x @ fc["weight"] / np.sqrt(x.shape[1]) + fc["bias"]
        x = np.where(y >= 0, y, 0.2 * y) * np.sqrt(2)
    assert got.shape == (4, plain.num_ws, Z)
    np.testing.assert_allclose(got[:, 0], x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, -1], x, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="mapping_normalize_z"):
        init_student(cfg, variables, student_config(cfg, plain_mapping=True), jax.random.PRNGKey(0))
