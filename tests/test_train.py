"""The trainer end to end on a tiny teacher: learning, resuming, sharding, several processes."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from stylekd_jax import checkpoint, run_log
from stylekd_jax.networks import Generator
from tests.conftest import as_flags, tiny_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "ffhq256_stylegan2.py")


# The runs compared with `straight_run` see 8 CPU devices, as the sharded ones must: runs on one
# device and on a mesh then share compiled programs (the persistent cache) and compare like with like.
EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def run_main(workdir, overrides, env_extra=None, processes=1, timeout=900, config=CONFIG):
    """Run `python -m stylekd_jax.main` as a user would; returns the completed process(es)."""
    env = dict(os.environ, **(env_extra or {}))
    base = [sys.executable, "-m", "stylekd_jax.main", "--config", config, "--workdir", str(workdir)]
    base += as_flags(overrides)
    if processes == 1:
        result = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stderr[-3000:]
        return result
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(base + [f"--coordinator=127.0.0.1:{port}", f"--num_processes={processes}",
                                      f"--process_id={i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(processes)]
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]


def student_params(workdir):
    _, _, nets = checkpoint.load(os.path.join(workdir, "student"), ("g", "g_ema", "d"))
    return nets


def assert_logs_close(workdir_a, workdir_b, rtol=1e-3):
    """The same losses logged at the same steps (the speed figures aside)."""
    a, b = run_log.read_scalars(str(workdir_a)), run_log.read_scalars(str(workdir_b))
    names = sorted(k for k in a if not k.endswith("_per_sec"))
    assert names == sorted(k for k in b if not k.endswith("_per_sec")) and "d_loss" in names
    for name in names:
        assert a[name][0] == b[name][0], name
        np.testing.assert_allclose(a[name][1], b[name][1], rtol=rtol, atol=1e-6, err_msg=name)


def assert_trees_close(a, b, rtol=1e-3, atol=1e-5):
    """Equal up to float32 round-off after a few Adam steps: Adam divides by sqrt(v), which
    enlarges the round-off of a different reduction order (sharded sums) where gradients are
    tiny (seen: 1 element of 4608 off by 2e-4 relative); a sharding bug differs by O(1)."""
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, x), (_, y) in zip(flat_a, flat_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))


def teacher_student_l1(teacher_dir, student_vars, student_cfg):
    t_cfg, t_vars = checkpoint.load_generator(teacher_dir)
    z = np.random.RandomState(123).randn(16, t_cfg.z_dim).astype(np.float32)
    t = Generator(t_cfg).apply(t_vars, z, noise_mode="const")
    s = Generator(student_cfg).apply(student_vars, z, noise_mode="const")
    return float(np.mean(np.abs(np.asarray(t) - np.asarray(s))))


# 150 steps through the command line: learning is also checked in-process (test_bf16, both
# dtypes) and the whole pipeline by test_demo, so this one is `slow`.
@pytest.mark.slow
def test_short_distillation_lowers_teacher_student_l1(tmp_path, tiny_teacher, tiny_data):
    from stylekd_jax.train import build
    from stylekd_jax.config import base_config
    run_main(tmp_path / "run", tiny_overrides(tiny_teacher, tiny_data, total_steps=150, lr=0.01,
                                              log_every_steps=20, checkpoint_every_steps=150,
                                              sample_every_steps=150, **{"eval.metrics": "consistency",
                                              "eval.consistency_samples": 8, "eval.batch": 8}))
    cfg, _, info = checkpoint.read_architecture(str(tmp_path / "run" / "student"))
    _, trained = checkpoint.load_generator(str(tmp_path / "run" / "student"), prefer=("g",))
    config = base_config()
    config.update_from_flattened_dict(tiny_overrides(tiny_teacher, tiny_data))
    _, initial, _, _ = build(config)   # the same seed gives the run's initial student
    before = teacher_student_l1(tiny_teacher, initial, cfg)
    after = teacher_student_l1(tiny_teacher, trained, cfg)
    assert info["step"] == 150
    assert after < 0.8 * before, (before, after)
    # The exported student is what `generate` loads, and the run left TensorBoard events.
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "run"))


@pytest.fixture(scope="module")
def straight_workdir(tmp_path_factory, tiny_teacher, tiny_data):
    """A run of 4 uninterrupted steps on one device: what resumed and sharded runs must give."""
    workdir = tmp_path_factory.mktemp("straight")
    run_main(workdir, tiny_overrides(tiny_teacher, tiny_data), env_extra=EIGHT_DEVICES)
    return workdir


@pytest.fixture(scope="module")
def straight_run(straight_workdir):
    """That run's networks {'g', 'g_ema', 'd'}."""
    return student_params(straight_workdir)


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory, tiny_teacher, tiny_data):
    """A run directory "killed" after step 2 (checkpoint and export of step 2); tests continue copies."""
    workdir = tmp_path_factory.mktemp("two_steps") / "run"
    run_main(workdir, tiny_overrides(tiny_teacher, tiny_data, total_steps=2), env_extra=EIGHT_DEVICES)
    return workdir


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, tiny_teacher, tiny_data, straight_run,
                                                        two_step_run):
    resumed = tmp_path / "resumed"
    shutil.copytree(two_step_run, resumed)
    overrides = tiny_overrides(tiny_teacher, tiny_data, total_steps=4)
    run_main(resumed, overrides, env_extra=EIGHT_DEVICES)   # the same command again
    assert_trees_close(straight_run, student_params(resumed), rtol=0, atol=0)
    # "Killed" while exporting the last step: not finished, and the rerun exports it again.
    shutil.rmtree(resumed / "student" / "networks")
    result = run_main(resumed, overrides, env_extra=EIGHT_DEVICES)
    assert "already done" not in result.stdout
    assert_trees_close(straight_run, student_params(resumed), rtol=0, atol=0)


