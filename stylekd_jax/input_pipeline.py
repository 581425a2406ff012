"""Training images: a deterministic, resumable tf.data pipeline feeding the jitted, sharded step.

Why tf.data: decoding and resizing run on the host CPUs in parallel threads (PIL releases the
GIL) and are prefetched while the accelerators run the step, so the step never waits for JPEGs.
TensorFlow is hidden from every GPU so it never takes accelerator memory from JAX.

Sources (``--config.data.source``): ``folder:/path`` (.png .jpg .jpeg .webp .bmp, recursive,
sorted by relative path), ``zip:/path/ds.zip`` (stylegan2-ada ``dataset_tool.py`` output;
``dataset.json`` labels are ignored), ``tfds:name[/config][:split]`` (prepared in TFDS_DATA_DIR
or ~/tensorflow_datasets; never downloads).

Order. Example position g = 0, 1, 2, ... of the whole run lies in epoch e = g // N; epoch e
visits the N examples in a permutation derived from (seed, e) only. Global batch k holds
positions [k*G, (k+1)*G), G = batch_size * process_count, so an epoch's tail rolls into the
next batch. Process p takes the CONTIGUOUS chunk [k*G + p*b, k*G + (p+1)*b): concatenating
the processes' batches in process order gives the global batch (the layout that
``jax.make_array_from_process_local_data`` assembles). Horizontal flips are a stateless hash
of (seed, g). Batch k therefore depends only on (seed, k, P) and start_step is a pure offset:
resuming costs nothing for folder, zip and random-access TFDS (ArrayRecord) sources, because
only file names/indices are permuted; skipped examples are never read.
TFDS datasets without random access (TFRecord) are read in file order through a seeded
1000-record shuffle buffer that reshuffles each epoch; resume then ``skip``s the consumed
records: they are read (not decoded), and every process reads all records (decoding only its
chunk). Prefer ``download_and_prepare(file_format='array_record')``.
Images: RGB (grey -> 3 channels, alpha dropped), the centred square of side min(H, W)
(integer offset, rounded down) resized to resolution (area filter when shrinking, bilinear
when enlarging), i.e. short side resized then centre-cropped; uint8 NHWC. Batches stay uint8
until the jitted step converts them (`images.to_float`) on the device: a float32 batch is 4x the
bytes to convert on the host and to copy to the device (1024 px: 400 MB per 32 images).
"""

import atexit
import concurrent.futures
import hashlib
import io
import json
import os
import sys
import threading
import weakref
import zipfile
from collections.abc import Callable

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SOURCE_FORMS = "folder:/path/to/images, zip:/path/to/dataset.zip or tfds:name[/config][:split]"
_SEQ_SHUFFLE_BUFFER = 1000
_MASK = (1 << 64) - 1


class DataError(ValueError):
    """One-line user-facing error naming the file/source and the fix."""


def _tf():
    """TensorFlow, imported on first use: only the tf.data pipeline needs it, so the networks,
    the train step and the benchmarks run on hosts without TensorFlow. Hidden from every GPU."""
    import tensorflow as tf
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialised its devices elsewhere
        pass
    return tf


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection of uint64 with good avalanche."""
    x = x ^ (x >> 30)
    x = x * 0xBF58476D1CE4E5B9
    x = x ^ (x >> 27)
    x = x * 0x94D049BB133111EB
    return x ^ (x >> 31)


def _hash(seed: int, stream: int, values) -> np.ndarray:
    key = _mix(np.array([seed & _MASK], np.uint64))
    key = _mix(key ^ np.uint64(stream & _MASK))
    return _mix(np.asarray(values, np.uint64) ^ key)


def flip_flags(seed: int, positions) -> np.ndarray:
    """Whether the example at global position g is mirrored (stream 0 of the hash)."""
    return (_hash(seed, 0, positions) & 1).astype(bool)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of epoch `epoch`: example indices sorted by a (bijective) hash."""
    return np.argsort(_hash(seed, epoch + 1, np.arange(n)), kind="stable")


