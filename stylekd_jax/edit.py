"""Make the same edit in teacher and student: SeFa grids, edit consistency, style mixing, projection.

    python -m stylekd_jax.edit --teacher teacher/ --student runs/NAME/student --seeds 0-3 \\
        --directions sefa:0-4 --strengths -6,-3,0,3,6 --outdir edits/
    python -m stylekd_jax.edit ... --style-mix 0-3 10-13 --cutoff 6     # NVlabs style_mixing.py grids
    python -m stylekd_jax.edit ... --project face.png                   # a real image, projected into
                                                                        # the teacher's W+, edited in both

Why: StyleKD's claim is semantic consistency, for a latent and for an *edit* of it. Both
networks get the same ws: the teacher's mapping of the seeds (a StyleKD student inherits it;
one with its own mapping is still shown the teacher's ws, since the edits live in the teacher's
W), moved along the teacher's SeFa directions, the ones distillation trains with (see
`sefa.training_directions`; `latents` defines seeds, edits and mixes). The **edit consistency**
of a direction compares the teacher's edit delta T(ws + s d) - T(ws) with the student's
S(ws + s d) - S(ws) (images clipped to [-1, 1]): L1, and LPIPS-VGG of delta / 2 (deltas lie in
[-2, 2], LPIPS takes [-1, 1]); per strength, and averaged over the latents and the non-zero
strengths. 0 means the student makes exactly the teacher's edit.

Writes to --outdir: `sefaNN.png` per direction (per latent a teacher row over a student row;
columns: the strengths), `stylemix_teacher.png` / `stylemix_student.png` (first row: the column
seeds, first column: the row seeds, black corner), `projection.png` (target | teacher | student)
and `edits.json` with every number. StyleGAN2 noise is the checkpoints' constant noise; a
projected image keeps the teacher's optimised noise maps in both networks.
"""

import argparse
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from stylekd_jax import checkpoint, cli, images, latents, progress
from stylekd_jax.cli import positive_int
from stylekd_jax.generate import parse_seeds
from stylekd_jax.lpips import lpips_fn
from stylekd_jax.metrics.projection import OPTIMIZERS, noise_maps, project, synthesize_with_noise
from stylekd_jax.metrics.psnr import psnr as psnr_images
from stylekd_jax.networks import make_generator
from stylekd_jax.outputs import OutputPathError, writable_dir
from stylekd_jax.sefa import MODES, training_directions

LPIPS_SIZE = 256   # larger images are resized to this for LPIPS, as in training and evaluation


class EditError(ValueError):
    """One line for the user: bad input found before or after loading the networks."""


class Network:
    """A loaded generator with its jitted mapping and synthesis (compiled once per batch shape)."""

    def __init__(self, role: str, path: str):
        try:
            self.cfg, self.variables = checkpoint.load_generator(path)
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise EditError(f"--{role}: {e.args[0] if e.args else e}") from None
        self.role, self.path = role, path
        model = self.model = make_generator(self.cfg)
        self.map = jax.jit(lambda v, z: model.apply(v, z, method="map"))
        self.synthesize = jax.jit(lambda v, ws: model.apply(v, ws, "const", method="synthesize"))
        self.synthesize_noise = jax.jit(lambda v, ws, m: synthesize_with_noise(model, v, ws, m))

    def describe(self) -> str:
        family = getattr(self.cfg, "family", "stylegan2")
        return f"{family} {self.cfg.resolution}px, num_ws {self.cfg.num_ws}"

    def render(self, ws: np.ndarray, batch: int, maps: dict | None = None) -> np.ndarray:
        """Images [N, H, W, C] (clipped to [-1, 1]) for ws [N, num_ws, w_dim]; with `maps`
        ({path: [res, res]}), those noise maps for every image instead of the constant ones."""
        if maps is None:
            out = batched(lambda w: self.synthesize(self.variables, w), [ws], batch)
        else:
            def one_batch(w):
                tiled = {k: jnp.broadcast_to(v, (w.shape[0], *v.shape)) for k, v in maps.items()}
                return self.synthesize_noise(self.variables, w, tiled)
            out = batched(one_batch, [ws], batch)
        return np.clip(out, -1.0, 1.0)


