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


def test_stylegan3_pickle(tmp_path, capsys):
    path = fw.write_stylegan3_pickle(str(tmp_path / "sg3.pkl"))
    assert "StyleGAN3" in convert_error(tmp_path, capsys, path)


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
