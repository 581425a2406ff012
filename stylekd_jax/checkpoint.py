"""Network checkpoint directories: `architecture.json` (human-readable) + orbax arrays.

Layout of a directory written by the converter or by training:

    architecture.json   generator / discriminator configs and where the weights came from
    networks/           orbax PyTree: {'g_ema': {'params', 'buffers'}, 'g': ..., 'd': {'params'}}

`g_ema` is the generator to sample from (NVlabs G_ema, rosinality g_ema); `g` and `d` are
the training-time networks, kept when the source had them.
"""

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from stylekd_jax import architecture
from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig

ARCHITECTURE_FILE = "architecture.json"
NETWORKS_DIR = "networks"


class CheckpointNotFoundError(FileNotFoundError):
    pass


def save(directory: str, networks: dict[str, Any], generator: GeneratorConfig | None,
         discriminator: DiscriminatorConfig | None = None, overwrite: bool = False,
         **info: Any) -> None:
    """Write `networks` (name -> variables) and the architecture; `info` goes into the JSON."""
    directory = os.path.abspath(directory)
    target = os.path.join(directory, NETWORKS_DIR)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{directory} already holds a checkpoint; choose another "
                              f"directory or pass --overwrite")
    os.makedirs(directory, exist_ok=True)
    tree = jax.tree_util.tree_map(np.asarray, networks)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(target, tree, force=overwrite)
        checkpointer.wait_until_finished()
    # Every process writes the JSON (each needs it right away, and hosts may not share a disk);
    # a rename makes each write atomic, so a reader never sees a half-written file.
    text = architecture.dumps(generator, discriminator, networks=sorted(networks), **info)
    path = os.path.join(directory, ARCHITECTURE_FILE)
    tmp = f"{path}.tmp{jax.process_index()}"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def read_architecture(directory: str):
    """(GeneratorConfig | None, DiscriminatorConfig | None, other JSON fields)."""
    path = os.path.join(directory, ARCHITECTURE_FILE)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(
            f"{directory} is not a StyleKD-JAX checkpoint (no {ARCHITECTURE_FILE}); convert a "
            f"PyTorch file first: python tools/convert_torch_weights.py MODEL.pkl {directory}")
    with open(path) as f:
        return architecture.loads(f.read())


def load(directory: str, names: tuple[str, ...] | None = None):
    """(generator cfg, discriminator cfg, {name: variables}) for the stored networks."""
    g_cfg, d_cfg, info = read_architecture(directory)
    stored = info.get("networks", [])
    wanted = stored if names is None else names
    missing = [n for n in wanted if n not in stored]
    if missing:
        raise KeyError(f"{directory} has no network(s) {missing}; it holds {stored}")
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore(os.path.join(os.path.abspath(directory), NETWORKS_DIR))
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
