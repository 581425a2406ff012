"""One generator step of train.py (`g_main_loss`) against an independent re-derivation.

Teacher, student and discriminator are the independent PyTorch networks of
tests/torch_reference.py with random weights, converted to the JAX ones.  The step's random
inputs (z's, style-mixing cutoff, LD offsets, noise keys) come from `train.g_step_draws`, the
one place where `g_main_loss` samples them; the per-pixel noise the JAX networks draw from those
keys is recorded while the step runs and handed to the PyTorch networks.  Every loss term is then recomputed from
the PyTorch images and block features, in NumPy (float64), from the published definitions:
GAN softplus(-D(G(w))) on the ORIGINAL half of the 2B batch; L1 and LPIPS (tests/
lpips_reference.py) of the original halves; LD: per mimic layer i (block i, 0 = 4x4), per group
of `ld_group_size` consecutive samples, cos-similarity matrix originals x augmented in each
network's own features, KL(softmax(S_t) || softmax(S_s)) per row, mean over rows, summed over
layers; w-L1 of the mixed ws before the offsets.  At 32 px with ld_layers (1, 2) a shifted layer
index (0, 1) or (2, 3) still exists, so an off-by-one changes the number instead of raising.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylekd_jax import checkpoint, config as config_lib, train
from stylekd_jax.architecture import DiscriminatorConfig
from stylekd_jax.convert.stylegan2 import (discriminator_config_from_state_dict, discriminator_variables,
                                           generator_config_from_state_dict, generator_variables)
from tests import lpips_reference
from tests.torch_reference import RefDiscriminator, RefGenerator, generator_channels

RES, BATCH, GROUP, LAYERS = 32, 4, 2, (1, 2)
WEIGHTS = dict(gan=1.0, l1=3.0, lpips=3.0, ld=30.0, w_l1=0.5)
KW = dict(z_dim=16, w_dim=16, mapping_layers=2)


def _numpy_sd(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def step(tmp_path_factory):
    """(jax metrics, draws, reference networks, setup, consts, recorded noise) of one G step."""
    torch.manual_seed(0)
    teacher = RefGenerator(RES, generator_channels(RES, 256, 16), **KW).randomize_(1).eval()
    disc = RefDiscriminator(RES, channel_base=256, channel_max=16, mbstd_group_size=4).randomize_(3)
    sd_t = _numpy_sd(teacher)
    t_cfg = generator_config_from_state_dict(sd_t)
    d_cfg = discriminator_config_from_state_dict(_numpy_sd(disc), mbstd_group_size=4)
    path = str(tmp_path_factory.mktemp("gstep") / "teacher")
    checkpoint.save(path, {"g_ema": generator_variables(sd_t, t_cfg)}, t_cfg, d_cfg)

    config = config_lib.base_config()
    with config.unlocked():
        overrides = {"teacher": path, "batch_size": BATCH, "student.keep_ratio": 0.5,
                     "loss.ld_layers": LAYERS, "loss.ld_group_size": GROUP, "loss.style_mixing": 1.0,
                     "loss.gan": WEIGHTS["gan"], "loss.l1": WEIGHTS["l1"], "loss.lpips": WEIGHTS["lpips"],
                     "loss.ld": WEIGHTS["ld"], "loss.w_l1": WEIGHTS["w_l1"]}
        for key, value in overrides.items():
            node = config
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
    with pytest.MonkeyPatch.context() as mp:     # the test brings its own student: skip its init
        mp.setattr(train, "init_student", lambda *args, **kwargs: None)
        setup, _, _, consts = train.build(config)
    assert isinstance(setup.d_cfg, DiscriminatorConfig) and setup.d_cfg.resolution == RES

    # The student: a random PyTorch network of the student's shape (random mapping too, so the
    # w-L1 term is not zero), converted.
    g_cfg = setup.g_cfg
    student = RefGenerator(RES, list(g_cfg.channels), kernel_size=g_cfg.kernel_size, **KW).randomize_(2).eval()
    sd_s = _numpy_sd(student)
    assert generator_config_from_state_dict(sd_s).channels == g_cfg.channels
    s_vars = jax.tree_util.tree_map(jnp.asarray, generator_variables(sd_s, g_cfg))
    d_params = jax.tree_util.tree_map(jnp.asarray, discriminator_variables(_numpy_sd(disc), setup.d_cfg))["params"]

    key = jax.random.PRNGKey(11)

    def replay(g, b, d, c, k):
        """The step's metrics, its draws and the noise both networks drew (student first, as
        g_main_loss runs them), all from one compiled program."""
        record = []
        with _recording_normal(record):
            _, (metrics, _) = train.g_main_loss(g, b, d, c, k, jnp.asarray(0), setup)
        return metrics, train.g_step_draws(k, c, setup), record

    metrics, draws, record = jax.jit(replay)(s_vars["params"], s_vars["buffers"], d_params, consts, key)
    layers = g_cfg.num_ws - 1
    assert len(record) == 2 * layers and all(r.shape[0] == 2 * BATCH for r in record)
    noise_s, noise_t = ([torch.from_numpy(np.array(r).transpose(0, 3, 1, 2).copy()) for r in rec]
                        for rec in (record[:layers], record[layers:]))
    metrics = {k: float(v) for k, v in metrics.items()}
    return dict(metrics=metrics, draws=draws, teacher=teacher, student=student, disc=disc,
                consts=consts, noise_s=noise_s, noise_t=noise_t, setup=setup)


@contextlib.contextmanager
def _recording_normal(record):
    """jax.random.normal that also appends its [N, r, r, 1] outputs (the per-pixel noise; z's
    and offsets are 2-D)."""
    original = jax.random.normal

    def normal(key, shape=(), dtype=jnp.float32, *args, **kwargs):
        out = original(key, shape, dtype, *args, **kwargs)
        if len(shape) == 4 and shape[-1] == 1:
            record.append(out)
        return out

    jax.random.normal = normal
    try:
        yield
    finally:
        jax.random.normal = original


def _run_with_features(G, ws, noise):
    """Image NCHW and every block's output x (the LD features, entry 0 = b4), PyTorch."""
    feats = []
    hooks = [getattr(G.synthesis_net, f"b{r}").register_forward_hook(lambda m, i, o: feats.append(o[0]))
             for r in G.synthesis_net.block_resolutions]
    try:
        img = G.synthesis(ws, noise=noise)
    finally:
        for h in hooks:
            h.remove()
    return img, [f.double().numpy() for f in feats]


