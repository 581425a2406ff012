"""The demo configs end to end at toy scale: every artefact is written and every number is finite.

configs/demo_teacher.py and configs/demo.py run in full only from the README (the shipped
teacher, launch/demo.sh); here the same configs run with a few steps at 16px, through
`python -m stylekd_jax.main` as a user runs them: a toy teacher, then the demo distilling it.
"""

import json
import math
import os
import re

import jax
import numpy as np
import pytest

from stylekd_jax import checkpoint, images, procedural, run_log
from stylekd_jax.generate import make_generate_fn, seed_latents
from tests.test_config import load
from tests.test_train import ROOT, run_main

COMMON = {
    "data.source": "shapes:48", "batch_size": 8, "total_steps": 4, "log_every_steps": 2,
    "checkpoint_every_steps": 2, "sample_every_steps": 2, "sample_seeds": (0, 1, 2), "eval.batch": 8,
}
TOY_TEACHER = dict(COMMON, **{"generator.resolution": 16, "generator.channel_max": 32,
                              "generator.z_dim": 32, "generator.w_dim": 32, "eval.metrics": "fdvgg24",
                              "eval.every_steps": 0})
TOY = dict(COMMON, **{"loss.ld_layers": (1, 2), "eval.consistency_samples": 16,
                      "eval.metrics": "consistency,fdvgg24", "eval.every_steps": 2,
                      "eval.every_metrics": "consistency"})
# The shipped teacher: configs/demo_teacher.py's export after this many steps. Its samples' share
# of shape-coloured pixels is 0.110, the real scenes' 0.160, a 1000-step snapshot's 0.013.
SHIPPED_TEACHER_STEPS = 6000
SHIPPED_TEACHER_MIN_SHARE = 0.5    # of the real scenes' share


def config_path(name):
    return os.path.join(ROOT, "configs", name)


def finite(value):
    return value is not None and math.isfinite(value)


def shape_colour_share(batch: np.ndarray) -> np.ndarray:
    """Per uint8 image, the share of pixels within 40 (of 255, RGB distance) of a shape colour of
    the procedural palette: crisp shapes in their colours score like the real scenes, an
    early-training GAN's pale colour blobs near 0."""
    distance = np.linalg.norm(batch[..., None, :].astype(np.float32) - procedural.SHAPE_PALETTE, axis=-1)
    return (distance.min(-1) < 40).mean(axis=(1, 2))


def test_shipped_teacher_draws_the_scenes_shapes_in_their_colours():
    """configs/demo.py distils the committed teacher by default; it is the 32px network that
    configs/demo_teacher.py trains, and its samples have the real scenes' saturated shapes."""
    teacher = load("demo.py").teacher
    cfg, variables = checkpoint.load_generator(teacher)
    assert (cfg.resolution, cfg.channels) == (32, (64,) * 8)
    assert checkpoint.read_architecture(teacher)[2]["step"] == SHIPPED_TEACHER_STEPS
    generate = make_generate_fn(cfg, 1.0, None, "const")
    z = seed_latents(list(range(256)), cfg.z_dim)
    fake = images.to_uint8(generate(variables, z, jax.random.split(jax.random.PRNGKey(0), 256)))
    real = np.stack([procedural.render_scene(i, 32) for i in range(256)])
    assert shape_colour_share(np.asarray(fake)).mean() > SHIPPED_TEACHER_MIN_SHARE * shape_colour_share(real).mean()


@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory):
    """configs/demo_teacher.py at toy scale: the exported generator the demo distils."""
    workdir = tmp_path_factory.mktemp("demo_teacher")
    run_main(workdir, TOY_TEACHER, config=config_path("demo_teacher.py"))
    return workdir


