"""Network checkpoint directories: `architecture.json` (human-readable) + orbax arrays.

Layout of a directory written by the converter or by training:

    architecture.json   generator / discriminator configs and where the weights came from
    networks/           orbax PyTree: {'g_ema': {'params', 'buffers'}, 'g': ..., 'd': {'params'}}

`g_ema` is the generator to sample from (NVlabs G_ema, rosinality g_ema); `g` and `d` are
the training-time networks, kept when the source had them.

Saving never leaves a broken checkpoint, whenever it is interrupted: the new weights are
written beside the old ones (`networks.new/`), then `architecture.json` is replaced
atomically with a version naming them (`"weights": "networks.new"`, the commit), and only
then is the old `networks/` removed and the new one renamed into its place. A reader follows
the JSON, so it sees either the whole old checkpoint or the whole new one; the next save
finishes an interrupted clean-up first.
"""

import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from stylekd_jax import architecture, sharding
from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig

ARCHITECTURE_FILE = "architecture.json"
NETWORKS_DIR = "networks"
STAGED_DIR = "networks.new"     # the weights of a save in progress (see the module docstring)
WEIGHTS_KEY = "weights"         # JSON field naming the weights folder while it is not NETWORKS_DIR


class CheckpointNotFoundError(FileNotFoundError):
    pass


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed (a full disk, a lost mount): one line naming the path, the
    free space there and what is still on disk."""


def free_bytes(path: str) -> int | None:
    """Free space on the disk holding `path` (or its nearest existing parent); None if unknown."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def folder_bytes(path: str) -> int:
    """Total size of the files under `path` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _write_json(directory: str, text: str) -> None:
    """Replace architecture.json atomically (a reader never sees a half-written file)."""
    path = os.path.join(directory, ARCHITECTURE_FILE)
    tmp = f"{path}.tmp{jax.process_index()}"
    with open(tmp, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _settle(directory: str) -> None:
    """Finish a save interrupted after its commit, and drop what an interrupted one left behind
    before it, so that `directory` holds at most one checkpoint, in `networks/`."""
    final, staged = os.path.join(directory, NETWORKS_DIR), os.path.join(directory, STAGED_DIR)
    try:
        g_cfg, d_cfg, info = _read_json(directory)
    except (CheckpointNotFoundError, ValueError, KeyError, TypeError):
        info = None
    if info is not None and info.get(WEIGHTS_KEY, NETWORKS_DIR) != NETWORKS_DIR:
        if os.path.isdir(staged):
            shutil.rmtree(final, ignore_errors=True)
            os.rename(staged, final)
        info.pop(WEIGHTS_KEY)
        _write_json(directory, architecture.dumps(g_cfg, d_cfg, **info))
    for name in os.listdir(directory):   # orbax's temporary folders of an interrupted write
        if name.startswith(NETWORKS_DIR) and ".orbax-checkpoint-tmp" in name:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def save(directory: str, networks: dict[str, Any], generator: GeneratorConfig | None,
         discriminator: DiscriminatorConfig | None = None, overwrite: bool = False,
         **info: Any) -> None:
    """Write `networks` (name -> variables) and the architecture; `info` goes into the JSON.

    With `overwrite`, an existing checkpoint stays complete and loadable until the new one
    is (see the module docstring); in multi-process runs every process calls this.
    """
    directory = os.path.abspath(directory)
    if os.path.isfile(os.path.join(directory, ARCHITECTURE_FILE)) and not overwrite:
        raise FileExistsError(f"{directory} already holds a checkpoint; choose another "
                              f"directory or pass --overwrite")
    is_main = jax.process_index() == 0
    os.makedirs(directory, exist_ok=True)
    if is_main:
        _settle(directory)
    sharding.wait_for_all_processes(f"checkpoint {directory} settled")
    final, staged = os.path.join(directory, NETWORKS_DIR), os.path.join(directory, STAGED_DIR)
    tree = jax.tree_util.tree_map(np.asarray, networks)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(staged, tree, force=True)   # force: a half-written leftover
        checkpointer.wait_until_finished()
    text = architecture.dumps(generator, discriminator, networks=sorted(networks), **info)
    if is_main:
        if os.path.isfile(os.path.join(directory, ARCHITECTURE_FILE)):
            # The commit: from here on the JSON names the new, complete weights.
            _write_json(directory, architecture.dumps(generator, discriminator,
                                                      networks=sorted(networks),
                                                      **{**info, WEIGHTS_KEY: STAGED_DIR}))
        shutil.rmtree(final, ignore_errors=True)
        os.rename(staged, final)
        _write_json(directory, text)
    sharding.wait_for_all_processes(f"checkpoint {directory} written")
    # Every process has the JSON (each needs it right away, and hosts may not share a disk).
    if not is_main and _read_text(os.path.join(directory, ARCHITECTURE_FILE)) != text + "\n":
        _write_json(directory, text)


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_json(directory: str):
    path = os.path.join(directory, ARCHITECTURE_FILE)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(
            f"{directory} is not a StyleKD-JAX checkpoint (no {ARCHITECTURE_FILE}); convert a "
            f"PyTorch file first: python tools/convert_torch_weights.py MODEL.pkl {directory}")
    with open(path) as f:
        return architecture.loads(f.read())


def read_architecture(directory: str):
    """(GeneratorConfig | None, DiscriminatorConfig | None, other JSON fields)."""
    g_cfg, d_cfg, info = _read_json(directory)
    info.pop(WEIGHTS_KEY, None)
    return g_cfg, d_cfg, info


def _weights_dir(directory: str, info: dict) -> str:
    """The folder holding the weights: the one the JSON names, or `networks/` once a save
    interrupted in its clean-up has renamed it there."""
    directory = os.path.abspath(directory)
    named = os.path.join(directory, info.get(WEIGHTS_KEY, NETWORKS_DIR))
    return named if os.path.isdir(named) else os.path.join(directory, NETWORKS_DIR)


def is_complete(directory: str, **expected: Any) -> bool:
    """Whether `directory` holds a whole checkpoint: its JSON readable, its weights folder
    finalized by orbax and holding every listed network; `expected` JSON fields (e.g. step)
    must match too."""
    try:
        _, _, info = _read_json(directory)
        weights = _weights_dir(directory, info)
        if not os.path.isdir(weights) or not ocp.utils.is_checkpoint_finalized(weights):
            return False
        with ocp.StandardCheckpointer() as checkpointer:
            tree = checkpointer.metadata(weights).item_metadata.tree
    except (CheckpointNotFoundError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return all(n in tree for n in info.get("networks", [])) and \
        all(info.get(k) == v for k, v in expected.items())


def load(directory: str, names: tuple[str, ...] | None = None):
    """(generator cfg, discriminator cfg, {name: variables}) for the stored networks."""
    g_cfg, d_cfg, info = _read_json(directory)
    stored = info.get("networks", [])
    wanted = stored if names is None else names
    missing = [n for n in wanted if n not in stored]
    if missing:
        raise KeyError(f"{directory} has no network(s) {missing}; it holds {stored}")
    weights = _weights_dir(directory, info)
    if not os.path.isdir(weights) or not ocp.utils.is_checkpoint_finalized(weights):
        raise CheckpointNotFoundError(
            f"{directory} has {ARCHITECTURE_FILE} but no complete weights ({weights}): the save "
            f"that wrote it was interrupted; write the checkpoint again")
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore(weights)
    return g_cfg, d_cfg, {n: tree[n] for n in wanted}


def load_generator(directory: str, prefer: tuple[str, ...] = ("g_ema", "g")):
    """(GeneratorConfig, variables) of the sampling generator (EMA when present)."""
    _, _, info = read_architecture(directory)
    for name in prefer:
        if name in info.get("networks", []):
            g_cfg, _, nets = load(directory, (name,))
            if g_cfg is None:
                break
            return g_cfg, nets[name]
    raise KeyError(f"{directory} holds no generator (networks: {info.get('networks', [])})")