# Both axes are covered by data 4 x model 2; the pure data-8 mesh adds minutes, so it is `slow`.
@pytest.mark.parametrize("mesh", [pytest.param({"mesh.data": 8}, marks=pytest.mark.slow),
                                  {"mesh.data": 4, "mesh.model": 2}])
def test_sharded_step_on_8_cpu_devices_equals_single_device(tmp_path, tiny_teacher, tiny_data,
                                                            straight_run, straight_workdir, mesh):
    run_main(tmp_path, tiny_overrides(tiny_teacher, tiny_data, **mesh), env_extra=EIGHT_DEVICES)
    sharded = student_params(tmp_path)
    # The student (what users get) to round-off; every logged loss of every step to 1e-3.
    assert_trees_close({k: sharded[k] for k in ("g", "g_ema")},
                       {k: straight_run[k] for k in ("g", "g_ema")})
    assert_logs_close(tmp_path, straight_workdir)
    # D within half an Adam step (lr 0.002; an element that moved the wrong way differs by
    # 2 lr): on one CI machine its first block's bias differed by up to 5e-4 after 4 steps
    # (1e-7 elsewhere, the student to 4e-6 there too), with no sharding error behind it.
    assert_trees_close(sharded["d"], straight_run["d"], atol=1e-3)


@pytest.mark.slow   # two processes each compile the whole step: minutes on 2 cores
def test_two_processes_equal_one_process(tmp_path, tiny_teacher, tiny_data, straight_run):
    run_main(tmp_path, tiny_overrides(tiny_teacher, tiny_data, **{"mesh.data": -1}),
             env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, processes=2)
    assert_trees_close(student_params(tmp_path), straight_run)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_teacher, tiny_data, two_step_run):
    tmp_path = tmp_path / "run"
    shutil.copytree(two_step_run, tmp_path)
    env = dict(os.environ, **EIGHT_DEVICES)
    cmd = [sys.executable, "-m", "stylekd_jax.main", "--config", CONFIG, "--workdir", str(tmp_path)]
    cmd += as_flags(tiny_overrides(tiny_teacher, tiny_data, total_steps=4,
                                   **{"loss.gan": float("nan")}))
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2
    assert "non-finite loss at step 3" in result.stderr
    assert f"checkpoint of step 2 ({tmp_path}/checkpoints/2) is on disk" in result.stderr
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]


