"""WORKDIR/report.md: what a run produced, in pictures and numbers.

    python -m stylekd_jax.report --workdir runs/demo      # (main.py writes it at the end of a run)

Why: after a distillation people want to look, not to grep logs: the teacher row above the
student row for fixed seeds, the loss curves, the final metrics and how long each stage took.
Everything is read from the workdir (pipeline.py's layout): `metrics.jsonl` of each run
(run_log.py), its latest `samples/*.png`, the exported generators' `architecture.json` and
`stages.json` (run_log.StageLog). A workdir with variants (WORKDIR/NAME/) gets one table
row per variant; repeated variants (WORKDIR/NAME_seedS, config.variant_repeats) also get their
mean ± std over seeds, and runs evaluated during training a chart of teacher–student
consistency against the step.
"""

import argparse
import os
import platform
import sys

import numpy as np
from PIL import Image

from stylekd_jax import charts, checkpoint, run_log
from stylekd_jax.architecture import generator_macs
from stylekd_jax.config import SEED_SUFFIX
from stylekd_jax.networks.generator import num_params
from stylekd_jax.sharding import device_description

REPORT_FILE = "report.md"
ASSETS_DIR = "report"
TEACHER_RUN = "teacher"
# Loss curves: chart title -> scalars drawn in it (those a run did not log are left out).
CURVES = {
    "adversarial losses": ("d_loss", "g_gan"),
    "distillation losses": ("kd_l1", "kd_lpips", "kd_ld", "kd_w_l1"),
    "regularisers": ("r1", "pl_penalty"),
}
METRIC_NAMES = {  # eval/ scalar -> column title
    "fdvgg": "FD-VGG ↓", "fid": "FID ↓", "kid": "KID ↓", "consistency_l1": "T–S L1 ↓",
    "consistency_lpips": "T–S LPIPS ↓", "consistency_psnr": "T–S PSNR (dB) ↑",
    "consistency_mapping_l1": "mapping L1 ↓", "ppl": "PPL",
}
# Evaluated during training (config.eval.every_steps): drawn against the step, per variant.
CONSISTENCY_CURVES = {"eval/consistency_lpips": "T-S LPIPS", "eval/consistency_l1": "T-S L1"}
SAMPLE_SCALE = 3   # small demo images are enlarged (nearest neighbour) to be seen


def find_runs(workdir: str) -> dict[str, str]:
    """{label: run dir} of every run in workdir: the teacher run, the run itself or its variants."""
    runs = {}
    for name in sorted(os.listdir(workdir)):
        path = os.path.join(workdir, name)
        if name != TEACHER_RUN and os.path.isfile(os.path.join(path, run_log.FILE_NAME)):
            runs[name] = path
    if os.path.isfile(os.path.join(workdir, run_log.FILE_NAME)):
        runs = {"student" if _teacher_of(workdir) else "generator": workdir, **runs}
    teacher = os.path.join(workdir, TEACHER_RUN)
    if os.path.isfile(os.path.join(teacher, run_log.FILE_NAME)):
        runs = {"teacher (trained here)": teacher, **runs}
    return runs


def variant_groups(labels) -> dict[str, list[str]]:
    """{variant: its run labels}: the repeats NAME_seedS under NAME, any other run alone."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        name, suffix, seed = label.rpartition(SEED_SUFFIX)
        groups.setdefault(name if suffix and seed.isdigit() else label, []).append(label)
    return groups


def _mean_std(values) -> str:
    v = np.array([x for x in values if x is not None and np.isfinite(x)])
    if v.size < 2:
        return _format(v[0] if v.size else None)
    return f"{v.mean():.4g} ± {v.std(ddof=1):.2g}"


def _save_consistency_curves(scalars: dict, groups: dict, out_prefix: str) -> list[str]:
    """One chart per CONSISTENCY_CURVES metric: each variant's mean over its seeds vs step."""
    paths = []
    for name, title in CONSISTENCY_CURVES.items():
        series = {}
        for group, labels in groups.items():
            curves = [dict(zip(*scalars[label][name])) for label in labels
                      if name in scalars[label] and len(scalars[label][name][0]) > 1]
            if curves:
                steps = sorted(set.intersection(*(set(c) for c in curves)))
                series[group] = (steps, [np.mean([c[step] for c in curves]) for step in steps])
        if series:
            repeated = any(len(labels) > 1 for labels in groups.values())
            path = f"{out_prefix}_{name.rsplit('_', 1)[-1]}.png"
            charts.save_line_chart(path, series, ylabel=title, title=f"{title} against training step"
                                   + (" (mean over seeds)" if repeated else ""))
            paths.append(path)
    return paths


