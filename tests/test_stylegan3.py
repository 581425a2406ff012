"""StyleGAN3 end to end: NVlabs-format pickles -> converter -> generate / Python API, checked
against the independent PyTorch re-derivation in tests/sg3_reference.py (not the code under test).
"""

import contextlib
import io
import os

import jax
import numpy as np
import pytest
import torch

from stylekd_jax import checkpoint, generate
from stylekd_jax.architecture import StyleGAN3Config, generator_macs
from stylekd_jax.networks import Discriminator, make_generator
from tests import fixture_writers as fw
from tests import sg3_reference as sr
from tests import torch_reference as tr
from tests.test_convert_parity import convert_main

# T with the full 14-layer schedule (as the published networks), R shorter to keep compiles small.
NETWORKS = {"t": dict(resolution=16, num_layers=14), "r": dict(resolution=32, num_layers=6)}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def converted(request, tmp_path_factory):
    """(config letter, reference G, reference D, converted checkpoint dir, converter stdout)."""
    name = request.param
    G = fw.make_stylegan3_reference(name, seed=3, **NETWORKS[name])
    c = G.cfg
    D = tr.RefDiscriminator(c.img_resolution, channel_base=256, channel_max=32, conv_clamp=256).randomize_(4)
    tmp = tmp_path_factory.mktemp(f"sg3{name}")
    path = fw.write_stylegan3_pickle(str(tmp / "network.pkl"), G=G, D=D)
    out = str(tmp / "converted")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert convert_main([path, out]) == 0
    return name, G, D, out, buffer.getvalue()


