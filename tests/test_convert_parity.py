"""Converted checkpoints reproduce the reference networks: files in the official formats
(written by tests/fixture_writers.py from the independent PyTorch re-derivation in
tests/torch_reference.py) go through tools/convert_torch_weights.py and
`python -m stylekd_jax.generate`, and must give the reference's images and logits.
"""

import importlib.util
import os

import numpy as np
import pytest
import torch

from stylekd_jax import checkpoint
from stylekd_jax.networks import Discriminator
from tests import fixture_writers as fw
from tests.torch_reference import RefDiscriminator, RefGenerator, generator_channels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = [0, 1, 2, 3, 7]
TOL = 1e-4  # float32 round-off on outputs of magnitude ~1-10


def _load_converter():
    spec = importlib.util.spec_from_file_location(
        "convert_torch_weights", os.path.join(ROOT, "tools", "convert_torch_weights.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert_main = _load_converter().main


def seed_z(z_dim):
    return np.concatenate([np.random.RandomState(s).randn(1, z_dim) for s in SEEDS]).astype(np.float32)


def run_pipeline(tmp_path, source, psi=1.0, cutoff=None):
    """convert + generate, the way a user runs them; returns (images NHWC, checkpoint dir)."""
    from stylekd_jax.generate import main as generate_main
    out = str(tmp_path / "ckpt")
    assert convert_main([source, out]) == 0
    args = ["--checkpoint", out, "--seeds", ",".join(map(str, SEEDS)), "--trunc", str(psi),
            "--noise-mode", "const", "--outdir", str(tmp_path / "img"), "--save-npy", "--batch-size", "4"]
    if cutoff is not None:
        args += ["--trunc-cutoff", str(cutoff)]
    assert generate_main(args) == 0
    return np.load(tmp_path / "img" / "images.npy"), out


def reference_images(G, psi=1.0, cutoff=None):
    with torch.no_grad():
        img = G(torch.from_numpy(seed_z(G.z_dim)), psi, cutoff, noise_mode="const")
    return img.permute(0, 2, 3, 1).numpy()


def check_discriminator(D, ckpt_dir, images):
    _, d_cfg, nets = checkpoint.load(ckpt_dir, ("d",))
    got = np.asarray(Discriminator(d_cfg).apply(nets["d"], images[:4]))
    with torch.no_grad():
        want = D(torch.from_numpy(images[:4]).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, want, atol=TOL * max(1.0, np.abs(want).max()))


def assert_close(got, want):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOL * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("flavor,res,clamp,psi,cutoff,mbstd", [
    ("ada", 32, 0.5, 0.7, None, 4),     # small clamp so it bites in G and D
    ("sg3", 16, None, 1.0, None, 2),
    ("ada", 16, None, 0.5, 2, None),    # truncation cutoff; TF-era whole-batch mbstd group
])
def test_nvlabs_pickle_roundtrip(tmp_path, flavor, res, clamp, psi, cutoff, mbstd):
    kw = dict(z_dim=32, w_dim=24, mapping_layers=3)
    G = RefGenerator(res, generator_channels(res, 256, 32), conv_clamp=clamp, **kw).randomize_(1)
    G_ema = RefGenerator(res, generator_channels(res, 256, 32), conv_clamp=clamp, **kw).randomize_(2)
    D = RefDiscriminator(res, conv_clamp=clamp, mbstd_group_size=mbstd, channel_base=256,
                         channel_max=32).randomize_(3)
    path = fw.write_nvlabs_pickle(str(tmp_path / "net.pkl"), G, D, G_ema, flavor=flavor)
    images, ckpt_dir = run_pipeline(tmp_path, path, psi, cutoff)
    assert_close(images, reference_images(G_ema, psi, cutoff))   # G_ema is what generate uses
    check_discriminator(D, ckpt_dir, images)
    g_cfg, _, nets = checkpoint.load(ckpt_dir)
    assert sorted(nets) == ["d", "g", "g_ema"] and g_cfg.conv_clamp == clamp


@pytest.mark.parametrize("res,channels,kernel,latent_avg,psi", [
    (32, None, 3, True, 0.6),                          # teacher shape, TF-converted latent_avg
    (32, [20, 20, 20, 20, 10, 10, 5, 5], 1, False, 1.0),  # pruned heterogeneous (kernel-1) student
    (64, [24] * 6 + [12, 12, 6, 6], 3, False, 1.0),    # pruned student, uneven widths
])
def test_rosinality_pt_roundtrip(tmp_path, res, channels, kernel, latent_avg, psi):
    channels = channels or generator_channels(res, 512, 32)
    G = RefGenerator(res, channels, z_dim=32, w_dim=32, mapping_layers=4, kernel_size=kernel).randomize_(4)
    D = RefDiscriminator(res, channel_base=512, channel_max=32).randomize_(5)
    path = fw.write_rosinality_pt(str(tmp_path / "ckpt.pt"), G, D, G, latent_avg=latent_avg)
    images, ckpt_dir = run_pipeline(tmp_path, path, psi)
    assert_close(images, reference_images(G, psi))
    check_discriminator(D, ckpt_dir, images)
    g_cfg, _, info = checkpoint.read_architecture(ckpt_dir)
    assert list(g_cfg.channels) == list(channels) and g_cfg.kernel_size == kernel
    if not latent_avg:
        # w_avg is estimated as the mean mapped w; it must be close to the true mean.
        _, nets = checkpoint.load_generator(ckpt_dir)
        with torch.no_grad():
            z = torch.from_numpy(np.random.RandomState(123).randn(20000, 32).astype(np.float32))
            true_mean = G.mapping(z)[:, 0].mean(0).numpy()
        spread = np.abs(true_mean).max()
        np.testing.assert_allclose(nets["buffers"]["mapping"]["w_avg"], true_mean, atol=0.05 * spread + 1e-3)
        assert any("latent_avg" in n for n in info["notes"])


def test_summary_names_format_channels_and_params(tmp_path, capsys):
    G = RefGenerator(64, [24] * 6 + [12, 12, 6, 6], z_dim=32, w_dim=32, mapping_layers=2, kernel_size=1)
    D = RefDiscriminator(64, channel_base=512, channel_max=32)
    path = fw.write_rosinality_pt(str(tmp_path / "s.pt"), G.randomize_(0), D.randomize_(0))
    assert convert_main([path, str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    n_params = sum(p.numel() for n, p in G.named_parameters())
    assert "rosinality-pt" in out and "64x64" in out and "[24]*6 + [12]*2 + [6]*2" in out
    assert "kernel 1" in out and f"{n_params / 1e6:.3f}M" in out
    # A second run refuses to overwrite, unless asked to.
    assert convert_main([path, str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert convert_main([path, str(tmp_path / "out"), "--overwrite"]) == 0


def test_python_api_mapping_synthesis_style_mixing_and_noise_none(tmp_path):
    """The README's Python API: map, edit ws (style mixing), synthesize with noise 'none'."""
    from stylekd_jax.networks import make_generator
    G = RefGenerator(32, generator_channels(32, 512, 32), z_dim=32, w_dim=32, mapping_layers=2).randomize_(7)
    D = RefDiscriminator(32, channel_base=512, channel_max=32)
    path = fw.write_rosinality_pt(str(tmp_path / "g.pt"), G, D, latent_avg=True)
    assert convert_main([path, str(tmp_path / "ckpt")]) == 0

    cfg, variables = checkpoint.load_generator(str(tmp_path / "ckpt"))
    model = make_generator(cfg)
    z = seed_z(32)
    ws = model.apply(variables, z, truncation_psi=0.8, method="map")
    mixed = np.asarray(ws).copy()
    mixed[:, 3:] = mixed[::-1, 3:]                     # style mixing at layer 3
    images = np.asarray(model.apply(variables, mixed, noise_mode="none", method="synthesize"))
    with torch.no_grad():
        ref_ws = G.mapping(torch.from_numpy(z), 0.8)
        assert_close(np.asarray(ws), ref_ws.numpy())
        ref_mixed = ref_ws.clone()
        ref_mixed[:, 3:] = ref_ws.flip(0)[:, 3:]
        ref = G.synthesis(ref_mixed, noise_mode="none").permute(0, 2, 3, 1).numpy()
    assert_close(images, ref)