def _teacher_of(run_dir: str) -> str | None:
    exported = os.path.join(run_dir, "student")
    if not os.path.isfile(os.path.join(exported, checkpoint.ARCHITECTURE_FILE)):
        return None
    return checkpoint.read_architecture(exported)[2].get("teacher")


def _network_row(label: str, directory: str, teacher_params: int | None) -> str:
    cfg, _, _ = checkpoint.read_architecture(directory)
    params = num_params(cfg)
    ratio = f"{teacher_params / params:.1f}×" if teacher_params else "–"
    family = f"StyleGAN3-{cfg.config_name} " if getattr(cfg, "family", "") == "stylegan3" else ""
    return (f"| {label} | {family}{cfg.resolution}px, channels {list(cfg.channels)}, kernel {cfg.kernel_size} | "
            f"{params / 1e6:.3f}M | {generator_macs(cfg) / 1e6:.0f}M | {ratio} |")


def _metric_title(name: str) -> str:
    short = name.removeprefix("eval/")
    for prefix, title in METRIC_NAMES.items():
        if short.startswith(prefix):
            suffix = short[len(prefix):]
            return f"{title} ({suffix})" if suffix and prefix in ("fdvgg", "fid", "kid") else title
    return short


def _format(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.4g}"


def _save_samples(run_dir: str, out_path: str) -> bool:
    folder = os.path.join(run_dir, "samples")
    pngs = sorted(f for f in os.listdir(folder) if f.endswith(".png")) if os.path.isdir(folder) else []
    if not pngs:
        return False
    img = Image.open(os.path.join(folder, pngs[-1]))
    if img.width < 600:
        img = img.resize((img.width * SAMPLE_SCALE, img.height * SAMPLE_SCALE), Image.Resampling.NEAREST)
    img.save(out_path)
    return True