def _relative_error(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_generate_command_matches_reference(converted, tmp_path, capsys):
    """`generate --seeds --trunc --trunc-cutoff --translate --rotate --save-npy` vs the reference
    network with the same user transform (gen_images.py's convention)."""
    name, G, _, ckpt, _ = converted
    outdir = str(tmp_path / "out")
    args = ["--checkpoint", ckpt, "--seeds", "0-2", "--trunc", "0.7", "--trunc-cutoff", "5",
            "--translate", "0.2,-0.1", "--rotate", "15", "--noise-mode", "const", "--save-npy",
            "--outdir", outdir, "--batch-size", "4"]
    assert generate.main(args) == 0
    got = np.load(os.path.join(outdir, "images.npy"))
    sr.set_user_transform_(G, (0.2, -0.1), 15)
    try:
        z = np.concatenate([np.random.RandomState(s).randn(1, G.cfg.z_dim) for s in range(3)])
        with torch.no_grad():
            want = G(torch.from_numpy(z).float(), truncation_psi=0.7, truncation_cutoff=5).numpy()
    finally:
        sr.set_user_transform_(G)
    assert got.shape == want.transpose(0, 2, 3, 1).shape
    assert _relative_error(got, want.transpose(0, 2, 3, 1)) < 1e-4
    assert os.path.isfile(os.path.join(outdir, "seed0002.png"))


def test_python_api_and_discriminator_match_reference(converted):
    """The README's API: load g_ema and d, map, synthesize; D logits of the reference images."""
    name, G, D, ckpt, _ = converted
    cfg, d_cfg, nets = checkpoint.load(ckpt, ("g_ema", "d"))
    assert isinstance(cfg, StyleGAN3Config) and cfg.config_name == name.upper()
    model = make_generator(cfg)
    z = np.random.RandomState(7).randn(4, cfg.z_dim).astype(np.float32)
    ws = model.apply(nets["g_ema"], z, method="map")
    synthesize = jax.jit(lambda v, ws: model.apply(v, ws, method="synthesize"))
    images = np.asarray(synthesize(nets["g_ema"], ws))
    with torch.no_grad():
        want = G(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
        want_logits = D(torch.from_numpy(want.transpose(0, 3, 1, 2)).contiguous()).numpy()
    assert _relative_error(images, want) < 1e-4
    logits = np.asarray(Discriminator(d_cfg).apply(nets["d"], want))
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-4 * np.abs(want_logits).max())


def test_converter_summary_names_config_and_channels(converted):
    name, G, _, _, stdout = converted
    assert f"StyleGAN3-{name.upper()} {G.cfg.img_resolution}x{G.cfg.img_resolution}" in stdout
    assert ("radial" if name == "r" else "separable") in stdout
    widths = [spec.out_channels for spec in sr.schedule(G.cfg)[1][:-1]]
    assert f"[{widths[0]}]" in stdout


def test_conditional_and_truncated_pickles_are_one_line_errors(tmp_path, capsys):
    path = fw.write_stylegan3_pickle(str(tmp_path / "cond.pkl"), c_dim=4)
    assert convert_main([path, str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "conditional" in err and "\n" not in err
    full = fw.write_stylegan3_pickle(str(tmp_path / "ok.pkl"))
    with open(full, "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) // 2])
    assert convert_main([str(cut), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert not os.path.exists(tmp_path / "b" / "architecture.json")


def test_translate_on_a_stylegan2_checkpoint_is_an_error(tiny_teacher, tmp_path, capsys):
    assert generate.main(["--checkpoint", tiny_teacher, "--seeds", "0", "--rotate", "10",
                          "--outdir", str(tmp_path)]) == 2
    assert "StyleGAN3" in capsys.readouterr().err


def test_schedule_and_paper_sized_student():
    """The published 256 px layer names, and the student of configs/ffhq256_stylegan3.py."""
    from stylekd_jax.networks.generator import num_params
    from stylekd_jax.student import student_config
    teacher = StyleGAN3Config.teacher(256, "t")
    names = [layer.name for layer in teacher.layers()]
    assert names[0] == "L0_36_512" and names[-2:] == ["L13_256_128", "L14_256_3"]
    assert [layer.name for layer in StyleGAN3Config.teacher(256, "r").layers()][-2] == "L13_256_256"
    assert num_params(teacher) == 28_472_133          # NVlabs stylegan3-t 256 px G
    student = student_config(teacher, keep_ratio=0.4)
    assert abs(num_params(student) / 5.6e6 - 1) < 0.05  # the paper's 5.6M
    assert generator_macs(student) < generator_macs(teacher) / 6


def test_sefa_directions_of_a_stylegan3_pair_layers():
    """'split': block j is the pair (L2j, L2j+1): top eigenvectors of W W^T, W = their
    column-normalised affine weights side by side."""
    from stylekd_jax.sefa import sefa_directions
    cfg = StyleGAN3Config.teacher(16, "t", channel_base=256, channel_max=16, z_dim=8, w_dim=8,
                                  mapping_features=(8, 8), num_layers=4)
    rng = np.random.RandomState(0)
    params = {"synthesis": {f"L{i}": {"affine": {"weight": rng.randn(8, 16 if i < 4 else 16)}}
                            for i in range(5)}}
    got = sefa_directions(cfg, params, mode="split", num_blocks=2, per_block=3)
    assert got.shape == (6, 8)
    for j in range(2):
        w = np.concatenate([params["synthesis"][f"L{2 * j + i}"]["affine"]["weight"] for i in (0, 1)], 1)
        w = w / np.linalg.norm(w, axis=0, keepdims=True)
        vals, vecs = np.linalg.eigh(w @ w.T)
        for k in range(3):
            want = vecs[:, np.argsort(-vals)[k]]
            assert abs(abs(float(got[3 * j + k] @ want)) - 1) < 1e-5
    with pytest.raises(ValueError, match="pairs"):
        sefa_directions(cfg, params, num_blocks=3)


def test_nan_buffer_is_named(tmp_path, capsys):
    G = fw.make_stylegan3_reference("t", seed=1)
    name = next(n for n, _ in G.named_buffers() if n.endswith("magnitude_ema"))
    dict(G.named_buffers())[name].fill_(float("nan"))
    path = fw.write_stylegan3_pickle(str(tmp_path / "nan.pkl"), G=G)
    assert convert_main([path, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert name in err and "NaN" in err and "\n" not in err
