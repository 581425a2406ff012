"""Config files load and validate; bad keys and inconsistent values fail at start, naming the key."""

import importlib.util
import os
import subprocess
import sys

import pytest

from stylekd_jax.config import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py"))


def load(name, arg=None):
    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(ROOT, "configs", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_validates_and_documents_its_command(name, tmp_path):
    config = load(name)
    if not config.teacher_training.total_steps:   # the demos train their own teacher
        config.teacher = "teacher/"
    if config.loss.face_mask:                     # the FFHQ configs: validate checks the file exists
        (tmp_path / "79999_iter.pth").write_bytes(b"")
        config.loss.face_parser = str(tmp_path / "79999_iter.pth")
    config.data.source = config.data.source or "folder:/data"
    validate(config)
    spec = importlib.util.spec_from_file_location("m", os.path.join(ROOT, "configs", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "python -m stylekd_jax.main" in module.__doc__
    assert "FID" in module.__doc__ or "minutes" in module.__doc__   # paper numbers, or run time


@pytest.mark.parametrize("arg,mapping,synthesis,losses", [
    ("random_random_none", "random", "random", (0, 0, 0)),
    ("inherit_random_rgb_lpips_ld", "inherit", "random", (3, 3, 30)),
    ("inherit_inherit_rgb", "inherit", "inherit", (3, 0, 0)),
])
def test_table1_arguments(arg, mapping, synthesis, losses):
    c = load("table1.py", arg)
    assert (c.student.mapping_init, c.student.synthesis_init) == (mapping, synthesis)
    assert (c.loss.l1, c.loss.lpips, c.loss.ld) == losses and c.batch_size == 8


def test_table2_arguments_and_bad_arguments():
    c = load("table2.py", "two_stage_l1_390x7")
    assert c.student.mapping_init == "two_stage" and c.student.mapping_features == (390,) * 7 + (512,)
    with pytest.raises(ValueError, match="choose one of"):
        load("table2.py", "nope")
    with pytest.raises(ValueError, match="MAPPING_SYNTHESIS_LOSSES"):
        load("table1.py", "sideways_random_rgb")


@pytest.mark.parametrize("change,key", [
    ({"student.channels": (8,) * 6, "student.keep_ratio": 0.5}, "student.keep_ratio"),
    ({"student.keep_ratio": 1.5}, "student.keep_ratio"),
    ({"loss.ld_similarity": "cosine"}, "loss.ld_similarity"),
    ({"batch_size": 6}, "loss.ld_group_size"),
    ({"student.mapping_features": (256, 512)}, "student.mapping_features"),
    ({"data.source": ""}, "data.source"),
    ({"teacher": ""}, "teacher"),
    ({"dtype": "float16"}, "dtype"),
    ({"init_from": "/tmp"}, "init_from"),                 # with a teacher: a student starts from it
    ({"teacher": "", "init_from": "/no/such/checkpoint", "loss.l1": 0.0, "loss.lpips": 0.0,
      "loss.ld": 0.0}, "init_from"),
    ({"eval.metrics": "consistency", "eval.every_metrics": "consistency"}, "eval.every_metrics"),
    ({"eval.metrics": "consistency", "eval.every_steps": 10, "eval.every_metrics": "fid"},
     "eval.every_metrics"),
])
def test_inconsistent_values_name_the_key(change, key):
    config = load("ffhq256_stylegan2.py")
    config.teacher, config.data.source = "teacher/", "folder:/data"
    config.update_from_flattened_dict(change)
    with pytest.raises(ValueError, match=f"config.{key}"):
        validate(config)


def test_unknown_key_on_the_command_line_fails_at_start(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stylekd_jax.main", "--config", "configs/ffhq256_stylegan2.py",
         "--workdir", str(tmp_path), "--config.loss.l2=1.0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--config.loss.l2=1.0: the config has no key loss.l2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


def test_a_bad_value_on_the_command_line_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stylekd_jax.main", "--config", "configs/ffhq256_stylegan2.py",
         "--workdir", str(tmp_path), "--config.batch_size=abc"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "error: flag --config.batch_size=abc" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_teacher_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stylekd_jax.main", "--config", "configs/ffhq256_stylegan2.py",
         "--workdir", str(tmp_path), f"--config.teacher={tmp_path}/nope", "--config.data.source=folder:/x",
         "--config.loss.face_mask=False"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "not a StyleKD-JAX checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_variant_fails_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stylekd_jax.main", "--config", "configs/demo_ablation.py",
         "--workdir", str(tmp_path), "--config.variants.random_random.student.mapping_init=randm"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "config.student.mapping_init" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "data") and not os.path.exists(tmp_path / "teacher")
