"""The training-image pipeline: processing, determinism, resume, process sharding, sources, errors."""

import os
import zipfile

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from stylekd_jax import input_pipeline as ip  # noqa: E402
from stylekd_jax.input_pipeline import DataError, make_dataset  # noqa: E402

RES = 8
N = 11


def _take(it, n):
    return [next(it) for _ in range(n)]


def _write_images(root):
    """11 images, varying sizes, aspect ratios, modes and formats; one in a subfolder."""
    rng = np.random.default_rng(0)
    specs = [("a.png", "RGB", 20, 12), ("b.png", "L", 9, 17), ("c.png", "RGBA", 16, 16),
             ("d.jpg", "RGB", 31, 23), ("e.webp", "RGB", 12, 40), ("f.bmp", "RGB", 6, 5),
             ("g.png", "LA", 14, 10), ("h.png", "P", 10, 10), ("sub/i.png", "RGB", 50, 18),
             ("sub/j.JPEG", "L", 25, 25), ("k.png", "RGB", 8, 8)]
    for name, mode, w, h in specs:
        arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        img = Image.fromarray(arr, "RGBA").convert(mode)
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        img.save(os.path.join(root, name), quality=95) if name.endswith(".jpg") else \
            img.save(os.path.join(root, name))
    open(os.path.join(root, "notes.txt"), "w").write("not an image")
    return sorted(s[0] for s in specs)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    names = _write_images(str(root))
    zpath = root.parent / "ds.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for name in names:
            z.write(root / name, name)
        z.writestr("dataset.json", '{"labels": null}')
    refs = np.stack([ip.to_square(Image.open(root / n), RES) for n in names])
    return {"folder": f"folder:{root}", "zip": f"zip:{zpath}", "refs": refs.astype(np.int16),
            "root": str(root), "refs_names": names}


def _identify(batch, refs):
    """(reference index, flipped?) for every image of a uint8 batch."""
    out = []
    for img in batch.astype(np.int16):
        plain = np.abs(refs - img).max(axis=(1, 2, 3))
        mirrored = np.abs(refs[:, :, ::-1] - img).max(axis=(1, 2, 3))
        i, j = int(plain.argmin()), int(mirrored.argmin())
        assert min(plain[i], mirrored[j]) == 0
        out.append((i, False) if plain[i] == 0 else (j, True))
    return out


def test_shapes_dtype_range(data):
    batches = _take(make_dataset(data["folder"], RES, 4), 3)
    for b in batches:
        assert b.shape == (4, RES, RES, 3) and b.dtype == np.uint8
    assert ip.describe(data["folder"]) == f"folder {data['root']}: {N} images"
    assert "11 images" in ip.describe(data["zip"])


