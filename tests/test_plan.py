"""benchmarks.plan compiles the real step for fake CPU devices and prints sane per-device numbers."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow   # three compiles of the full step for 2 fake devices: minutes on 2 cores
def test_plan_on_a_tiny_config_with_two_fake_devices(tmp_path):
    out = tmp_path / "plan.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}   # plan sets the device count itself
    result = subprocess.run(
        [sys.executable, "-m", "stylekd_jax.benchmarks.plan", "--configs", "tiny", "--meshes", "2,1x2",
         "--batches", "4,8", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "devices: 2 x cpu" in result.stdout, result.stdout
    (r,) = json.loads(out.read_text())
    data2, model2 = r["meshes"]
    small, large = data2["by_batch"]["4"], data2["by_batch"]["8"]
    # Memory: the state is an argument; more samples need more temporaries, never fewer.
    assert small["memory"]["arguments"] > 4 * 2 ** 20
    assert large["memory"]["temporaries"] > small["memory"]["temporaries"] > 0
    assert data2["peak_per_sample"] > 0
    # data 1 x model 2: the tiny arrays stay replicated (sharding.MIN_SHARDED_SIZE), no gradient
    # all-reduce over 'data' is needed.
    assert model2["by_batch"]["4"]["memory"]["peak"] > 0
    assert model2["by_batch"]["4"]["collective_bytes"]["all-reduce"] < small["collective_bytes"]["all-reduce"]
    # Data parallelism all-reduces the gradients: at least D's and G's parameters (float32).
    params = r["trained_params"]
    assert small["collective_bytes"]["all-reduce"] >= 4 * (params["g"] + params["d"]), params
    # Compiled FLOPs agree with the architecture count to within a factor of 2.
    full = r["flops_full_step"]
    assert 0.5 < full["compiled"] / full["architecture"] < 2.0, full
    assert "| tiny bfloat16 | data 2 x model 1 |" in result.stdout
