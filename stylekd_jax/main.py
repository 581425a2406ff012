"""Entry point: `python -m stylekd_jax.main --config configs/X.py --workdir DIR [--config.KEY=VALUE ...]`.

Runs the config's stages in DIR (pipeline.py: data, optional teacher training, the run or its
variants, DIR/report.md). Running the same command again resumes from the last checkpoint
and skips finished stages. On a TPU pod or a multi-node GPU job every process runs this same
command (see launch/); the processes find each other through `jax.distributed.initialize()`.
"""

import difflib
import logging as py_logging
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TF is only the data loader: keep it quiet

from absl import app, flags, logging
from ml_collections import config_flags

from stylekd_jax import input_pipeline
from stylekd_jax.checkpoint import CheckpointNotFoundError, CheckpointSaveError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "config file (configs/*.py)", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, logs, samples and the student go")
flags.DEFINE_string("coordinator", None, "host:port of process 0 for multi-process runs "
                    "(not needed on TPU pods and SLURM, where it is detected)")
flags.DEFINE_integer("num_processes", None, "number of processes (with --coordinator)")
flags.DEFINE_integer("process_id", None, "this process's index (with --coordinator)")
flags.mark_flags_as_required(["config", "workdir"])


def _maybe_initialize_distributed() -> None:
    import jax
    # Process 0 writes the report after the last step while the others wait at exit.
    wait = dict(shutdown_timeout_seconds=3600)
    if FLAGS.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")   # CPU-only clusters
        jax.distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id, **wait)
    elif os.environ.get("TPU_WORKER_HOSTNAMES") or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize(**wait)


class _OnlyOurLogs(py_logging.Filter):
    """Keep progress, metrics and our messages on the console; drop library chatter (orbax, jax,
    clu's notes about images written)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        if "/orbax/" in record.pathname and record.exc_info:
            return False   # a failed checkpoint write: the trainer reports it in one line
        if record.levelno >= py_logging.WARNING:
            return True
        if "/clu/" in record.pathname:   # keep the metric lines ("[step] name=value, ...")
            return record.getMessage().startswith("[") and "Got images" not in record.getMessage()
        return "/orbax/" not in record.pathname and "/jax/" not in record.pathname


def main(argv) -> None:
    del argv
    handler = logging.get_absl_handler()
    handler.addFilter(_OnlyOurLogs())
    handler.setFormatter(py_logging.Formatter("%(message)s"))   # no date/thread/file prefix
    import jax
    # Reuse compiled steps across restarts (resuming a run recompiles nothing).
    jax.config.update("jax_compilation_cache_dir", os.environ.get(
        "JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/stylekd_jax/xla")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    _maybe_initialize_distributed()
    from stylekd_jax import pipeline  # after distributed init: nothing may touch devices before it
    from stylekd_jax.train import TrainingInterrupted
    try:
        report = pipeline.run(FLAGS.config, FLAGS.workdir)
        if jax.process_index() == 0:
            print(f"report: {report}", flush=True)
    except TrainingInterrupted as e:   # checkpointed: the shell's usual status for the signal
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
    except (ValueError, CheckpointNotFoundError, CheckpointSaveError, input_pipeline.DataError,
            FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def load_config_file(spec: str):
    """The ConfigDict of `--config PATH[:ARG]`, or a one-line error for a file that is missing,
    does not parse, raises, or has no get_config (ml_collections would print a traceback)."""
    path, _, arg = spec.partition(":")
    example = "a config file defines get_config() returning a ConfigDict (see configs/demo.py)"
    if not os.path.isfile(path):
        _fail(f"--config {path}: no such file; pass a config file such as configs/demo.py")
    try:
        with open(path) as f:
            code = compile(f.read(), path, "exec")
    except SyntaxError as e:
        _fail(f"--config {path}: syntax error at line {e.lineno}: {e.msg}")
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"--config {path}: cannot read it ({e})")
    namespace = {"__name__": "config_file", "__file__": path}
    try:
        exec(code, namespace)
        get_config = namespace.get("get_config")
        if not callable(get_config):
            _fail(f"--config {path} has no get_config(); {example}")
        return get_config(arg) if arg else get_config()
    except Exception as e:   # whatever the user's code raises: one line, with where it came from
        line = next((t.lineno for t in reversed(traceback.extract_tb(e.__traceback__))
                     if t.filename == path), None)
        _fail(f"--config {spec}: running it raised {type(e).__name__}: {e}"
              + (f" (line {line})" if line else ""))


def _unknown_key(config, argv: list[str]) -> str:
    """'--config.loss.ldd=1: the config has no key loss.ldd (did you mean loss.ld?)' for the first
    override whose key the config lacks."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config."):].split("=", 1)[0]
        node, path = config, []
        for part in key.split("."):
            if not hasattr(node, "keys") or part not in node.keys():
                siblings = list(node.keys()) if hasattr(node, "keys") else []
                close = difflib.get_close_matches(part, siblings, n=1)
                hint = f" (did you mean {'.'.join(path + close)}?)" if close else ""
                return (f"{arg}: the config has no key {key}{hint}; every key and its default is "
                        f"in stylekd_jax/config.py (base_config) and the config file")
            node, path = node[part], path + [part]
    return ""


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with one clear line instead of a traceback for a bad config file, an
    unknown `--config.KEY` or a value of the wrong type."""
    spec = _flag_value(argv[1:], "config")
    config = load_config_file(spec) if spec else None
    try:
        return FLAGS(argv)
    except flags.Error as e:   # a bad value or a missing flag
        _fail(str(e))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _fail((config is not None and _unknown_key(config, argv[1:])) or
              f"{' '.join(a for a in argv[1:] if a.startswith('--config.'))}: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
