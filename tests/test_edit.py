"""`python -m stylekd_jax.edit`: SeFa edit grids, edit consistency, style mixing, projection.

The expected pictures and numbers are recomputed here from the generators called directly
(`make_generator(cfg).apply`), the SeFa function with explicit arguments and numpy, not with
the command's own helpers. Tiny 16 px networks; every command runs in-process so its compiled
functions are shared through the XLA cache.
"""

import contextlib
import io
import json

import jax
import numpy as np
import pytest
from PIL import Image

from stylekd_jax import checkpoint, edit
from stylekd_jax.architecture import StyleGAN3Config
from stylekd_jax.networks import make_generator
from stylekd_jax.networks.generator import init_generator
from stylekd_jax.sefa import sefa_directions
from stylekd_jax.student import init_student, student_config

SIZE = 16
PAD = 2   # between grid cells


def run_edit(args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = edit.main([str(a) for a in args])
        except SystemExit as e:   # argparse's usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def make_student(teacher_dir: str, path: str, seed: int = 1) -> str:
    """A half-width student of the teacher: inherited mapping, random synthesis (StyleKD's init)."""
    t_cfg, t_vars = checkpoint.load_generator(teacher_dir)
    cfg = student_config(t_cfg, keep_ratio=0.5)
    variables = init_student(t_cfg, t_vars, cfg, jax.random.PRNGKey(seed), mapping_init="inherit",
                             synthesis_init="random")
    checkpoint.save(path, {"g_ema": jax.tree_util.tree_map(np.asarray, variables)}, cfg)
    return path


@pytest.fixture(scope="module")
def tiny_student(tiny_teacher, tmp_path_factory):
    return make_student(tiny_teacher, str(tmp_path_factory.mktemp("student") / "student"))


def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    return grid[row * (SIZE + PAD): row * (SIZE + PAD) + SIZE, col * (SIZE + PAD): col * (SIZE + PAD) + SIZE]


class Direct:
    """A generator called directly: teacher-W ws of seeds, images, uint8 pictures."""

    def __init__(self, path):
        self.cfg, self.vars = checkpoint.load_generator(path)
        model = make_generator(self.cfg)
        self.map = jax.jit(lambda v, z, psi: model.apply(v, z, psi, method="map"), static_argnums=2)
        self.synthesize = jax.jit(lambda v, ws: model.apply(v, ws, "const", method="synthesize"))

    def ws(self, seeds, psi):
        z = np.concatenate([np.random.RandomState(s).randn(1, self.cfg.z_dim) for s in seeds]).astype(np.float32)
        return np.asarray(self.map(self.vars, z, psi))

    def images(self, ws):
        return np.clip(np.asarray(self.synthesize(self.vars, ws)), -1, 1)


def uint8(images):
    return np.clip(images * 127.5 + 128, 0, 255).astype(np.uint8)


def test_edit_grids_consistency_and_style_mix(tiny_teacher, tiny_student, tmp_path):
    out = tmp_path / "edits"
    strengths = [-4.0, 0.0, 4.0]
    rc, stdout, err = run_edit(["--teacher", tiny_teacher, "--student", tiny_student, "--seeds", "0-1",
                                "--directions", "sefa:0,3", "--strengths", "-4,0,4", "--trunc", "0.8",
                                "--style-mix", "0-1", "5-7", "--cutoff", "2", "--outdir", out])
    assert rc == 0, err
    assert "direction 3 (2/2)" in stdout
    report = json.loads((out / "edits.json").read_text())
    assert report["strengths"] == strengths and report["latents"] == ["seed 0", "seed 1"]

    teacher, student = Direct(tiny_teacher), Direct(tiny_student)
    ws = teacher.ws([0, 1], 0.8)                       # the teacher's W, truncated: both networks get it
    directions = sefa_directions(teacher.cfg, teacher.vars, "split", num_blocks=2)   # 16 px: b8, b16
    base_t, base_s = teacher.images(ws), student.images(ws)
    for entry in report["directions"]:
        d = directions[entry["index"]]
        grid = np.asarray(Image.open(out / entry["grid"]))
        assert grid.shape == (4 * SIZE + 3 * PAD, 3 * SIZE + 2 * PAD, 3)
        l1 = []
        for k, s in enumerate(strengths):
            edited = ws + np.float32(s) * d
            img_t, img_s = teacher.images(edited), student.images(edited)
            for i in range(2):   # rows: seed i's teacher, then its student
                assert np.abs(cell(grid, 2 * i, k).astype(int) - uint8(img_t[i])).max() <= 1
                assert np.abs(cell(grid, 2 * i + 1, k).astype(int) - uint8(img_s[i])).max() <= 1
            per = entry["per_strength"][k]
            want = np.abs((img_t - base_t) - (img_s - base_s)).mean()
            np.testing.assert_allclose(per["l1"], want, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(per["teacher_delta_l1"], np.abs(img_t - base_t).mean(), rtol=1e-4, atol=1e-6)
            if s == 0:   # no edit, no delta, nothing to disagree on
                assert per["l1"] == 0 and per["teacher_delta_l1"] == 0 and per["lpips"] < 1e-6
            else:
                assert per["teacher_delta_l1"] > 1e-3 and 0 < per["lpips"] < 1
                l1.append(want)
        np.testing.assert_allclose(entry["l1"], np.mean(l1), rtol=1e-4)   # mean over non-zero strengths

    # NVlabs style_mixing.py: column seeds on top, row seeds on the left, ws [0, 2) from the column.
    mix = report["style_mix"]
    assert (mix["rows"], mix["columns"], mix["cutoff"]) == ([0, 1], [5, 6, 7], 2) and mix["l1"] > 0
    rows, cols = teacher.ws([0, 1], 0.8), teacher.ws([5, 6, 7], 0.8)
    for role, net in (("teacher", teacher), ("student", student)):
        canvas = np.asarray(Image.open(out / f"stylemix_{role}.png"))
        assert canvas.shape == (3 * SIZE, 4 * SIZE, 3) and not canvas[:SIZE, :SIZE].any()
        mixed = rows[1].copy()
        mixed[:2] = cols[2][:2]
        want = uint8(net.images(mixed[None]))[0]
        assert np.abs(canvas[2 * SIZE:, 3 * SIZE:].astype(int) - want).max() <= 1
        assert np.abs(canvas[:SIZE, SIZE:2 * SIZE].astype(int) - uint8(net.images(cols[:1]))[0]).max() <= 1


def test_student_equal_to_teacher_edits_consistently(tiny_teacher, tmp_path):
    """A student that is its teacher makes every edit exactly: consistency 0. The projected image
    is edited too (2 Adam steps: the plumbing, not the projector's quality)."""
    target = tmp_path / "target.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (24, 20, 3), np.uint8)).save(target)
    out = tmp_path / "same"
    rc, stdout, err = run_edit(["--teacher", tiny_teacher, "--student", tiny_teacher, "--seeds", "3",
                                "--directions", "sefa:1-2", "--strengths=-3,3", "--project", target,
                                "--projector", "adam", "--project-steps", "2",
                                "--style-mix", "0", "1", "--outdir", out])
    assert rc == 0, err
    report = json.loads((out / "edits.json").read_text())
    assert report["latents"] == ["seed 3", "projection target.png"]
    for entry in report["directions"]:
        assert entry["l1"] == 0 and entry["lpips"] < 1e-6 and entry["teacher_delta_l1"] > 1e-3
    assert report["style_mix"]["l1"] == 0 and report["style_mix"]["cutoff"] == 6 // 2
    p = report["projection"]
    assert p["student_psnr"] == pytest.approx(p["teacher_psnr"], rel=1e-5)
    assert np.asarray(Image.open(out / "projection.png")).shape == (SIZE, 3 * SIZE + 2 * PAD, 3)
    assert np.asarray(Image.open(out / "sefa01.png")).shape == (4 * SIZE + 3 * PAD, 2 * SIZE + PAD, 3)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0", "--directions", "pca:0"], "use sefa:INDICES"),
    (["--seeds", "0", "--directions", "sefa:0-99"], "has 10 SeFa directions (0-9), no direction 10"),
    (["--seeds", "0", "--strengths", "a,b"], "--strengths 'a,b'"),
    (["--seeds", "0", "--strengths", "1,nan"], "finite numbers"),
    (["--seeds", "3-1"], "--seeds: bad seed list"),
    ([], "nothing to do"),
    (["--seeds", "0", "--cutoff", "2"], "needs --style-mix"),
    (["--style-mix", "0", "1", "--cutoff", "9"], "--cutoff must be in [0, 6]"),
    (["--project", "/nonexistent/face.png"], "no such file"),
    (["--seeds", "0", "--trunc", "inf"], "--trunc must be a finite number"),
    (["--seeds", "0", "--teacher", "/nonexistent/teacher"], "--teacher: "),
    (["--seeds", "0", "--student", "OTHER"], "the student takes other latents"),
])
def test_bad_input_is_one_line(tiny_teacher, tiny_student, tmp_path, args, message):
    if "OTHER" in args:   # a generator whose ws do not fit the teacher's
        other = StyleGAN3Config.teacher(16, "t", channel_base=256, channel_max=16, z_dim=16, w_dim=8,
                                        mapping_features=(8, 8), num_layers=4)
        path = str(tmp_path / "other")
        checkpoint.save(path, {"g_ema": init_generator(other, jax.random.PRNGKey(0))}, other)
        args = [path if a == "OTHER" else a for a in args]
    out = tmp_path / "out"
    rc, _, err = run_edit(["--teacher", tiny_teacher, "--student", tiny_student, "--outdir", out, *args])
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not out.exists()   # a refused run leaves no folder behind


