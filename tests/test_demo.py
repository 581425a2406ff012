"""The demo configs end to end at toy scale: every artefact is written and every number is finite.

configs/demo.py runs in full only from the README (launch/demo.sh); here the same configs run
with a few steps at 16px, through `python -m stylekd_jax.main` as a user runs them.
"""

import json
import math
import os
import re

import pytest

from stylekd_jax import run_log
from tests.test_train import ROOT, run_main

TOY = {
    "data.source": "shapes:48", "generator.resolution": 16, "generator.channel_max": 32,
    "generator.z_dim": 32, "generator.w_dim": 32, "batch_size": 8, "loss.ld_layers": (1, 2),
    "teacher_training.total_steps": 4, "total_steps": 4, "log_every_steps": 2,
    "checkpoint_every_steps": 2, "sample_every_steps": 2, "sample_seeds": (0, 1, 2),
    "eval.consistency_samples": 16, "eval.batch": 8, "eval.metrics": "consistency,fdvgg24",
}


def finite(value):
    return value is not None and math.isfinite(value)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    result = run_main(workdir, TOY, config=os.path.join(ROOT, "configs", "demo.py"))
    return workdir, result


def test_demo_writes_data_teacher_student_and_report(demo_run):
    workdir, result = demo_run
    assert os.path.isfile(workdir / "data" / "shapes_48_16px.zip")
    for run in (workdir / "teacher", workdir):
        assert os.path.isfile(run / "student" / "architecture.json")
        assert any(f.endswith(".png") for f in os.listdir(run / "samples"))
    teacher = run_log.read_scalars(str(workdir / "teacher"))
    student = run_log.read_scalars(str(workdir))
    assert finite(run_log.last_value(teacher, "eval/fdvgg24"))
    for name in ("eval/fdvgg24", "eval/consistency_l1", "eval/consistency_lpips",
                 "eval/consistency_psnr", "eval/consistency_mapping_l1", "kd_l1", "kd_lpips",
                 "kd_ld", "g_gan", "d_loss"):
        assert finite(run_log.last_value(student, name)), name
    # The inherited mapping is trained at the mapping's lr; after 4 steps it is still near the teacher's.
    assert run_log.last_value(student, "eval/consistency_mapping_l1") < 0.1
    stages = json.loads((workdir / "stages.json").read_text())
    assert set(stages) == {"data", "teacher training", "distillation"}
    assert stages["teacher training"]["seconds"] > 0 and stages["distillation"]["seconds"] > 0

    report = (workdir / "report.md").read_text()
    for link in re.findall(r"\]\((report/[^)]+\.png)\)", report):
        assert os.path.isfile(workdir / link), link
    assert "teacher (top) and student (bottom)" in report
    assert "| student |" in report and "compression" in report
    assert "report.md" in result.stdout


def test_rerun_reuses_every_finished_stage(demo_run):
    workdir, _ = demo_run
    before = (workdir / "stages.json").read_text()
    result = run_main(workdir, TOY, config=os.path.join(ROOT, "configs", "demo.py"))
    assert "teacher training: already done" in result.stdout
    assert "distillation: already done" in result.stdout
    assert (workdir / "stages.json").read_text() == before


@pytest.mark.slow   # six more runs; variants are also checked by test_config
def test_ablation_runs_each_variant_with_seeds_and_tabulates_them(tmp_path, demo_run):
    workdir, _ = demo_run
    overrides = dict(TOY, **{"teacher": str(workdir / "teacher" / "student"),
                             "teacher_training.total_steps": 0, "total_steps": 2,
                             "variant_repeats": 2, "eval.every_steps": 1})
    run_main(tmp_path, overrides, config=os.path.join(ROOT, "configs", "demo_ablation.py"))
    report = (tmp_path / "report.md").read_text()
    for name in ("random_random", "inherit_inherit", "inherit_random"):
        for seed in (0, 1):
            scalars = run_log.read_scalars(str(tmp_path / f"{name}_seed{seed}"))
            assert scalars["eval/consistency_l1"][0] == [1, 2], name   # evaluated during training
            assert re.search(rf"\| {name}_seed{seed} \| 2 \|", report), name
        assert re.search(rf"\| {name} \| 2 \| [0-9.e-]+ ± ", report), name   # mean ± std row
    assert os.path.isfile(tmp_path / "report" / "consistency_lpips.png")
    # Only the random mapping starts far from the teacher's.
    mapping = {name: run_log.last_value(run_log.read_scalars(str(tmp_path / f"{name}_seed0")),
                                        "eval/consistency_mapping_l1")
               for name in ("random_random", "inherit_random")}
    assert mapping["random_random"] > 10 * mapping["inherit_random"]


def test_demo_teacher_config_trains_and_exports_a_generator(tmp_path):
    """configs/demo_teacher.py (the demo's longer-trained teacher) at toy scale."""
    overrides = {k: v for k, v in TOY.items() if not k.startswith(("loss.", "eval.consistency"))}
    overrides.update({"eval.metrics": "fdvgg24", "total_steps": 4})
    del overrides["teacher_training.total_steps"]
    run_main(tmp_path, overrides, config=os.path.join(ROOT, "configs", "demo_teacher.py"))
    assert os.path.isfile(tmp_path / "student" / "architecture.json")
    assert any(f.endswith(".png") for f in os.listdir(tmp_path / "samples"))
    assert finite(run_log.last_value(run_log.read_scalars(str(tmp_path)), "eval/fdvgg24"))
