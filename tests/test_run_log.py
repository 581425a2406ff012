"""metrics.jsonl: what the trainer's scalars look like to reports, across resumes and kills."""

import math
import os

import jax.numpy as jnp
import numpy as np

from stylekd_jax import run_log
from stylekd_jax.config import base_config
from stylekd_jax.train import ema_decay


def test_resumed_steps_keep_the_last_value_and_cut_lines_are_skipped(tmp_path):
    writer = run_log.JsonlWriter(str(tmp_path))
    writer.write_scalars(10, {"loss": 1.0, "r1": float("nan")})
    writer.write_scalars(20, {"loss": 0.5})
    writer.write_scalars(20, {"loss": 0.25, "eval/fd": np.float32(3.0)})   # re-logged after a resume
    writer.close()
    with open(tmp_path / run_log.FILE_NAME, "a") as f:
        f.write('{"step": 30, "scalars": {"loss"')                       # killed mid-write
    scalars = run_log.read_scalars(str(tmp_path))
    assert scalars["loss"] == ([10, 20], [1.0, 0.25])
    assert math.isnan(scalars["r1"][1][0])
    assert run_log.last_value(scalars, "eval/fd") == 3.0
    assert run_log.last_value(scalars, "missing") is None
    assert run_log.read_scalars(str(tmp_path / "nothing")) == {}


def test_ema_rampup_follows_the_nvlabs_formula():
    config = base_config()
    config.batch_size, config.ema_decay, config.ema_rampup = 16, 0.5 ** (16 / 5000), 0.05
    for step in (0, 1, 10, 1000, 100_000):
        cur_nimg = step * config.batch_size
        ema_nimg = min(5000, cur_nimg * 0.05)
        expected = 0.5 ** (16 / ema_nimg) if ema_nimg > 0 else 0.0
        np.testing.assert_allclose(float(ema_decay(config, jnp.asarray(step))), expected, rtol=1e-5)
    config.ema_rampup = None
    np.testing.assert_allclose(float(ema_decay(config, jnp.asarray(3))), 0.5 ** (16 / 5000), rtol=1e-6)


def test_report_gives_mean_and_std_over_seeds_and_consistency_against_step(tmp_path):
    """Repeated variants (NAME_seedS) get one row with the mean ± sample std of their final
    metrics; a run on its own keeps its row only; curves average the seeds step by step."""
    from stylekd_jax import report
    finals = {"ir_seed0": 0.30, "ir_seed1": 0.20, "ir_seed2": 0.25, "rr_seed0": 0.5, "rr_seed1": 0.7,
              "single": 0.1}
    for name, final in finals.items():
        writer = run_log.JsonlWriter(str(tmp_path / name))
        writer.write_scalars(50, {"eval/consistency_lpips": final + 0.2})
        writer.write_scalars(100, {"eval/consistency_lpips": final})
        writer.close()
    text = open(report.write_report(str(tmp_path))).read()
    ir = np.array([0.30, 0.20, 0.25])
    assert f"| ir | 3 | {ir.mean():.4g} ± {ir.std(ddof=1):.2g} |" in text
    assert f"| rr | 2 | {0.6:.4g} ± {np.std([0.5, 0.7], ddof=1):.2g} |" in text
    assert "| single | 1 |" not in text and "| single | 100 | 0.1 |" in text
    assert "mean ± std over 2/3 seeds" in text
    assert os.path.isfile(tmp_path / "report" / "consistency_lpips.png")
    assert report.variant_groups(["a_seed0", "a_seed1", "b_seedling", "c"]) == {
        "a": ["a_seed0", "a_seed1"], "b_seedling": ["b_seedling"], "c": ["c"]}
