"""Self-checks of the StyleGAN3 reference (tests/sg3_reference.py) and its pickle writer.

The reference is the yardstick for the Flax StyleGAN3 networks and the converter, so it gets its
own cheap tests that do not touch the code under test: the published layer schedules, filter
properties, padding arithmetic, truncation, the exact sub-pixel translation of the Fourier input,
and the official container read back by the torch-free reader.  (It was also compared offline
with the official NVlabs code: max |diff| < 1e-6 in float32 for small T and R generators.)
"""

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_writers as fw  # noqa: E402
import sg3_reference as sr  # noqa: E402

from stylekd_jax.convert.torch_files import PersistentObject, load_torch_file  # noqa: E402

# Layer names of the official 256x256 pickles (stylegan3-t/r-ffhqu-256x256.pkl).
T256 = ["L0_36_512", "L1_36_512", "L2_36_512", "L3_52_512", "L4_52_512", "L5_84_512", "L6_84_512", "L7_148_512",
        "L8_148_512", "L9_148_362", "L10_276_256", "L11_276_181", "L12_276_128", "L13_256_128", "L14_256_3"]
R256 = ["L0_36_1024", "L1_36_1024", "L2_36_1024", "L3_52_1024", "L4_52_1024", "L5_84_1024", "L6_84_1024",
        "L7_148_1024", "L8_148_1024", "L9_148_724", "L10_276_512", "L11_276_362", "L12_276_256", "L13_256_256",
        "L14_256_3"]


def tiny(cfg="t", seed=0, **kw):
    kw = dict(dict(z_dim=16, w_dim=16, num_layers=4), **kw)
    base = dict(channel_base=256, channel_max=8) if cfg == "t" else dict(channel_base=512, channel_max=16)
    return sr.make_generator(cfg, kw.pop("img_resolution", 16), seed=seed, **dict(base, **kw))


# ----------------------------------------------------------------------------------------------
# Schedule and filters


@pytest.mark.parametrize("cfg,names", [("t", T256), ("r", R256)])
def test_published_256_schedules(cfg, names):
    c = sr.config(cfg, 256)
    inp, layers = sr.schedule(c)
    assert [spec.name for spec in layers] == names
    assert c.num_ws == 16
    assert (inp.channels, inp.size, inp.sampling_rate, inp.bandwidth) == (int(names[0].split("_")[2]), 36, 16, 2)
    assert (c.channel_base, c.channel_max) == ((65536, 1024) if cfg == "r" else (32768, 512))
    last = layers[-1]
    assert last.is_torgb and last.conv_kernel == 1 and last.up_taps == last.down_taps == 1
    assert [s.is_critically_sampled for s in layers] == [False] * 12 + [True] * 3
    assert {s.conv_kernel for s in layers[:-1]} == {1 if cfg == "r" else 3}
    assert [s.down_radial for s in layers] == [cfg == "r"] * 12 + [False] * 3
    # Cutoffs ramp geometrically from 2 to Nyquist (128) over layers 0..12 and stay there.
    cut = np.array([s.out_cutoff for s in layers])
    np.testing.assert_allclose(cut[:13], 2 * 64 ** (np.arange(13) / 12))
    np.testing.assert_allclose(cut[12:], 128)


@pytest.mark.parametrize("cfg,res", [("t", 256), ("r", 256), ("t", 1024), ("r", 16)])
def test_padding_yields_the_layer_sizes(cfg, res):
    """Upsample, pad, two 'valid' filters and decimation must land exactly on out_size."""
    _, layers = sr.schedule(sr.config(cfg, res, num_layers=14 if res > 16 else 4))
    for s in layers:
        lo, hi = s.padding[:2]
        assert s.padding[2:] == s.padding[:2]
        n = (s.in_size + s.conv_kernel - 1) * s.up_factor + lo + hi - (s.up_taps - 1) - (s.down_taps - 1)
        assert (n - 1) // s.down_factor + 1 == s.out_size, s.name
        assert s.tmp_sampling_rate == s.in_sampling_rate * s.up_factor == s.out_sampling_rate * s.down_factor


@pytest.mark.parametrize("radial", [False, True])
def test_filters_are_symmetric_lowpass_with_unit_dc_gain(radial):
    f = sr.design_lowpass_filter(12, 5.0, 6.0, 32, radial=radial).double()
    assert f.shape == ((12, 12) if radial else (12,))
    assert f.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(f, f.flip(list(range(f.ndim))))
    if radial:
        assert torch.allclose(f, f.t())
    else:   # attenuates well beyond the stopband: gain at Nyquist of fs=32 (16) is tiny
        k = torch.arange(12, dtype=torch.float64)
        assert abs((f * torch.cos(np.pi * k)).sum().item()) < 1e-2
    assert sr.design_lowpass_filter(1, 5.0, 6.0, 32) is None


# ----------------------------------------------------------------------------------------------
# Modules