def batched(fn, arrays: list[np.ndarray], batch: int) -> np.ndarray:
    """fn over the leading axis in chunks of `batch`, the last one padded (one compiled shape)."""
    n = arrays[0].shape[0]
    outs = []
    for start in range(0, n, batch):
        chunk = [a[start: start + batch] for a in arrays]
        short = batch - chunk[0].shape[0]
        if short:
            chunk = [np.concatenate([c, np.repeat(c[-1:], short, axis=0)]) for c in chunk]
        outs.append(np.asarray(fn(*chunk))[: batch - short])
    return np.concatenate(outs)


def _strengths_argv(argv: list[str]) -> list[str]:
    """'--strengths -6,-3' -> '--strengths=-6,-3': argparse takes '-6,-3' for an option."""
    out = []
    for arg in argv:
        if out and out[-1] == "--strengths" and arg.startswith("-"):
            out[-1] = f"--strengths={arg}"
        else:
            out.append(arg)
    return out


def load_target(path: str, resolution: int) -> np.ndarray:
    """An image file as [resolution, resolution, 3] in [-1, 1]: centre-cropped square, resized."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (OSError, ValueError) as e:
        raise EditError(f"--project {path}: not a readable image ({' '.join(str(e).split())})") from None
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(im, np.float32) / 127.5 - 1.0


def edit_consistency(teacher: np.ndarray, student: np.ndarray, teacher_base: np.ndarray,
                     student_base: np.ndarray, lpips, batch: int) -> dict:
    """Per-image L1 and LPIPS between the two networks' edit deltas.

    teacher/student: [L, K, H, W, C] edited images, *_base: [L, H, W, C] unedited (clipped)."""
    delta_t = teacher - teacher_base[:, None]
    delta_s = student - student_base[:, None]
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    l1 = np.abs(delta_t - delta_s).mean(axis=(2, 3, 4))
    dist = batched(lpips, [flat(delta_t) / 2, flat(delta_s) / 2], batch).reshape(l1.shape)
    return {"l1": l1, "lpips": dist, "teacher_delta_l1": np.abs(delta_t).mean(axis=(2, 3, 4)),
            "student_delta_l1": np.abs(delta_s).mean(axis=(2, 3, 4))}


def summarise(metrics: dict, strengths: list[float]) -> dict:
    """Means over the latents per strength, and over the non-zero strengths overall."""
    moving = [k for k, s in enumerate(strengths) if s != 0] or list(range(len(strengths)))
    summary = {name: float(values[:, moving].mean()) for name, values in metrics.items()}
    summary["per_strength"] = [{"strength": s, **{name: float(values[:, k].mean())
                                                  for name, values in metrics.items()}}
                               for k, s in enumerate(strengths)]
    return summary


def style_mix_grid(net: Network, row_ws: np.ndarray, col_ws: np.ndarray, cutoff: int,
                   batch: int) -> tuple[np.ndarray, np.ndarray]:
    """NVlabs style_mixing.py's canvas (uint8) and the mixed images [R * C, H, W, C]."""
    rows, cols = len(row_ws), len(col_ws)
    mixed_ws = np.stack([latents.mix(r, c, cutoff) for r in row_ws for c in col_ws])
    picture = images.to_uint8(net.render(np.concatenate([row_ws, col_ws, mixed_ws]), batch))
    h, w, ch = picture.shape[1:]
    canvas = np.zeros(((rows + 1) * h, (cols + 1) * w, ch), np.uint8)
    for j in range(cols):
        canvas[:h, (j + 1) * w:(j + 2) * w] = picture[rows + j]
    for i in range(rows):
        canvas[(i + 1) * h:(i + 2) * h, :w] = picture[i]
        for j in range(cols):
            canvas[(i + 1) * h:(i + 2) * h, (j + 1) * w:(j + 2) * w] = picture[rows + cols + i * cols + j]
    mixed = net.render(mixed_ws, batch)
    return canvas, mixed