@pytest.mark.slow
def test_stylegan3_edit(tmp_path):
    """StyleGAN3: directions from pairs of layers, the same grids and numbers (4-layer 16 px T)."""
    cfg = StyleGAN3Config.teacher(16, "t", channel_base=256, channel_max=16, z_dim=16, w_dim=16,
                                  mapping_features=(16, 16), num_layers=4)
    teacher = str(tmp_path / "sg3")
    checkpoint.save(teacher, {"g_ema": jax.tree_util.tree_map(
        np.asarray, init_generator(cfg, jax.random.PRNGKey(0)))}, cfg)
    student = make_student(teacher, str(tmp_path / "sg3_student"))
    out = tmp_path / "edits"
    rc, _, err = run_edit(["--teacher", teacher, "--student", student, "--seeds", "0", "--directions",
                           "sefa:0", "--strengths", "0,5", "--batch-size", "2", "--style-mix", "0", "1",
                           "--outdir", out])
    assert rc == 0, err
    entry = json.loads((out / "edits.json").read_text())["directions"][0]
    zero, five = entry["per_strength"]
    assert zero["l1"] == 0 and zero["teacher_delta_l1"] == 0 and five["teacher_delta_l1"] > 1e-3
    t = Direct(teacher)
    ws = t.ws([0], 1.0) + 5 * sefa_directions(t.cfg, t.vars, "split", num_blocks=2)[0]
    grid = np.asarray(Image.open(out / "sefa00.png"))
    assert np.abs(cell(grid, 0, 1).astype(int) - uint8(t.images(ws))[0]).max() <= 1
