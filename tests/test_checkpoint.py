"""Checkpoint directories survive an interrupted save: the old one or the new one, never neither."""

import os
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from stylekd_jax import checkpoint


def nets(version: float, with_d: bool = False) -> dict:
    out = {"g_ema": {"params": {"w": np.full(5, version, np.float32)}}}
    if with_d:
        out["d"] = {"params": {"v": np.full(3, version, np.float32)}}
    return out


def stored_version(directory) -> float:
    """The version a loadable checkpoint holds; its JSON and its weights must agree."""
    _, _, info = checkpoint.read_architecture(str(directory))
    _, _, loaded = checkpoint.load(str(directory))
    assert sorted(loaded) == info["networks"]
    values = {float(v) for tree in loaded.values() for leaf in tree["params"].values() for v in leaf}
    assert values == {info["version"]}
    return info["version"]


class Crash(Exception):
    pass


def test_a_crash_inside_the_orbax_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(str(tmp_path), nets(1.0), None, version=1.0)
    real_save = ocp.StandardCheckpointer.save

    def partial_save(self, path, tree, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "half_written"), "w").write("...")
        raise Crash("killed while writing")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", partial_save)
    with pytest.raises(Crash):
        checkpoint.save(str(tmp_path), nets(2.0, with_d=True), None, overwrite=True, version=2.0)
    assert stored_version(tmp_path) == 1.0 and checkpoint.is_complete(str(tmp_path), version=1.0)
    monkeypatch.setattr(ocp.StandardCheckpointer, "save", real_save)
    checkpoint.save(str(tmp_path), nets(3.0), None, overwrite=True, version=3.0)
    assert stored_version(tmp_path) == 3.0
    assert sorted(os.listdir(tmp_path)) == ["architecture.json", "networks"]


def test_a_crash_at_any_point_of_the_commit_leaves_a_whole_checkpoint(tmp_path, monkeypatch):
    """Interrupt the overwrite at its k-th file-system operation, for every k."""
    real = {"rename": os.rename, "replace": os.replace, "rmtree": shutil.rmtree}
    calls = {"n": 0, "crash_at": None}

    def failing(name):
        def op(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == calls["crash_at"]:
                raise Crash(f"{name} #{calls['n']}")
            return real[name](*args, **kwargs)
        return op

    for name in real:
        monkeypatch.setattr(checkpoint.os if name != "rmtree" else checkpoint.shutil, name, failing(name))
    seen = set()
    for k in range(1, 40):
        work = tmp_path / str(k)
        calls.update(n=0, crash_at=None)
        checkpoint.save(str(work), nets(1.0), None, version=1.0)
        calls.update(n=0, crash_at=k)
        try:
            checkpoint.save(str(work), nets(2.0, with_d=True), None, overwrite=True, version=2.0)
            finished = True
        except Crash:
            finished = False
        calls["crash_at"] = None
        version = stored_version(work)
        assert checkpoint.is_complete(str(work), version=version)
        seen.add(version)
        # The next save finishes or discards what the interrupted one left, and succeeds.
        checkpoint.save(str(work), nets(3.0), None, overwrite=True, version=3.0)
        assert stored_version(work) == 3.0
        assert sorted(os.listdir(work)) == ["architecture.json", "networks"]
        if finished:
            break
    assert finished and seen == {1.0, 2.0}, (k, seen)


def test_is_complete(tmp_path):
    path = str(tmp_path / "c")
    assert not checkpoint.is_complete(path)
    checkpoint.save(path, nets(1.0), None, step=4)
    assert checkpoint.is_complete(path) and checkpoint.is_complete(path, step=4)
    assert not checkpoint.is_complete(path, step=5)
    os.remove(os.path.join(path, "networks", "_METADATA"))             # not a whole orbax checkpoint
    assert not checkpoint.is_complete(path, step=4)
    shutil.rmtree(os.path.join(path, "networks"))
    assert not checkpoint.is_complete(path)
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="no complete weights"):
        checkpoint.load(path)


def test_a_run_is_finished_only_with_a_complete_export_of_its_last_step(tmp_path):
    import ml_collections

    from stylekd_jax import pipeline
    config = ml_collections.ConfigDict({"total_steps": 4})
    with ocp.CheckpointManager(str(tmp_path / "checkpoints")) as manager:
        manager.save(4, args=ocp.args.StandardSave({"w": np.zeros(2)}))
    assert not pipeline.is_finished(config, str(tmp_path))              # no export yet
    checkpoint.save(str(tmp_path / "student"), nets(1.0), None, step=2)
    assert not pipeline.is_finished(config, str(tmp_path))              # an older export
    checkpoint.save(str(tmp_path / "student"), nets(1.0), None, overwrite=True, step=4)
    assert pipeline.is_finished(config, str(tmp_path))
    shutil.rmtree(tmp_path / "student" / "networks")                    # the folder alone is not enough
    assert not pipeline.is_finished(config, str(tmp_path))
