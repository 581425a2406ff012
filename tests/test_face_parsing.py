"""BiSeNet face parser, its converter, StyleKD's face mask and its use in the mimic losses.

The real `79999_iter.pth` cannot be downloaded in tests: `bisenet_reference.BiSeNet` (an
independent PyTorch re-derivation) with random weights is saved as a legacy `torch.save` state
dict like the released file, converted torch-free, and compared with the reference, including
StyleKD's mask pipeline (`official_face_mask`).  The parse size is 64 instead of 512 to stay
fast: 32 -> 64 has the 2x up / down resizes of a 256 px generator, 128 -> 64 those of 1024 px.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
import bisenet_reference as ref  # noqa: E402

from stylekd_jax import face_parsing, losses  # noqa: E402
from stylekd_jax.config import base_config, validate  # noqa: E402
from stylekd_jax.convert import bisenet  # noqa: E402
from stylekd_jax.convert.torch_files import CheckpointError  # noqa: E402
from tests.conftest import rel_err  # noqa: E402

PARSE = 64


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _nhwc(t):
    return np.transpose(t.numpy(), (0, 2, 3, 1))


@pytest.fixture(scope="module")
def model():
    return ref.random_model(seed=0)


@pytest.fixture(scope="module")
def state_dict(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def pth(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("parser") / face_parsing.FACE_PARSER_FILE
    ref.write_pth(model, path, legacy=True)
    return str(path)


@pytest.fixture(scope="module")
def params(pth):
    return face_parsing.load_params(pth)


@pytest.fixture(scope="module")
def mask_fn():
    """One jitted (logits, mask) function, shared by the mask tests."""
    return jax.jit(lambda p, x: (face_parsing.parse_logits(p, x, PARSE),
                                 face_parsing.face_mask(p, x, PARSE)))


# ---------------------------------------------------------------------------------------
# Network and mask against the reference


def test_all_three_heads_match_the_reference(model, params):
    """72 x 56: non-square, and 1/16 -> 1/8 nearest upsampling 3 -> 5 (not an exact 2x)."""
    x = np.random.RandomState(1).normal(0, 1, (2, 72, 56, 3)).astype(np.float32)
    with torch.no_grad():
        want = [_nhwc(o) for o in model(_nchw(x))]
    got = jax.jit(lambda p, x: face_parsing.BiSeNet().apply({"params": p}, x))(params, x)
    errs = [rel_err(g, w) for g, w in zip(got, want)]
    print("BiSeNet heads max rel diff:", errs)
    assert all(g.shape == (2, 72, 56, 19) for g in got)
    assert max(errs) <= 1e-5


@pytest.mark.parametrize("size", [32, 128], ids=["upsample-like-256px", "downsample-like-1024px"])
def test_face_mask_equals_stylekd_mask(model, params, mask_fn, size):
    """Inputs slightly outside [-1, 1] exercise the clamp; the mask must be bit-identical."""
    img = np.random.RandomState(size).uniform(-1.1, 1.1, (2, size, size, 3)).astype(np.float32)
    want_logits, want_mask = ref.official_face_mask(model, _nchw(img), PARSE)
    logits, mask = mask_fn(params, img)
    err = rel_err(logits, _nhwc(want_logits))
    differ = int(np.sum(np.asarray(mask)[..., 0] != want_mask.numpy()))
    print(f"{size}px: logits max rel diff {err:.2e}, mask pixels differing {differ}, "
          f"face fraction {float(want_mask.mean()):.3f}")
    assert mask.shape == (2, size, size, 1) and mask.dtype == jnp.float32
    assert set(np.unique(np.asarray(mask))) == {0.0, 1.0}          # both values occur
    assert err <= 1e-5
    assert differ == 0


def test_bad_images_are_one_line_errors(params):
    with pytest.raises(ValueError, match=r"expected NHWC RGB images \[N, H, W, 3\]"):
        face_parsing.face_mask(params, np.zeros((2, 3, 16, 16), np.float32))


# ---------------------------------------------------------------------------------------
# Converter


def test_every_tensor_is_converted_and_containers_agree(model, state_dict, params, tmp_path):
    """The zip container (torch >= 1.6), without num_batches_tracked, gives the same params."""
    zip_path = tmp_path / "zip.pth"
    nbt = [k for k in state_dict if k.endswith("num_batches_tracked")]
    ref.write_pth(model, zip_path, legacy=False, drop=nbt)
    again = bisenet.convert_file(str(zip_path))
    flat_a = jax.tree_util.tree_leaves_with_path(params)
    flat_b = dict(jax.tree_util.tree_leaves_with_path(again))
    assert len(flat_a) == len(state_dict) - len(nbt)                  # every non-counter tensor
    for path, value in flat_a:
        np.testing.assert_array_equal(np.asarray(value), flat_b[path])
    name = "cp.resnet.layer2.0.downsample.0.weight"
    assert bisenet.torch_name(("cp", "resnet", "layer2_0", "downsample_conv", "kernel")) == name
    np.testing.assert_array_equal(params["cp"]["resnet"]["layer2_0"]["downsample_conv"]["kernel"],
                                  state_dict[name].transpose(2, 3, 1, 0))


def _one_line_error(sd, match):
    with pytest.raises(CheckpointError, match=match) as info:
        bisenet.from_state_dict(sd, "79999_iter.pth")
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_tensor_is_named(state_dict):
    sd = {k: v for k, v in state_dict.items() if k != "cp.arm16.bn_atten.running_var"}
    _one_line_error(sd, r"lacks 1 BiSeNet tensor\(s\): cp\.arm16\.bn_atten\.running_var")


def test_unused_tensor_is_named(state_dict):
    sd = dict(state_dict, **{"sp.conv1.conv.weight": np.zeros((64, 3, 7, 7), np.float32)})
    _one_line_error(sd, r"1 tensor\(s\) BiSeNet does not have: sp\.conv1\.conv\.weight")


def test_nan_wrong_shape_and_other_networks_are_errors(state_dict):
    bad = state_dict["ffm.conv1.weight"].copy()
    bad[0, 0, 0, 0] = np.nan
    _one_line_error(dict(state_dict, **{"ffm.conv1.weight": bad}), r"ffm\.conv1\.weight holds 1 NaN")
    fewer = dict(state_dict, **{"conv_out.conv_out.weight": np.zeros((18, 256, 1, 1), np.float32)})
    _one_line_error(fewer, r"conv_out\.conv_out\.weight has shape \[18, 256, 1, 1\]")
    _one_line_error({"fc.weight": np.zeros((2, 2), np.float32)}, r"is not a BiSeNet face-parsing")
    with pytest.raises(CheckpointError, match="no such file"):
        face_parsing.load_params("/nonexistent/79999_iter.pth")


def test_convert_tool_says_no_conversion_is_needed(pth, tmp_path, capsys):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    import convert_torch_weights
    assert convert_torch_weights.main([pth, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--config.loss.face_parser=" in err and "\n" not in err
    assert not os.path.exists(tmp_path / "out")


# ---------------------------------------------------------------------------------------
# Config and losses


def _distill_config(**loss):
    c = base_config()
    c.teacher, c.data.source = "teacher/", "folder:/data"
    c.loss.update(loss)
    return c


def test_config_checks_the_parser_file(pth, tmp_path):
    validate(_distill_config(face_mask=True, face_parser=pth))
    with pytest.raises(ValueError, match=r"^config\.loss\.face_parser: is empty but loss\.face_mask is on"):
        validate(_distill_config(face_mask=True))
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match=rf"^config\.loss\.face_parser: {missing} does not exist"):
        validate(_distill_config(face_mask=True, face_parser=missing))
    plain = _distill_config(face_mask=True, l1=0.0, lpips=0.0, ld=0.0)
    plain.teacher = ""
    validate(plain)                                   # plain training ignores the mask


def test_all_ones_mask_changes_nothing():
    rng = np.random.RandomState(0)
    s, t = (jnp.asarray(rng.uniform(-1, 1, (2, 8, 8, 3)), jnp.float32) for _ in range(2))
    ones = jnp.ones((2, 8, 8, 1))
    np.testing.assert_array_equal(losses.masked(s, ones), s)
    assert losses.l1(losses.masked(s, ones), losses.masked(t, ones)) == losses.l1(s, t)


def test_masked_l1_ignores_pixels_outside_the_mask():
    rng = np.random.RandomState(0)
    s, t = (jnp.asarray(rng.uniform(-1, 1, (2, 8, 8, 3)), jnp.float32) for _ in range(2))
    mask = jnp.asarray(rng.uniform(size=(2, 8, 8, 1)) > 0.5, jnp.float32)

    def loss(student):
        return losses.l1(losses.masked(student, mask), losses.masked(t, mask))

    outside = s + 5.0 * (1 - mask) * rng.normal(size=s.shape).astype(np.float32)
    inside = s + 0.5 * mask * rng.normal(size=s.shape).astype(np.float32)
    assert loss(outside) == loss(s)
    assert loss(inside) != loss(s)
    grad = jax.grad(loss)(s)
    assert np.all(np.asarray(grad)[np.broadcast_to(np.asarray(mask) == 0, s.shape)] == 0)
    # Official normalisation: the mean over all pixels, masked-out ones counting as zero error.
    want = np.sum(np.abs(np.asarray(s) - np.asarray(t)) * np.asarray(mask)) / s.size
    np.testing.assert_allclose(float(loss(s)), want, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# The generator step's use of the mask (train.g_main_loss with stand-in networks)


class _FakeGenerator:
    """Maps z to zeros and 'synthesizes' the fixed image in its params (no compile needed)."""

    num_ws = 4

    def apply(self, variables, x, *args, method=None, mutable=None, rngs=None, **kwargs):
        if method == "map":
            ws = jnp.zeros((x.shape[0], self.num_ws, x.shape[1]))
            return (ws, {"buffers": {}}) if mutable else ws
        img = variables["params"]["img"]
        return img, {"images": [img], "features": []}


class _FakeDiscriminator:
    def apply(self, variables, img):
        return jnp.zeros((img.shape[0], 1))


def _g_step(face_mask_on, student_img, teacher_img, monkeypatch, mask_of_teacher):
    """(metrics, d loss / d student image) of train.g_main_loss with stand-in networks."""
    from types import SimpleNamespace

    from stylekd_jax import train
    seen = {}

    def fake_face_mask(parser_params, images):
        seen["params"], seen["images"] = parser_params, images
        return mask_of_teacher(images)

    monkeypatch.setattr(train.face_parsing, "face_mask", fake_face_mask)
    c = _distill_config(face_mask=face_mask_on, ld=0.0)
    c.batch_size = student_img.shape[0]
    g_cfg = SimpleNamespace(z_dim=8, num_ws=4)
    lpips = lambda params, x, y: jnp.mean(jnp.square(x - y), axis=(1, 2, 3))  # noqa: E731
    s = train.Setup(c, g_cfg, None, g_cfg, _FakeGenerator(), _FakeDiscriminator(), _FakeGenerator(),
                    None, None, lpips)
    consts = {"teacher": {"params": {"img": teacher_img}, "buffers": {}}, "lpips": {},
              "face_parser": {"sentinel": jnp.ones(())}}

    def loss(img):
        return train.g_main_loss({"img": img}, {}, {}, consts, jax.random.PRNGKey(0), jnp.int32(0), s)

    (_, (metrics, _)), grad = jax.value_and_grad(loss, has_aux=True)(student_img)
    if face_mask_on:   # parsed: the teacher's final image, with the parser params from consts
        np.testing.assert_array_equal(seen["images"], teacher_img)
        assert seen["params"] is consts["face_parser"]
    return {k: float(v) for k, v in metrics.items()}, np.asarray(grad)


def test_generator_step_masks_both_images_before_l1_and_lpips(monkeypatch):
    rng = np.random.RandomState(0)
    s_img, t_img = (jnp.asarray(rng.uniform(-1, 1, (2, 8, 8, 3)), jnp.float32) for _ in range(2))
    by_red = lambda img: (img[..., :1] > 0).astype(jnp.float32)  # noqa: E731  a mask of the image
    off, _ = _g_step(False, s_img, t_img, monkeypatch, by_red)
    ones, _ = _g_step(True, s_img, t_img, monkeypatch, lambda img: jnp.ones(img.shape[:3] + (1,)))
    assert ones == off                                              # an all-ones mask = no mask
    on, grad = _g_step(True, s_img, t_img, monkeypatch, by_red)
    m = np.asarray(by_red(t_img))
    d = (np.asarray(s_img) - np.asarray(t_img)) * m
    np.testing.assert_allclose(on["kd_l1"], np.mean(np.abs(d)), rtol=1e-6)
    np.testing.assert_allclose(on["kd_lpips"], np.mean(np.square(d)), rtol=1e-6)
    assert on["kd_l1"] < off["kd_l1"]
    outside = np.broadcast_to(m == 0, grad.shape)
    assert np.all(grad[outside] == 0) and np.any(grad[~outside] != 0)