def _save_curves(scalars: dict, out_prefix: str) -> list[str]:
    paths = []
    for title, names in CURVES.items():
        series = {n: scalars[n] for n in names if n in scalars and np.isfinite(scalars[n][1]).any()}
        if not series:
            continue
        path = f"{out_prefix}_{title.split()[0]}.png"
        smooth = max(1, len(next(iter(series.values()))[0]) // 30)
        charts.save_line_chart(path, series, title=title, ylabel="loss", smooth=smooth)
        paths.append(path)
    return paths


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{device_description()}; host CPU {cpu}, {os.cpu_count()} cores"


def write_report(workdir: str) -> str:
    """Write WORKDIR/report.md (and its pictures in WORKDIR/report/); returns its path."""
    workdir = os.path.abspath(workdir)
    runs = find_runs(workdir)
    if not runs:
        raise FileNotFoundError(f"{workdir} holds no training run (no {run_log.FILE_NAME}); "
                                f"run python -m stylekd_jax.main --workdir {workdir} first")
    assets = os.path.join(workdir, ASSETS_DIR)
    os.makedirs(assets, exist_ok=True)
    scalars = {label: run_log.read_scalars(path) for label, path in runs.items()}
    lines = [f"# Report: {os.path.basename(workdir)}", ""]

    # Networks.
    teacher_dir = next(filter(None, (_teacher_of(p) for p in runs.values())), None)
    teacher_params = None
    rows = []
    if teacher_dir and os.path.isdir(teacher_dir):
        teacher_params = num_params(checkpoint.read_architecture(teacher_dir)[0])
        rows.append(_network_row("teacher", teacher_dir, None))
    for label, path in runs.items():
        exported = os.path.join(path, "student")
        if os.path.isdir(exported) and exported != teacher_dir:
            rows.append(_network_row(label, exported, teacher_params))
    lines += ["## Networks", "", "| network | architecture | params | MACs / image | compression |",
              "|---|---|---|---|---|", *rows, ""]

    # Final metrics: one row per run.
    metric_names = sorted({n for s in scalars.values() for n in s
                           if n.startswith("eval/") and n != "eval/seconds"})
    if metric_names:
        lines += ["## Metrics (EMA generator, end of each run)", "",
                  "| run | step | " + " | ".join(_metric_title(n) for n in metric_names) + " |",
                  "|---|---|" + "---|" * len(metric_names)]
        for label, s in scalars.items():
            step = max((s[n][0][-1] for n in metric_names if n in s), default=None)
            values = " | ".join(_format(run_log.last_value(s, n)) for n in metric_names)
            lines.append(f"| {label} | {step if step is not None else '–'} | {values} |")
        lines += ["", "T–S: teacher vs student images for the same z and noise; mapping L1: "
                  "mean |S_s(z) − S_t(z)|; FD-VGG: Fréchet distance to the training images on "
                  "LPIPS-VGG16 features (not comparable with FID).", ""]
    groups = variant_groups(runs)
    repeated = {group: labels for group, labels in groups.items() if len(labels) > 1}
    if metric_names and repeated:
        seeds = sorted({len(labels) for labels in repeated.values()})
        lines += [f"## Variants: mean ± std over {'/'.join(map(str, seeds))} seeds", "",
                  "| variant | runs | " + " | ".join(_metric_title(n) for n in metric_names) + " |",
                  "|---|---|" + "---|" * len(metric_names)]
        for group, labels in repeated.items():
            values = " | ".join(_mean_std([run_log.last_value(scalars[l], n) for l in labels])
                                for n in metric_names)
            lines.append(f"| {group} | {len(labels)} | {values} |")
        lines += ["", "std: the sample standard deviation over the seeds (data order, student "
                  "initialisation, latents); the teacher is the same for all.", ""]
    curve_paths = _save_consistency_curves(scalars, groups, os.path.join(assets, "consistency"))
    if curve_paths:
        lines += ["## Teacher–student consistency during training", ""]
        lines += [f"![consistency]({ASSETS_DIR}/{os.path.basename(c)})" for c in curve_paths] + [""]

    # Pictures and curves, per run (of repeated variants, the first seed's).
    for group, labels in groups.items():
        label, path = labels[0], runs[labels[0]]
        slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
        lines += [f"## {label}" if len(labels) == 1 else f"## {group} ({label} of {len(labels)} seeds)", ""]
        sample_png = os.path.join(assets, f"{slug}_samples.png")
        if _save_samples(path, sample_png):
            caption = ("teacher (top) and student (bottom), same seeds and noise"
                       if _teacher_of(path) else "samples for fixed seeds")
            lines += [f"![{caption}]({ASSETS_DIR}/{os.path.basename(sample_png)})", "", f"*{caption}*", ""]
        for chart in _save_curves(scalars[label], os.path.join(assets, slug)):
            lines += [f"![loss curve]({ASSETS_DIR}/{os.path.basename(chart)})", ""]

    # Stage times.
    stages = run_log.StageLog(workdir).stages
    if stages:
        lines += ["## Time", "", "| stage | seconds | of which evaluation |", "|---|---|---|"]
        scalars_by_dir = {os.path.relpath(path, workdir): scalars[label] for label, path in runs.items()}
        for stage, entry in stages.items():
            evals = scalars_by_dir.get(entry["run"], {}).get("eval/seconds", ([], []))[1]
            eval_seconds = sum(v for v in evals if np.isfinite(v))
            lines.append(f"| {stage} | {entry['seconds']:.0f} | {eval_seconds:.0f} |")
        total = sum(entry["seconds"] for entry in stages.values())
        lines += ["", f"Total {total / 60:.1f} min on {machine_description()}.", ""]

    path = os.path.join(workdir, REPORT_FILE)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write WORKDIR/report.md for a training workdir.")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    try:
        print(write_report(args.workdir))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
