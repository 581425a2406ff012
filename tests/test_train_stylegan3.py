"""StyleGAN3 in the trainer: StyleKD distillation from an SG3 teacher, plain SG3-R training.

Tiny networks (16 px, 4 layers + ToRGB): an SG3 training step takes a minute or two to
compile on 2 CPU cores, so each test compiles its two kinds of step once.
"""

import os

import jax
import numpy as np
import pytest

from stylekd_jax import checkpoint
from stylekd_jax.architecture import DiscriminatorConfig, StyleGAN3Config
from stylekd_jax.networks import make_generator
from stylekd_jax.networks.generator import init_generator
from tests.conftest import tiny_overrides
from tests.test_train import ROOT, run_main

SG3_CONFIG = os.path.join(ROOT, "configs", "ffhq256_stylegan3.py")


@pytest.fixture(scope="module")
def sg3_teacher(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sg3_teacher") / "teacher")
    cfg = StyleGAN3Config.teacher(16, "t", channel_base=256, channel_max=16, z_dim=16, w_dim=16,
                                  mapping_features=(16, 16), num_layers=4)
    variables = jax.tree_util.tree_map(np.asarray, init_generator(cfg, jax.random.PRNGKey(0)))
    for layer in variables["buffers"]["synthesis"].values():
        if "magnitude_ema" in layer:
            layer["magnitude_ema"] = np.float32(0.5)
    checkpoint.save(path, {"g_ema": variables}, cfg, DiscriminatorConfig.teacher(16, 256, 32))
    return path


def teacher_student_l1(teacher_dir, student_vars, student_cfg):
    t_cfg, t_vars = checkpoint.load_generator(teacher_dir)
    z = np.random.RandomState(123).randn(16, t_cfg.z_dim).astype(np.float32)
    t = jax.jit(make_generator(t_cfg).apply)(t_vars, z)
    s = jax.jit(make_generator(student_cfg).apply)(student_vars, z)
    return float(np.mean(np.abs(np.asarray(t) - np.asarray(s))))


@pytest.mark.slow   # the StyleGAN3 step compiles for minutes on 2 cores; plain SG3-R training runs by default
def test_short_stylegan3_distillation_lowers_teacher_student_l1(tmp_path, sg3_teacher, tiny_data):
    """configs/ffhq256_stylegan3.py's recipe (no PL, no mixing, D lr, LD on layers 1-2) with the
    R config's fading D-input blur; evaluation (consistency, PPL) runs on the SG3 student."""
    from stylekd_jax.train import build
    overrides = tiny_overrides(sg3_teacher, tiny_data, total_steps=150, lr=0.005, **{
        "d_lr": 0.005, "loss.gan": 0.1, "loss.ld_layers": (1, 2), "blur_init_sigma": 2.0,
        "blur_fade_kimg": 0.6, "log_every_steps": 25, "checkpoint_every_steps": 150,
        "sample_every_steps": 150,
        "eval.metrics": "consistency,ppl_wend", "eval.consistency_samples": 8, "eval.ppl_samples": 8,
        "eval.batch": 8})
    result = run_main(tmp_path / "run", overrides, config=SG3_CONFIG, timeout=1500)
    assert "note: ppl_wend of a StyleGAN3" in result.stderr
    cfg, _, info = checkpoint.read_architecture(str(tmp_path / "run" / "student"))
    assert isinstance(cfg, StyleGAN3Config) and info["step"] == 150
    _, trained = checkpoint.load_generator(str(tmp_path / "run" / "student"), prefer=("g",))
    exec_globals = {}
    with open(SG3_CONFIG) as f:
        exec(f.read(), exec_globals)
    config = exec_globals["get_config"]()
    config.update_from_flattened_dict(overrides)
    _, initial, _, _ = build(config)
    before = teacher_student_l1(sg3_teacher, initial, cfg)
    after = teacher_student_l1(sg3_teacher, trained, cfg)
    assert after < 0.8 * before, (before, after)
    # Training moved the student's magnitude EMAs away from their initial 1.
    emas = [float(v["magnitude_ema"]) for v in trained["buffers"]["synthesis"].values()
            if "magnitude_ema" in v]
    assert all(np.isfinite(emas)) and any(abs(e - 1) > 1e-3 for e in emas)
    metrics = [line for line in open(tmp_path / "run" / "metrics.jsonl") if "eval/" in line]
    assert metrics and "consistency_l1" in metrics[-1] and "ppl_wend" in metrics[-1]


def test_plain_stylegan3_r_training_runs_and_exports(tmp_path, tiny_data):
    """No teacher: `generator.family=stylegan3-r` trains an R generator with the SG2 discriminator."""
    overrides = {"data.source": f"folder:{tiny_data}", "teacher": "", "loss.l1": 0.0, "loss.lpips": 0.0,
                 "loss.ld": 0.0, "generator.family": "stylegan3-r", "generator.resolution": 16,
                 "generator.channel_base": 512, "generator.channel_max": 16, "generator.z_dim": 16,
                 "generator.w_dim": 16, "generator.mapping_layers": 2, "generator.num_layers": 4,
                 "batch_size": 4,
                 "total_steps": 1, "log_every_steps": 1, "checkpoint_every_steps": 1,
                 "sample_every_steps": 1, "sample_seeds": (0, 1)}   # one step: one compile (with R1)
    run_main(tmp_path / "run", overrides, config=SG3_CONFIG, timeout=1500)
    cfg, d_cfg, info = checkpoint.read_architecture(str(tmp_path / "run" / "student"))
    assert isinstance(cfg, StyleGAN3Config) and cfg.config_name == "R" and cfg.conv_kernel == 1
    assert dict(d_cfg.channels)[16] == 8            # NVlabs: R doubles only G's channels
