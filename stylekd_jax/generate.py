"""Generate images from a converted or trained generator checkpoint.

    python -m stylekd_jax.generate --checkpoint teacher/ --seeds 0-7 --trunc 0.7 \\
        --noise-mode const --outdir out/ --save-npy

Seed s gives z = np.random.RandomState(s).randn(1, z_dim), the convention of NVlabs'
gen_images.py, so the same seed gives the same image as the official tools.
"""

import argparse
import os
import sys
import time

import jax
import numpy as np

from stylekd_jax import checkpoint, images
from stylekd_jax.networks import Generator
from stylekd_jax.networks.synthesis import NOISE_MODES


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad seed list {text!r}: use numbers and ranges like 0-7,10,12-15") from None
    if any(s < 0 or s >= 2 ** 32 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be in [0, 2**32), got {text!r}")
    return seeds


def seed_latents(seeds: list[int], z_dim: int) -> np.ndarray:
    return np.concatenate([np.random.RandomState(s).randn(1, z_dim) for s in seeds]).astype(np.float32)


def make_generate_fn(cfg, truncation_psi: float, truncation_cutoff: int | None, noise_mode: str):
    """Jitted (variables, z [N, z_dim], noise_keys [N]) -> images [N, H, W, C] float32.

    Each sample draws its random noise from its own key, so an image does not depend on
    the batch it was generated in.
    """
    model = Generator(cfg)

    def generate_one(variables, z, noise_key):
        return model.apply(variables, z[None], truncation_psi, truncation_cutoff, noise_mode,
                           rngs={"noise": noise_key})[0]
    return jax.jit(jax.vmap(generate_one, in_axes=(None, 0, 0)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (converted or trained)")
    parser.add_argument("--seeds", type=parse_seeds, required=True, help="e.g. 0-7 or 1,5,9")
    parser.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1: none)")
    parser.add_argument("--trunc-cutoff", type=int, default=None,
                        help="truncate only the first N ws (default: all)")
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default="const")
    parser.add_argument("--network", default=None, help="which stored generator: g_ema (default) or g")
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--save-npy", action="store_true",
                        help="also write images.npy: float32 [N, H, W, C], raw output before clipping")
    args = parser.parse_args(argv)

    try:
        prefer = (args.network,) if args.network else ("g_ema", "g")
        cfg, variables = checkpoint.load_generator(args.checkpoint, prefer=prefer)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")

    generate = make_generate_fn(cfg, args.trunc, args.trunc_cutoff, args.noise_mode)
    os.makedirs(args.outdir, exist_ok=True)
    outputs = []
    start = time.time()
    for i in range(0, len(args.seeds), args.batch_size):
        seeds = args.seeds[i: i + args.batch_size]
        # Pad the last batch to the full size so the jitted function compiles once.
        padded = seeds + [seeds[-1]] * (args.batch_size - len(seeds))
        z = seed_latents(padded, cfg.z_dim)
        keys = jax.vmap(jax.random.PRNGKey)(np.asarray(padded, np.uint32))
        batch = np.asarray(generate(variables, z, keys))[: len(seeds)]
        outputs.append(batch)
        for seed, img in zip(seeds, images.to_uint8(batch)):
            images.save_png(os.path.join(args.outdir, f"seed{seed:04d}.png"), img)
        done = min(i + args.batch_size, len(args.seeds))
        print(f"\r{done}/{len(args.seeds)} images ({time.time() - start:.1f} s)", end="", flush=True)
    print()
    result = np.concatenate(outputs)
    images.save_png(os.path.join(args.outdir, "grid.png"), images.grid(images.to_uint8(result), pad=2))
    if args.save_npy:
        np.save(os.path.join(args.outdir, "images.npy"), result.astype(np.float32))
    print(f"wrote {len(args.seeds)} images of {cfg.resolution}x{cfg.resolution} to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
