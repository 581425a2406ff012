"""Self-checks that make the PyTorch reference and the fixture writers trustworthy without the official code.

The reference (tests/torch_reference.py) and the checkpoint writers (tests/fixture_writers.py) are
the yardsticks for the JAX networks and the converter, so they get their own fast tests: the
grouped modulated conv against a direct per-sample loop, a hand-computed upsampling value, the
minibatch-stddev grouping, and both container formats read back (rosinality .pt through
torch.load and the inverse renaming; NVlabs pickles through a restricted stand-in unpickler).
"""

import collections
import math
import os
import pickle
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_writers as fw  # noqa: E402
import torch_reference as tr  # noqa: E402


def _blur_1d_direct(x, up):
    """Zero-insertion upsampling + [1,3,3,1] blur (x up^2), built from plain torch ops."""
    n, c, h, w = x.shape
    z = torch.zeros(n, c, h * up, w * up)
    z[:, :, ::up, ::up] = x
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k) / 64 * up * up
    return z, k


def _modconv_direct(x, weight, styles, demodulate, up):
    """Per-sample loop: W_n = W * s_n (demodulated), then an ordinary conv / up-conv per sample."""
    outs = []
    k = weight.shape[-1]
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w * (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        xn = x[n:n + 1]
        if up == 1:
            outs.append(F.conv2d(xn, w, padding=k // 2))
        else:
            # upfirdn2d(x, f, up=2, pad=[3,2,3,2], gain=4), then VALID correlation with flipped W
            z, f = _blur_1d_direct(xn, up)
            z = F.pad(z, [3, 2, 3, 2])
            c = z.shape[1]
            z = F.conv2d(z, f.flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)
            outs.append(F.conv2d(z, w.flip([2, 3])))
    return torch.cat(outs)


@pytest.mark.parametrize("k,up,demod", [(3, 1, True), (1, 1, True), (1, 1, False), (3, 2, True), (3, 2, False)])
def test_grouped_modconv_equals_per_sample_loop(k, up, demod):
    g = torch.Generator().manual_seed(k * 10 + up)
    x = torch.randn(3, 5, 6, 6, generator=g)
    weight = torch.randn(4, 5, k, k, generator=g)
    styles = torch.randn(3, 5, generator=g) + 1
    got = tr.modulated_conv2d(x, weight, styles, demodulate=demod, up=up, padding=k // 2,
                              resample_filter=tr.setup_filter())
    want = _modconv_direct(x, weight, styles, demod, up)
    assert got.shape == want.shape == (3, 4, 6 * up, 6 * up)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_upsampling_layer_constant_input_interior_value():
    # All-ones 3x3 weights, styles 1, demod 1/sqrt(9C): the transposed conv gives per-axis counts
    # 2,1,2,1 and the x2-per-axis blur averages them to 3 -> 9*C*c*d = 3*c*sqrt(C); then lrelu*sqrt(2).
    cin, c = 4, 0.5
    layer = tr.SynthesisLayer(cin, 2, w_dim=8, resolution=16, up=2)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.affine.weight.zero_()
        layer.affine.bias.fill_(1.0)
        layer.noise_strength.zero_()
        layer.bias.zero_()
    y = layer(torch.full([1, cin, 8, 8], c), torch.randn(1, 8), noise_mode="const")
    assert y.shape == (1, 2, 16, 16)
    expected = 3 * c * math.sqrt(cin) * math.sqrt(2)
    interior = y[:, :, 3:-3, 3:-3]
    torch.testing.assert_close(interior, torch.full_like(interior, expected), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(y[:, :, 0, 0], torch.tensor(expected))   # the border sees the zero padding


def test_minibatch_std_groups_with_stride():
    x = torch.randn(8, 6, 4, 4)
    y = tr.MinibatchStdLayer(group_size=4, num_channels=1)(x)
    for i in range(8):
        members = x[[i % 2 + 2 * k for k in range(4)]]          # sample i is grouped with i + k*N/G
        want = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(y[i, 6], torch.full((4, 4), want.item()), atol=1e-6, rtol=1e-6)


def test_generator_api_and_truncation():
    G = tr.RefGenerator(16, tr.generator_channels(16, 256, 32), z_dim=32, w_dim=32, mapping_layers=2,
                        conv_clamp=2.0).randomize_(0)
    assert G.channels == [32, 32, 32, 32, 16, 16] and G.num_ws == 6
    z = torch.randn(2, 32)
    ws = G.mapping(z)
    wt = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    w_avg = G.mapping_net.w_avg
    torch.testing.assert_close(wt[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg))
    torch.testing.assert_close(wt[:, 2:], ws[:, 2:])
    img = G(z)
    assert img.shape == (2, 3, 16, 16) and img.abs().max() <= 2.0 * 4   # torgb clamp 2, three blocks summed
    noise = [torch.zeros(s) for s in G.noise_shapes(2)]
    torch.testing.assert_close(G.synthesis(ws, noise=noise), G.synthesis(ws, noise_mode="none"))
    assert not torch.allclose(G.synthesis(ws, "const"), G.synthesis(ws, "none"))   # noise_strength != 0
    D = tr.RefDiscriminator(16, channel_base=256, channel_max=32, conv_clamp=2.0).randomize_(1)
    assert D(img).shape == (2, 1)


def _small_nets(kernel_size=3, channels=None, conv_clamp=None):
    channels = channels or tr.generator_channels(16, 256, 32)
    mk = lambda s: tr.RefGenerator(16, channels, z_dim=32, w_dim=32, mapping_layers=2,  # noqa: E731
                                   kernel_size=kernel_size, conv_clamp=conv_clamp).randomize_(s)
    D = tr.RefDiscriminator(16, channel_base=256, channel_max=32, conv_clamp=conv_clamp).randomize_(3)
    return mk(1), D, mk(2)


@pytest.mark.parametrize("student", [False, True])
def test_rosinality_pt_roundtrip(tmp_path, student):
    shape = [24, 20, 18, 12, 10, 9] if student else None
    G, D, G_ema = _small_nets(kernel_size=1 if student else 3, channels=shape)
    path = tmp_path / "ckpt.pt"
    fw.write_rosinality_pt(path, G, D, G_ema, latent_avg=True)
    ck = torch.load(path, weights_only=False)
    assert list(ck) == ["g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p", "latent_avg"]
    assert ck["args"].size == 16 and ck["args"].latent == 32 and ck["args"].n_mlp == 2
    g = ck["g_ema"]
    c0 = G.channels[0]
    assert g["input.input"].shape == (1, c0, 4, 4)
    assert g["conv1.conv.weight"].shape == (1, G.channels[1], c0, 3, 3)
    assert g["convs.1.conv.weight"].shape[-1] == (1 if student else 3)
    assert g["conv1.noise.weight"].shape == (1,) and g["to_rgb1.bias"].shape == (1, 3, 1, 1)
    assert g["noises.noise_0"].shape == (1, 1, 4, 4) and g["noises.noise_4"].shape == (1, 1, 16, 16)
    assert g["convs.0.conv.blur.kernel"].sum().item() == pytest.approx(4.0)
    assert "style.0.weight" not in g and "style.2.bias" in g
    assert ck["d"]["convs.1.conv2.0.kernel"].sum().item() == pytest.approx(1.0)
    # Renaming back gives the original NVlabs state dicts exactly (same names, order, values).
    for sd_ros, module, lat in [(g, G_ema, ck["latent_avg"]), (ck["g"], G, G.mapping_net.w_avg)]:
        back = fw.rename_rosinality_to_nvlabs_generator(sd_ros, lat)
        ref = module.state_dict()
        assert list(back) == list(ref)
        for k, v in ref.items():
            assert torch.equal(back[k], v), k
    back = fw.rename_rosinality_to_nvlabs_discriminator(ck["d"])
    assert list(back) == list(D.state_dict())
    assert all(torch.equal(back[k], v) for k, v in D.state_dict().items())
    # The optimizer states are real Adam state dicts for the parameters, in module order.
    n_params = sum(1 for k in ck["g"] if not (k.startswith("noises.") or k.endswith(".kernel")))
    assert len(ck["g_optim"]["state"]) == n_params
    assert ck["g_optim"]["param_groups"][0]["betas"][0] == 0.0


class _Persistent:
    def __init__(self, meta):
        self.meta = meta


class _EasyDict(dict):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Maps exactly the globals an NVlabs pickle needs to stand-ins / torch; refuses everything else."""

    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
        ("torch.storage", "_load_from_bytes"), ("collections", "OrderedDict"),
        ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
    }

    def find_class(self, module, name):
        if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            return _Persistent
        if (module, name) == ("dnnlib.util", "EasyDict"):
            return _EasyDict
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _load_restricted(path):
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f).load()


def _flatten(obj, prefix=""):
    """state-dict-like {name: tensor} and {name: class_name} of a persistent stand-in tree."""
    st = obj.meta["state"]
    tensors = {prefix + k: v for k, v in list(st["_parameters"].items()) + list(st["_buffers"].items())
               if v is not None}
    classes = {prefix.rstrip("."): obj.meta["class_name"]}
    for n, child in st["_modules"].items():
        if child is not None:
            t, c = _flatten(child, prefix + n + ".")
            tensors.update(t)
            classes.update(c)
    return tensors, classes


@pytest.mark.parametrize("flavor,clamp", [("ada", 256), ("ada", None), ("sg3", 256)])
def test_nvlabs_pickle_restricted_unpickle(tmp_path, flavor, clamp):
    G, D, G_ema = _small_nets(conv_clamp=clamp)
    path = tmp_path / "net.pkl"
    fw.write_nvlabs_pickle(path, G, D, G_ema, flavor=flavor)
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):   # fakes removed again
        assert sys.modules.get(name) is None or hasattr(sys.modules[name], "__file__")
    data = _load_restricted(path)
    converted = flavor == "ada" and clamp is None
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert list(data)[0] == ("G" if converted else "training_set_kwargs")
    for key, module in [("G", G), ("D", D), ("G_ema", G_ema)]:
        meta = data[key].meta
        assert meta["type"] == "class" and meta["version"] == 6 and isinstance(meta["module_src"], str)
        tensors, classes = _flatten(data[key])
        ref = module.state_dict()
        assert list(tensors) == list(ref)
        for k, v in ref.items():
            assert torch.equal(tensors[k], v), (key, k)
            assert not tensors[k].requires_grad
        assert meta["state"]["training"] is False
    g = data["G_ema"].meta["state"]
    kw = g["_init_kwargs"]
    syn_kw = kw["synthesis_kwargs"] if flavor == "ada" else kw
    assert kw["img_resolution"] == 16 and kw["mapping_kwargs"]["num_layers"] == 2
    assert syn_kw["channel_base"] == 256 and syn_kw["channel_max"] == 32
    assert syn_kw.get("conv_clamp", 256) == clamp
    _, classes = _flatten(data["G_ema"])
    assert classes["synthesis.b8.conv0"] == "SynthesisLayer" and classes["synthesis.b16.torgb"] == "ToRGBLayer"
    assert classes["mapping.fc1"] == "FullyConnectedLayer" and classes["synthesis"] == "SynthesisNetwork"
    layer = g["_modules"]["synthesis"].meta["state"]["_modules"]["b8"].meta["state"]["_modules"]["conv0"].meta["state"]
    assert layer["conv_clamp"] == clamp and layer["up"] == 2 and isinstance(layer["act_gain"], np.float64)
    _, dclasses = _flatten(data["D"])
    assert dclasses["b4.mbstd"] == "MinibatchStdLayer" and dclasses["b16.skip"] == "Conv2dLayer"
    skip = data["D"].meta["state"]["_modules"]["b16"].meta["state"]["_modules"]["skip"].meta["state"]
    assert skip["bias"] is None and skip["conv_clamp"] is None and "bias" not in skip["_parameters"]


def test_nvlabs_pickle_refuses_pruned_generator(tmp_path):
    G, D, _ = _small_nets(kernel_size=1)
    with pytest.raises(ValueError):
        fw.write_nvlabs_pickle(tmp_path / "x.pkl", G, D)


def test_stylegan3_pickle_shape(tmp_path):
    path = fw.write_stylegan3_pickle(tmp_path / "sg3.pkl")
    data = _load_restricted(path)
    tensors, classes = _flatten(data["G_ema"])
    assert classes["synthesis.input"] == "SynthesisInput"
    assert tensors["synthesis.input.freqs"].shape == (32, 2)
    assert any(k.startswith("synthesis.L0_36_") for k in tensors)
    assert collections.Counter(classes.values())["SynthesisLayer"] == 7
