"""`python -m stylekd_jax.generate`: seeds, files written, and the NVlabs seed convention."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from stylekd_jax import checkpoint
from stylekd_jax.architecture import GeneratorConfig
from stylekd_jax.generate import main, parse_seeds
from stylekd_jax.networks import Generator
from stylekd_jax.networks.generator import init_generator
from tests.conftest import set_noise_strength

CFG = GeneratorConfig.teacher(16, channel_base=256, channel_max=16, z_dim=16, w_dim=16,
                              mapping_features=(16, 16))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gen") / "ckpt")
    variables = init_generator(CFG, jax.random.PRNGKey(0))
    variables = jax.tree_util.tree_map(np.asarray, variables)
    # Non-trivial noise strengths and w_avg, so noise modes and truncation change the output.
    set_noise_strength(variables, 0.7)
    variables["buffers"]["mapping"]["w_avg"] = np.full(16, 0.3, np.float32)
    checkpoint.save(path, {"g_ema": variables}, CFG)
    return path, variables


def test_parse_seeds():
    assert parse_seeds("0-3,7,10-11") == [0, 1, 2, 3, 7, 10, 11]
    assert parse_seeds("5") == [5]
    for bad in ("a", "3-1", "1,,2", "-4"):
        with pytest.raises(Exception, match="seed"):
            parse_seeds(bad)


def test_generate_writes_pngs_grid_and_raw_npy(ckpt, tmp_path):
    path, variables = ckpt
    out = str(tmp_path / "out")
    assert main(["--checkpoint", path, "--seeds", "0-2,9", "--trunc", "0.7", "--noise-mode", "const",
                 "--outdir", out, "--save-npy", "--batch-size", "3"]) == 0
    names = sorted(os.listdir(out))
    assert names == ["grid.png", "images.npy", "seed0000.png", "seed0001.png", "seed0002.png", "seed0009.png"]
    images = np.load(os.path.join(out, "images.npy"))
    assert images.dtype == np.float32 and images.shape == (4, 16, 16, 3)
    # Seed s means z = RandomState(s).randn(1, z_dim), whatever the batch it lands in.
    z = np.concatenate([np.random.RandomState(s).randn(1, 16) for s in (0, 1, 2, 9)]).astype(np.float32)
    expected = Generator(CFG).apply(variables, z, 0.7, None, "const")
    np.testing.assert_allclose(images, np.asarray(expected), atol=1e-5)
    png = np.asarray(Image.open(os.path.join(out, "seed0009.png")))
    np.testing.assert_array_equal(png, np.clip(images[3] * 127.5 + 128, 0, 255).astype(np.uint8))


def test_random_noise_is_per_seed_not_per_batch(ckpt, tmp_path):
    path, _ = ckpt
    runs = []
    for batch in ("1", "4"):
        out = str(tmp_path / batch)
        main(["--checkpoint", path, "--seeds", "3-6", "--noise-mode", "random", "--outdir", out,
              "--save-npy", "--batch-size", batch])
        runs.append(np.load(os.path.join(out, "images.npy")))
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-5)
    const_dir = str(tmp_path / "const")
    main(["--checkpoint", path, "--seeds", "3-6", "--outdir", const_dir, "--save-npy"])
    assert np.abs(np.load(os.path.join(const_dir, "images.npy")) - runs[0]).max() > 1e-3


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope"), "--seeds", "0", "--outdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a StyleKD-JAX checkpoint" in err and "convert_torch_weights.py" in err


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("flags,expected", [
    (["--trunc", "nan"], "--trunc must be a finite number"),
    (["--trunc", "inf"], "--trunc must be a finite number"),
    (["--trunc-cutoff", "-1"], "--trunc-cutoff must be in [0, 6]"),
    (["--trunc-cutoff", "7"], "--trunc-cutoff must be in [0, 6]"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["--batch-size", "two"], "argument --batch-size: expected a whole number"),
    (["--seeds", "3-1"], "--seeds: bad seed list"),
])
def test_bad_values_are_one_line_and_write_nothing(ckpt, tmp_path, capsys, flags, expected):
    path, _ = ckpt
    args = ["--checkpoint", path, "--seeds", "0-1", "--outdir", str(tmp_path / "out")]
    assert exit_code(args + flags) == 2
    assert expected in one_error_line(capsys)
    assert not os.path.exists(tmp_path / "out")


def exit_code(args) -> int:
    """main's return value, or the code of the SystemExit argparse raises for a usage error."""
    try:
        return main(args)
    except SystemExit as e:
        return e.code


def test_an_output_path_that_cannot_be_a_folder_is_one_line(ckpt, tmp_path, capsys):
    path, _ = ckpt
    (tmp_path / "a_file").write_text("x")
    for outdir, expected in ((tmp_path / "a_file", "is a file"),
                             (tmp_path / "a_file" / "sub", f"{tmp_path / 'a_file'} is a file")):
        assert main(["--checkpoint", path, "--seeds", "0", "--outdir", str(outdir)]) == 2
        assert expected in one_error_line(capsys)


def test_a_huge_seed_range_is_estimated_and_needs_yes(ckpt, tmp_path, capsys, monkeypatch):
    path, _ = ckpt
    out = str(tmp_path / "out")
    assert main(["--checkpoint", path, "--seeds", "0-99999999", "--outdir", out]) == 2
    err = one_error_line(capsys)
    assert "asks for 100000000 images" in err and "on disk" in err and "--yes" in err
    assert not os.path.exists(out)
    # A range just over the limit runs with --yes, after printing the count, size and time.
    monkeypatch.setattr("stylekd_jax.generate.MAX_IMAGES", 3)
    assert main(["--checkpoint", path, "--seeds", "0-4", "--outdir", out]) == 2
    one_error_line(capsys)
    assert main(["--checkpoint", path, "--seeds", "0-4", "--outdir", out, "--yes", "--batch-size", "2",
                 "--save-npy"]) == 0
    plan = capsys.readouterr().out.splitlines()[0]
    assert plan.startswith("5 images of 16x16: about") and "images/s" in plan
    assert sorted(os.listdir(out)) == ["grid.png", "images.npy"] + [f"seed000{i}.png" for i in range(5)]
    assert np.load(os.path.join(out, "images.npy")).shape == (5, 16, 16, 3)