@pytest.mark.parametrize("how, signum", [("Ctrl-C", signal.SIGINT), ("SIGTERM", signal.SIGTERM)])
def test_ctrl_c_or_sigterm_checkpoints_the_step_reached(tmp_path, tiny_teacher, tiny_data, two_step_run,
                                                        how, signum):
    """Stopped far from a periodic checkpoint (a preemption, scancel, Ctrl-C), a run saves and
    exports the step it reached before leaving, with the shell's status for the signal."""
    run = tmp_path / "run"
    shutil.copytree(two_step_run, run)
    # SIGINT as a terminal delivers it, also where the tests run with SIGINT ignored (a background
    # job, which the trainer respects): the command starts with its default action restored.
    default_sigint = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
    cmd = [sys.executable, "-c", default_sigint, "-m", "stylekd_jax.main", "--config", CONFIG,
           "--workdir", str(run)]
    cmd += as_flags(tiny_overrides(tiny_teacher, tiny_data, total_steps=10_000, log_every_steps=1,
                                   checkpoint_every_steps=10_000, sample_every_steps=10_000))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, **EIGHT_DEVICES), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in proc.stdout:   # the progress lines: "step N/10000 (0%): ..."
            seen.append(line)
            progress = re.match(r"step (\d+)/10000 \(", line)
            if progress and int(progress.group(1)) >= 4:
                break
        proc.send_signal(signum)
        output = "".join(seen) + proc.communicate(timeout=600)[0]
    finally:
        proc.kill()   # no-op once it has exited
    assert proc.returncode == 128 + signum, output[-3000:]
    stopped = re.search(rf"stopped by {how} at step (\d+): its checkpoint is in "
                        rf"{re.escape(str(run))}/checkpoints/(\d+); run the same command to resume", output)
    assert stopped and stopped.group(1) == stopped.group(2), output[-3000:]
    step = int(stopped.group(1))
    assert 4 <= step < 10_000
    assert sorted(os.listdir(run / "checkpoints"), key=int) == ["2", str(step)]
    assert checkpoint.is_complete(str(run / "student"), step=step)


def test_two_stage_mapping_mimic_fits_the_teacher_mapping(tiny_teacher, tiny_data):
    """Table 2's two-stage initialisation: a random (here narrower) mapping learns S_t."""
    from stylekd_jax.config import base_config
    from stylekd_jax.train import build, pretrain_mapping

    class Writer:
        def __init__(self):
            self.values = []

        def write_scalars(self, step, scalars):
            self.values.append(scalars["two_stage/l1"])

    config = base_config()
    config.update_from_flattened_dict(tiny_overrides(tiny_teacher, tiny_data, **{
        "student.mapping_init": "two_stage", "student.mapping_features": (12, 16),
        "student.two_stage.steps": 300, "student.two_stage.batch_size": 256,
        "student.two_stage.lr": 0.5}))
    setup, g_vars, _, consts = build(config)
    z = np.random.RandomState(5).randn(512, 16).astype(np.float32)

    def mapping_l1(variables):
        w_s = setup.G.apply(variables, z, method=Generator.map)[:, 0]
        w_t = setup.T.apply(consts["teacher"], z, method=Generator.map)[:, 0]
        return float(np.mean(np.abs(np.asarray(w_s) - np.asarray(w_t))))

    writer = Writer()
    before = mapping_l1(g_vars)
    after = mapping_l1(pretrain_mapping(setup, g_vars, consts["teacher"], writer))
    assert after < 0.5 * before, (before, after)
    assert writer.values[-1] < writer.values[0]


def test_init_from_starts_g_g_ema_and_d_from_the_checkpoint(tmp_path, tiny_data):
    """Plain training from a checkpoint: the step-0 state holds its g, g_ema and d (three
    different networks here), its architecture replaces config.generator's, the run's data
    resolution and resume signature follow it, the EMA does not ramp up again, and the run's
    export records where it started."""
    import jax.numpy as jnp
    from stylekd_jax import pipeline
    from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig
    from stylekd_jax.config import base_config, validate
    from stylekd_jax.networks import Discriminator
    from stylekd_jax.networks.generator import init_generator
    from stylekd_jax.train import build, ema_decay, export_student, init_state

    cfg = GeneratorConfig.teacher(16, channel_base=256, channel_max=32, z_dim=16, w_dim=16,
                                  mapping_features=(16, 16))
    d_cfg = DiscriminatorConfig.teacher(16, channel_base=256, channel_max=32)
    nets = {"g": init_generator(cfg, jax.random.PRNGKey(1)),
            "g_ema": init_generator(cfg, jax.random.PRNGKey(2)),
            "d": Discriminator(d_cfg).init(jax.random.PRNGKey(3), jnp.zeros((1, 16, 16, 3)))}
    nets = jax.tree_util.tree_map(np.asarray, nets)
    path = str(tmp_path / "trained")
    checkpoint.save(path, nets, cfg, d_cfg, step=600)

    config = base_config()
    config.update_from_flattened_dict({
        "init_from": path, "data.source": f"folder:{tiny_data}", "batch_size": 8, "loss.l1": 0.0,
        "loss.lpips": 0.0, "loss.ld": 0.0, "generator.resolution": 64, "ema_rampup": 0.05})
    validate(config)
    setup, g_vars, d_init, _ = build(config)
    state = init_state(setup, g_vars, d_init)
    assert setup.g_cfg == cfg and setup.d_cfg == d_cfg
    assert_trees_close(state.g, nets["g"], rtol=0, atol=0)
    assert_trees_close(state.g_ema, nets["g_ema"]["params"], rtol=0, atol=0)
    assert_trees_close(state.d, nets["d"], rtol=0, atol=0)
    assert pipeline._resolution(config) == 16
    assert pipeline.network_signature(config, None) == {"init_from": cfg.to_dict()}
    assert float(ema_decay(config, jnp.asarray(1))) == pytest.approx(config.ema_decay)
    export_student(str(tmp_path / "run"), setup, state)   # the export names where it started
    info = checkpoint.read_architecture(str(tmp_path / "run" / "student"))[2]
    assert (info["step"], info["init_from"], info["init_from_step"]) == (0, path, 600)


