"""`python -m stylekd_jax.evaluate` end to end on tiny networks: every metric, the JSON, errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from stylekd_jax import checkpoint
from stylekd_jax.evaluate import main, parse_metrics, sample_count
from stylekd_jax.inception import InceptionV3FID, MIN_SIZE, save_params
from stylekd_jax.student import init_student, student_config


@pytest.fixture(scope="module")
def inception_npz(tmp_path_factory):
    """Random Inception weights in the converted format (no real weights offline)."""
    params = InceptionV3FID().init(jax.random.PRNGKey(0), jnp.zeros((1, MIN_SIZE, MIN_SIZE, 3)))["params"]
    path = str(tmp_path_factory.mktemp("inception") / "inception.npz")
    save_params(path, params)
    return path


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_teacher):
    t_cfg, t_vars = checkpoint.load_generator(tiny_teacher)
    s_cfg = student_config(t_cfg, keep_ratio=0.5)
    s_vars = init_student(t_cfg, t_vars, s_cfg, jax.random.PRNGKey(3))
    path = str(tmp_path_factory.mktemp("student") / "student")
    checkpoint.save(path, {"g_ema": jax.tree_util.tree_map(np.asarray, s_vars)}, s_cfg)
    return path


def test_metric_names():
    assert parse_metrics("fid50k, kid10k,ppl_wend,ppl_wfull_stylekd,psnr,consistency")[0] == "fid50k"
    assert sample_count("fid50k") == 50_000 and sample_count("fid16") == 16
    with pytest.raises(Exception, match="unknown metric 'is50k'"):
        parse_metrics("is50k")


def test_all_metrics_on_tiny_networks(tmp_path, tiny_teacher, tiny_data, student, inception_npz):
    targets = tmp_path / "targets"
    targets.mkdir()
    for i, name in enumerate(sorted(os.listdir(tiny_data))[:2]):
        Image.open(os.path.join(tiny_data, name)).save(targets / f"{i}.png")
    out = tmp_path / "results.json"
    assert main(["--checkpoint", student, "--teacher", tiny_teacher, "--inception", inception_npz,
                 "--data", f"folder:{tiny_data}", "--targets", f"folder:{targets}",
                 "--metrics", "fid16,kid16,ppl_wend,ppl_wend_stylekd,psnr,consistency",
                 "--ppl-samples", "8", "--consistency-samples", "8", "--projection-steps", "3",
                 "--projector", "adam",   # L-BFGS: test_metrics_projection_consistency.py
                 "--batch", "8", "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    for key in ("fid16", "kid16", "ppl_wend", "ppl_wend_stylekd", "psnr", "psnr_official_compat", "psnr_lpips",
                "consistency_l1", "consistency_lpips", "consistency_psnr", "consistency_mapping_l1"):
        assert np.isfinite(metrics[key]), key
    assert metrics["fid16"] > 0 and metrics["consistency_l1"] > 0
    assert metrics["consistency_mapping_l1"] == 0.0          # the student inherited the mapping
    assert len(os.listdir(tmp_path / "projections")) == 2     # target | projection pictures
    assert len(os.listdir(tmp_path / "cache")) == 1           # real statistics cached


def test_teacher_against_itself_is_perfectly_consistent(tmp_path, tiny_teacher, capsys):
    out = tmp_path / "r.json"
    assert main(["--checkpoint", tiny_teacher, "--teacher", tiny_teacher, "--metrics", "consistency",
                 "--consistency-samples", "8", "--batch", "8", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["consistency_l1"] == 0.0 and metrics["consistency_lpips"] == 0.0
    assert "consistency_l1" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--metrics", "fid16"], "--data"),
    (["--metrics", "fid16", "--data", "folder:/nope"], "--inception"),
    (["--metrics", "consistency"], "--teacher"),
    (["--metrics", "fid16", "--data", "folder:/x", "--inception", "/nope/inception"], "pt_inception"),
])
def test_missing_inputs_are_clear_errors(tiny_teacher, capsys, args, message):
    assert main(["--checkpoint", tiny_teacher] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_cached_real_statistics_are_recomputed_when_the_images_change(tmp_path):
    import time
    from stylekd_jax.evaluate import real_statistics
    folder = tmp_path / "images"
    folder.mkdir()

    def write(value):
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), value + i, np.uint8)).save(folder / f"{i}.png")

    def mean_colour(images):
        return np.asarray(images).mean(axis=(1, 2))

    def stats():
        return real_statistics(f"folder:{folder}", 8, mean_colour, "mean-colour", 2,
                               str(tmp_path / "cache"), lambda done, total: None, False).mean

    write(10)
    first = stats()
    np.testing.assert_allclose(stats(), first)          # a cache hit gives the same numbers
    time.sleep(0.01)
    write(200)                                          # same path, same count, other images
    assert np.all(stats() > first + 1.0)


def test_a_damaged_statistics_cache_is_recomputed_and_replaced(tmp_path, capsys):
    """A cache file cut short (a save killed before the atomic write existed, a full disk): the
    statistics are computed again and the file rewritten, not an error at every evaluation."""
    from stylekd_jax.evaluate import real_statistics
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(folder / f"{i}.png")

    def stats():
        return real_statistics(f"folder:{folder}", 8, lambda x: np.asarray(x).mean(axis=(1, 2)),
                               "mean-colour", 2, str(tmp_path / "cache"), lambda done, total: None,
                               False).mean

    first = stats()
    (cached,) = list((tmp_path / "cache").iterdir())
    cached.write_bytes(cached.read_bytes()[:100])
    np.testing.assert_allclose(stats(), first)
    assert "cannot be read" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached.name]   # no temp file left
    np.testing.assert_allclose(stats(), first)
    assert "cannot be read" not in capsys.readouterr().out                     # rewritten whole
