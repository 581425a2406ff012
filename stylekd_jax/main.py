"""Entry point: `python -m stylekd_jax.main --config configs/X.py --workdir DIR [--config.KEY=VALUE ...]`.

Runs the config's stages in DIR (pipeline.py: data, optional teacher training, the run or its
variants, DIR/report.md). Running the same command again resumes from the last checkpoint
and skips finished stages. On a TPU pod or a multi-node GPU job every process runs this same
command (see launch/); the processes find each other through `jax.distributed.initialize()`.
"""

import logging as py_logging
import os
import sys

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
    """Keep progress, metrics and our messages on the console; drop library chatter (orbax, jax)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        if "/orbax/" in record.pathname and record.exc_info:
            return False   # a failed checkpoint write: the trainer reports it in one line
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname and \
            "/jax/" not in record.pathname


def main(argv) -> None:
    del argv
    logging.get_absl_handler().addFilter(_OnlyOurLogs())
    import jax
    # Reuse compiled steps across restarts (resuming a run recompiles nothing).
    jax.config.update("jax_compilation_cache_dir", os.environ.get(
        "JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/stylekd_jax/xla")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    _maybe_initialize_distributed()
    from stylekd_jax import pipeline  # after distributed init: nothing may touch devices before it
    try:
        report = pipeline.run(FLAGS.config, FLAGS.workdir)
        if jax.process_index() == 0:
            print(f"report: {report}", flush=True)
    except (ValueError, CheckpointNotFoundError, CheckpointSaveError, input_pipeline.DataError,
            FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with an unknown `--config.KEY` as one clear line instead of a traceback
    (ml_collections raises AttributeError/KeyError for it)."""
    try:
        return FLAGS(argv)
    except flags.Error as e:   # a bad value, a missing config file or a missing flag
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (AttributeError, KeyError) as e:
        key = str(e).strip("\"'")
        given = [a for a in argv[1:] if a.startswith("--config.") and key in a.split("=")[0]]
        print(f"error: {' '.join(given) or key}: the config has no key {key!r}; the keys and their "
              f"defaults are in stylekd_jax/config.py (base_config) and the config file",
              file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