def _mixed(G, z1, z2, cutoff):
    ws1, ws2 = G.mapping(z1), G.mapping(z2)
    return torch.cat([ws1[:, :cutoff], ws2[:, cutoff:]], dim=1)


def _ld_kl(feats_t, feats_s, layers, group):
    """sum over layers of mean over rows of KL(softmax(S_t) || softmax(S_s)), S per group."""
    total = 0.0
    for i in layers:
        rows = []
        for k in range(BATCH // group):
            sl = slice(k * group, (k + 1) * group)
            sims = []
            for f in (feats_t[i], feats_s[i]):
                f = f.reshape(2 * BATCH, -1)
                a, b = f[:BATCH][sl], f[BATCH:][sl]
                a = a / np.linalg.norm(a, axis=1, keepdims=True)
                b = b / np.linalg.norm(b, axis=1, keepdims=True)
                sims.append(a @ b.T)
            p, q = (np.exp(x) / np.exp(x).sum(1, keepdims=True) for x in sims)
            rows.extend(np.sum(p * (np.log(p) - np.log(q)), axis=1))
        total += np.mean(rows)
    return total


@pytest.fixture(scope="module")
def reference(step):
    """Every loss term recomputed from the PyTorch networks."""
    d = step["draws"]
    z1, z2, cutoff = (np.array(x) for x in d.latents)
    cutoff = int(cutoff)
    z1, z2 = torch.from_numpy(z1), torch.from_numpy(z2)
    offsets = torch.from_numpy(np.array(d.offsets))
    with torch.no_grad():
        ws_s = _mixed(step["student"], z1, z2, cutoff)
        ws_t = _mixed(step["teacher"], z1, z2, cutoff)
        img_s, f_s = _run_with_features(step["student"], torch.cat([ws_s, ws_s + offsets]), step["noise_s"])
        img_t, f_t = _run_with_features(step["teacher"], torch.cat([ws_t, ws_t + offsets]), step["noise_t"])
        s0, t0 = img_s[:BATCH], img_t[:BATCH]
        gan = F.softplus(-step["disc"](s0)).double().mean().item()
        lp_weights = lpips_reference.torch_weights(lpips_reference.load_raw(_lpips_path()))
        lp = lpips_reference.lpips(s0, t0, lp_weights).mean().item()
    terms = {
        "g_gan": gan,
        "kd_l1": np.mean(np.abs(s0.double().numpy() - t0.double().numpy())),
        "kd_lpips": lp,
        "kd_ld": _ld_kl(f_t, f_s, LAYERS, GROUP),
        "kd_w_l1": np.mean(np.abs(ws_s.double().numpy() - ws_t.double().numpy())),
    }
    terms["g_loss"] = sum(WEIGHTS[k.split("_", 1)[1] if k != "g_gan" else "gan"] * v
                          for k, v in terms.items())
    return dict(terms=terms, cutoff=cutoff, f_t=f_t, f_s=f_s, s_aug=img_s[BATCH:], t_aug=img_t[BATCH:])


def _lpips_path():
    from stylekd_jax import lpips
    return lpips._default_weights_path()


def test_the_step_mixes_styles_and_offsets_along_directions(step, reference):
    num_ws = step["setup"].g_cfg.num_ws
    assert 1 <= reference["cutoff"] < num_ws                       # style mixing happened
    offsets = np.asarray(step["draws"].offsets)
    np.testing.assert_array_equal(offsets, np.broadcast_to(offsets[:, :1], offsets.shape))  # all layers
    dirs = np.asarray(step["consts"]["directions"], np.float64)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    off = offsets[:, 0].astype(np.float64)
    cos = np.abs(off @ dirs.T) / np.linalg.norm(off, axis=1, keepdims=True)
    np.testing.assert_allclose(cos.max(axis=1), 1.0, atol=1e-5)    # along one SeFa direction
    # official: teacher and student draw independent per-pixel noise
    assert not np.allclose(step["noise_s"][0].numpy(), step["noise_t"][0].numpy())


@pytest.mark.parametrize("term", ["g_gan", "kd_l1", "kd_lpips", "kd_ld", "kd_w_l1", "g_loss"])
def test_every_loss_term_matches_the_reference(step, reference, term):
    got, want = step["metrics"][term], reference["terms"][term]
    assert want > 1e-4, f"{term} is too small to discriminate: {want}"
    assert got == pytest.approx(want, rel=2e-4, abs=1e-6), term


def test_the_reference_itself_tells_the_variants_apart(reference):
    """The checks above can fail: a shifted layer, the whole batch as one group or the
    augmented half would each give another number."""
    f_t, f_s, terms = reference["f_t"], reference["f_s"], reference["terms"]
    for other in [(0, 1), (2, 3)]:
        assert abs(_ld_kl(f_t, f_s, other, GROUP) - terms["kd_ld"]) > 1e-3 * terms["kd_ld"]
    assert abs(_ld_kl(f_t, f_s, LAYERS, BATCH) - terms["kd_ld"]) > 1e-3 * terms["kd_ld"]
    aug_l1 = np.mean(np.abs(reference["s_aug"].double().numpy() - reference["t_aug"].double().numpy()))
    assert abs(aug_l1 - terms["kd_l1"]) > 1e-3 * terms["kd_l1"]