@pytest.fixture(scope="module")
def demo_run(toy_teacher, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    overrides = dict(TOY, teacher=str(toy_teacher / "student"))
    return workdir, overrides, run_main(workdir, overrides, config=config_path("demo.py"))


def test_demo_teacher_config_trains_and_exports_a_generator(toy_teacher):
    assert os.path.isfile(toy_teacher / "data" / "shapes_48_16px.zip")
    assert os.path.isfile(toy_teacher / "student" / "architecture.json")
    assert any(f.endswith(".png") for f in os.listdir(toy_teacher / "samples"))
    assert finite(run_log.last_value(run_log.read_scalars(str(toy_teacher)), "eval/fdvgg24"))


def test_demo_writes_data_student_and_report(demo_run):
    workdir, _, result = demo_run
    assert os.path.isfile(workdir / "data" / "shapes_48_16px.zip")
    assert os.path.isfile(workdir / "student" / "architecture.json")
    assert any(f.endswith(".png") for f in os.listdir(workdir / "samples"))
    student = run_log.read_scalars(str(workdir))
    for name in ("eval/fdvgg24", "eval/consistency_l1", "eval/consistency_lpips",
                 "eval/consistency_psnr", "eval/consistency_mapping_l1", "kd_l1", "kd_lpips",
                 "kd_ld", "g_gan", "d_loss"):
        assert finite(run_log.last_value(student, name)), name
    # Every 2 steps only `every_metrics`; the last evaluation computes all of `metrics`.
    assert list(student["eval/consistency_l1"][0]) == [2, 4] and list(student["eval/fdvgg24"][0]) == [4]
    # The inherited mapping is trained at the mapping's lr; after 4 steps it is still near the teacher's.
    assert run_log.last_value(student, "eval/consistency_mapping_l1") < 0.1
    stages = json.loads((workdir / "stages.json").read_text())
    assert set(stages) == {"data", "distillation"} and stages["distillation"]["seconds"] > 0

    report = (workdir / "report.md").read_text()
    for link in re.findall(r"\]\((report/[^)]+\.png)\)", report):
        assert os.path.isfile(workdir / link), link
    assert "teacher (top) and student (bottom)" in report
    assert "| student |" in report and "compression" in report
    assert "report.md" in result.stdout


def test_rerun_reuses_every_finished_stage(demo_run):
    workdir, overrides, _ = demo_run
    before = (workdir / "stages.json").read_text()
    result = run_main(workdir, overrides, config=config_path("demo.py"))
    assert "distillation: already done" in result.stdout
    assert (workdir / "stages.json").read_text() == before


@pytest.mark.slow   # eight more runs; variants are also checked by test_config
def test_ablation_runs_each_variant_with_repeats_and_tabulates_them(tmp_path, demo_run):
    _, overrides, _ = demo_run
    overrides = dict(overrides, **{"total_steps": 2, "variant_repeats": 2, "eval.every_steps": 1})
    run_main(tmp_path, overrides, config=config_path("demo_ablation.py"))
    report = (tmp_path / "report.md").read_text()
    for name in ("random_random", "inherit_inherit", "inherit_random", "stylekd"):
        for seed in (0, 1):
            scalars = run_log.read_scalars(str(tmp_path / f"{name}_seed{seed}"))
            assert scalars["eval/consistency_l1"][0] == [1, 2], name   # evaluated during training
            assert re.search(rf"\| {name}_seed{seed} \| 2 \|", report), name
        assert re.search(rf"\| {name} \| 2 \| [0-9.e-]+ ± ", report), name
    assert "consistency_lpips.png" in report and os.path.isfile(tmp_path / "report" / "consistency_lpips.png")
    # Only the random mapping starts far from the teacher's.
    mapping = {name: run_log.last_value(run_log.read_scalars(str(tmp_path / f"{name}_seed0")),
                                        "eval/consistency_mapping_l1")
               for name in ("random_random", "inherit_random")}
    assert mapping["random_random"] > 10 * mapping["inherit_random"]
    ld = {name: run_log.read_scalars(str(tmp_path / f"{name}_seed0")) for name in ("stylekd", "inherit_random")}
    assert ld["stylekd"]["kd_ld"][1][-1] > 0 and not ld["inherit_random"].get("kd_ld", ([], [0]))[1][-1]
