"""The BiSeNet face-parsing weights `79999_iter.pth` into `face_parsing.BiSeNet` params, torch-free.

Why: StyleKD's face mask needs the pretrained parser of zllrunning/face-parsing.PyTorch (the
file CAGAN / StyleKD ship as `Util/face_parsing/pretrained_model/79999_iter.pth`).  It is a
plain `torch.save` of the state dict, read by `torch_files.load_torch_file` (no torch, nothing
in the file executed).  Every tensor is accounted for: each param is read by its torch name
(a missing one is an error naming it), a tensor nothing reads is an error naming it, and
NaN/Inf is an error.  Only the BatchNorm `num_batches_tracked` counters are skipped (training
bookkeeping, unused in eval mode).  The conversion takes a second or two, so training reads
the .pth directly (`--config.loss.face_parser=79999_iter.pth`); nothing needs converting first.
"""

from __future__ import annotations

import os
import re

import numpy as np

from stylekd_jax.convert.checks import TrackedStateDict, check_finite, name_list, unused_names
from stylekd_jax.convert.torch_files import CheckpointError, load_torch_file

__all__ = ["convert_file", "from_state_dict", "torch_name", "looks_like_bisenet"]

_MARKER = "cp.arm32.conv_atten.weight"    # a key only BiSeNet's state dict has
_SKIPPED = (r".*\.num_batches_tracked",)
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
         "var": "running_var"}


def _what_it_is() -> str:
    from stylekd_jax.face_parsing import FACE_PARSER_FILE
    return (f"expected the BiSeNet face-parsing weights {FACE_PARSER_FILE} of "
            f"zllrunning/face-parsing.PyTorch (also shipped by CAGAN / StyleKD in "
            f"Util/face_parsing/pretrained_model/)")


def torch_name(path: tuple[str, ...]) -> str:
    """Flax param path -> state-dict name: ('cp', 'resnet', 'layer1_0', 'downsample_bn', 'var')
    -> 'cp.resnet.layer1.0.downsample.1.running_var'."""
    *modules, leaf = path
    parts = []
    for m in modules:
        m = re.sub(r"^layer(\d)_(\d)$", r"layer\1.\2", m)
        m = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(m, m)
        parts.append(m)
    return ".".join(parts + [_LEAF[leaf]])


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def from_state_dict(sd: dict, what: str = "the file") -> dict:
    """BiSeNet state dict (torch names, numpy arrays) -> params (numpy float32, kernels HWIO)."""
    import jax
    from stylekd_jax.face_parsing import param_shapes
    if all(str(k).startswith("module.") for k in sd):   # saved from a DataParallel wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if _MARKER not in sd:
        raise CheckpointError(f"{what} is not a BiSeNet face-parsing state dict (no {_MARKER}; "
                              f"found {name_list(sorted(map(str, sd)), 4)}); {_what_it_is()}")
    check_finite(sd, what)
    tracked = TrackedStateDict(sd)
    leaves = jax.tree_util.tree_flatten_with_path(param_shapes())[0]
    params: dict = {}
    missing = []
    for key_path, shape_dtype in leaves:
        path = tuple(k.key for k in key_path)
        name = torch_name(path)
        if name not in tracked:
            missing.append(name)
            continue
        value = np.asarray(tracked[name], np.float32)
        if path[-1] == "kernel":
            value = np.transpose(value, (2, 3, 1, 0)) if value.ndim == 4 else value
        if value.shape != tuple(shape_dtype.shape):
            raise CheckpointError(f"{what} tensor {name} has shape {list(np.shape(tracked[name]))}, "
                                  f"which does not fit BiSeNet (19 classes, ResNet-18); {_what_it_is()}")
        _set(params, path, value)
    if missing:
        raise CheckpointError(f"{what} lacks {len(missing)} BiSeNet tensor(s): {name_list(missing)}; "
                              f"the file is truncated or another network; {_what_it_is()}")
    unused = unused_names(sd, tracked.used, _SKIPPED)
    if unused:
        raise CheckpointError(f"{what} holds {len(unused)} tensor(s) BiSeNet does not have: "
                              f"{name_list(unused)}; a different face-parsing variant? {_what_it_is()}")
    return params


def looks_like_bisenet(path: str) -> bool:
    """Cheap sniff: the file's pickle names BiSeNet's attention-refinement conv."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        return False
    with open(name, "rb") as f:
        head = f.read(1 << 20)   # a legacy torch.save puts the (small) pickle first; zip: data.pkl first
    return _MARKER.encode() in head


def convert_file(path: str) -> dict:
    """Read `79999_iter.pth` (legacy or zip torch.save; a {'state_dict': ...} wrapper is accepted)."""
    name = os.fspath(path)
    obj = load_torch_file(name)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a state dict; {_what_it_is()}")
    return from_state_dict(obj, name)
