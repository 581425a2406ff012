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

import json
import os
import time

import jax
import ml_collections
import orbax.checkpoint as ocp

from stylekd_jax import (checkpoint, config as config_lib, evaluate, input_pipeline, outputs, procedural, progress,
                         report, sharding, train)
from stylekd_jax.run_log import StageLog

TEACHER_DIR = "teacher"
NETWORK_FILE = "network.json"   # the networks a run dir was started with
DISTILL_ONLY_LOSSES = ("l1", "lpips", "ld", "w_l1")


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Run every stage that is not done yet; returns the path of the report."""
    workdir = preflight(config, workdir)
    variants = expanded_variants(config)
    stages = StageLog(workdir)
    config = prepare_data(config, workdir, stages)
    check_images(config)
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


def preflight(config, workdir: str) -> str:
    """Every check that needs neither the images nor a compile, for every run this command will
    make, before anything is written: the config and its variants, the workdir, the LD layers
    against the teacher's, the data source, and that each run dir holding checkpoints was started
    with the same networks. Returns the workdir's absolute path."""
    config_lib.validate(config)
    workdir = outputs.writable_dir(workdir, "workdir")
    teacher = teacher_architecture(config)
    for run_config, run_dir in planned_runs(config, workdir):
        if teacher is not None and run_config.loss.ld > 0:
            config_lib.validate_for_teacher(run_config, teacher)
        check_same_networks(run_config, run_dir, teacher)
    if not config.data.source.startswith("shapes:"):
        input_pipeline.open_source(config.data.source)   # exists, has images
    return workdir


def planned_runs(config, workdir: str) -> list[tuple[ml_collections.ConfigDict, str]]:
    """(config, run dir) of each training run, in order: the teacher's first when it is trained
    here, then the run itself or one per variant."""
    runs = []
    if not config.teacher and config.teacher_training.total_steps:
        runs.append((teacher_config(config), os.path.join(workdir, TEACHER_DIR)))
    variants = expanded_variants(config)
    for name, overrides in variants.items():   # a bad variant fails now, not after hours of training
        runs.append((variant_config(config, overrides, name), os.path.join(workdir, name)))
    return runs if variants else runs + [(config, workdir)]


def expanded_variants(config) -> dict[str, dict]:
    """{run name: overrides} of `config.variants`, each repeated `variant_repeats` times with
    seeds seed, seed + 1, ... as NAME_seedS (NAME alone when it runs once). Seed by seed (every
    variant's first seed first), so that a run stopped early has every variant to compare."""
    variants = {name: overrides.to_dict() for name, overrides in config.variants.items()}
    if config.variant_repeats == 1:
        return variants
    return {f"{name}{config_lib.SEED_SUFFIX}{seed}": {**overrides, "seed": seed}
            for seed in range(config.seed, config.seed + config.variant_repeats)
            for name, overrides in variants.items()}


def teacher_architecture(config):
    """The teacher's generator config: from its checkpoint, or `config.generator` when it is
    trained first; None for plain training."""
    if config.teacher:
        return checkpoint.read_architecture(config.teacher)[0]
    if config.teacher_training.total_steps:
        return train.generator_config(config.generator)
    return None


def network_signature(config, teacher) -> dict:
    """What fixes the shapes of a run's checkpoints (JSON-ready): a resumed run must match."""
    if teacher is not None and (config.teacher or config.teacher_training.total_steps):
        keys = ("student.channels", "student.keep_ratio", "student.kernel_size", "student.mapping_features")
        signature = {"teacher": teacher.to_dict()}
    elif config.init_from:   # its architecture, not config.generator's
        keys, signature = (), {"init_from": checkpoint.read_architecture(config.init_from)[0].to_dict()}
    else:
        keys = tuple(f"generator.{k}" for k in config.generator.keys())
        signature = {}
    for key in keys:
        group, name = key.split(".")
        signature[key] = config[group][name]
    return json.loads(json.dumps(signature))


def check_same_networks(config, run_dir: str, teacher) -> None:
    """A run dir with checkpoints must be resumed with the networks it was started with."""
    try:
        with open(os.path.join(run_dir, NETWORK_FILE)) as f:
            started = json.load(f)
    except (OSError, ValueError):
        return   # a new run (or one from before this file existed)
    checkpoints = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(checkpoints) or not os.listdir(checkpoints):
        return
    now = network_signature(config, teacher)
    changed = [("the teacher's architecture (config.teacher)" if k == "teacher" else
                "the architecture of config.init_from" if k == "init_from" else
                f"config.{k} was {started.get(k)!r}, now {now.get(k)!r}")
               for k in sorted(set(started) | set(now)) if started.get(k) != now.get(k)]
    if changed:
        raise ValueError(f"{run_dir} holds checkpoints of other networks: {'; '.join(changed)}. "
                         f"Use a new --workdir, or set the values the run was started with")


def check_images(config) -> None:
    """Open every training image once (cached): a corrupt file stops the run now."""
    show = progress.printer("checking training images")

    def report_large(done: int, total: int) -> None:
        if total >= 2000:   # small folders: no line
            show(done, total)

    input_pipeline.check_images(config.data.source, _resolution(config), progress=report_large)


def prepare_data(config, workdir: str, stages: StageLog) -> ml_collections.ConfigDict:
    """Write a `shapes:N` source to WORKDIR/data/ (once) and point the config at the zip."""
    source = config.data.source
    if not source.startswith("shapes:"):
        return config
    num, resolution = int(source[len("shapes:"):]), _resolution(config)
    path = os.path.join(workdir, "data", f"shapes_{num}_{resolution}px.zip")
    start = time.time()
    written = []   # stays empty when an existing zip is reused
    show = progress.printer("writing procedural dataset")

    def report_written(done, total):
        written.append(done)
        show(done, total)

    if jax.process_index() == 0:
        procedural.write_dataset(path, num, resolution, seed=config.seed, progress=report_written)
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
    t.variant_repeats = 1
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
    variant.variant_repeats = 1
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
    if jax.process_index() == 0:   # what the run's checkpoints will hold (check_same_networks)
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, NETWORK_FILE), "w") as f:
            json.dump(network_signature(config, teacher_architecture(config)), f, indent=1)
    start = time.time()
    train.train_and_evaluate(config, run_dir)
    stages.record(stage, time.time() - start, run_dir)


def _resolution(config) -> int:
    if config.teacher or config.init_from:
        return checkpoint.read_architecture(config.teacher or config.init_from)[0].resolution
    return config.generator.resolution
