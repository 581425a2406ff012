"""What `python -m stylekd_jax.main` runs in a workdir: data, teacher, distillation, report.

Stages, each skipped when its result is already in the workdir (rerun the same command to
resume or to redo only what is missing):
  1. data: a `shapes:N` source is written once to WORKDIR/data/ as a dataset zip
     (procedural.py); other sources are used as they are;
  2. teacher: with `config.teacher` empty and `teacher_training.total_steps` > 0, plain
     StyleGAN2 training of `config.generator` on that data in WORKDIR/teacher, whose exported
     EMA generator becomes the teacher;
  3. the run itself in WORKDIR (distillation, or plain training without a teacher), or with
     `config.variants` one run per variant in WORKDIR/NAME;
  4. WORKDIR/report.md (report.py): pictures, loss curves, metrics and stage times.
Stage wall times are kept in WORKDIR/stages.json so the report can show them. In multi-process
runs every process runs the training stages; process 0 alone writes the data, stage times and
the report (a `shapes:` source therefore needs a WORKDIR that all hosts share).
"""

import os
import time

import jax
import ml_collections
import orbax.checkpoint as ocp

from stylekd_jax import checkpoint, config as config_lib, evaluate, procedural, report, sharding, train
from stylekd_jax.run_log import StageLog

TEACHER_DIR = "teacher"
DISTILL_ONLY_LOSSES = ("l1", "lpips", "ld", "w_l1")


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Run every stage that is not done yet; returns the path of the report."""
    workdir = os.path.abspath(workdir)
    config_lib.validate(config)
    os.makedirs(workdir, exist_ok=True)
    variants = {name: overrides.to_dict() for name, overrides in config.variants.items()}
    for name, overrides in variants.items():   # a bad variant fails now, not after hours of training
        variant_config(config, overrides, name)
    stages = StageLog(workdir)
    config = prepare_data(config, workdir, stages)
    if not config.teacher and config.teacher_training.total_steps:
        config = train_teacher(config, workdir, stages)
    if variants:
        for name, overrides in variants.items():
            _run_once(variant_config(config, overrides, name), os.path.join(workdir, name), stages, name)
    else:
        _run_once(config, workdir, stages, "distillation" if config.teacher else "training")
    if jax.process_index() == 0:
        report.write_report(workdir)
    return os.path.join(workdir, report.REPORT_FILE)


def prepare_data(config, workdir: str, stages: StageLog) -> ml_collections.ConfigDict:
    """Write a `shapes:N` source to WORKDIR/data/ (once) and point the config at the zip."""
    source = config.data.source
    if not source.startswith("shapes:"):
        return config
    num, resolution = int(source[len("shapes:"):]), _resolution(config)
    path = os.path.join(workdir, "data", f"shapes_{num}_{resolution}px.zip")
    start = time.time()
    written = []   # stays empty when an existing zip is reused
    show = evaluate.progress_printer("writing procedural dataset")

    def progress(done, total):
        written.append(done)
        show(done, total)

    if jax.process_index() == 0:
        procedural.write_dataset(path, num, resolution, seed=config.seed, progress=progress)
    sharding.wait_for_all_processes(f"procedural dataset {path} written")
    if written:
        stages.record("data", time.time() - start)
    config = config.copy_and_resolve_references()
    config.data.source = f"zip:{path}"
    return config


def teacher_config(config) -> ml_collections.ConfigDict:
    """The plain-training run that produces the teacher: `generator`, GAN losses only."""
    t = config.copy_and_resolve_references()
    t.total_steps = config.teacher_training.total_steps
    t.teacher_training.total_steps = 0
    t.variants = {}
    for name in DISTILL_ONLY_LOSSES:
        t.loss[name] = 0.0
    t.eval.metrics = ",".join(m for m in evaluate.parse_metrics(config.eval.metrics) if m != "consistency")
    return t


def train_teacher(config, workdir: str, stages: StageLog) -> ml_collections.ConfigDict:
    """Stage 2: train (or reuse) WORKDIR/teacher; return the config distilling from it."""
    teacher_dir = os.path.join(workdir, TEACHER_DIR)
    _run_once(teacher_config(config), teacher_dir, stages, "teacher training")
    config = config.copy_and_resolve_references()
    config.teacher = os.path.join(teacher_dir, "student")   # the run's exported EMA generator
    config.teacher_training.total_steps = 0
    return config


def variant_config(config, overrides: dict, name: str = "") -> ml_collections.ConfigDict:
    variant = config.copy_and_resolve_references()
    variant.variants = {}
    try:
        variant.update(overrides)
        config_lib.validate(variant)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"config.variants.{name}: {e}") from None
    return variant


def is_finished(config, run_dir: str) -> bool:
    """Whether run_dir holds a checkpoint at total_steps and the generator exported at that
    step, complete (a run stopped while exporting is not finished: rerunning exports again)."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(checkpoints) or \
            not checkpoint.is_complete(os.path.join(run_dir, "student"), step=config.total_steps):
        return False
    with ocp.CheckpointManager(checkpoints) as manager:
        return manager.latest_step() == config.total_steps


def _run_once(config, run_dir: str, stages: StageLog, stage: str) -> None:
    if is_finished(config, run_dir):
        print(f"{stage}: already done in {run_dir}, reused", flush=True)
        return
    print(f"{stage}: {run_dir}", flush=True)
    start = time.time()
    train.train_and_evaluate(config, run_dir)
    stages.record(stage, time.time() - start, run_dir)


def _resolution(config) -> int:
    if config.teacher:
        return checkpoint.read_architecture(config.teacher)[0].resolution
    return config.generator.resolution
