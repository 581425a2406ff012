"""Generate images from a converted or trained generator checkpoint.

    python -m stylekd_jax.generate --checkpoint teacher/ --seeds 0-7 --trunc 0.7 \\
        --noise-mode const --outdir out/ --save-npy

Seed s gives z = np.random.RandomState(s).randn(1, z_dim), the convention of NVlabs'
gen_images.py, so the same seed gives the same image as the official tools. For StyleGAN3
generators `--translate X,Y` and `--rotate DEG` move the image as gen_images.py does (the
inverse of that transform becomes the input's `transform` buffer); `--noise-mode` is
accepted and has no effect (StyleGAN3 has no noise inputs).

Before writing anything it prints the number of images, their approximate size on disk and
the time they will take (measured on the first batch); more than MAX_IMAGES images need
--yes.
"""

import argparse
import io
import itertools
import math
import os
import sys
import time

import jax
import numpy as np

from PIL import Image

from stylekd_jax import checkpoint, cli, images, progress
from stylekd_jax.cli import positive_int
from stylekd_jax.networks import make_generator
from stylekd_jax.networks.synthesis import NOISE_MODES
from stylekd_jax.outputs import OutputPathError, writable_dir


MAX_IMAGES = 10000   # more images than this need --yes
GRID_IMAGES = 64     # grid.png shows the first this many


def parse_seed_ranges(text: str) -> list[range]:
    """'0-3,7,10-11' -> [range(0, 4), range(7, 8), range(10, 12)] (never expanded, so a huge
    range costs nothing until it is generated)."""
    ranges: list[range] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                ranges.append(range(lo_i, hi_i + 1))
            else:
                ranges.append(range(int(part), int(part) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad seed list {text!r}: use numbers and ranges like 0-7,10,12-15") from None
    if any(r.start < 0 or r.stop > 2 ** 32 for r in ranges):
        raise argparse.ArgumentTypeError(f"seeds must be in [0, 2**32), got {text!r}")
    return ranges


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    return [s for r in parse_seed_ranges(text) for s in r]


def seed_latents(seeds: list[int], z_dim: int) -> np.ndarray:
    return np.concatenate([np.random.RandomState(s).randn(1, z_dim) for s in seeds]).astype(np.float32)


def make_transform(translate: tuple[float, float], angle: float) -> np.ndarray:
    """gen_images.py's image transform: rotation by `angle` degrees, then translation."""
    s, c = np.sin(np.radians(angle)), np.cos(np.radians(angle))
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]])


def with_transform(variables, translate: tuple[float, float], angle: float):
    """StyleGAN3 variables whose input draws the image translated and rotated."""
    inverse = np.linalg.inv(make_transform(translate, angle)).astype(np.float32)
    synthesis = dict(variables["buffers"]["synthesis"])
    synthesis["input"] = {**synthesis["input"], "transform": inverse}
    return {**variables, "buffers": {**variables["buffers"], "synthesis": synthesis}}


def _vec2(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.3,1, got {text!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return x, y


def make_generate_fn(cfg, truncation_psi: float, truncation_cutoff: int | None, noise_mode: str):
    """Jitted (variables, z [N, z_dim], noise_keys [N]) -> images [N, H, W, C] float32.

    Each sample draws its random noise from its own key, so an image does not depend on
    the batch it was generated in.
    """
    model = make_generator(cfg)

    def generate_one(variables, z, noise_key):
        return model.apply(variables, z[None], truncation_psi, truncation_cutoff, noise_mode,
                           rngs={"noise": noise_key})[0]
    return jax.jit(jax.vmap(generate_one, in_axes=(None, 0, 0)))


def _bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _png_bytes(image: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.tell()


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    parser = cli.ArgumentParser(prog="python -m stylekd_jax.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (converted or trained)")
    parser.add_argument("--seeds", required=True, help="e.g. 0-7 or 1,5,9")
    parser.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1: none)")
    parser.add_argument("--trunc-cutoff", type=int, default=None,
                        help="truncate only the first N ws (default: all)")
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                        help="StyleGAN2 noise inputs (StyleGAN3 has none: accepted, no effect)")
    parser.add_argument("--translate", type=_vec2, default=(0.0, 0.0), metavar="X,Y",
                        help="StyleGAN3: translate the image (gen_images.py's --translate)")
    parser.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                        help="StyleGAN3: rotate the image by DEG degrees (gen_images.py's --rotate)")
    parser.add_argument("--network", default=None, help="which stored generator: g_ema (default) or g")
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--save-npy", action="store_true",
                        help="also write images.npy: float32 [N, H, W, C], raw output before clipping")
    parser.add_argument("--yes", action="store_true",
                        help=f"generate more than {MAX_IMAGES} images (without it, such a --seeds "
                             f"range stops after printing the estimate)")
    args = parser.parse_args(argv)

    try:
        ranges = parse_seed_ranges(args.seeds)
    except argparse.ArgumentTypeError as e:
        return _error(f"--seeds: {e}")
    count = sum(len(r) for r in ranges)
    if not math.isfinite(args.trunc):
        return _error(f"--trunc must be a finite number (1 = no truncation, 0.5-0.7 typical), "
                      f"got {args.trunc}")
    created = not os.path.exists(args.outdir)
    try:   # before anything compiles
        writable_dir(args.outdir, "--outdir")
    except OutputPathError as e:
        return _error(str(e))
    status = _generate(args, ranges, count)
    if status and created and not os.listdir(args.outdir):
        os.rmdir(args.outdir)   # a refused or failed run leaves no empty folder behind
    return status


