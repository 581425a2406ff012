"""FID Inception-v3: Flax network + converter against an independent torch re-derivation.

Real weights cannot be downloaded in tests, so `inception_reference.FIDInceptionV3` with random
weights is written to genuine torch.save / TorchScript files, converted by
tools/convert_torch_weights.py, and the features compared.  Sizes are kept small where the
architecture allows (>= 75 px); the protocol tests run the real 299 input once each.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import inception_reference as ref  # noqa: E402

from stylekd_jax import inception  # noqa: E402
from stylekd_jax.convert import inception as convert  # noqa: E402
from stylekd_jax.convert.torch_files import CheckpointError  # noqa: E402
from tests.conftest import rel_err  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import convert_torch_weights  # noqa: E402

# The fixture writers use TorchScript on purpose (NVlabs ship one); torch 2.x deprecates it.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


@pytest.fixture(scope="module")
def model():
    return ref.random_model(seed=0)


@pytest.fixture(scope="module")
def converted_dir(model, tmp_path_factory):
    """The reference weights as pytorch-fid's .pth, converted by the tool."""
    folder = tmp_path_factory.mktemp("inception")
    pth = folder / inception.PYTORCH_FID_FILE
    ref.write_pytorch_fid_pth(model, pth)
    out = folder / "fid"
    assert convert_torch_weights.main([str(pth), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def params(converted_dir):
    return convert.load_params(converted_dir)


def test_tool_writes_npz_and_architecture(converted_dir, capsys):
    doc = json.loads((converted_dir / "architecture.json").read_text())
    assert doc["format"] == "stylekd_jax/v1"
    assert doc["inception"]["features"] == 2048 and doc["inception"]["weights"] == "inception.npz"
    assert doc["source"]["format"] == "pytorch-fid-pth"
    assert (converted_dir / "inception.npz").is_file()


def test_network_matches_reference(model, params):
    """Mixed_7c at 3x3 exercises every padded pool and conv of the real 299 network."""
    x = np.random.RandomState(0).uniform(-1, 1, (2, 139, 139, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(_nchw(x)).numpy()
    got = jax.jit(lambda p, x: inception.InceptionV3FID().apply({"params": p}, x))(params, x)
    assert got.shape == (2, 2048)
    assert rel_err(got, want) <= 1e-4


def test_stylekd_protocol_end_to_end(model, params):
    """[-1, 1] images at 128 px -> bilinear (align_corners=False) to 299 -> features."""
    x = np.random.RandomState(1).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    with torch.no_grad():
        resized = F.interpolate(_nchw(x), size=(299, 299), mode="bilinear", align_corners=False)
        want = model(resized).numpy()
    assert rel_err(inception.features(params, x, "stylekd"), want) <= 1e-4


@pytest.mark.parametrize("size", [(7, 9), (320, 301)])
def test_stylekd_resize_matches_torch(size):
    x = np.random.RandomState(2).uniform(-1, 1, (2, *size, 3)).astype(np.float32)
    want = F.interpolate(_nchw(x), size=(299, 299), mode="bilinear", align_corners=False)
    got = np.transpose(np.asarray(inception.preprocess(x, "stylekd")), (0, 3, 1, 2))
    np.testing.assert_allclose(got, want.numpy(), atol=2e-6)
    u8 = np.random.RandomState(3).randint(0, 256, (1, 299, 299, 3)).astype(np.uint8)
    np.testing.assert_allclose(inception.preprocess(u8, "stylekd"), u8 / 127.5 - 1, atol=1e-6)


@pytest.mark.parametrize("size", [(6, 10), (256, 256), (299, 299), (512, 400)])
def test_nvlabs_preprocess_matches_torchscript_code(model, size):
    """Quantisation as NVlabs' metric code, then the TorchScript's grid_sample resize.

    Tolerance: on noise images a sample-position error dp moves a value by up to 255 * dp / 128;
    torch's float32 grid positions are off the exact i * W / 299 by up to ~1e-4 px at 512 px."""
    x = np.random.RandomState(4).uniform(-1.1, 1.1, (2, *size, 3)).astype(np.float32)
    u8 = np.clip(x * 127.5 + 128, 0, 255).astype(np.uint8)
    with torch.no_grad():
        want = ref.NVlabsStyleInception(model)(_nchw(u8)).numpy()
    for images in (x, u8):
        got = np.transpose(np.asarray(inception.preprocess(images, "nvlabs")), (0, 3, 1, 2))
        np.testing.assert_allclose(got, want, atol=3e-4)
        if size == (299, 299):   # identity resize: exactly the quantised pixels
            np.testing.assert_array_equal(got, (np.transpose(u8, (0, 3, 1, 2)) - 128.0) / 128)


def test_nvlabs_torchscript_converts_to_same_params(tmp_path):
    """An NVlabs-style TorchScript archive (BN without scale) gives the .pth's params, and the
    nvlabs protocol end to end equals TorchScript preprocessing + the reference network."""
    model = ref.random_model(seed=5, unit_gamma=True)
    ref.write_pytorch_fid_pth(model, tmp_path / "fid.pth", legacy=True)
    ref.write_nvlabs_style_torchscript(model, tmp_path / inception.NVLABS_FILE)
    assert convert_torch_weights.main([str(tmp_path / inception.NVLABS_FILE), str(tmp_path / "nv")]) == 0
    from_ts = convert.load_params(tmp_path / "nv")
    from_pth = convert.load_params(tmp_path / "fid.pth")   # legacy torch.save, on the fly
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(from_ts)[0],
                            jax.tree_util.tree_leaves(from_pth)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    img = np.random.RandomState(6).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    u8 = np.clip(img * 127.5 + 128, 0, 255).astype(np.uint8)
    scripted = torch.jit.load(str(tmp_path / inception.NVLABS_FILE))
    with torch.no_grad():
        want = model(scripted(_nchw(u8))).numpy()
    assert rel_err(inception.features(from_ts, img, "nvlabs"), want) <= 1e-4


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        convert.load_params(tmp_path / "nowhere" / inception.PYTORCH_FID_FILE)
    message = str(info.value)
    for part in ("nowhere", inception.PYTORCH_FID_FILE, inception.NVLABS_FILE, "github.com/mseitzer",
                 "convert_torch_weights.py"):
        assert part in message
    with pytest.raises(FileNotFoundError, match="holds no inception.npz"):
        convert.load_params(tmp_path)


def test_non_inception_files_are_clear_errors(tmp_path, capsys):
    torch.save({"synthesis.b4.const": torch.zeros(4, 4, 4)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an FID Inception-v3 weights file"):
        convert.load_params(tmp_path / "other.pth")
    assert not convert.looks_like_inception(tmp_path / "other.pth")  # the tool keeps the StyleGAN path

    sd = ref.random_model(seed=0).state_dict()
    del sd["Mixed_6c.branch7x7_2.conv.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing 'Mixed_6c.branch7x7_2.conv.weight'"):
        convert.load_params(tmp_path / "broken.pth")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    torch.jit.script(Tiny()).save(str(tmp_path / "tiny.pt"))
    with pytest.raises(CheckpointError, match=r"module layers\.conv not found.*" + inception.PYTORCH_FID_FILE):
        convert.load_params(tmp_path / "tiny.pt")

    (tmp_path / "junk.npz").write_bytes(b"")
    np.savez(tmp_path / "junk.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="does not hold FID Inception-v3 weights"):
        convert.load_params(tmp_path / "junk.npz")

    with pytest.raises(ValueError, match="at least 75x75"):
        inception.InceptionV3FID().init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="unknown FID protocol"):
        inception.features({}, np.zeros((1, 8, 8, 3), np.float32), protocol="clean")