@pytest.mark.parametrize("batch, data_devices, expected", [
    (8, 1, 4),     # one device: batch // shrink, as before
    (16, 8, 8),    # shares of 2 shrink to 1: the same as batch // shrink
    (48, 8, 24),
    (8, 8, 8),     # shares of 1 stay 1 (global // 2 = 4 would be replicated on all 8)
    (32, 32, 32),
    (24, 8, 8),    # shares of 3 shrink to 1, as NVlabs' batch_gpu // 2
])
def test_path_length_batch_is_shrunk_per_data_device(batch, data_devices, expected):
    from stylekd_jax.train import path_length_batch
    got = path_length_batch(batch, 2, data_devices)
    assert got == expected and got % data_devices == 0


def test_lazy_phases_run_exactly_on_their_steps(tiny_teacher, tiny_data):
    """R1 every r1_interval steps, path length every pl_interval (none with pl_weight 0), and a
    step of each kind does what its name says: its regulariser is computed and moves the params."""
    from stylekd_jax.config import base_config
    from stylekd_jax.train import build, init_state, lazy_phases, train_step

    config = base_config()
    config.update_from_flattened_dict(tiny_overrides(tiny_teacher, tiny_data))
    assert [lazy_phases(config, i) for i in (0, 1, 4, 8, 16, 17)] == [
        (True, True), (False, False), (False, True), (False, True), (True, True), (False, False)]
    no_pl = config.copy_and_resolve_references()
    no_pl.pl_weight = 0.0
    assert lazy_phases(no_pl, 16) == (True, False) and lazy_phases(no_pl, 4) == (False, False)

    setup, g_vars, d_key, consts = build(config)
    state = init_state(setup, g_vars, d_key)
    real = np.random.RandomState(0).randint(0, 256, (8, 16, 16, 3), np.uint8)
    step = jax.jit(lambda st, r1, pl: train_step(st, real, consts, setup, r1, pl), static_argnums=(1, 2))
    plain_state, plain = step(state, False, False)
    reg_state, reg = step(state, True, True)
    assert np.isnan(plain["r1"]) and np.isnan(plain["pl_penalty"]) and bool(plain["finite"])
    assert np.isfinite(reg["r1"]) and reg["r1"] > 0 and np.isfinite(reg["pl_penalty"]) and bool(reg["finite"])
    # The main D/G losses are the same computation in both kinds of step.
    np.testing.assert_allclose(reg["d_loss"], plain["d_loss"], rtol=1e-6)
    # Official StyleKD (r1_in_d_step): R1 joins the one D Adam step, so D takes one update either way.
    def adam_count(opt):
        return [int(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(opt)[0]
                if "count" in jax.tree_util.keystr(path)]
    assert config.r1_in_d_step and adam_count(reg_state.d_opt) == adam_count(plain_state.d_opt) == [1]
    for name in ("d", "g"):
        a = jax.tree_util.tree_leaves(getattr(plain_state, name)["params"])
        b = jax.tree_util.tree_leaves(getattr(reg_state, name)["params"])
        assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) > 0, name


# ---------------------------------------------------------------------------------------
# Nothing lost on the way out (issue 15): pending checkpoint writes, failed writes


class _Writer:
    def flush(self):
        pass


