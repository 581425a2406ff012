"""Images/s of the training input pipeline alone (tf.data: read, decode, crop, resize, flip, batch).

    python -m stylekd_jax.benchmarks.input_pipeline                   # 256 and 1024 px, PNG/JPEG folders, zip
    python -m stylekd_jax.benchmarks.input_pipeline --resolutions 256 --images 200 --seconds 5

Why: an accelerator step must never wait for JPEGs. The step rates the README plans for
(images/s per chip) divided by the pipeline's images/s per host core give the host cores a
chip needs. Writes synthetic photographs-like images (smooth colour fields with fine grain, so
that PNG/JPEG sizes are near FFHQ's: a 1024 px FFHQ PNG is ~1.5 MB, its 256 px version ~100 kB)
to a temporary folder once per format, then times `input_pipeline.make_dataset` after a
warm-up, and a single-thread decode + resize loop (`per core`) for comparison. TFDS sources
are not timed here (they need a prepared dataset); their decode is the same PIL code.
"""

import argparse
import os
import tempfile
import time
import zipfile

import numpy as np
from PIL import Image

from stylekd_jax import input_pipeline


def synthetic_image(rng: np.random.RandomState, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: a smooth random colour field (bilinear from 8x8) plus grain."""
    coarse = Image.fromarray(rng.randint(0, 256, (8, 8, 3)).astype(np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.float32)
    grain = rng.normal(0, 6, (size, size, 3))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def write_sources(directory: str, size: int, count: int) -> dict[str, tuple[str, float]]:
    """{name: (data source string, kB per image)} for PNG and JPEG folders and a PNG zip."""
    rng = np.random.RandomState(0)
    sources = {}
    for fmt, ext, kwargs in (("png", ".png", {"compress_level": 6}), ("jpeg", ".jpg", {"quality": 95})):
        folder = os.path.join(directory, f"{fmt}{size}")
        os.makedirs(folder)
        for i in range(count):
            Image.fromarray(synthetic_image(rng, size)).save(os.path.join(folder, f"{i:05d}{ext}"), **kwargs)
        kb = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / count / 1e3
        sources[f"folder {fmt.upper()}"] = (f"folder:{folder}", kb)
    zip_path = os.path.join(directory, f"png{size}.zip")
    folder = os.path.join(directory, f"png{size}")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as z:   # dataset_tool.py stores PNGs
        for f in sorted(os.listdir(folder)):
            z.write(os.path.join(folder, f), f"00000/img{f}")
    sources["zip PNG (NVlabs)"] = (f"zip:{zip_path}", sources["folder PNG"][1])
    return sources


def pipeline_rate(source: str, resolution: int, batch: int, seconds: float) -> float:
    """Images/s of make_dataset after a warm-up of 3 batches."""
    batches = input_pipeline.make_dataset(source, resolution, batch, seed=0)
    try:
        for _ in range(3):
            next(batches)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(batches)
            n += batch
        return n / (time.perf_counter() - start)
    finally:
        batches.close()


def single_thread_rate(source: str, resolution: int, count: int = 30) -> float:
    """Images/s of read + decode + to_square in one thread: the work per host core."""
    src = input_pipeline.open_source(source)
    start = time.perf_counter()
    for i in range(count):
        input_pipeline.to_square(src.load(i % len(src)), resolution)
    return count / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", default="256,1024")
    parser.add_argument("--images", type=int, default=256, help="images written per format and size")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed per source")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"host: {cores} cores usable; batch {args.batch}; tf.data with AUTOTUNE parallelism")
    print(f"{'source':18s} {'px':>5s} {'kB/img':>7s} {'img/s':>8s} {'img/s/core':>10s} {'1 thread':>9s}")
    for res in (int(r) for r in args.resolutions.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            for name, (source, kb) in write_sources(tmp, res, args.images).items():
                rate = pipeline_rate(source, res, args.batch, args.seconds)
                one = single_thread_rate(source, res)
                print(f"{name:18s} {res:5d} {kb:7.0f} {rate:8.1f} {rate / cores:10.1f} {one:9.1f}", flush=True)


if __name__ == "__main__":
    main()
