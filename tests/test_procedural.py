"""The procedural demo dataset: deterministic, non-trivial scenes and a reusable, atomic zip."""

import os
import zipfile

import numpy as np
import pytest

from stylekd_jax import procedural

RES = 32


def test_render_is_deterministic_and_varies_with_index_and_seed():
    a = procedural.render_scene(5, RES, seed=3)
    assert a.dtype == np.uint8 and a.shape == (RES, RES, 3)
    assert a.tobytes() == procedural.render_scene(5, RES, seed=3).tobytes()
    assert procedural.render_scene(5, 64, seed=3).shape == (64, 64, 3)
    others = [procedural.render_scene(6, RES, seed=3), procedural.render_scene(5, RES, seed=4)]
    for other in others:
        assert np.abs(other.astype(int) - a).max() > 50


def test_scenes_are_not_trivial():
    scenes = [procedural.sample_scene(i) for i in range(200)]
    assert {len(s.shapes) for s in scenes} == {1, 2}
    assert {sh.kind for s in scenes for sh in s.shapes} == set(procedural.SHAPE_KINDS)
    for i, scene in enumerate(scenes[:40]):
        image = procedural.render_scene(i, RES)
        assert len(np.unique(image.reshape(-1, 3), axis=0)) >= 10  # gradient + anti-aliasing
        bg = procedural.background(scene, RES)
        assert np.abs(bg[0, 0] - bg[-1, -1]).max() + np.abs(bg[0, -1] - bg[-1, 0]).max() > 30
        top = scene.shapes[-1]  # drawn last, so fully covered pixels are exactly its colour
        inside = procedural.coverage(top, RES) == 1.0
        assert inside.sum() >= 12
        np.testing.assert_array_equal(image[inside], np.broadcast_to(np.array(top.color, np.uint8),
                                                                     image[inside].shape))
        assert np.abs(image[inside] - bg[inside]).max(axis=-1).mean() > 60  # stands out
        # anti-aliased edges: some pixels partly covered, with an in-between colour
        partial = (procedural.coverage(top, RES) > 0.2) & (procedural.coverage(top, RES) < 0.8)
        assert partial.sum() >= 2


def _read_back(path, n):
    from stylekd_jax import input_pipeline
    src = input_pipeline.open_source("zip:" + path)
    assert len(src) == n
    it = input_pipeline.make_dataset("zip:" + path, RES, n, seed=0, flip=False)
    try:
        batch = next(it)
    finally:
        it.close()
    assert batch.dtype == np.uint8 and batch.shape == (n, RES, RES, 3)
    # batch position g holds example epoch_permutation(seed, 0, n)[g]; names sort in index order
    order = input_pipeline.epoch_permutation(0, 0, n)
    return src, batch[np.argsort(order)]


def test_zip_round_trips_through_input_pipeline(tmp_path):
    pytest.importorskip("tensorflow")
    n = 6
    path = str(tmp_path / "sub" / "dir" / "scenes.zip")
    calls = []
    assert procedural.write_dataset(path, n, RES, seed=1, progress=lambda d, t: calls.append((d, t))) == path
    assert calls == [(n, n)]
    assert not os.path.exists(path + ".tmp")
    with zipfile.ZipFile(path) as z:
        names = sorted(z.namelist())
        assert z.read("dataset.json").startswith(b'{"labels": null')
    assert names == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png",
                     "00000/img00000003.png", "00000/img00000004.png", "00000/img00000005.png",
                     "dataset.json"]
    src, images = _read_back(path, n)
    assert src.names == names[:-1]
    expected = np.stack([procedural.render_scene(i, RES, seed=1) for i in range(n)])
    np.testing.assert_array_equal(images, expected)


def test_progress_cadence_and_argument_checks(tmp_path):
    calls = []
    path = str(tmp_path / "small.zip")
    procedural.write_dataset(path, 2001, 8, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1000, 2001), (2000, 2001), (2001, 2001)]
    with pytest.raises(ValueError):
        procedural.write_dataset(str(tmp_path / "empty.zip"), 0, RES)
    with pytest.raises(ValueError):
        procedural.render_scene(-1, RES)
    assert not os.path.exists(tmp_path / "empty.zip")


def test_reuse_rewrite_and_stale_tmp(tmp_path):
    path = str(tmp_path / "scenes.zip")
    # a stale, truncated .tmp from an interrupted earlier write
    with open(path + ".tmp", "wb") as f:
        f.write(b"PK\x03\x04 truncated garbage")
    procedural.write_dataset(path, 5, RES)
    assert not os.path.exists(path + ".tmp")
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 5
    first = os.stat(path)

    calls = []
    procedural.write_dataset(path, 5, RES, progress=lambda d, t: calls.append(d))  # reused
    again = os.stat(path)
    assert (again.st_ino, again.st_mtime_ns, again.st_size) == (first.st_ino, first.st_mtime_ns,
                                                                first.st_size)
    assert calls == []

    def count(p):
        with zipfile.ZipFile(p) as z:
            return len([n for n in z.namelist() if n.endswith(".png")])

    procedural.write_dataset(path, 7, RES)  # different count: rewritten
    assert count(path) == 7 and os.stat(path).st_ino != first.st_ino
    ino = os.stat(path).st_ino
    procedural.write_dataset(path, 7, 16)  # different resolution: rewritten
    assert os.stat(path).st_ino != ino
    with zipfile.ZipFile(path) as z:
        from PIL import Image
        with z.open("00000/img00000006.png") as f:
            assert Image.open(f).size == (16, 16)

    with open(path, "wb") as f:  # a corrupt zip at path: replaced, not an error
        f.write(b"not a zip")
    procedural.write_dataset(path, 3, RES)
    assert count(path) == 3


def test_interrupted_write_leaves_previous_zip(tmp_path):
    path = str(tmp_path / "scenes.zip")
    procedural.write_dataset(path, 3, RES)
    before = open(path, "rb").read()

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        procedural.write_dataset(path, 4, RES, progress=interrupt)
    assert open(path, "rb").read() == before
    assert not os.path.exists(path + ".tmp")