STATE = {"w": np.arange(50_000, dtype=np.float32), "step": np.int32(7)}


def _manager(path):
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(str(path), options=ocp.CheckpointManagerOptions(max_to_keep=3, create=True))


def _patch_commit(monkeypatch, step_dir: str, action):
    """Run `action()` where orbax commits the checkpoint folder `step_dir` (in its background thread)."""
    from orbax.checkpoint._src.path import atomicity
    real = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        if f"/{step_dir}." in str(self.get()):
            action()
        return await real(self, *args, **kwargs)
    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", finalize)


def test_a_failure_right_after_a_save_waits_for_it_and_names_it(tmp_path, monkeypatch):
    import time

    import orbax.checkpoint as ocp

    from stylekd_jax import train
    from stylekd_jax.input_pipeline import DataError
    with pytest.raises(FloatingPointError, match="non-finite loss at step 1; .* No checkpoint is on disk"):
        train._stop(train._NonFiniteLoss(1), _manager(tmp_path / "empty"), _Writer())
    _patch_commit(monkeypatch, "2", lambda: time.sleep(1.0))   # a slow disk
    manager = _manager(tmp_path / "ckpt")
    train._start_save(manager, 2, STATE)
    with pytest.raises(FloatingPointError) as e:      # raised while step 2 is still being written
        train._stop(train._NonFiniteLoss(3), manager, _Writer())
    assert "non-finite loss at step 3" in str(e.value) and "checkpoint of step 2" in str(e.value)
    assert ocp.utils.is_checkpoint_finalized(tmp_path / "ckpt" / "2")
    train._start_save(manager, 4, STATE)              # any other error waits too
    with pytest.raises(DataError, match=r"cannot decode image x.png\. The checkpoint of step 4"):
        train._stop(DataError("cannot decode image x.png"), manager, _Writer())


def test_a_failed_background_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from stylekd_jax import train
    from stylekd_jax.checkpoint import CheckpointSaveError
    manager = _manager(tmp_path)
    train._finish_save(manager, train._start_save(manager, 2, STATE))

    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device")
    _patch_commit(monkeypatch, "4", disk_full)
    train._start_save(manager, 4, STATE)
    with pytest.raises(CheckpointSaveError) as e:
        train._finish_save(manager, 4)
    message = str(e.value)
    assert "\n" not in message and f"writing checkpoint step 4 to {tmp_path}/4 failed" in message
    assert "No space left on device" in message and "GiB free on that disk" in message
    assert f"The checkpoint of step 2 ({tmp_path}/2) is on disk" in message
    restored = _manager(tmp_path).restore(2)
    np.testing.assert_array_equal(restored["w"], STATE["w"])


DISK_FULL_AT_STEP_4 = """
import errno, runpy, sys
from orbax.checkpoint._src.path import atomicity
real = atomicity.AtomicRenameTemporaryPath.finalize
async def finalize(self, *args, **kwargs):
    if "/checkpoints/4." in str(self.get()):
        raise OSError(errno.ENOSPC, "No space left on device")
    return await real(self, *args, **kwargs)
atomicity.AtomicRenameTemporaryPath.finalize = finalize
sys.argv[0] = "stylekd_jax.main"
runpy.run_module("stylekd_jax.main", run_name="__main__")
"""


# The same path in-process: test_a_failed_background_save_is_one_line_and_keeps_the_previous_checkpoint.
@pytest.mark.slow
def test_disk_full_during_training_stops_with_one_line(tmp_path, tiny_teacher, tiny_data, two_step_run):
    """The command a user runs (resuming at step 2), with the checkpoint of step 4 failing in
    orbax's background thread."""
    tmp_path = tmp_path / "run"
    shutil.copytree(two_step_run, tmp_path)
    cmd = [sys.executable, "-c", DISK_FULL_AT_STEP_4, "--config", CONFIG, "--workdir", str(tmp_path)]
    cmd += as_flags(tiny_overrides(tiny_teacher, tiny_data, total_steps=6))
    result = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **EIGHT_DEVICES), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert last.startswith(f"error: writing checkpoint step 4 to {tmp_path}/checkpoints/4 failed")
    assert "No space left on device" in last and "The checkpoint of step 2" in last
    assert _manager(tmp_path / "checkpoints").latest_step() == 2
    # Stopped before step 6 was saved or exported; the export of step 4 is whole.
    assert checkpoint.is_complete(str(tmp_path / "student"), step=4)