def main(argv=None) -> int:
    parser = cli.ArgumentParser(prog="python -m stylekd_jax.edit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="teacher checkpoint (the SeFa directions come from it)")
    parser.add_argument("--student", required=True, help="student checkpoint")
    parser.add_argument("--seeds", default=None, help="latents to edit, e.g. 0-3 (seed s: generate's z)")
    parser.add_argument("--directions", default="sefa:0-4", help="SeFa directions, e.g. sefa:0-4 (default)")
    parser.add_argument("--sefa-mode", choices=MODES, default="split",
                        help="split (default, as training) or global")
    parser.add_argument("--strengths", default="-6,-3,0,3,6",
                        help="edit strengths along each unit direction (default -6,-3,0,3,6)")
    parser.add_argument("--trunc", type=float, default=1.0, help="truncation psi of the seeds' ws (default 1)")
    parser.add_argument("--style-mix", nargs=2, metavar=("ROW_SEEDS", "COL_SEEDS"), default=None,
                        help="NVlabs style-mixing grid of these seeds, teacher and student")
    parser.add_argument("--cutoff", type=int, default=None,
                        help="style mixing: ws [0, N) from the column seed (default num_ws // 2)")
    parser.add_argument("--project", default=None, metavar="IMAGE",
                        help="project IMAGE into the teacher's W+ and edit it in both networks")
    parser.add_argument("--project-steps", type=positive_int, default=800, help="projection steps (default 800)")
    parser.add_argument("--projector", choices=OPTIMIZERS, default="lbfgs",
                        help="lbfgs (default, the paper's PSNR protocol) or adam")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--outdir", required=True)
    args = parser.parse_args(_strengths_argv(list(sys.argv[1:] if argv is None else argv)))
    created = not os.path.exists(args.outdir)
    try:
        status = _run(args)
    except EditError as e:
        print(f"error: {e}", file=sys.stderr)
        status = 2
    if status and created and os.path.isdir(args.outdir) and not os.listdir(args.outdir):
        os.rmdir(args.outdir)   # a refused run leaves no empty folder behind
    return status


def _seeds(text: str, what: str) -> list[int]:
    try:
        return parse_seeds(text)
    except argparse.ArgumentTypeError as e:
        raise EditError(f"{what}: {e}") from None


def _parse_inputs(args):
    """Everything checkable before the networks load."""
    try:
        strengths = latents.parse_strengths(args.strengths)
    except ValueError as e:
        raise EditError(str(e)) from None
    seeds = _seeds(args.seeds, "--seeds") if args.seeds is not None else []
    mix = [_seeds(text, "--style-mix") for text in args.style_mix] if args.style_mix else None
    if not math.isfinite(args.trunc):
        raise EditError(f"--trunc must be a finite number (1 = no truncation), got {args.trunc}")
    if not seeds and args.project is None and mix is None:
        raise EditError("nothing to do: give --seeds (edit seeds), --project IMAGE or --style-mix ROWS COLS")
    if args.project is not None and not os.path.isfile(args.project):
        raise EditError(f"--project {args.project}: no such file")
    if args.cutoff is not None and mix is None:
        raise EditError("--cutoff is the style-mixing cutoff; it needs --style-mix ROW_SEEDS COL_SEEDS")
    try:
        writable_dir(args.outdir, "--outdir")
    except OutputPathError as e:
        raise EditError(str(e)) from None
    return strengths, seeds, mix


def _run(args) -> int:
    strengths, seeds, mix = _parse_inputs(args)
    teacher, student = Network("teacher", args.teacher), Network("student", args.student)
    t, s = teacher.cfg, student.cfg
    if (t.num_ws, t.w_dim, t.z_dim, t.resolution) != (s.num_ws, s.w_dim, s.z_dim, s.resolution):
        raise EditError(f"the student takes other latents or draws other images than the teacher "
                        f"(num_ws, w_dim, z_dim, resolution: teacher {(t.num_ws, t.w_dim, t.z_dim, t.resolution)}, "
                        f"student {(s.num_ws, s.w_dim, s.z_dim, s.resolution)}); edit a student of this teacher")
    directions = training_directions(t, teacher.variables, args.sefa_mode)
    chosen = []
    if seeds or args.project:
        try:
            chosen = latents.parse_direction_spec(args.directions, len(directions))
        except ValueError as e:
            raise EditError(str(e)) from None
    cutoff = None
    if mix is not None:
        cutoff = t.num_ws // 2 if args.cutoff is None else args.cutoff
        if not 0 <= cutoff <= t.num_ws:
            raise EditError(f"--cutoff must be in [0, {t.num_ws}] (the generator has {t.num_ws} ws), got {cutoff}")
    print(f"teacher {args.teacher}: {teacher.describe()}; student {args.student}: {student.describe()}", flush=True)
    lpips = lpips_fn(resize_to=LPIPS_SIZE)
    report = {"teacher": args.teacher, "student": args.student, "trunc": args.trunc,
              "noise": "const (projection: the teacher's optimised maps)",
              "lpips": f"LPIPS-VGG of delta / 2, images over {LPIPS_SIZE}px resized to {LPIPS_SIZE}"}

    # The latents: seeds (const noise) and the projected image (its noise maps), in order.
    subjects = [(f"seed {seed}", ws, None) for seed, ws in
                zip(seeds, latents.seed_ws(teacher.map, teacher.variables, seeds, t.z_dim, args.trunc))
                ] if seeds else []
    if args.project is not None:
        subjects.append(_projection(args, teacher, student, lpips, report))

    if subjects:
        report["latents"] = [name for name, _, _ in subjects]
        report["strengths"] = strengths
        report["directions"] = _edit_directions(args, teacher, student, subjects, directions, chosen,
                                                strengths, lpips)
        report["sefa"] = {"mode": args.sefa_mode, "available": int(len(directions)),
                          "source": "teacher affines, as distillation's LD loss (sefa.training_directions)"}
    if mix is not None:
        report["style_mix"] = _style_mix(args, teacher, student, mix, cutoff, lpips)
    with open(os.path.join(args.outdir, "edits.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.outdir}/edits.json")
    return 0


def _render_subjects(net: Network, subjects, edits: list[tuple[np.ndarray, float]] | None,
                     batch: int) -> np.ndarray:
    """[L, K, H, W, C]: each latent under each (direction, strength) edit ([L, H, W, C] if None)."""
    out = []
    for _, ws, maps in subjects:
        stack = (ws[None] if edits is None
                 else np.stack([latents.edit(ws, d, strength) for d, strength in edits]))
        out.append(net.render(stack, batch, maps))
    return np.stack(out)[:, 0] if edits is None else np.stack(out)


def _edit_directions(args, teacher, student, subjects, directions, chosen, strengths, lpips) -> list[dict]:
    base_t = _render_subjects(teacher, subjects, None, args.batch_size)
    base_s = _render_subjects(student, subjects, None, args.batch_size)
    print(f"{len(chosen)} SeFa directions ({args.sefa_mode}) x {len(strengths)} strengths x "
          f"{len(subjects)} latents", flush=True)
    results = []
    for number, index in enumerate(chosen, 1):
        start = time.time()
        edits = [(directions[index], strength) for strength in strengths]
        imgs_t = _render_subjects(teacher, subjects, edits, args.batch_size)
        imgs_s = _render_subjects(student, subjects, edits, args.batch_size)
        metrics = edit_consistency(imgs_t, imgs_s, base_t, base_s, lpips, args.batch_size)
        name = f"sefa{index:02d}.png"
        rows = np.stack([imgs_t, imgs_s], axis=1).reshape(-1, *imgs_t.shape[2:])   # T, S per latent
        images.save_png(os.path.join(args.outdir, name),
                        images.grid(images.to_uint8(rows), columns=len(strengths), pad=2))
        summary = summarise(metrics, strengths)
        results.append({"index": int(index), "grid": name, **summary})
        print(f"  direction {index} ({number}/{len(chosen)}): edit consistency L1 {summary['l1']:.4f}, "
              f"LPIPS {summary['lpips']:.4f} (teacher's edit moves L1 {summary['teacher_delta_l1']:.4f}) "
              f"{time.time() - start:.1f} s -> {name}", flush=True)
    return results


def _style_mix(args, teacher, student, mix, cutoff, lpips) -> dict:
    row_seeds, col_seeds = mix
    t = teacher.cfg
    row_ws = latents.seed_ws(teacher.map, teacher.variables, row_seeds, t.z_dim, args.trunc)
    col_ws = latents.seed_ws(teacher.map, teacher.variables, col_seeds, t.z_dim, args.trunc)
    mixed = {}
    for net in (teacher, student):
        canvas, mixed[net.role] = style_mix_grid(net, row_ws, col_ws, cutoff, args.batch_size)
        images.save_png(os.path.join(args.outdir, f"stylemix_{net.role}.png"), canvas)
    l1 = float(np.abs(mixed["teacher"] - mixed["student"]).mean())
    dist = float(batched(lpips, [mixed["teacher"], mixed["student"]], args.batch_size).mean())
    print(f"style mixing {len(row_seeds)}x{len(col_seeds)}, ws [0, {cutoff}) from the column seeds: "
          f"teacher-student L1 {l1:.4f}, LPIPS {dist:.4f} -> stylemix_teacher.png, stylemix_student.png")
    return {"rows": row_seeds, "columns": col_seeds, "cutoff": cutoff, "l1": l1, "lpips": dist,
            "grids": ["stylemix_teacher.png", "stylemix_student.png"]}


def _projection(args, teacher: Network, student: Network, lpips, report: dict):
    """Project --project into the teacher's W+ (and noise maps); the subject to edit."""
    target = load_target(args.project, teacher.cfg.resolution)
    print(f"projecting {args.project} into the teacher's W+ ({args.projector}, {args.project_steps} steps)",
          flush=True)
    result = project(teacher.model, teacher.variables, target[None], lpips, steps=args.project_steps,
                     optimizer=args.projector, progress=progress.printer("projection", sys.stdout))
    maps = {k: np.asarray(v[0]) for k, v in result.noises.items()}
    student_maps = noise_maps(student.variables)
    wrong = [k for k, v in maps.items() if k not in student_maps or student_maps[k].shape != v.shape]
    if wrong:
        raise EditError(f"the student has no noise input {'/'.join(wrong[0])} of the teacher's shape; "
                        f"a projected image needs the teacher's noise inputs in the student")
    ws = np.asarray(result.ws[0], np.float32)
    drawn = [net.render(ws[None], 1, maps)[0] for net in (teacher, student)]
    images.save_png(os.path.join(args.outdir, "projection.png"),
                    images.grid(images.to_uint8(np.stack([target, *drawn])), columns=3, pad=2))
    clipped = np.clip(target, -1, 1)[None]
    report["projection"] = {
        "image": args.project, "steps": args.project_steps, "projector": args.projector,
        "teacher_psnr": float(result.mean_psnr), "teacher_lpips": float(result.mean_lpips),
        "student_psnr": float(np.mean(psnr_images(drawn[1][None], clipped))),
        "student_lpips": float(np.asarray(lpips(drawn[1][None], clipped)).mean()),
        "picture": "projection.png (target | teacher | student)"}
    p = report["projection"]
    print(f"projection: teacher PSNR {p['teacher_psnr']:.2f} dB, LPIPS {p['teacher_lpips']:.3f}; the student "
          f"on the same ws: PSNR {p['student_psnr']:.2f} dB, LPIPS {p['student_lpips']:.3f} -> projection.png")
    return (f"projection {os.path.basename(args.project)}", ws, maps)


if __name__ == "__main__":
    sys.exit(main())