@pytest.mark.parametrize("w,h,res", [(60, 40, 8), (30, 50, 6), (5, 3, 12)])
def test_centre_crop_left_red_right_blue(tmp_path, w, h, res):
    """The centre square of a non-square image: the colour boundary lands in the middle."""
    arr = np.zeros((h, w, 3), np.uint8)
    if w > h:   # left half red, right half blue
        arr[:, : w // 2, 0] = 255
        arr[:, w // 2:, 2] = 255
    else:       # top half red, bottom half blue
        arr[: h // 2, :, 0] = 255
        arr[h // 2:, :, 2] = 255
    if w == 5:  # 5x3: crop columns 1..3, upscale 3 -> 12 bilinear: compare with PIL directly
        arr = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    got = next(make_dataset(f"folder:{tmp_path}", res, 1, flip=False))[0]
    if w == 5:
        big = np.asarray(Image.fromarray(arr).resize((20, 12), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(got, big[:, 4:16])
        return
    red, blue = np.array([255, 0, 0]), np.array([0, 0, 255])
    first, second = (got[:, : res // 2], got[:, res // 2:]) if w > h else (got[: res // 2], got[res // 2:])
    assert (first == red).all() and (second == blue).all()


@pytest.mark.parametrize("h,w,res", [(48, 96, 16), (96, 48, 16), (40, 60, 12), (4, 8, 8), (10, 14, 20)])
def test_to_square_equals_resize_short_side_then_centre_crop(h, w, res):
    a = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    s = min(h, w)
    up = s < res
    nw, nh = w * res // s, h * res // s
    big = np.asarray(Image.fromarray(a).resize(
        (nw, nh), Image.Resampling.BILINEAR if up else Image.Resampling.BOX)).astype(int)
    t, l = (nh - res) // 2, (nw - res) // 2
    diff = np.abs(ip.to_square(a, res).astype(int) - big[t:t + res, l:l + res])
    assert diff.max() <= 1  # PIL's two-pass rounding may differ by one level
    # Grey and RGBA arrays (as TFDS gives them) become RGB.
    grey = ip.to_square(a[..., :1], res)
    assert grey.shape == (res, res, 3) and (grey[..., 0] == grey[..., 2]).all()
    assert ip.to_square(np.dstack([a, a[..., :1]]), res).shape == (res, res, 3)


def test_determinism_and_seeds(data):
    a = _take(make_dataset(data["folder"], RES, 4, seed=3), 6)
    b = _take(make_dataset(data["folder"], RES, 4, seed=3), 6)
    c = _take(make_dataset(data["folder"], RES, 4, seed=4), 6)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert not np.array_equal(np.stack(a), np.stack(c))


def test_resume_across_epoch_boundaries(data):
    fresh = _take(make_dataset(data["folder"], RES, 4, seed=5), 9)  # 36 examples: 3+ epochs of 11
    for k in (1, 2, 5, 8):
        resumed = _take(make_dataset(data["folder"], RES, 4, seed=5, start_step=k), 9 - k)
        np.testing.assert_array_equal(np.stack(resumed), np.stack(fresh[k:]))


def test_every_image_once_per_epoch(data):
    batches = _take(make_dataset(data["folder"], RES, 1, seed=7), 3 * N)
    ids = [i for b in batches for i, _ in _identify(b, data["refs"])]
    epochs = [ids[e * N:(e + 1) * N] for e in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(N))
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch


def test_process_sharding_contiguous_chunks(data):
    """Process p of P gets [p*b, (p+1)*b) of every global batch: concatenated, they are it."""
    whole = _take(make_dataset(data["folder"], RES, 4, seed=2), 5)
    parts = [_take(make_dataset(data["folder"], RES, 2, seed=2, process_index=p, process_count=2), 5)
             for p in range(2)]
    for k in range(5):
        np.testing.assert_array_equal(np.concatenate([parts[0][k], parts[1][k]]), whole[k])
    for k in (0, 1):  # batches inside the first epoch: the two processes see different images
        ids = [{i for i, _ in _identify(parts[p][k], data["refs"])} for p in range(2)]
        assert not ids[0] & ids[1]
    # And P=3 with an odd local batch, resumed mid-run.
    whole = _take(make_dataset(data["folder"], RES, 9, seed=2, start_step=2), 2)
    parts = [_take(make_dataset(data["folder"], RES, 3, seed=2, start_step=2, process_index=p,
                                process_count=3), 2) for p in range(3)]
    for k in range(2):
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])


def test_folder_and_zip_give_the_same_stream(data):
    a = _take(make_dataset(data["folder"], RES, 4, seed=1), 4)
    b = _take(make_dataset(data["zip"], RES, 4, seed=1), 4)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


def test_flips(data):
    steps, b, seed = 16, 4, 9
    got = [f for x in _take(make_dataset(data["folder"], RES, b, seed=seed), steps)
           for _, f in _identify(x, data["refs"])]
    # The flip of global position g is a stateless hash of (seed, g).
    np.testing.assert_array_equal(got, ip.flip_flags(seed, np.arange(steps * b)))
    assert 0.3 < np.mean(got) < 0.7
    off = [f for x in _take(make_dataset(data["folder"], RES, b, seed=seed, flip=False), 4)
           for _, f in _identify(x, data["refs"])]
    assert not any(off)


class StylekdTestImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A tiny image dataset built offline (no downloads). Unregistered, so the pipeline reads it
    the way it reads any prepared dataset: from the files in TFDS_DATA_DIR."""
    # tfds 4.9.10 imports the (uninstalled, Python < 3.9 only) `importlib_resources` to locate
    # the code of a builder defined inside a package; a top-level module name skips that.
    __module__ = "stylekd_test_images_builder"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=(None, None, 3)), "label": np.int64}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(7), "test": self._generate_examples(3)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            yield i, {"image": rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8), "label": i}


@pytest.fixture(scope="module")
def tfds_dirs(tmp_path_factory):
    dirs = {}
    for fmt in ("array_record", "tfrecord"):
        d = str(tmp_path_factory.mktemp(fmt))
        StylekdTestImages(data_dir=d).download_and_prepare(
            file_format=fmt, download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        dirs[fmt] = d
    rng = np.random.default_rng(7)
    refs = [ip.to_square(rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8), RES) for i in range(7)]
    return dirs, np.stack(refs).astype(np.int16)


@pytest.mark.parametrize("fmt", ["array_record", "tfrecord"])
def test_tfds_source(tfds_dirs, monkeypatch, fmt):
    dirs, refs = tfds_dirs
    monkeypatch.setenv("TFDS_DATA_DIR", dirs[fmt])
    src = "tfds:stylekd_test_images:train"
    assert ip.describe(src) == "tfds stylekd_test_images:train: 7 images"
    assert ip.open_source(src).random_access == (fmt == "array_record")
    fresh = _take(make_dataset(src, RES, 3, seed=1), 7)  # 21 examples = 3 epochs of 7
    assert fresh[0].shape == (3, RES, RES, 3) and fresh[0].dtype == np.uint8
    ids = [i for b in fresh for i, _ in _identify(b, refs)]
    for e in range(3):
        assert sorted(ids[e * 7:(e + 1) * 7]) == list(range(7))
    resumed = _take(make_dataset(src, RES, 3, seed=1, start_step=3), 4)
    np.testing.assert_array_equal(np.stack(resumed), np.stack(fresh[3:]))
    parts = [_take(make_dataset(src, RES, 1, seed=1, start_step=3, process_index=p, process_count=3), 2)
             for p in range(3)]
    for k in range(2):
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), fresh[3 + k])
    assert "test: 3 images" in ip.describe("tfds:stylekd_test_images:test")


def _error(source, **kw):
    with pytest.raises(DataError) as e:
        next(make_dataset(source, RES, 2, **kw))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_errors(data, tmp_path, tfds_dirs, monkeypatch):
    for bad in ("/data/ffhq", "ftp:/x", "folder:", "ffhq256"):
        msg = _error(bad)
        assert "folder:" in msg and "zip:" in msg and "tfds:" in msg
    assert "no such directory" in _error(f"folder:{tmp_path}/missing")
    assert "no such file" in _error(f"zip:{tmp_path}/missing.zip")
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    assert "not a readable zip" in _error(f"zip:{tmp_path}/fake.zip")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    assert "contains no images" in _error(f"folder:{tmp_path}/empty")
    with zipfile.ZipFile(tmp_path / "noimg.zip", "w") as z:
        z.writestr("dataset.json", "{}")
    assert "contains no images" in _error(f"zip:{tmp_path}/noimg.zip")

    # A corrupt JPEG (a real one, truncated) is named, from a folder and from a zip.
    bad = tmp_path / "corrupt"
    bad.mkdir()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(bad / "good.png")
    jpg = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(jpg)
    (bad / "broken.jpg").write_bytes(jpg.read_bytes()[:200])
    msg = _error(f"folder:{bad}", start_step=0)
    assert str(bad / "broken.jpg") in msg and "re-encode" in msg
    with zipfile.ZipFile(tmp_path / "corrupt.zip", "w") as z:
        z.write(bad / "good.png", "00000/img00000000.png")
        z.write(bad / "broken.jpg", "00000/img00000001.jpg")
    msg = _error(f"zip:{tmp_path}/corrupt.zip")
    assert "00000/img00000001.jpg" in msg and "corrupt.zip" in msg

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds_empty"))
    msg = _error("tfds:no_such_dataset_xyz")
    assert "no_such_dataset_xyz" in msg and "download=False" in msg and "tfds_empty" in msg
    msg = _error("tfds:mnist:train")  # a known dataset that is not prepared there
    assert "not prepared" in msg and "download=False" in msg
    monkeypatch.setenv("TFDS_DATA_DIR", tfds_dirs[0]["array_record"])
    msg = _error("tfds:stylekd_test_images:validation")
    assert "validation" in msg and "train" in msg


def test_process_exits_with_decodes_in_flight(data):
    """A live iterator at interpreter exit must not hang the process (closed by an atexit hook)."""
    import subprocess
    import sys
    script = (
        "import sys, time\n"
        "from stylekd_jax import input_pipeline as ip\n"
        "slow = ip.to_square\n"
        "ip.to_square = lambda *a: (time.sleep(0.3), slow(*a))[1]  # decodes always in flight\n"
        f"it = ip.make_dataset({data['folder']!r}, 8, 2)\n"
        "next(it)\n"
        "print('ok', flush=True)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        r = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                           timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung at exit with a live make_dataset iterator")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_stream_follows_the_documented_rule(data):
    """Global position g = k*G + p*b + j: example perm(seed, g // N)[g % N], mirrored iff flip(seed, g)."""
    seed, b, P, p = 11, 3, 2, 1
    names = data["refs_names"]  # sorted relative paths, the source's order
    got = np.stack(_take(make_dataset(data["folder"], RES, b, seed=seed, start_step=4,
                                      process_index=p, process_count=P), 3))
    for k in range(3):
        for j in range(b):
            g = (4 + k) * b * P + p * b + j
            idx = ip.epoch_permutation(seed, g // N, N)[g % N]
            want = ip.to_square(Image.open(os.path.join(data["root"], names[idx])), RES)
            if ip.flip_flags(seed, [g])[0]:
                want = want[:, ::-1]
            np.testing.assert_array_equal(got[k, j], want)


def test_images_smaller_than_the_resolution_are_upsampled_with_one_warning(tmp_path, capsys):
    for i in range(4):
        Image.fromarray(np.full((6, 10, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    it = make_dataset(f"folder:{tmp_path}", 16, 2, seed=0)
    _take(it, 4)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1, err
    assert "is 10x6" in err and "upsampled 2.67x to 16x16" in err and "at least 16 px" in err
    it.close()
    it = make_dataset(f"folder:{tmp_path}", 6, 2, seed=0)     # big enough: silent
    _take(it, 2)
    assert "warning" not in capsys.readouterr().err
    it.close()