def test_state_dict_names_and_shapes():
    G = tiny("t")
    sd = G.state_dict()
    names = G.synthesis.layer_names
    assert names == ["L0_36_8", "L1_36_8", "L2_36_8", "L3_16_8", "L4_16_3"]
    assert list(sd)[:6] == [f"synthesis.input.{k}" for k in
                            ("weight", "transform", "freqs", "phases", "affine.weight", "affine.bias")]
    assert sd["synthesis.input.freqs"].shape == (8, 2) and sd["synthesis.input.affine.weight"].shape == (4, 16)
    assert list(sd)[-5:] == ["mapping.w_avg", "mapping.fc0.weight", "mapping.fc0.bias", "mapping.fc1.weight",
                             "mapping.fc1.bias"]
    l0 = [k.split(".", 2)[2] for k in sd if k.startswith("synthesis.L0_36_8.")]
    assert l0 == ["weight", "bias", "magnitude_ema", "up_filter", "down_filter", "affine.weight", "affine.bias"]
    assert sd["synthesis.L0_36_8.weight"].shape == (8, 8, 3, 3)
    assert sd["synthesis.L4_16_3.weight"].shape == (3, 8, 1, 1)
    # NVlabs registers the 1-tap filters of the ToRGB layer as None buffers: absent from the state dict.
    assert "synthesis.L4_16_3.up_filter" not in sd and "synthesis.L4_16_3.down_filter" not in sd
    rt = tiny("r")
    assert rt.synthesis.layer_names == ["L0_36_16", "L1_36_16", "L2_36_16", "L3_16_16", "L4_16_3"]
    sd = rt.state_dict()
    assert sd["synthesis.L0_36_16.weight"].shape == (16, 16, 1, 1)
    assert sd["synthesis.L1_36_16.down_filter"].shape == (12, 12)           # radial
    assert sd["synthesis.L2_36_16.down_filter"].shape == (12,)              # critically sampled: separable


def test_randomize_exercises_every_term():
    G = tiny("t", seed=3)
    mags = [getattr(G.synthesis, n).magnitude_ema.item() for n in G.synthesis.layer_names]
    assert all(0.3 <= m <= 3 for m in mags) and len(set(mags)) == len(mags)
    assert G.synthesis.input.affine.weight.abs().min() > 0 and G.mapping.w_avg.abs().min() > 0
    assert all(getattr(G.synthesis, n).bias.abs().min() > 0 for n in G.synthesis.layer_names)
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))


def test_forward_shapes_truncation_and_float64():
    G = tiny("r")
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = G.mapping(z)
        assert ws.shape == (2, G.num_ws, 16) and torch.equal(ws[:, 0], ws[:, -1])
        avg = G.mapping.w_avg.expand(2, G.num_ws, 16)
        assert torch.allclose(G.mapping(z, truncation_psi=0), avg)
        cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
        assert torch.allclose(cut[:, :2], (avg[:, :2] + ws[:, :2]) / 2) and torch.equal(cut[:, 2:], ws[:, 2:])
        img = G(z, 0.7, 2)
        assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
        assert torch.equal(img, G.synthesis(G.mapping(z, 0.7, 2)))
        img64 = G.double()(z.double(), 0.7, 2)
    assert (img64.float() - img).abs().max() < 1e-5 * max(1.0, img.abs().max().item())


def test_conditional_mapping_requires_c():
    G = tiny("t", c_dim=3)
    z, c = torch.randn(2, 16), torch.randn(2, 3)
    with torch.no_grad():
        assert G(z, c=c).shape == (2, 3, 16, 16)
        assert not torch.allclose(G.mapping(z, c=c), G.mapping(z, c=c * 2 + 1))
    with pytest.raises(ValueError):
        G.mapping(z)


