"""Export round trips: `python -m stylekd_jax.export` files loaded in their own runtimes.

The reference is never the export code: every network starts as an independent PyTorch
re-derivation (tests/torch_reference.py for StyleGAN2, tests/sg3_reference.py for StyleGAN3),
is converted into a checkpoint, exported, and each exported file is run directly with
onnxruntime / TensorFlow / the TFLite interpreter / torch and compared with the PyTorch
network's images. The `.pt` files are also loaded with `torch.load` into fresh reference
networks with strict state-dict loading (real torch files, official names and shapes), and
read back by the project's torch-free reader and converter.

Conversions are slow (TF, jax2onnx), so each network is exported once (module fixtures)
and each option is exercised once:
  StyleGAN2 kernel 3, pruned: onnx, tflite (float32/float16/int8), savedmodel, torch;
                              z signature, psi as an input, NCHW, float
  StyleGAN2 kernel 1, pruned: tflite float32, torch; ws signature, NHWC, uint8
  StyleGAN2 kernel 3, pruned: onnx; ws signature with noise inputs
  StyleGAN3-T:                onnx, torch; z signature, psi 0.7 baked with a cutoff, NHWC, float
"""

import contextlib
import io
import json
import os
import warnings

import jax
import numpy as np
import pytest
import torch

from stylekd_jax import checkpoint
from stylekd_jax.convert import stylegan2
from stylekd_jax.convert.torch_files import load_torch_file
from stylekd_jax.export.cli import main as export_main
from stylekd_jax.networks import make_generator
from tests import fixture_writers as fw
from tests import sg3_reference as sr
from tests import torch_reference as tr

SEEDS = (0, 1, 2, 3)
PSI = 0.7            # the psi the exports' psi input is fed (the CLI verifies with the same)
SG2_K3 = [16, 12, 12, 8, 8, 6]      # pruned per-layer channels (StyleKD generator_net_shape)
SG2_K1 = [12, 10, 10, 8, 6, 4]


def z_of(seeds, z_dim) -> np.ndarray:
    return np.concatenate([np.random.RandomState(s).randn(1, z_dim) for s in seeds]).astype(np.float32)


