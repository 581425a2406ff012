"""What a user sees for bad input to tools/convert_torch_weights.py: one clear line, exit code 2."""

import os
import pickle

import pytest
import torch

from tests import fixture_writers as fw
from tests.test_convert_parity import convert_main
from tests.torch_reference import RefDiscriminator, RefGenerator, generator_channels


def convert_error(tmp_path, capsys, source) -> str:
    assert convert_main([str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "out" / "architecture.json")
    return err


def small_nets(c_dim=0):
    G = RefGenerator(16, generator_channels(16, 256, 32), z_dim=16, w_dim=16, mapping_layers=2, c_dim=c_dim)
    return G.randomize_(0), RefDiscriminator(16, channel_base=256, channel_max=32).randomize_(0)


def test_missing_file(tmp_path, capsys):
    assert "no such file" in convert_error(tmp_path, capsys, tmp_path / "missing.pkl")


def test_unknown_format(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a checkpoint\n")
    assert "format" in convert_error(tmp_path, capsys, path)


def test_truncated_file(tmp_path, capsys):
    G, D = small_nets()
    full = fw.write_nvlabs_pickle(str(tmp_path / "full.pkl"), G, D)
    data = open(full, "rb").read()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert "truncated or corrupt" in convert_error(tmp_path, capsys, cut)


def test_disallowed_global_is_refused_and_not_run(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Exploit()}))
    err = convert_error(tmp_path, capsys, path)
    assert "system" in err and "refusing" in err
    assert not marker.exists()


def test_conditional_model(tmp_path, capsys):
    G, D = small_nets(c_dim=5)
    path = fw.write_nvlabs_pickle(str(tmp_path / "cond.pkl"), G, D)
    assert "conditional" in convert_error(tmp_path, capsys, path)


def test_bare_stylegan3_state_dict(tmp_path, capsys):
    """A StyleGAN3 state dict lacks the settings (filters' schedule): ask for the pickle."""
    sd = fw.make_stylegan3_reference("t").state_dict()
    path = tmp_path / "sg3_state_dict.pt"
    torch.save(sd, path)
    message = convert_error(tmp_path, capsys, path)
    assert "StyleGAN3" in message and ".pkl" in message


@pytest.mark.parametrize("damage", ["drop_layer", "wrong_shape"])
def test_shapes_that_do_not_form_a_stylegan2(tmp_path, capsys, damage):
    G, D = small_nets()
    sd = fw.rename_nvlabs_to_rosinality_generator(G.state_dict())
    if damage == "drop_layer":
        del sd["convs.1.conv.weight"]
    else:
        sd["convs.1.conv.weight"] = torch.zeros(1, 32, 7, 3, 3)
    path = tmp_path / "broken.pt"
    torch.save({"g_ema": sd}, path)
    err = convert_error(tmp_path, capsys, path)
    assert "do not form a StyleGAN2" in err
    assert ("'convs.1.conv.weight'" if damage == "drop_layer" else "synthesis.b8.conv1.weight has shape") in err


def test_a_dict_without_networks(tmp_path, capsys):
    path = tmp_path / "other.pt"
    torch.save({"model": {"layer.weight": torch.zeros(3)}, "epoch": 3}, path)
    assert "not a StyleGAN2 checkpoint" in convert_error(tmp_path, capsys, path)


# Every tensor accounted for (issue 15): a missing one is named, an unused one listed, a
# non-finite one named; nothing converts into a smaller or different network with exit 0.


def rosinality_pt(tmp_path, edit, name="edited.pt"):
    """A 16 px rosinality .pt (g_ema and d) after `edit(g_ema_sd, d_sd)`."""
    G, D = small_nets()
    g = fw.rename_nvlabs_to_rosinality_generator(G.state_dict())
    d = fw.rename_nvlabs_to_rosinality_discriminator(D.state_dict())
    edit(g, d)
    path = tmp_path / name
    torch.save({"g_ema": g, "d": d}, path)
    return path


@pytest.mark.parametrize("missing", ["convs.2.conv.weight", "to_rgbs.0.conv.modulation.bias",
                                     "noises.noise_2", "style.1.bias"])
def test_a_missing_tensor_in_the_middle_is_named(tmp_path, capsys, missing):
    path = rosinality_pt(tmp_path, lambda g, d: g.pop(missing))
    err = convert_error(tmp_path, capsys, path)
    assert f"missing '{missing}'" in err