def test_input_translation_by_one_pixel_shifts_the_features():
    """The Fourier features are a continuous signal: a user translation of 1/sampling_rate is an
    exact one-pixel shift (this pins the grid, the transform convention and make_transform)."""
    G = tiny("t", seed=1)
    inp = G.synthesis.input
    w = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    step = 1 / float(inp.spec.sampling_rate)
    with torch.no_grad():
        base = inp(w)
        sr.set_user_transform_(G, translate=(step, 0.0))
        right = inp(w)
        sr.set_user_transform_(G, translate=(0.0, step))
        down = inp(w)
    assert base.shape == (2, 8, 36, 36)
    torch.testing.assert_close(right[..., 1:], base[..., :-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(down[..., 1:, :], base[..., :-1, :], atol=1e-5, rtol=0)


def test_make_transform_matches_gen_images_convention():
    m = sr.make_transform((0.1, -0.2), 90)
    np.testing.assert_allclose(m, [[0, 1, 0.1], [-1, 0, -0.2], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(sr.make_transform(), np.eye(3))


def test_filtered_lrelu_torgb_is_bias_and_clamp():
    x = torch.randn(1, 3, 5, 5) * 300
    b = torch.tensor([1.0, -2.0, 0.5])
    y = sr.filtered_lrelu(x, b, None, None, 1, 1, (0, 0, 0, 0), gain=1.0, slope=1.0, clamp=256)
    torch.testing.assert_close(y, (x + b[:, None, None]).clamp(-256, 256))


def test_demodulation_makes_conv_invariant_to_style_scale():
    g = torch.Generator().manual_seed(0)
    x, w, s = torch.randn(2, 4, 6, 6, generator=g), torch.randn(5, 4, 3, 3, generator=g), torch.randn(2, 4, generator=g)
    one = torch.ones([])
    a = sr.modulated_conv2d(x, w, s, demodulate=True, input_gain=one)
    torch.testing.assert_close(sr.modulated_conv2d(x, w, s * 7, demodulate=True, input_gain=one), a)
    assert a.shape == (2, 5, 8, 8)    # 'full' padding: k - 1
    b = sr.modulated_conv2d(x, w, s, demodulate=False, input_gain=one * 4)
    torch.testing.assert_close(b, 4 * sr.modulated_conv2d(x, w, s, demodulate=False, input_gain=one))


# ----------------------------------------------------------------------------------------------
# Pickle writer


def _attrs(po):
    return {k: v for k, v in po.state.items() if not k.startswith("_") and k != "training"}


def test_default_pickle_round_trips(tmp_path):
    path = fw.write_stylegan3_pickle(tmp_path / "sg3.pkl", seed=0)    # the historical call
    assert path == tmp_path / "sg3.pkl"
    data = load_torch_file(path)
    assert list(data) == ["G", "D", "G_ema", "augment_pipe", "training_set_kwargs"]
    G = fw.make_stylegan3_reference("t", 16, seed=0)
    ref = G.state_dict()
    sd = data["G_ema"].state_dict()
    assert list(sd) == list(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(np.asarray(sd[k]), v.numpy(), err_msg=k)
    # G is the training copy: same buffers, other parameters.
    sd_g = data["G"].state_dict()
    assert np.array_equal(sd_g["synthesis.L0_36_32.magnitude_ema"], sd["synthesis.L0_36_32.magnitude_ema"])
    assert not np.array_equal(sd_g["synthesis.L0_36_32.weight"], sd["synthesis.L0_36_32.weight"])
    assert data["D"].class_name == "Discriminator" and data["augment_pipe"] is None
    kw = data["G_ema"].init_kwargs
    assert list(kw) == ["z_dim", "w_dim", "mapping_kwargs", "channel_base", "channel_max", "magnitude_ema_beta",
                        "num_layers", "c_dim", "img_resolution", "img_channels"]
    assert kw["mapping_kwargs"] == {"num_layers": 2} and kw["magnitude_ema_beta"] == 0.5 ** (32 / 20000)


def test_r_pickle_attributes(tmp_path):
    G = fw.make_stylegan3_reference("r", 16, seed=2, c_dim=2)
    data = load_torch_file(fw.write_stylegan3_pickle(tmp_path / "r.pkl", G=G))
    g = data["G_ema"]
    assert isinstance(g, PersistentObject) and g.class_name == "Generator"
    assert g.init_kwargs["conv_kernel"] == 1 and g.init_kwargs["use_radial_filters"] is True
    syn, mapping = g.modules["synthesis"], g.modules["mapping"]
    assert [m.class_name for m in mapping.modules.values()] == ["FullyConnectedLayer"] * 3
    assert list(mapping.modules) == ["embed", "fc0", "fc1"] and mapping.attr("c_dim") == 2
    assert syn.attr("layer_names") == G.synthesis.layer_names and syn.attr("num_ws") == G.num_ws
    assert syn.modules["input"].class_name == "SynthesisInput"
    for name in G.synthesis.layer_names:
        po, spec = syn.modules[name], getattr(G.synthesis, name).spec
        a = _attrs(po)
        assert list(a)[:11] == ["w_dim", "is_torgb", "is_critically_sampled", "use_fp16", "in_channels",
                                "out_channels", "in_size", "out_size", "in_sampling_rate", "out_sampling_rate",
                                "tmp_sampling_rate"]
        assert a["padding"] == list(spec.padding) and a["down_radial"] == spec.down_radial
        assert a["up_taps"] == spec.up_taps and list(a["out_size"]) == [spec.out_size] * 2
        if spec.up_taps == 1:
            assert po.state["_buffers"]["up_filter"] is None
    sd = g.state_dict()
    for k, v in G.state_dict().items():
        np.testing.assert_array_equal(np.asarray(sd[k]), v.numpy(), err_msg=k)


def test_pickle_refuses_module_plus_architecture(tmp_path):
    with pytest.raises(ValueError):
        fw.write_stylegan3_pickle(tmp_path / "x.pkl", "r", G=fw.make_stylegan3_reference())
