"""Bad input to the training command fails at once, in one line naming the problem and the fix,
before any data is written or anything compiles; output that stays readable in logs.

Most checks run in-process (pipeline.preflight, main.load_config_file): no JAX compile, no
subprocess. One subprocess proves the command line turns them into `error: ...` and exit 2.
"""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from stylekd_jax import config as config_lib, input_pipeline, main, pipeline, progress, train
from stylekd_jax.outputs import OutputPathError
from tests.conftest import tiny_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(teacher, data, **extra):
    config = config_lib.base_config()
    config.update_from_flattened_dict(tiny_overrides(teacher, data, **extra))
    return config


# --- config files --------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    (None, "no such file; pass a config file such as configs/demo.py"),
    ("def get_config(:\n", "syntax error at line 1"),
    ("def get_config():\n    raise RuntimeError('boom')\n", "running it raised RuntimeError: boom (line 2)"),
    ("import no_such_module_xyz\n", "ModuleNotFoundError"),
    ("x = 1\n", "has no get_config(); a config file defines get_config()"),
])
def test_a_config_file_that_cannot_give_a_config_is_one_line(tmp_path, capsys, text, expected):
    path = tmp_path / "my_config.py"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main.load_config_file(str(path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --config {path}") and expected in err and "\n" not in err, err


def test_a_misspelt_key_names_the_key_and_the_close_one():
    config = config_lib.base_config()
    message = main._unknown_key(config, ["--config.loss.ldd=1"])
    assert message.startswith("--config.loss.ldd=1: the config has no key loss.ldd (did you mean loss.ld?)")
    assert "\\" not in message and "\n" not in message
    assert "(did you mean loss.ld_layers?)" in main._unknown_key(config, ["--config.loss.ld_layer=1,2"])
    assert main._unknown_key(config, ["--config.loss.ld=1"]) == ""


def test_the_command_turns_a_broken_config_file_into_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(:\n")
    result = subprocess.run([sys.executable, "-m", "stylekd_jax.main", "--config", str(broken),
                             "--workdir", str(tmp_path / "run")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == f"error: --config {broken}: syntax error at line 1: invalid syntax"
    assert not os.path.exists(tmp_path / "run")


# --- values checked before anything is written -----------------------------------------------


def test_a_malformed_list_value_names_the_key(tiny_teacher, tiny_data):
    config = tiny_config(tiny_teacher, tiny_data)
    config.loss.ld_layers = ("abc",)          # what --config.loss.ld_layers=abc parses to
    with pytest.raises(ValueError, match=r"config.loss.ld_layers: must be a comma-separated list of "
                                         r"integers such as 1,2,3, got \('abc',\)"):
        config_lib.validate(config)


def test_ld_layers_are_checked_against_the_teacher_before_any_data_is_written(tiny_teacher, tmp_path):
    # The 16 px tiny teacher has blocks 4, 8, 16: feature maps 0..2.
    config = tiny_config(tiny_teacher, "unused", **{"data.source": "shapes:10", "loss.ld_layers": (2, 3)})
    with pytest.raises(ValueError) as error:
        pipeline.preflight(config, str(tmp_path / "run"))
    message = str(error.value)
    assert message.startswith("config.loss.ld_layers: [2, 3] names blocks the 16px teacher does not have")
    assert "0 (the 4x4 block) to 2 (the 16x16 block)" in message and "--config.loss.ld_layers=1,2" in message
    assert not os.path.exists(tmp_path / "run" / "data")
    config.loss.ld_layers = (1, 2)
    pipeline.preflight(config, str(tmp_path / "run"))   # fine


def test_ld_layers_of_a_teacher_trained_first_are_checked_too(tmp_path):
    config = config_lib.base_config()
    config.update_from_flattened_dict({"data.source": "shapes:10", "generator.resolution": 32,
                                       "teacher_training.total_steps": 10, "loss.ld_layers": (2, 3, 4, 5)})
    with pytest.raises(ValueError, match="valid block indices are 0 .* to 3 .the 32x32 block"):
        pipeline.preflight(config, str(tmp_path / "run"))


@pytest.mark.parametrize("make,expected", [
    (lambda p: p.write_text("x"), "is a file"),
    (lambda p: None, None),
])
def test_a_workdir_that_cannot_be_a_folder_is_one_line(tiny_teacher, tiny_data, tmp_path, make, expected):
    config = tiny_config(tiny_teacher, tiny_data)
    blocker = tmp_path / "blocker"
    make(blocker)
    if expected is None:   # a workdir under a file
        blocker.write_text("x")
        blocker = blocker / "run"
        expected = f"cannot be made: {tmp_path / 'blocker'} is a file"
    with pytest.raises(OutputPathError, match=expected):
        pipeline.preflight(config, str(blocker))


def test_resuming_a_workdir_with_other_networks_names_the_changed_keys(tiny_teacher, tiny_data, tmp_path):
    config = tiny_config(tiny_teacher, tiny_data)
    run = tmp_path / "run"
    teacher = pipeline.teacher_architecture(config)
    os.makedirs(run / "checkpoints" / "2")
    (run / pipeline.NETWORK_FILE).write_text(json.dumps(pipeline.network_signature(config, teacher)))
    pipeline.preflight(config, str(run))   # the same networks: resumes
    config.total_steps = 100               # a longer run of the same networks: fine
    pipeline.preflight(config, str(run))
    config.student.keep_ratio = 0.25
    with pytest.raises(ValueError) as error:
        pipeline.preflight(config, str(run))
    assert str(error.value) == (f"{run} holds checkpoints of other networks: config.student.keep_ratio "
                                f"was 0.5, now 0.25. Use a new --workdir, or set the values the run "
                                f"was started with")


def test_plain_training_signature_is_the_generator(tmp_path):
    config = config_lib.base_config()
    config.update_from_flattened_dict({"data.source": "shapes:10", "loss.l1": 0.0, "loss.lpips": 0.0,
                                       "loss.ld": 0.0, "generator.resolution": 32})
    signature = pipeline.network_signature(config, None)
    assert signature["generator.resolution"] == 32 and "teacher" not in signature
    assert train.generator_config(config.generator).resolution == 32


# --- images checked at the start -------------------------------------------------------------


def _images(folder, n=6, size=12):
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(n):
        Image.fromarray(rng.randint(0, 256, (size, size, 3)).astype(np.uint8)).save(folder / f"{i}.png")


def test_a_corrupt_image_is_found_when_the_run_starts_and_good_scans_are_cached(tmp_path):
    folder, cache = tmp_path / "images", str(tmp_path / "cache")
    _images(folder)
    good = (folder / "3.png").read_bytes()
    (folder / "3.png").write_bytes(good[:60])
    (folder / "5.png").write_bytes(b"not an image")
    with pytest.raises(input_pipeline.DataError) as error:
        input_pipeline.check_images(f"folder:{folder}", 8, cache_dir=cache)
    message = str(error.value)
    assert message.startswith(f"2 of 6 images in folder:{folder} cannot be used: cannot decode image")
    assert str(folder / "3.png") in message and str(folder / "5.png") in message and "\n" not in message
    (folder / "3.png").write_bytes(good)
    os.remove(folder / "5.png")
    assert input_pipeline.check_images(f"folder:{folder}", 8, cache_dir=cache) == 5   # all opened
    assert input_pipeline.check_images(f"folder:{folder}", 8, cache_dir=cache) == 0   # cached
    (folder / "3.png").write_bytes(good[:60])                                        # changed: rescanned
    with pytest.raises(input_pipeline.DataError, match="1 of 5 images"):
        input_pipeline.check_images(f"folder:{folder}", 8, cache_dir=cache)


def test_a_zip_is_scanned_once_while_unchanged(tmp_path):
    folder, cache = tmp_path / "images", str(tmp_path / "cache")
    _images(folder, n=3)
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name in sorted(os.listdir(folder)):
            z.write(folder / name, f"00000/{name}")
        z.writestr("00000/9.png", b"\x89PNG broken")
    with pytest.raises(input_pipeline.DataError, match="00000/9.png in zip"):
        input_pipeline.check_images(f"zip:{path}", 8, cache_dir=cache)
    with zipfile.ZipFile(path, "w") as z:
        for name in sorted(os.listdir(folder)):
            z.write(folder / name, f"00000/{name}")
    assert input_pipeline.check_images(f"zip:{path}", 8, cache_dir=cache) == 3
    assert input_pipeline.check_images(f"zip:{path}", 8, cache_dir=cache) == 0


# --- output for logs ----------------------------------------------------------------------


class _FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_progress_is_one_rewritten_line_on_a_terminal_and_plain_lines_in_a_log(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(progress.time, "time", clock)
    log = io.StringIO()                       # not a terminal
    report = progress.printer("features", log)
    for done in range(1, 101):
        clock.now += 0.5
        report(done, 100)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert 4 <= len(lines) <= 7                 # one line per 10 s, and the last one
    assert lines[-1] == "features: 100/100 (50 s, ETA 0 s)"

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    tty = Terminal()
    report = progress.printer("features", tty)
    for done in range(1, 4):
        report(done, 3)
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().count("\n") == 1


def test_training_speed_and_eta_leave_out_compilation(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(progress.time, "time", clock)
    out = io.StringIO()
    speed = progress.TrainingProgress(0, 1000, batch_size=16, stream=out)
    clock.now += 120
    speed.compiling(100)                      # 100 of those 120 s compiled
    measured = speed.measure(10)              # 10 steps in 20 s
    assert measured == {"steps_per_sec": 0.5, "images_per_sec": 8.0}
    assert out.getvalue() == "step 10/1000 (1%): 0.5 steps/s, 8 images/s, ETA 33 min 0 s\n"
    clock.now += 10
    assert speed.measure(20)["images_per_sec"] == pytest.approx(16.0)


@pytest.mark.parametrize("total,every,expected", [(400, 0, 4), (450_000, 0, 50), (3, 0, 1), (400, 7, 7)])
def test_log_interval_gives_a_curve_for_short_runs(total, every, expected):
    config = config_lib.base_config()
    config.total_steps, config.log_every_steps = total, every
    assert train.log_interval(config) == expected