def relative_error(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


def psnr(got, want, peak=2.0) -> float:
    return float(10 * np.log10(peak ** 2 / np.mean(np.square(np.asarray(got, np.float64) - want))))


def to_uint8(nchw: np.ndarray) -> np.ndarray:
    """NVlabs' conversion, on the reference's NCHW float images -> NHWC uint8."""
    return np.clip(nchw.transpose(0, 2, 3, 1) * 127.5 + 128, 0, 255).astype(np.uint8)


def run_export(args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = export_main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def sg2_checkpoint(path, channels, kernel_size, seed):
    """A randomized reference StyleGAN2 and its converted checkpoint."""
    G = tr.RefGenerator(16, channels, z_dim=16, w_dim=16, mapping_layers=2,
                        kernel_size=kernel_size).randomize_(seed).eval().requires_grad_(False)
    cfg, variables = stylegan2.build_generator({k: v.numpy() for k, v in G.state_dict().items()})
    checkpoint.save(str(path), {"g_ema": variables}, cfg)
    return G


@pytest.fixture(scope="module")
def sg2_k3(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sg2k3")
    G = sg2_checkpoint(tmp / "ckpt", SG2_K3, 3, seed=1)
    rc, out, err = run_export(["--checkpoint", tmp / "ckpt", "--out", tmp / "out", "--format",
                               "onnx,tflite,savedmodel,torch", "--trunc", "input", "--layout", "nchw"])
    assert rc == 0, err
    with torch.no_grad():
        want = G(torch.from_numpy(z_of(SEEDS, 16)), truncation_psi=PSI).numpy()   # NCHW
    return G, tmp, str(tmp / "out"), out, want


@pytest.fixture(scope="module")
def sg2_k1(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sg2k1")
    G = sg2_checkpoint(tmp / "ckpt", SG2_K1, 1, seed=2)
    rc, out, err = run_export(["--checkpoint", tmp / "ckpt", "--out", tmp / "out", "--format",
                               "tflite,torch", "--precision", "float32", "--signature", "ws",
                               "--dtype", "uint8", "--batch", "2"])
    assert rc == 0, err
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(z_of(SEEDS, 16)))
        want = G.synthesis(ws).numpy()
    return G, tmp, str(tmp / "out"), out, ws.numpy(), want


@pytest.fixture(scope="module")
def sg3(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sg3")
    G = fw.make_stylegan3_reference("t", 16, num_layers=4, z_dim=16, w_dim=16, seed=3)
    pickle_path = str(tmp / "network.pkl")
    fw.write_stylegan3_pickle(pickle_path, G=G)
    converted = stylegan2.convert_file(pickle_path)
    checkpoint.save(str(tmp / "ckpt"), {"g_ema": converted.networks["g_ema"]}, converted.generator)
    rc, out, err = run_export(["--checkpoint", tmp / "ckpt", "--out", tmp / "out", "--format",
                               "onnx,torch", "--trunc", "0.7", "--trunc-cutoff", "3"])
    assert rc == 0, err
    with torch.no_grad():
        want = G(torch.from_numpy(z_of(SEEDS, 16)), truncation_psi=0.7, truncation_cutoff=3).numpy()
    return G, tmp, str(tmp / "out"), out, want


# ---------------------------------------------------------------------------------------
# Each runtime runs its file directly (not through the export package)


def onnx_run(path, feeds):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str), "the batch dimension should be dynamic"
    return session.run(None, feeds)[0]


def tflite_run(path, feeds):
    """Feeds {name: array}; the file's batch is fixed, so the arrays are fed in chunks."""
    import tensorflow as tf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(model_path=path)
    it.allocate_tensors()
    details = {d["name"].split(":")[0].rsplit("_", 1)[-1]: d for d in it.get_input_details()}
    batch = int(next(iter(details.values()))["shape"][0])
    n = len(next(iter(feeds.values())))
    outs = []
    for start in range(0, n, batch):
        for name, x in feeds.items():
            it.set_tensor(details[name]["index"], x[start: start + batch] if np.ndim(x) else x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    return np.concatenate(outs)


def test_sg2_onnx_savedmodel_tflite_match_the_reference(sg2_k3):
    _, _, out, stdout, want = sg2_k3
    z, psi = z_of(SEEDS, 16), np.array(PSI, np.float32)
    assert relative_error(onnx_run(os.path.join(out, "model.onnx"), {"z": z, "psi": psi}), want) < 1e-4
    # The graph ONNX Runtime runs fast: leaky ReLU as Max (not the slow Where), the blurs as
    # depthwise Convs (not dozens of Slice, Mul and Add).
    import onnx
    nodes = onnx.load(os.path.join(out, "model.onnx")).graph.node
    assert not [n for n in nodes if n.op_type == "Where"]
    groups = [a.i for n in nodes if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    assert sum(g > 1 for g in groups) >= 2, groups    # the upsampling convs' blurs at least

    import tensorflow as tf
    serve = tf.saved_model.load(os.path.join(out, "savedmodel")).signatures["serving_default"]
    got = serve(z=tf.constant(z), psi=tf.constant(psi))["image"].numpy()
    assert relative_error(got, want) < 1e-4

    assert relative_error(tflite_run(os.path.join(out, "model.tflite"), {"z": z, "psi": psi}), want) < 1e-4
    assert psnr(tflite_run(os.path.join(out, "model_float16.tflite"), {"z": z, "psi": psi}), want) > 35
    assert psnr(tflite_run(os.path.join(out, "model_int8.tflite"), {"z": z, "psi": psi}), want) > 15
    # The command printed its own verification, per file.
    for line in ("onnx float32 (dynamic batch", "savedmodel float32", "tflite float32 (batch 1",
                 "tflite float16 (batch 1, 4 seeds): PSNR", "tflite int8 (batch 1, 4 seeds): PSNR"):
        assert line in stdout


def test_stylekd_pt_loads_in_torch_with_official_names(sg2_k3):
    """generator_stylekd.pt: torch.load (weights only), StyleKD's keys and shapes, the recorded
    channel list and kernel, and the images of a fresh reference network loaded from it."""
    G, _, out, _, want = sg2_k3
    ckpt = torch.load(os.path.join(out, "generator_stylekd.pt"), weights_only=True)
    assert ckpt["generator_net_shape"] == SG2_K3 and ckpt["kernel_size"] == 3
    assert (ckpt["size"], ckpt["style_dim"], ckpt["n_mlp"]) == (16, 16, 2)
    expected = fw.rename_nvlabs_to_rosinality_generator(G.state_dict())
    assert {k: tuple(v.shape) for k, v in ckpt["g_ema"].items()} == \
           {k: tuple(v.shape) for k, v in expected.items()}
    G2 = tr.RefGenerator(ckpt["size"], ckpt["generator_net_shape"], z_dim=16, w_dim=ckpt["style_dim"],
                         mapping_layers=ckpt["n_mlp"], kernel_size=ckpt["kernel_size"])
    G2.load_state_dict(fw.rename_rosinality_to_nvlabs_generator(ckpt["g_ema"], ckpt["latent_avg"]))
    with torch.no_grad():
        got = G2(torch.from_numpy(z_of(SEEDS, 16)), truncation_psi=PSI).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_nvlabs_state_dict_loads_strictly_and_records_kwargs(sg2_k3):
    G, _, out, _, want = sg2_k3
    sd = torch.load(os.path.join(out, "generator_nvlabs.pt"), weights_only=True)
    G2 = tr.RefGenerator(16, SG2_K3, z_dim=16, w_dim=16, mapping_layers=2)
    G2.load_state_dict(sd)   # strict: every name and shape of the NVlabs generator
    with torch.no_grad():
        got = G2(torch.from_numpy(z_of(SEEDS, 16)), truncation_psi=PSI).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
    with open(os.path.join(out, "generator_nvlabs.json")) as f:
        kwargs = json.load(f)
    assert kwargs["channels"] == SG2_K3 and kwargs["mapping_kwargs"]["num_layers"] == 2
    assert "cannot build" in kwargs["note"]   # pruned: no channel_base gives these channels


def test_pt_read_back_by_the_converter_gives_the_same_images(sg2_k3):
    """The project's torch-free reader + converter on the written file, against the checkpoint."""
    _, tmp, out, _, _ = sg2_k3
    cfg, variables = checkpoint.load_generator(str(tmp / "ckpt"))
    converted = stylegan2.convert_file(os.path.join(out, "generator_stylekd.pt"))
    assert converted.generator.channels == cfg.channels
    generate = jax.jit(lambda v, z: make_generator(cfg).apply(v, z, PSI))
    z = z_of(SEEDS, cfg.z_dim)
    images = [np.asarray(generate(v, z)) for v in (variables, converted.networks["g_ema"])]
    assert relative_error(images[1], images[0]) <= 1e-5


def test_kernel1_student_ws_uint8(sg2_k1):
    G, _, out, stdout, ws, want = sg2_k1
    got = tflite_run(os.path.join(out, "model.tflite"), {"ws": ws})
    assert got.dtype == np.uint8 and got.shape == (4, 16, 16, 3)
    assert np.abs(got.astype(int) - to_uint8(want)).max() <= 1   # a rounding flip at most
    assert "tflite float32 (batch 2, 4 seeds)" in stdout and "float16" not in stdout

    ckpt = torch.load(os.path.join(out, "generator_stylekd.pt"), weights_only=True)
    assert ckpt["kernel_size"] == 1 and ckpt["generator_net_shape"] == SG2_K1
    G2 = tr.RefGenerator(16, SG2_K1, z_dim=16, w_dim=16, mapping_layers=2, kernel_size=1)
    G2.load_state_dict(fw.rename_rosinality_to_nvlabs_generator(ckpt["g_ema"], ckpt["latent_avg"]))
    with torch.no_grad():
        got = G2.synthesis(torch.from_numpy(ws)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
    assert set(load_torch_file(os.path.join(out, "generator_nvlabs.pt"))) == set(G.state_dict())


def test_noise_inputs_replace_the_constant_noise(sg2_k3, tmp_path):
    """--noise input: one [N, res, res] input per layer, equal to the reference fed that noise
    explicitly; other noise gives another image (the inputs are really used)."""
    G, tmp, _, _, _ = sg2_k3
    rc, stdout, err = run_export(["--checkpoint", tmp / "ckpt", "--out", tmp_path, "--format", "onnx",
                                  "--signature", "ws", "--noise", "input"])
    assert rc == 0, err
    assert "noise inputs" in stdout
    ws = G.mapping(torch.from_numpy(z_of(SEEDS, 16)))
    shapes = G.noise_shapes(len(SEEDS))                     # [N, 1, H, W], synthesis order
    names = ["noise_b4_conv1"] + [f"noise_b{r}_conv{i}" for r in (8, 16) for i in (0, 1)]
    rng = np.random.default_rng(7)
    for scale in (1.0, 3.0):
        noise = [scale * rng.standard_normal(shape).astype(np.float32) for shape in shapes]
        with torch.no_grad():
            want = G.synthesis(ws, noise=[torch.from_numpy(n) for n in noise]).numpy()
        feeds = {"ws": ws.detach().numpy(), **{k: n[:, 0] for k, n in zip(names, noise)}}
        got = onnx_run(os.path.join(tmp_path, "model.onnx"), feeds)
        assert relative_error(got, want.transpose(0, 2, 3, 1)) < 1e-4
    with torch.no_grad():
        const = G.synthesis(ws).numpy()
    assert relative_error(got, want.transpose(0, 2, 3, 1)) < 1e-4 < relative_error(const, want)


def test_stylegan3_onnx_and_state_dict(sg3):
    G, _, out, stdout, want = sg3
    got = onnx_run(os.path.join(out, "model.onnx"), {"z": z_of(SEEDS, 16)})
    assert relative_error(got, want.transpose(0, 2, 3, 1)) < 1e-4
    # The recorded kwargs build the generator class, and the state dict loads into it strictly.
    with open(os.path.join(out, "generator_nvlabs.json")) as f:
        kwargs = json.load(f)
    assert "note" not in kwargs
    settings = {k: kwargs[k] for k in ("channel_base", "channel_max", "num_layers", "z_dim", "w_dim")}
    G2 = sr.Generator(sr.config("t", kwargs["img_resolution"], **settings)).eval()
    G2.load_state_dict(torch.load(os.path.join(out, "generator_nvlabs.pt"), weights_only=True))
    with torch.no_grad():
        again = G2(torch.from_numpy(z_of(SEEDS, 16)), truncation_psi=0.7, truncation_cutoff=3).numpy()
    np.testing.assert_allclose(again, want, rtol=0, atol=1e-6 * np.abs(want).max())
    assert not os.path.exists(os.path.join(out, "generator_stylekd.pt"))
    assert "generator_nvlabs.pt read back (4 seeds): max |diff|" in stdout


def test_the_out_folder_holds_only_the_verified_files(sg2_k3, sg2_k1):
    """No staging folder or stray file is left beside the exports."""
    assert sorted(os.listdir(sg2_k3[2])) == sorted([
        "generator_nvlabs.json", "generator_nvlabs.pt", "generator_stylekd.pt", "model.onnx",
        "model.tflite", "model_float16.tflite", "model_int8.tflite", "savedmodel"])
    assert sorted(os.listdir(sg2_k1[2])) == sorted([
        "generator_nvlabs.json", "generator_nvlabs.pt", "generator_stylekd.pt", "model.tflite"])


@pytest.fixture
def small_checkpoint(tmp_path):
    sg2_checkpoint(tmp_path / "ckpt", SG2_K1, 1, seed=4)
    out = tmp_path / "out"
    out.mkdir()
    (out / "generator_stylekd.pt").write_bytes(b"an earlier, verified export")
    return tmp_path / "ckpt", out


def test_a_file_that_fails_verification_is_not_written(small_checkpoint, monkeypatch):
    """A runtime that gives other images (here: the read-back weights, perturbed): exit 2, the
    error names the file, and the earlier export at that path is left as it was."""
    from stylekd_jax.export import torch_formats
    read_back = torch_formats.read_back

    def perturbed(cfg, path):
        back_cfg, back = read_back(cfg, path)
        return back_cfg, jax.tree_util.tree_map(lambda a: a * 1.5 if a.dtype.kind == "f" else a, back)

    monkeypatch.setattr(torch_formats, "read_back", perturbed)
    ckpt, out = small_checkpoint
    rc, _, err = run_export(["--checkpoint", ckpt, "--out", out, "--format", "torch"])
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "does not reproduce the generator" in err
    assert f"{out / 'generator_stylekd.pt'} not written" in err
    assert os.listdir(out) == ["generator_stylekd.pt"]
    assert (out / "generator_stylekd.pt").read_bytes() == b"an earlier, verified export"


def test_an_interrupted_export_leaves_nothing_behind(small_checkpoint, monkeypatch):
    """Ctrl-C while a written file is being checked: no partial or unchecked file in out."""
    from stylekd_jax.export import torch_formats

    def interrupted(cfg, path):
        assert os.path.getsize(path) > 0   # the file was written, into the staging folder
        raise KeyboardInterrupt

    monkeypatch.setattr(torch_formats, "read_back", interrupted)
    ckpt, out = small_checkpoint
    with pytest.raises(KeyboardInterrupt):
        run_export(["--checkpoint", ckpt, "--out", out, "--format", "torch"])
    assert os.listdir(out) == ["generator_stylekd.pt"]
    assert (out / "generator_stylekd.pt").read_bytes() == b"an earlier, verified export"


def test_the_staging_folder_of_a_killed_export_is_removed_by_the_next(small_checkpoint):
    """kill -9 cannot clean up: the next export into the same folder removes what a process that
    no longer runs on this host left behind, and leaves a running export's folder alone, and
    another host's (a shared network folder: its process ids mean nothing here)."""
    import socket
    import subprocess
    import sys
    ckpt, out = small_checkpoint
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    host = socket.gethostname()
    abandoned = out / f".partial-{int(dead.stdout)}@{host}-abc123"
    running = out / f".partial-{os.getpid()}@{host}-def456"
    elsewhere = out / f".partial-{int(dead.stdout)}@{host}-2-ghi789"   # host "<this host>-2"
    for folder in (abandoned, running, elsewhere):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half a model")
    rc, _, err = run_export(["--checkpoint", ckpt, "--out", out, "--format", "torch"])
    assert rc == 0, err
    assert not abandoned.exists() and running.exists() and elsewhere.exists()
    assert sorted(os.listdir(out)) == sorted([running.name, elsewhere.name, "generator_nvlabs.json",
                                              "generator_nvlabs.pt", "generator_stylekd.pt"])


# ---------------------------------------------------------------------------------------
# Bad input: one line, exit 2


@pytest.mark.parametrize("args, message", [
    (["--format", "onnx,caffe"], "unknown format caffe"),
    (["--format", "onnx", "--precision", "int8"], "onnx cannot be exported as int8"),
    (["--format", "tflite", "--trunc", "lots"], "--trunc must be a number or 'input'"),
    (["--format", "tflite", "--signature", "ws", "--trunc", "0.5"], "apply to the z signature"),
    (["--format", "onnx", "--checkpoint-missing"], "no generator checkpoint"),
    (["--format", "onnx", "--noise", "random"], "unknown noise random"),
])
def test_bad_input_is_one_line(args, message, tmp_path):
    if "--checkpoint-missing" in args:
        args = [a for a in args if a != "--checkpoint-missing"]
        ckpt = tmp_path / "nothing"
    else:
        ckpt = tmp_path / "never-read"
    rc, out, err = run_export(["--checkpoint", ckpt, "--out", tmp_path / "out", *args])
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    if message != "no generator checkpoint":
        assert message in err
    else:
        assert str(ckpt) in err


def test_noise_inputs_of_a_stylegan3_is_one_line(sg3, tmp_path):
    _, tmp, _, _, _ = sg3
    rc, out, err = run_export(["--checkpoint", tmp / "ckpt", "--out", tmp_path, "--format", "onnx",
                               "--noise", "input"])
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "StyleGAN3 generator has no noise" in err


def test_missing_required_argument_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--format", "onnx"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_portable_rewrites_leaky_relu_as_max_with_the_same_values():
    """`where(x >= 0, x, 0.2 x)` becomes `max(x, 0.2 x)` (ONNX Runtime's Where is slow); other
    selections are left alone."""
    import jax.numpy as jnp
    from stylekd_jax.export.portable import portable
    from stylekd_jax.ops.bias_act import bias_act

    def fn(x, b):
        return bias_act(x, b, act="lrelu") + jnp.where(x >= 0, 1.0, x)   # the second is no lrelu

    x = np.array([[-3.0, -0.0, 0.0, 2.5], [1e-30, -1e-30, 7.0, -0.5]], np.float32)
    b = np.zeros(4, np.float32)
    text = str(jax.make_jaxpr(portable(fn))(x, b))
    assert text.count(" max ") == 1 and text.count("select_n") == 1
    got, want = np.asarray(portable(fn)(x, b)), np.asarray(fn(x, b))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_jax_reference_is_the_generator(sg2_k1):
    """Sanity of the fixture: the converted checkpoint draws the reference images (else every
    comparison above would compare against the wrong thing)."""
    _, tmp, _, _, ws, want = sg2_k1
    cfg, variables = checkpoint.load_generator(str(tmp / "ckpt"))
    got = np.asarray(jax.jit(lambda v, w: make_generator(cfg).apply(v, w, method="synthesize"))(variables, ws))
    assert relative_error(got, want.transpose(0, 2, 3, 1)) < 1e-4