def test_a_missing_discriminator_block_is_named(tmp_path, capsys):
    path = rosinality_pt(tmp_path, lambda g, d: [d.pop(k) for k in list(d) if k.startswith("convs.1.")])
    assert "missing 'convs.1.conv1.0.weight'" in convert_error(tmp_path, capsys, path)


def test_unused_tensors_are_an_error_or_with_the_option_a_listed_note(tmp_path, capsys):
    def add(g, d):
        g["convs.1.conv.extra_scale"] = torch.ones(3)
        d["aux_head.weight"] = torch.zeros(2, 2)
    path = rosinality_pt(tmp_path, add)
    err = convert_error(tmp_path, capsys, path)
    assert "g_ema: 1 tensor(s)" in err and "convs.1.conv.extra_scale" in err and "--allow-unused" in err
    assert convert_main([str(path), str(tmp_path / "out"), "--allow-unused"]) == 0
    out = capsys.readouterr().out
    assert "note" in out and "convs.1.conv.extra_scale" in out and "aux_head.weight" in out


def test_a_blur_kernel_other_than_the_default_is_an_error(tmp_path, capsys):
    path = rosinality_pt(tmp_path, lambda g, d: g["convs.0.conv.blur.kernel"].fill_(1.0))
    assert "convs.0.conv.blur.kernel is a resampling filter" in convert_error(tmp_path, capsys, path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_named(tmp_path, capsys, value):
    path = rosinality_pt(tmp_path, lambda g, d: g["convs.1.conv.weight"].view(-1)[5].fill_(value))
    err = convert_error(tmp_path, capsys, path)
    kind = "NaN" if value != value else "Inf"
    assert f"g_ema tensor convs.1.conv.weight holds 1 {kind}" in err


def test_nvlabs_pickle_tensors_are_accounted_for(tmp_path, capsys):
    """The NVlabs path: an extra tensor is listed, a NaN named, resample_filter buffers are fine."""
    G, D = small_nets()
    sd = dict(G.state_dict())
    assert any(k.endswith("resample_filter") for k in sd)      # rebuilt, not an "unused" tensor
    sd["synthesis.b8.conv0.extra"] = torch.ones(1)
    torch.save(sd, tmp_path / "extra.pt")
    assert "synthesis.b8.conv0.extra" in convert_error(tmp_path, capsys, tmp_path / "extra.pt")
    sd = dict(G.state_dict())
    del sd["mapping.fc1.weight"]
    torch.save(sd, tmp_path / "missing.pt")
    assert "missing 'mapping.fc1.weight'" in convert_error(tmp_path, capsys, tmp_path / "missing.pt")
    D.b8.conv0.weight.data.view(-1)[0] = float("nan")
    path = fw.write_nvlabs_pickle(str(tmp_path / "nand.pkl"), G, D)
    assert "D tensor b8.conv0.weight holds 1 NaN" in convert_error(tmp_path, capsys, path)


@pytest.mark.parametrize("name,ndim", [("convs.1.conv.weight", 5), ("d:convs.1.conv1.0.weight", 4)])
def test_a_flattened_weight_is_named_with_its_expected_dimensions(tmp_path, capsys, name, ndim):
    def flatten(g, d):
        sd, key = (d, name[2:]) if name.startswith("d:") else (g, name)
        sd[key] = sd[key].reshape(-1)
    err = convert_error(tmp_path, capsys, rosinality_pt(tmp_path, flatten))
    assert f"tensor {name.removeprefix('d:')} has shape" in err and f"has {ndim} dimensions" in err
    # The NVlabs naming too (a state dict of the generator).
    G, _ = small_nets()
    sd = dict(G.state_dict())
    sd["synthesis.b8.conv1.weight"] = sd["synthesis.b8.conv1.weight"][0]
    torch.save(sd, tmp_path / "squeezed.pt")
    err = convert_error(tmp_path, capsys, tmp_path / "squeezed.pt")
    assert "tensor synthesis.b8.conv1.weight has shape" in err and "has 4 dimensions" in err


def test_an_unusable_output_directory_fails_before_converting(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    source = rosinality_pt(tmp_path, lambda g, d: None)
    for out, expected in ((tmp_path / "a_file", "is a file"),
                          (tmp_path / "a_file" / "teacher", f"{tmp_path / 'a_file'} is a file")):
        assert convert_main([str(source), str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: output directory") and expected in err and "\n" not in err