def _generate(args, ranges: list[range], count: int) -> int:
    try:
        prefer = (args.network,) if args.network else ("g_ema", "g")
        cfg, variables = checkpoint.load_generator(args.checkpoint, prefer=prefer)
    except (FileNotFoundError, KeyError, ValueError) as e:
        return _error(e.args[0] if e.args else str(e))
    if args.translate != (0.0, 0.0) or args.rotate != 0.0:
        if getattr(cfg, "family", "") != "stylegan3":
            return _error("--translate and --rotate move a StyleGAN3 generator's input; this "
                          "checkpoint is a StyleGAN2, whose image cannot be transformed")
        if not math.isfinite(args.rotate):
            return _error(f"--rotate must be a finite angle in degrees, got {args.rotate}")
        variables = with_transform(variables, args.translate, args.rotate)
    if args.trunc_cutoff is not None and not 0 <= args.trunc_cutoff <= cfg.num_ws:
        return _error(f"--trunc-cutoff must be in [0, {cfg.num_ws}] (this generator has "
                      f"{cfg.num_ws} ws), got {args.trunc_cutoff}")

    generate = make_generate_fn(cfg, args.trunc, args.trunc_cutoff, args.noise_mode)
    seeds_left = itertools.chain.from_iterable(ranges)

    def next_batch():
        """(seeds, float images) of the next batch, or None when all are done."""
        seeds = list(itertools.islice(seeds_left, args.batch_size))
        if not seeds:
            return None
        # Pad the last batch to the full size so the jitted function compiles once.
        padded = seeds + [seeds[-1]] * (args.batch_size - len(seeds))
        z = seed_latents(padded, cfg.z_dim)
        keys = jax.vmap(jax.random.PRNGKey)(np.asarray(padded, np.uint32))
        return seeds, np.asarray(generate(variables, z, keys))[: len(seeds)]

    # The first batch compiles, the second one is timed: the estimate comes before any file.
    start = time.time()
    ready = [next_batch()]
    seconds = time.time() - start
    if count > args.batch_size:
        start = time.time()
        ready.append(next_batch())
        seconds = time.time() - start
    # Every batch computes batch_size images (the last one is padded).
    total_seconds = seconds * math.ceil(count / args.batch_size)
    first = ready[0][1]
    shape = first.shape[1:]
    png = _png_bytes(images.to_uint8(first[:1])[0]) * count
    npy = count * int(np.prod(shape)) * 4 if args.save_npy else 0
    plan = (f"{count} images of {cfg.resolution}x{cfg.resolution}: about {_bytes(png + npy)} on disk"
            + (f" ({_bytes(npy)} of it images.npy)" if npy else "")
            + f", about {progress.duration(total_seconds)} ({args.batch_size / max(seconds, 1e-9):.1f} images/s)")
    print(plan, flush=True)
    if count > MAX_IMAGES and not args.yes:
        return _error(f"--seeds {args.seeds} asks for {count} images ({plan.split(': ', 1)[1]}); "
                      f"pass --yes to generate more than {MAX_IMAGES}, or use a shorter --seeds range")

    # images.npy is written batch by batch (a memory-mapped .npy), so no run holds all images.
    npy_file = np.lib.format.open_memmap(os.path.join(args.outdir, "images.npy"), mode="w+",
                                         dtype=np.float32, shape=(count, *shape)) if args.save_npy else None
    shown = []
    done = 0
    start = time.time()
    line = progress.Line(sys.stdout)
    while ready:
        seeds, batch = ready.pop(0)
        if npy_file is not None:
            npy_file[done: done + len(seeds)] = batch
        for seed, img in zip(seeds, images.to_uint8(batch)):
            images.save_png(os.path.join(args.outdir, f"seed{seed:04d}.png"), img)
            if len(shown) < GRID_IMAGES:
                shown.append(img)
        done += len(seeds)
        line.update(f"{done}/{count} images ({time.time() - start:.1f} s)", final=done == count)
        if not ready and (following := next_batch()) is not None:
            ready.append(following)
    images.save_png(os.path.join(args.outdir, "grid.png"), images.grid(np.stack(shown), pad=2))
    if npy_file is not None:
        npy_file.flush()
        del npy_file
    print(f"wrote {count} images of {cfg.resolution}x{cfg.resolution} to {args.outdir}"
          + (f" (grid.png: the first {GRID_IMAGES})" if count > GRID_IMAGES else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
