"""FID Inception-v3 weights (pytorch-fid `.pth`, NVlabs TorchScript `.pt`) into Flax params, torch-free.

Why: FID needs the TF 2015-12-05 Inception weights, which no package ships and nothing may
download; users supply one of the two public files and this turns it into the params of
`stylekd_jax.inception.InceptionV3FID` (pytorch-fid module names, conv HWIO).

* pytorch-fid `pt_inception-2015-12-05-6726825d.pth`: a plain torch.save of a state dict
  (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`, ..., `fc.weight`), read by
  `torch_files.load_torch_file`.  This path is exact.
* NVlabs `inception-2015-12-05.pt`: a TorchScript archive (`data.pkl` = the module tree, objects
  of classes `__torch__.*`, tensors as usual).  It is read here by an unpickler that extends
  torch_files' allow-list with two things only: any `__torch__.*` class becomes an inert
  `ScriptObject` whose attributes are the pickled ones, and `torch.jit._pickle.build_*list` /
  `restore_type_tag` become plain list builders.  Nothing from `code/` is read or run.
  The module paths are the TF graph's (`layers.conv`, `layers.mixed_10.tower_1.mixed.conv_1`,
  ...; publicly confirmed up to `layers.mixed_6.conv`), mapped to pytorch-fid names by
  `TF_TO_PYTORCH_FID`; the tensor names inside each conv are not publicly documented, so a few
  spellings are accepted (`weight`; `beta`/`bias`; `mean`/`running_mean`; `var`/`running_var`;
  optional `gamma`, else scale 1 as in the TF graph) and anything else is a CheckpointError that
  points to the pytorch-fid file.  Not verified against the real NVlabs file.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile

import numpy as np

from stylekd_jax import architecture
from stylekd_jax.convert import torch_files
from stylekd_jax.convert.torch_files import CheckpointError, load_torch_file
from stylekd_jax.inception import (FEATURE_DIM, INPUT_SIZE, NVLABS_FILE, PYTORCH_FID_FILE,
                                   WEIGHTS_FILE, WHERE_TO_GET, InceptionWeightsNotFound, check_params,
                                   param_shapes, read_params_npz, save_params)

__all__ = ["ConvertedInception", "convert_file", "load_params", "looks_like_inception",
           "from_state_dict", "from_torchscript", "read_torchscript", "save", "TF_TO_PYTORCH_FID"]

_MARKER = "Mixed_7c.branch_pool.conv.weight"   # a key only the FID Inception state dict has
_USE_PTH = (f"convert pytorch-fid's {PYTORCH_FID_FILE} instead (same network and weights)")


@dataclasses.dataclass
class ConvertedInception:
    source_format: str            # 'pytorch-fid-pth' | 'nvlabs-torchscript'
    params: dict                  # InceptionV3FID params (numpy float32)
    has_logits: bool              # the file also held the 1008-way classifier (not converted)
    notes: list[str]


# ---------------------------------------------------------------------------------------
# pytorch-fid state dict


def _conv_names(params_tree: dict, prefix: str = "") -> list[str]:
    """Dotted pytorch-fid names of all BasicConvs ('Mixed_5b.branch1x1')."""
    names = []
    for key, value in params_tree.items():
        if "kernel" in value:
            names.append(prefix + key)
        else:
            names += _conv_names(value, f"{prefix}{key}.")
    return names


def _set(tree: dict, dotted: str, value: dict) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        tree = tree.setdefault(name, {})
    tree[leaf] = value


def _basic_conv(weight, scale, bias, mean, var) -> dict:
    """torch conv [O, I, kh, kw] + BN vectors -> BasicConv params (kernel HWIO)."""
    as_f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return {"kernel": np.transpose(as_f32(weight), (2, 3, 1, 0)), "scale": as_f32(scale),
            "bias": as_f32(bias), "mean": as_f32(mean), "var": as_f32(var)}


def from_state_dict(sd: dict, what: str = "the file") -> dict:
    """pytorch-fid state dict -> InceptionV3FID params (shape-checked)."""
    params: dict = {}
    try:
        for name in _conv_names(param_shapes()):
            params_ = [sd[f"{name}.conv.weight"]] + [sd[f"{name}.bn.{k}"] for k in
                                                      ("weight", "bias", "running_mean", "running_var")]
            _set(params, name, _basic_conv(*params_))
        return check_params(params, what)
    except KeyError as e:
        raise CheckpointError(f"{what} does not hold the FID Inception-v3 weights: missing {e}") from None
    except ValueError as e:
        raise CheckpointError(str(e)) from None


# ---------------------------------------------------------------------------------------
# NVlabs TorchScript


class ScriptObject:
    """Inert stand-in for a TorchScript module object: just its pickled attributes."""

    qualified_name = "__torch__"

    def __repr__(self):
        return f"ScriptObject({self.qualified_name})"

    def tensors(self, prefix: str = "") -> dict[str, np.ndarray]:
        """All tensors below this object, by dotted attribute path."""
        out = {}
        for key, value in vars(self).items():
            if isinstance(value, np.ndarray):
                out[prefix + key] = value
            elif isinstance(value, ScriptObject):
                out.update(value.tensors(f"{prefix}{key}."))
        return out


_SCRIPT_CLASSES: dict[str, type] = {}


def _script_class(module: str, name: str) -> type:
    qualified = f"{module}.{name}"
    if qualified not in _SCRIPT_CLASSES:
        _SCRIPT_CLASSES[qualified] = type(name, (ScriptObject,), {"qualified_name": qualified})
    return _SCRIPT_CLASSES[qualified]


def _build_list(items):
    return list(items)


def _restore_type_tag(value, type_str):
    return value


_JIT_PICKLE = {
    **{name: _build_list for name in ("build_intlist", "build_tensorlist", "build_doublelist",
                                      "build_boollist", "build_genericlist")},
    "restore_type_tag": _restore_type_tag,
}


class _ScriptUnpickler(torch_files._Unpickler):
    """torch_files' allow-list plus TorchScript's `__torch__.*` classes and list builders."""

    def find_class(self, module, name):
        if module == "__torch__" or module.startswith("__torch__."):
            return _script_class(module, name)
        if module == "torch.jit._pickle" and name in _JIT_PICKLE:
            return _JIT_PICKLE[name]
        return super().find_class(module, name)


def _is_torchscript(names: list[str]) -> bool:
    return any("/code/" in n or n.startswith("code/") for n in names) and \
        any(n.endswith("data.pkl") for n in names)


def read_torchscript(path: str) -> ScriptObject:
    """The module tree of a TorchScript archive (`data.pkl` + raw storages `data/<key>`)."""
    name = os.fspath(path)
    try:
        with zipfile.ZipFile(name) as archive:
            names = archive.namelist()
            if not _is_torchscript(names):
                raise CheckpointError(f"{name} is not a TorchScript archive (no code/ entries)")
            pickle_name = min((n for n in names if n.rsplit("/", 1)[-1] == "data.pkl"), key=len)
            prefix = pickle_name[:-len("data.pkl")]
            big = (prefix + "byteorder" in names
                   and archive.read(prefix + "byteorder").strip() == b"big")
            storages = {}

            def load_storage(dtype, key, location, numel):
                if key not in storages:
                    raw = archive.read(f"{prefix}data/{key}")
                    storages[key] = torch_files._Storage(dtype, ">" if big else "<", numel, raw)
                return storages[key]

            root = _ScriptUnpickler(io.BytesIO(archive.read(pickle_name)), load_storage).load()
    except CheckpointError:
        raise
    except torch_files._Refused as refused:
        raise CheckpointError(f"refusing to load {name}: it references the Python global "
                              f"'{refused}', which a TorchScript Inception does not need") from None
    except (OSError, *torch_files._CORRUPT) as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise CheckpointError(f"{name} is truncated or corrupt ({reason}); re-download it") from None
    if not isinstance(root, ScriptObject):
        raise CheckpointError(f"{name}: the TorchScript archive holds no module")
    return root


def _tf_block_names(kind: str) -> dict[str, str]:
    """TF graph path inside a `mixed*` block -> pytorch-fid branch, per block type."""
    def chain(tower, branch, n, first=1):
        return {f"{tower}.conv" + (f"_{i}" if i else ""): f"{branch}{i + first}" for i in range(n)}
    if kind == "A":
        return {"conv": "branch1x1", **chain("tower", "branch5x5_", 2),
                **chain("tower_1", "branch3x3dbl_", 3), "tower_2.conv": "branch_pool"}
    if kind == "B":
        return {"conv": "branch3x3", **chain("tower", "branch3x3dbl_", 3)}
    if kind == "C":
        return {"conv": "branch1x1", **chain("tower", "branch7x7_", 3),
                **chain("tower_1", "branch7x7dbl_", 5), "tower_2.conv": "branch_pool"}
    if kind == "D":
        return {**chain("tower", "branch3x3_", 2), **chain("tower_1", "branch7x7x3_", 4)}
    return {"conv": "branch1x1", "tower.conv": "branch3x3_1", "tower.mixed.conv": "branch3x3_2a",
            "tower.mixed.conv_1": "branch3x3_2b", "tower_1.conv": "branch3x3dbl_1",
            "tower_1.conv_1": "branch3x3dbl_2", "tower_1.mixed.conv": "branch3x3dbl_3a",
            "tower_1.mixed.conv_1": "branch3x3dbl_3b", "tower_2.conv": "branch_pool"}


_BLOCKS = [("5b", "A"), ("5c", "A"), ("5d", "A"), ("6a", "B"), ("6b", "C"), ("6c", "C"),
           ("6d", "C"), ("6e", "C"), ("7a", "D"), ("7b", "E"), ("7c", "E")]
TF_TO_PYTORCH_FID = {
    "layers.conv": "Conv2d_1a_3x3", "layers.conv_1": "Conv2d_2a_3x3",
    "layers.conv_2": "Conv2d_2b_3x3", "layers.conv_3": "Conv2d_3b_1x1",
    "layers.conv_4": "Conv2d_4a_3x3",
    **{f"layers.mixed{'_' + str(i) if i else ''}.{tf}": f"Mixed_{block}.{branch}"
       for i, (block, kind) in enumerate(_BLOCKS) for tf, branch in _tf_block_names(kind).items()},
}

# Accepted spellings of one conv's tensors (the first present wins), relative to the conv module.
_ALIASES = {
    "weight": ("weight", "conv.weight", "conv2d_params", "kernel"),
    "bias": ("beta", "bias", "bn.bias", "batchnorm.beta"),
    "mean": ("mean", "running_mean", "moving_mean", "bn.running_mean", "batchnorm.moving_mean"),
    "var": ("var", "running_var", "moving_variance", "bn.running_var", "batchnorm.moving_variance"),
    "scale": ("gamma", "bn.weight", "batchnorm.gamma"),
}


def _module_at(root: ScriptObject, dotted: str):
    node = root
    for part in dotted.split("."):
        node = getattr(node, part, None) if isinstance(node, ScriptObject) else None
    return node


def from_torchscript(root: ScriptObject, what: str = "the file") -> dict:
    """NVlabs-style TorchScript module tree -> InceptionV3FID params (shape-checked)."""
    params: dict = {}
    for tf_path, name in TF_TO_PYTORCH_FID.items():
        module = _module_at(root, tf_path)
        if not isinstance(module, ScriptObject):
            raise CheckpointError(f"{what}: TorchScript module {tf_path} not found, so this is "
                                  f"not NVlabs' {NVLABS_FILE} as this converter knows it; "
                                  f"{_USE_PTH}")
        tensors = module.tensors()
        found = {}
        for role, spellings in _ALIASES.items():
            found[role] = next((tensors[s] for s in spellings if s in tensors), None)
        if found["scale"] is None and found["weight"] is not None:
            found["scale"] = np.ones(found["weight"].shape[0], np.float32)
        lacking = [role for role, value in found.items() if value is None]
        if lacking:
            raise CheckpointError(f"{what}: cannot identify the {', '.join(lacking)} of the conv "
                                  f"{tf_path} (its tensors: {sorted(tensors)[:8]}); {_USE_PTH}")
        _set(params, name, _basic_conv(found["weight"], found["scale"], found["bias"],
                                       found["mean"], found["var"]))
    try:
        return check_params(params, what)
    except ValueError as e:
        raise CheckpointError(f"{e}; {_USE_PTH}") from None


# ---------------------------------------------------------------------------------------
# Files


def _zip_names(path: str) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None


def looks_like_inception(path: str) -> bool:
    """Cheap sniff (no full read): a TorchScript archive with an Inception module tree, or a
    torch.save file whose pickle names the pytorch-fid Inception's last conv."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        return False
    names = _zip_names(name)
    if names is not None:
        with zipfile.ZipFile(name) as archive:
            pkls = [n for n in names if n.rsplit("/", 1)[-1] == "data.pkl"]
            if not pkls:
                return False
            head = archive.read(min(pkls, key=len))
        if _is_torchscript(names):
            return b"mixed_10" in head and b"tower_2" in head
        return _MARKER.encode() in head
    with open(name, "rb") as f:
        head = f.read(1 << 20)   # a legacy torch.save puts the (small) key pickle first
    return _MARKER.encode() in head