def to_square(img, resolution: int) -> np.ndarray:
    """PIL image or HWC array -> uint8 [resolution, resolution, 3], centre square resized."""
    if isinstance(img, np.ndarray):
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        img = Image.fromarray(img[..., :3] if img.ndim == 3 else img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale PNG
        img = Image.fromarray((np.asarray(img, np.uint32) >> 8).astype(np.uint8))
    if img.mode in ("P", "PA"):  # palette: resolve transparency before dropping alpha
        img = img.convert("RGBA")
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    resample = Image.Resampling.BOX if s >= resolution else Image.Resampling.BILINEAR
    img = img.resize((resolution, resolution), resample, box=(left, top, left + s, top + s))
    return np.asarray(img, np.uint8)


def _decode(data: bytes, what: str, draft: int | None = None) -> Image.Image:
    """The decoded image; `draft`: a JPEG may decode at a reduced scale still >= draft px."""
    try:
        img = Image.open(io.BytesIO(data))
        if draft:
            img.draft("RGB", (draft, draft))
        img.load()
        return img
    except Exception as e:  # PIL raises many types for bad files
        raise DataError(f"cannot decode image {what}: {type(e).__name__}: {' '.join(str(e).split())}; "
                        "remove or re-encode the file") from None


class _Files:
    """folder: or zip: source: a sorted list of image names, read on demand."""

    def __init__(self, kind: str, path: str):
        self.kind, self.path = kind, path
        if kind == "folder":
            if not os.path.isdir(path):
                raise DataError(f"data source folder:{path}: no such directory; fix --config.data.source")
            names = [os.path.relpath(os.path.join(root, f), path).replace(os.sep, "/")
                     for root, _, files in os.walk(path, followlinks=True) for f in files]
        else:
            if not os.path.isfile(path):
                raise DataError(f"data source zip:{path}: no such file; fix --config.data.source")
            try:
                with zipfile.ZipFile(path) as z:
                    names = z.namelist()
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"data source zip:{path}: not a readable zip file ({e}); "
                                "re-create it with dataset_tool.py") from None
        self.names = sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS))
        if not self.names:
            raise DataError(f"{kind} {path} contains no images ({' '.join(IMAGE_EXTENSIONS)}); "
                            "point --config.data.source at the image dataset")
        # One ZipFile for all tf.data threads: its member reads are thread-safe (a lock around
        # seek + read of the shared file), and a per-thread handle cost a central-directory
        # parse whenever tf.data started a thread (17 ms per image on a 5000-image zip).
        self._zip = None
        self._zip_lock = threading.Lock()

    def __len__(self):
        return len(self.names)

    def describe(self) -> str:
        return f"{self.kind} {self.path}: {len(self)} images"

    def load(self, i: int, draft: int | None = None):
        name = self.names[i]
        if self.kind == "folder":
            what = os.path.join(self.path, name)
            try:
                with open(what, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise DataError(f"cannot read image {what}: {e}") from None
        else:
            what = f"{name} in zip {self.path}"
            with self._zip_lock:
                if self._zip is None:
                    self._zip = zipfile.ZipFile(self.path)
            try:
                data = self._zip.read(name)
            except (zipfile.BadZipFile, OSError, KeyError) as e:
                raise DataError(f"cannot read image {what}: {e}") from None
        return _decode(data, what, draft)


class _Tfds:
    """tfds: source; random access through the data source when the file format allows it."""

    def __init__(self, spec: str):
        _tf()   # hides the GPUs before TFDS initialises TensorFlow
        import tensorflow_datasets as tfds
        self.tfds = tfds
        name, _, split = spec.partition(":")
        self.name, self.split = name, split or "train"
        self.data_dir = os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
        hint = (f"prepare it there first (e.g. `tfds build {name.split('/')[0]} --data_dir "
                f"{self.data_dir}` or set TFDS_DATA_DIR); training never downloads (download=False)")
        try:
            self.builder = tfds.builder(name, data_dir=self.data_dir)
        except Exception as e:
            raise DataError(f"data source tfds:{spec}: {str(e).splitlines()[0]} in TFDS data dir "
                            f"{self.data_dir}; {hint}") from None
        if not self.builder.is_prepared():
            raise DataError(f"data source tfds:{spec}: not prepared in TFDS data dir "
                            f"{self.data_dir}; {hint}")
        if "image" not in self.builder.info.features:
            raise DataError(f"data source tfds:{spec}: has no 'image' feature "
                            f"(features: {list(self.builder.info.features)})")
        fmt = str(self.builder.info.file_format or "").lower()
        self.random_access = "array_record" in fmt or "parquet" in fmt
        try:
            if self.random_access:
                self.source = self.builder.as_data_source(self.split)
                self.count = len(self.source)
            else:
                self.count = self.builder.info.splits[self.split].num_examples
        except (ValueError, KeyError) as e:
            raise DataError(f"data source tfds:{spec}: bad split {self.split!r} ({e}); "
                            f"available: {list(self.builder.info.splits)}") from None
        if not self.count:
            raise DataError(f"data source tfds:{spec}: split {self.split!r} has no examples")

    def __len__(self):
        return self.count

    def describe(self) -> str:
        return f"tfds {self.name}:{self.split}: {self.count} images"

    def load(self, i: int):
        try:
            return self.source[i]["image"]
        except Exception as e:  # a corrupt record: name it
            raise DataError(f"cannot read example {i} of tfds:{self.name}:{self.split}: "
                            f"{type(e).__name__}: {e}") from None

    def records(self, seed: int):
        """Sequential fallback: encoded images, file order, buffer-shuffled anew each epoch."""
        ds = self.builder.as_dataset(self.split, shuffle_files=False,
                                     decoders={"image": self.tfds.decode.SkipDecoding()})
        ds = ds.map(lambda ex: ex["image"])
        return ds.shuffle(_SEQ_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()


def open_source(source: str):
    kind, sep, rest = source.partition(":")
    if not sep or kind not in ("folder", "zip", "tfds") or not rest:
        raise DataError(f"unknown data source {source!r}: use {SOURCE_FORMS}")
    return _Tfds(rest) if kind == "tfds" else _Files(kind, os.path.expanduser(rest))


def describe(source: str) -> str:
    """e.g. 'folder /data/ffhq256: 70000 images'."""
    return open_source(source).describe()


SCAN_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "stylekd_jax", "image_scans")


def check_images(source: str, resolution: int, *, cache_dir: str | None = SCAN_CACHE_DIR,
                 progress: Callable[[int, int], None] | None = None, threads: int = 16) -> int:
    """Open every image of a folder: or zip: source now, in parallel, so that a corrupt file
    stops the run at its start instead of hours later when the pipeline reaches it.

    Images already found good with the same file size and modification time (per file of a
    folder, the whole file for a zip) are not opened again: the results are cached in
    `cache_dir` (None: no cache). JPEGs decode at reduced scale (`draft`), which reads the whole
    file as cheaply as possible. tfds: sources are not scanned (TFDS wrote and checked them).
    Returns the number of images opened now; raises DataError naming up to 3 bad files.
    """
    src = open_source(source)
    if not isinstance(src, _Files):
        return 0
    cache_path = cache = None
    if cache_dir:
        key = hashlib.sha1(f"{src.kind}:{os.path.abspath(src.path)}".encode()).hexdigest()
        cache_path = os.path.join(cache_dir, f"{key}.json")
        try:
            with open(cache_path) as f:
                cache = json.load(f)
        except (OSError, ValueError):
            cache = None
    if src.kind == "zip":
        stamp = _stamp(src.path)
        if cache and cache.get("zip") == stamp:
            return 0
        todo = list(range(len(src)))
    else:
        stamps = {name: _stamp(os.path.join(src.path, name)) for name in src.names}
        known = (cache or {}).get("files", {})
        todo = [i for i, name in enumerate(src.names) if known.get(name) != stamps[name]]
    bad: list[str] = []

    def check(i: int) -> None:
        try:
            src.load(i, draft=resolution)
        except DataError as e:
            bad.append(str(e))

    done = 0
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(check, todo):
            done += 1
            if progress and (done % 500 == 0 or done == len(todo)):
                progress(done, len(todo))
    if bad:
        more = f" ({len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError(f"{len(bad)} of {len(src)} images in {src.kind}:{src.path} cannot be "
                        f"used: {'; '.join(sorted(bad)[:3])}{more}")
    if cache_path:
        entry = {"zip": stamp} if src.kind == "zip" else {"files": stamps}
        try:
            os.makedirs(cache_dir, exist_ok=True)
            with open(cache_path + ".tmp", "w") as f:
                json.dump(entry, f)
            os.replace(cache_path + ".tmp", cache_path)
        except OSError:
            pass   # no cache: the next start scans again
    return len(todo)


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def make_dataset(source: str, resolution: int, batch_size: int, *, seed: int = 0, start_step: int = 0,
                 process_index: int = 0, process_count: int = 1, flip: bool = True) -> "Batches":
    """Endless iterator of this process's batches: uint8 [batch_size, res, res, 3].

    batch_size is the per-process batch. Batch k of the run is the same whatever start_step the
    iterator was created with (it yields batches start_step, start_step + 1, ...).
    """
    if batch_size < 1 or resolution < 1 or not 0 <= process_index < process_count or start_step < 0:
        raise ValueError(f"bad arguments: batch_size={batch_size}, resolution={resolution}, "
                         f"process {process_index} of {process_count}, start_step={start_step}")
    src = open_source(source)
    tf = _tf()
    b, g = batch_size, batch_size * process_count
    seed &= _MASK
    warn_small = _SmallImageWarning(resolution)

    def process(read, pos, what):  # runs in a tf.data thread; a bad file travels as a message
        try:
            img = read()
            warn_small(img, what)
            out = to_square(img, resolution)
        except DataError as e:
            return np.zeros((resolution, resolution, 3), np.uint8), str(e)
        return (out[:, ::-1].copy() if flip and flip_flags(seed, [pos])[0] else out), ""

    if isinstance(src, _Tfds) and not src.random_access:
        def load(data, pos):
            what = f"tfds:{src.name}:{src.split} record at stream position {int(pos)}"
            return process(lambda: _decode(data, what), int(pos), what)

        ds = src.records(seed).enumerate().skip(start_step * g).batch(g, drop_remainder=True)
        ds = ds.map(lambda pos, data: (data[process_index * b:(process_index + 1) * b],
                                       pos[process_index * b:(process_index + 1) * b])).unbatch()
    else:
        perms: dict[int, np.ndarray] = {}

        def plan(k):  # batch number -> (example indices, global positions) of this process
            pos = int(k) * g + process_index * b + np.arange(b, dtype=np.int64)
            idx = np.empty(b, np.int64)
            for e in np.unique(pos // len(src)):
                if e not in perms:
                    perms.clear()
                    perms[e] = epoch_permutation(seed, int(e), len(src))
                sel = pos // len(src) == e
                idx[sel] = perms[e][pos[sel] % len(src)]
            return idx, pos

        def load(i, pos):
            what = (os.path.join(src.path, src.names[int(i)]) if isinstance(src, _Files)
                    else f"example {int(i)} of tfds:{src.name}:{src.split}")
            return process(lambda: src.load(int(i)), int(pos), what)

        ds = tf.data.Dataset.counter(start_step)
        ds = ds.map(lambda k: tf.numpy_function(plan, [k], (tf.int64, tf.int64))).unbatch()

    def load_tf(x, pos):
        img, err = tf.numpy_function(load, [x, pos], (tf.uint8, tf.string))
        return tf.ensure_shape(img, [resolution, resolution, 3]), err

    ds = ds.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(b, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    return Batches(ds.with_options(options).prefetch(tf.data.AUTOTUNE))


class _SmallImageWarning:
    """Says once (on stderr) that images are smaller than the resolution, so upsampled."""

    def __init__(self, resolution: int):
        self.resolution = resolution
        self._lock = threading.Lock()
        self._said = False

    def __call__(self, img, what: str) -> None:
        h, w = (img.shape[0], img.shape[1]) if isinstance(img, np.ndarray) else (img.size[1], img.size[0])
        side = min(h, w)
        if side >= self.resolution or self._said:
            return
        with self._lock:
            if self._said:
                return
            self._said = True
        r = self.resolution
        print(f"warning: the training images are smaller than the networks' {r}x{r}: {what} is "
              f"{w}x{h}, so its {side}x{side} centre is upsampled {r / side:.2f}x to {r}x{r} "
              f"(bilinear, blurred); use images of at least {r} px (said once, for the first such image)",
              file=sys.stderr, flush=True)


class Batches:
    """The iterator make_dataset returns. close() (or leaving the process) stops the tf.data threads.

    A tf.data iterator with Python map functions in flight must be deleted before the
    interpreter finalises: at that point the worker threads can no longer take the GIL and
    the iterator's destructor waits for them forever (seen: ~1 exit in 2 hangs). An atexit
    hook closes every live one.
    """

    def __init__(self, ds):   # a tf.data.Dataset
        self._it = iter(ds)
        _LIVE.add(self)

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        if self._it is None:
            raise StopIteration
        try:
            batch, errors = next(self._it)
        except _tf().errors.OpError as e:  # e.g. an unreadable TFRecord shard: one line
            raise DataError(f"reading training data failed: {e.message.splitlines()[0]}") from None
        for err in errors.numpy():
            if err:
                raise DataError(err.decode())
        return batch.numpy()

    def close(self) -> None:
        self._it = None


_LIVE: "weakref.WeakSet[Batches]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for batches in list(_LIVE):
        batches.close()