def convert_file(path: str) -> ConvertedInception:
    """Read a pytorch-fid `.pth` or NVlabs TorchScript `.pt` (detected from the content)."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InceptionWeightsNotFound(f"FID Inception weights not found: {name}; {WHERE_TO_GET}")
    names = _zip_names(name)
    if names is not None and _is_torchscript(names):
        root = read_torchscript(name)
        params = from_torchscript(root, name)
        logits = _module_at(root, "output")
        notes = ["NVlabs TorchScript: conv tensor names matched by spelling (not verified "
                 "against the real file); only pool3 features are converted"]
        return ConvertedInception("nvlabs-torchscript", params,
                                  isinstance(logits, ScriptObject), notes)
    obj = load_torch_file(name)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not (isinstance(obj, dict) and any(str(k).startswith("Mixed_") for k in obj)):
        keys = sorted(map(str, obj))[:6] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{name} is not an FID Inception-v3 weights file (found {keys}); "
                              f"expected pytorch-fid's {PYTORCH_FID_FILE} or NVlabs' {NVLABS_FILE}")
    params = from_state_dict(obj, name)
    return ConvertedInception("pytorch-fid-pth", params, "fc.weight" in obj, [])


def save(outdir: str, converted: ConvertedInception, source: str, overwrite: bool = False) -> str:
    """Write OUTDIR/inception.npz and OUTDIR/architecture.json; returns the npz path."""
    outdir = os.path.abspath(outdir)
    npz = os.path.join(outdir, WEIGHTS_FILE)
    if os.path.exists(npz) and not overwrite:
        raise FileExistsError(f"{outdir} already holds {WEIGHTS_FILE}; choose another directory "
                              "or pass --overwrite")
    os.makedirs(outdir, exist_ok=True)
    save_params(npz, converted.params)
    info = {"network": "InceptionV3FID", "features": FEATURE_DIM, "input_size": INPUT_SIZE,
            "weights": WEIGHTS_FILE, "source_format": converted.source_format}
    text = architecture.dumps(None, None, inception=info,
                              source={"file": os.path.abspath(source),
                                      "format": converted.source_format},
                              notes=converted.notes)
    with open(os.path.join(outdir, "architecture.json"), "w") as f:
        f.write(text + "\n")
    return npz


def load_params(path: str | os.PathLike) -> dict:
    """FID Inception params from a converted directory (holding inception.npz), an .npz, or
    directly a pytorch-fid `.pth` / NVlabs TorchScript `.pt` (converted on the fly, torch-free)."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InceptionWeightsNotFound(f"FID Inception weights not found: {name}; {WHERE_TO_GET}")
    if os.path.isdir(name):
        npz = os.path.join(name, WEIGHTS_FILE)
        if not os.path.isfile(npz):
            raise InceptionWeightsNotFound(
                f"{name} holds no {WEIGHTS_FILE} (not a converted Inception directory); "
                f"{WHERE_TO_GET}")
        name = npz
    if name.endswith(".npz"):
        return check_params(read_params_npz(name), name)
    return convert_file(name).params
