"""StyleGAN2 weights from NVlabs pickles and rosinality-style .pt files into Flax variables.

Two steps, so there is one mapping to the Flax layout: rosinality/StyleKD/CAGAN state dicts
are first renamed to NVlabs names (`rosinality_generator_to_nvlabs`), then the NVlabs state dict is turned
into Flax variables (dense [in, out], conv HWIO, const [4, 4, C]). The architecture is read
from the tensor shapes (per-layer channels, kernel size, mapping widths) and, for NVlabs
pickles, from the network objects' attributes (conv_clamp, lr multiplier, mbstd group).
"""

import dataclasses
import math
import re
from typing import Any

import jax
import numpy as np

from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig
from stylekd_jax.convert.checks import (TrackedStateDict, check_all_used, check_filters, check_finite,
                                        check_ranks)
from stylekd_jax.convert import stylegan3
from stylekd_jax.convert.torch_files import CheckpointError, PersistentObject, load_torch_file

StateDict = dict[str, np.ndarray]

# NVlabs buffers the conversion rebuilds instead of reading (checked to be the default filter).
NVLABS_FILTERS = r".*resample_filter"
# rosinality's blur / upsample `kernel` buffers, likewise.
ROSINALITY_FILTERS = r".*\.kernel"


@dataclasses.dataclass
class Converted:
    """What a source file held, ready for `checkpoint.save`."""

    source_format: str
    generator: GeneratorConfig | None
    discriminator: DiscriminatorConfig | None
    networks: dict[str, Any]          # 'g_ema' / 'g' / 'd' -> Flax variables
    notes: list[str]


# ---------------------------------------------------------------------------------------
# NVlabs state dict -> Flax variables


def _block_resolutions(sd: StateDict, prefix: str) -> list[int]:
    found = {int(m.group(1)) for k in sd if (m := re.match(rf"{re.escape(prefix)}b(\d+)\.", k))}
    return sorted(found)


def _all_resolutions(found: list[int]) -> list[int]:
    """4, 8, ... up to the largest block found: every block must be there (a missing one is
    named by the KeyError of its first tensor), however the walk over the file goes."""
    top = found[-1]
    if top & (top - 1):
        raise CheckpointError(f"block b{top} is not at a power-of-two resolution; not a StyleGAN2")
    return [2 ** i for i in range(2, int(math.log2(top)) + 1)]


def _count(sd, pattern: str) -> int:
    """1 + the largest index N of the names matching `pattern` (one group: N); 0 if none."""
    found = [int(m.group(1)) for k in sd if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def _fc(sd: StateDict, name: str) -> dict[str, np.ndarray]:
    out = {"weight": sd[f"{name}.weight"].T}
    if f"{name}.bias" in sd:
        out["bias"] = sd[f"{name}.bias"].reshape(-1)
    return out


def _conv(weight: np.ndarray) -> np.ndarray:
    """[O, I, k, k] -> HWIO."""
    return np.transpose(weight, (2, 3, 1, 0))


def generator_config_from_state_dict(sd: StateDict, **kwargs) -> GeneratorConfig:
    """Architecture of an NVlabs-named generator state dict (shapes only; kwargs add the rest)."""
    if any(k.startswith("mapping.embed.") for k in sd):
        raise CheckpointError("conditional generators (c_dim > 0, mapping.embed.*) are not "
                              "supported; convert an unconditional StyleGAN2")
    if "synthesis.input.freqs" in sd or any(re.match(r"synthesis\.L\d+_", k) for k in sd):
        raise _stylegan3_error()
    resolutions = _block_resolutions(sd, "synthesis.")
    if not resolutions or resolutions[0] != 4 or "synthesis.b4.const" not in sd:
        raise CheckpointError("no StyleGAN2 synthesis network found (expected synthesis.b4.const "
                              "and blocks synthesis.b8 ...)")
    resolutions = _all_resolutions(resolutions)
    channels = [sd["synthesis.b4.const"].shape[0], sd["synthesis.b4.conv1.weight"].shape[0]]
    for res in resolutions[1:]:
        channels += [sd[f"synthesis.b{res}.conv0.weight"].shape[0],
                     sd[f"synthesis.b{res}.conv1.weight"].shape[0]]
    mapping = [sd[f"mapping.fc{i}.weight"].shape[0]
               for i in range(_count(sd, r"mapping\.fc(\d+)\."))]
    if not mapping:
        raise CheckpointError("no mapping network found (expected mapping.fc0.weight)")
    kernel = sd[f"synthesis.b{resolutions[1]}.conv1.weight"].shape[-1] if len(resolutions) > 1 else 3
    return GeneratorConfig(
        resolution=resolutions[-1], channels=tuple(channels),
        z_dim=sd["mapping.fc0.weight"].shape[1], w_dim=mapping[-1],
        mapping_features=tuple(mapping), kernel_size=kernel,
        img_channels=sd["synthesis.b4.torgb.weight"].shape[0], **kwargs)


def generator_variables(sd: StateDict, cfg: GeneratorConfig) -> dict[str, Any]:
    """Flax {'params', 'buffers'} from an NVlabs-named generator state dict."""
    params: dict[str, Any] = {"mapping": {}, "synthesis": {}}
    buffers: dict[str, Any] = {"mapping": {}, "synthesis": {}}
    for i in range(len(cfg.mapping_features)):
        params["mapping"][f"fc{i}"] = _fc(sd, f"mapping.fc{i}")
    buffers["mapping"]["w_avg"] = sd.get("mapping.w_avg", np.zeros(cfg.w_dim, np.float32))
    for res in cfg.block_resolutions:
        block, block_buffers = {}, {}
        prefix = f"synthesis.b{res}"
        if res == 4:
            block["const"] = np.transpose(sd[f"{prefix}.const"], (1, 2, 0))
        for layer in (["conv1"] if res == 4 else ["conv0", "conv1"]):
            name = f"{prefix}.{layer}"
            block[layer] = {"weight": _conv(sd[f"{name}.weight"]), "bias": sd[f"{name}.bias"],
                            "noise_strength": sd[f"{name}.noise_strength"].reshape(()),
                            "affine": _fc(sd, f"{name}.affine")}
            block_buffers[layer] = {"noise_const": sd[f"{name}.noise_const"]}
        block["torgb"] = {"weight": _conv(sd[f"{prefix}.torgb.weight"]),
                          "bias": sd[f"{prefix}.torgb.bias"].reshape(-1),
                          "affine": _fc(sd, f"{prefix}.torgb.affine")}
        params["synthesis"][f"b{res}"] = block
        buffers["synthesis"][f"b{res}"] = block_buffers
    return {"params": params, "buffers": buffers}


def discriminator_config_from_state_dict(sd: StateDict, **kwargs) -> DiscriminatorConfig:
    resolutions = _block_resolutions(sd, "")
    if not resolutions or resolutions[0] != 4 or "b4.conv.weight" not in sd:
        raise CheckpointError("no StyleGAN2 discriminator found (expected b4.conv.weight and "
                              "blocks b8 ... with fromrgb on the top block)")
    if any(k.startswith("mapping.") for k in sd) or sd["b4.out.weight"].shape[0] != 1:
        raise CheckpointError("conditional discriminators (c_dim > 0) are not supported")
    resolutions = _all_resolutions(resolutions)
    top = resolutions[-1]
    channels = {res: sd[f"b{res}.conv0.weight"].shape[0] for res in resolutions[1:]}
    channels[4] = sd["b4.conv.weight"].shape[0]
    mbstd_channels = sd["b4.conv.weight"].shape[1] - channels[4]
    kwargs.setdefault("mbstd_num_channels", mbstd_channels)
    return DiscriminatorConfig(resolution=top, channels=tuple(channels.items()),
                               img_channels=sd[f"b{top}.fromrgb.weight"].shape[1], **kwargs)


def discriminator_variables(sd: StateDict, cfg: DiscriminatorConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for res in range(int(math.log2(cfg.resolution)), 2, -1):
        res = 2 ** res
        block = {}
        names = (["fromrgb"] if res == cfg.resolution else []) + ["conv0", "conv1", "skip"]
        for layer in names:
            block[layer] = {"weight": _conv(sd[f"b{res}.{layer}.weight"])}
            if layer != "skip":
                block[layer]["bias"] = sd[f"b{res}.{layer}.bias"]
        params[f"b{res}"] = block
    params["b4"] = {"conv": {"weight": _conv(sd["b4.conv.weight"]), "bias": sd["b4.conv.bias"]},
                    "fc": _fc(sd, "b4.fc"), "out": _fc(sd, "b4.out")}
    return {"params": params}


def _dotted(path) -> str:
    """Flax tree path -> NVlabs-style dotted name without the collection ('synthesis.b8.conv1.weight')."""
    return ".".join(str(getattr(k, "key", k)) for k in path[1:])


_LAYOUTS = {4: " (kh, kw, in, out)", 3: " (h, w, channels)", 2: " (in, out)"}


def _check_against_model(variables, expected_shapes, what: str) -> None:
    """Every converted array must have the shape the Flax model expects, and none may be missing."""
    got = {_dotted(p): np.shape(v) for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
    want = {_dotted(p): tuple(v.shape)
            for p, v in jax.tree_util.tree_flatten_with_path(expected_shapes)[0]}
    missing = sorted(set(want) - set(got))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    if missing or wrong:
        detail = [f"missing {k}" for k in missing[:3]] + \
                 [f"{k} has shape {got[k]}{_LAYOUTS.get(len(got[k]), '')}, expected {want[k]}"
                  for k in wrong[:3]]
        raise CheckpointError(f"the {what} weights do not form a StyleGAN2: " + "; ".join(detail))


def build_generator(sd: StateDict, *, label: str = "generator", allow_unused: bool = False,
                    notes: list[str] | None = None, **cfg_kwargs) -> tuple[GeneratorConfig, dict]:
    """(config, Flax variables) of an NVlabs-named generator state dict.

    Every tensor must be finite and used (`label` names the network in the messages; with
    `allow_unused` the unused ones are listed in `notes` instead of being an error).
    """
    from stylekd_jax.networks import Generator
    check_finite(sd, label)
    check_ranks(sd, NVLABS_RANKS, label)
    cfg = _config_or_error(generator_config_from_state_dict, sd, "generator", **cfg_kwargs)
    tracked = TrackedStateDict(sd)
    variables = _variables_or_error(generator_variables, tracked, cfg, "generator")
    _account(sd, tracked.used, label, NVLABS_FILTERS, allow_unused, notes)
    z = jax.ShapeDtypeStruct((1, cfg.z_dim), np.float32)
    shapes = jax.eval_shape(lambda z: Generator(cfg).init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}, z), z)
    _check_against_model(variables, shapes, "generator")
    return cfg, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), variables)


def build_discriminator(sd: StateDict, *, label: str = "discriminator", allow_unused: bool = False,
                        notes: list[str] | None = None,
                        **cfg_kwargs) -> tuple[DiscriminatorConfig, dict]:
    """Like `build_generator`, for an NVlabs-named discriminator state dict."""
    from stylekd_jax.networks import Discriminator
    check_finite(sd, label)
    check_ranks(sd, NVLABS_RANKS, label)
    cfg = _config_or_error(discriminator_config_from_state_dict, sd, "discriminator", **cfg_kwargs)
    tracked = TrackedStateDict(sd)
    variables = _variables_or_error(discriminator_variables, tracked, cfg, "discriminator")
    _account(sd, tracked.used, label, NVLABS_FILTERS, allow_unused, notes)
    batch = cfg.mbstd_group_size or 4
    img = jax.ShapeDtypeStruct((batch, cfg.resolution, cfg.resolution, cfg.img_channels), np.float32)
    shapes = jax.eval_shape(lambda x: Discriminator(cfg).init(jax.random.PRNGKey(0), x), img)
    _check_against_model(variables, shapes, "discriminator")
    return cfg, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), variables)


def _account(sd, used, label: str, filters: str, allow_unused: bool, notes: list[str] | None) -> None:
    """The rebuilt filter buffers are the default ones, and every other tensor was used."""
    check_filters(sd, filters, label)
    unused = check_all_used(sd, used, label, allow_unused=allow_unused, expected_unused=[filters])
    if notes is not None:
        notes.extend(unused)


# Dimensions of each kind of tensor (NVlabs names; rosinality names before renaming).
NVLABS_RANKS = (
    (r"(synthesis\.b\d+\.(conv0|conv1|torgb)|b\d+\.(fromrgb|conv0|conv1|skip|conv))\.weight", 4),
    (r"(.*\.affine|mapping\.fc\d+|b4\.fc|b4\.out)\.weight", 2),
    (r"synthesis\.b4\.const", 3),
    (r".*\.noise_const", 2),
)
ROSINALITY_RANKS = (
    (r"(convs\.\d+|to_rgbs?\.\d+|to_rgb1|conv1)\.conv\.weight", 5),
    (r".*\.modulation\.weight|style\.\d+\.weight|final_linear\.\d+\.weight", 2),
    (r"input\.input|noises\.noise_\d+", 4),
    (r"(convs\.\d+\.(\d+|conv\d\.\d+|skip\.\d+)|final_conv\.0)\.weight", 4),
)


def _config_or_error(fn, sd, what, **kwargs):
    try:
        return fn(sd, **kwargs)
    except KeyError as e:
        raise CheckpointError(f"the {what} weights do not form a StyleGAN2: missing {e}") from None
    except ValueError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"the {what} weights do not form a StyleGAN2: {e}") from None


def _variables_or_error(fn, sd, cfg, what):
    try:
        return fn(sd, cfg)
    except KeyError as e:
        raise CheckpointError(f"the {what} weights do not form a StyleGAN2: missing {e}") from None


def _stylegan3_error() -> CheckpointError:
    return CheckpointError("this is a bare StyleGAN3 state dict, which lacks the network's "
                           "settings; convert the NVlabs network pickle (.pkl) instead")


# ---------------------------------------------------------------------------------------
# NVlabs pickles


def _module(net: PersistentObject, path: str) -> PersistentObject | None:
    for name in path.split("."):
        net = net.modules.get(name) if net is not None else None
    return net


def _clamp(layer: PersistentObject | None) -> float | None:
    value = layer.attr("conv_clamp") if layer is not None else None
    return float(value) if value is not None else None


def _nvlabs_generator_kwargs(G: PersistentObject) -> dict[str, Any]:
    """conv_clamp, mapping lr multiplier and w_avg_beta, read from the layer objects themselves.

    Constructor kwargs are not enough: the stylegan3 repo's StyleGAN2 clamps at 256 by
    default, and its training pickles leave the default out of the kwargs.
    """
    kwargs = G.init_kwargs
    synthesis_kwargs = kwargs.get("synthesis_kwargs", kwargs)  # ada nests, stylegan3 repo is flat
    architecture = synthesis_kwargs.get("architecture", "skip")
    if architecture != "skip":
        raise CheckpointError(f"generator architecture {architecture!r} is not supported; "
                              f"only the StyleGAN2 default 'skip' generator can be converted")
    out: dict[str, Any] = {"conv_clamp": _clamp(_module(G, "synthesis.b4.conv1"))}
    fc0 = _module(G, "mapping.fc0")
    if fc0 is not None and fc0.attr("bias_gain") is not None:
        out["mapping_lr_multiplier"] = float(fc0.attr("bias_gain"))
    beta = _module(G, "mapping").attr("w_avg_beta") if _module(G, "mapping") else None
    if beta is not None:
        out["w_avg_beta"] = float(beta)
    return out


def _nvlabs_discriminator_kwargs(D: PersistentObject) -> dict[str, Any]:
    architecture = D.init_kwargs.get("architecture", "resnet")
    if architecture != "resnet":
        raise CheckpointError(f"discriminator architecture {architecture!r} is not supported; "
                              f"only the StyleGAN2 default 'resnet' discriminator can be converted")
    out: dict[str, Any] = {"conv_clamp": _clamp(_module(D, "b4.conv"))}
    mbstd = _module(D, "b4.mbstd")
    if mbstd is not None:
        group = mbstd.attr("group_size")
        out["mbstd_group_size"] = int(group) if group is not None else None
        out["mbstd_num_channels"] = int(mbstd.attr("num_channels", 1))
    else:
        out["mbstd_num_channels"] = 0
    return out


def from_nvlabs(obj: Any, allow_unused: bool = False) -> Converted:
    if isinstance(obj, tuple):
        raise CheckpointError("this is a TensorFlow-era (G, D, Gs) pickle; convert it to the "
                              "PyTorch format first with NVlabs stylegan2-ada-pytorch legacy.py")
    networks, notes = {}, []
    g_cfg = d_cfg = None
    for key, name in (("G_ema", "g_ema"), ("G", "g")):
        net = obj.get(key)
        if net is None:
            continue
        if not isinstance(net, PersistentObject):
            raise CheckpointError(f"{key} is not an NVlabs network object")
        if _is_stylegan3(net):
            g_cfg, networks[name] = stylegan3.build_generator(net, allow_unused=allow_unused,
                                                              notes=notes, label=key)
            continue
        if int(net.init_kwargs.get("c_dim", 0) or 0) > 0:
            raise CheckpointError("conditional generators (c_dim > 0) are not supported; "
                                  "convert an unconditional StyleGAN2")
        g_cfg, networks[name] = build_generator(net.state_dict(), label=key, allow_unused=allow_unused,
                                                notes=notes, **_nvlabs_generator_kwargs(net))
    D = obj.get("D")
    if isinstance(D, PersistentObject):
        if int(D.init_kwargs.get("c_dim", 0) or 0) > 0:
            raise CheckpointError("conditional discriminators (c_dim > 0) are not supported")
        d_cfg, networks["d"] = build_discriminator(D.state_dict(), label="D", allow_unused=allow_unused,
                                                   notes=notes, **_nvlabs_discriminator_kwargs(D))
    if not networks:
        raise CheckpointError(f"no networks found; an NVlabs pickle holds G, D and G_ema, "
                              f"this one holds {sorted(obj)}")
    if "g_ema" not in networks:
        notes.append("no G_ema in the file: G is used for sampling")
    return Converted("nvlabs-pickle", g_cfg, d_cfg, networks, notes)


def _is_stylegan3(net: PersistentObject) -> bool:
    return stylegan3.is_stylegan3(net)


# ---------------------------------------------------------------------------------------
# rosinality / StyleKD / CAGAN

W_AVG_SAMPLES = 65536


def estimate_w_avg(cfg: GeneratorConfig, variables: dict, num: int = W_AVG_SAMPLES,
                   batch: int = 8192) -> np.ndarray:
    """Mean of w over `num` z ~ N(0, I) (seed 0), for files that carry no w_avg."""
    from stylekd_jax.networks import Generator
    map_fn = jax.jit(lambda v, z: Generator(cfg).apply(v, z, method="map")[:, 0])
    rng = np.random.RandomState(0)
    total = np.zeros(cfg.w_dim, np.float64)
    for start in range(0, num, batch):
        z = rng.randn(min(batch, num - start), cfg.z_dim).astype(np.float32)
        total += np.asarray(map_fn(variables, z), np.float64).sum(axis=0)
    return (total / num).astype(np.float32)


def rosinality_generator_to_nvlabs(sd: StateDict, latent_avg: np.ndarray | None = None, *,
                                   label: str = "g_ema", allow_unused: bool = False,
                                   notes: list[str] | None = None) -> StateDict:
    """Rename a rosinality-style generator state dict (any channel list) to NVlabs names.

    Every tensor of `sd` must be finite and used: a missing layer is an error naming its
    tensor, an unknown one an error listing it (a note in `notes` with `allow_unused`).
    """
    if "input.input" not in sd or "conv1.conv.weight" not in sd:
        raise CheckpointError("no rosinality generator found (expected input.input and "
                              "conv1.conv.weight)")
    check_finite(sd, label)
    check_ranks(sd, ROSINALITY_RANKS, label)
    full, sd = sd, TrackedStateDict(sd)
    out: StateDict = {}
    try:
        # style.0 is the PixelNorm (no tensors); every layer up to the last one must be there.
        for i in range(1, _count(sd, r"style\.(\d+)\.")):
            out[f"mapping.fc{i - 1}.weight"] = sd[f"style.{i}.weight"]
            out[f"mapping.fc{i - 1}.bias"] = sd[f"style.{i}.bias"]
    except KeyError as e:
        raise CheckpointError(f"the generator weights do not form a StyleGAN2: missing {e}") from None
    if latent_avg is not None:
        out["mapping.w_avg"] = np.asarray(latent_avg, np.float32).reshape(-1)
    out["synthesis.b4.const"] = sd["input.input"][0]

    def styled_conv(src: str, dst: str, noise_index: int) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape(())
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_index}"][0, 0]

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    try:
        styled_conv("conv1", "synthesis.b4.conv1", 0)
        to_rgb("to_rgb1", "synthesis.b4.torgb")
        # Blocks above 4x4: as many as the highest-numbered conv, to_rgb or noise says, so a
        # tensor missing in the middle is named instead of ending the walk early.
        blocks = max((_count(sd, r"convs\.(\d+)\.") + 1) // 2, _count(sd, r"to_rgbs\.(\d+)\."),
                     _count(sd, r"noises\.noise_(\d+)$") // 2)
        for k in range(blocks):
            res = 2 ** (k + 3)
            styled_conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 2 * k + 1)
            styled_conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 * k + 2)
            to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
    except KeyError as e:
        raise CheckpointError(f"the generator weights do not form a StyleGAN2: missing {e}") from None
    _account(full, sd.used, label, ROSINALITY_FILTERS, allow_unused, notes)
    return out


def rosinality_discriminator_to_nvlabs(sd: StateDict, *, label: str = "d", allow_unused: bool = False,
                                       notes: list[str] | None = None) -> StateDict:
    """Rename a rosinality discriminator state dict to NVlabs names (every tensor accounted for,
    as in `rosinality_generator_to_nvlabs`)."""
    if "convs.0.0.weight" not in sd or "final_conv.0.weight" not in sd:
        raise CheckpointError("no rosinality discriminator found (expected convs.0.0.weight "
                              "and final_conv.0.weight)")
    check_finite(sd, label)
    check_ranks(sd, ROSINALITY_RANKS, label)
    full, sd = sd, TrackedStateDict(sd)
    num_blocks = _count(sd, r"convs\.(\d+)\.") - 1
    top = 4 * 2 ** num_blocks
    out: StateDict = {}
    try:
        out[f"b{top}.fromrgb.weight"] = sd["convs.0.0.weight"]
        out[f"b{top}.fromrgb.bias"] = sd["convs.0.1.bias"]
        for j in range(1, num_blocks + 1):
            res = top // 2 ** (j - 1)
            out[f"b{res}.conv0.weight"] = sd[f"convs.{j}.conv1.0.weight"]
            out[f"b{res}.conv0.bias"] = sd[f"convs.{j}.conv1.1.bias"]
            out[f"b{res}.conv1.weight"] = sd[f"convs.{j}.conv2.1.weight"]
            out[f"b{res}.conv1.bias"] = sd[f"convs.{j}.conv2.2.bias"]
            out[f"b{res}.skip.weight"] = sd[f"convs.{j}.skip.1.weight"]
        out["b4.conv.weight"] = sd["final_conv.0.weight"]
        out["b4.conv.bias"] = sd["final_conv.1.bias"]
        for i, name in enumerate(("fc", "out")):
            out[f"b4.{name}.weight"] = sd[f"final_linear.{i}.weight"]
            out[f"b4.{name}.bias"] = sd[f"final_linear.{i}.bias"]
    except KeyError as e:
        raise CheckpointError(f"the discriminator weights do not form a StyleGAN2: missing {e}") from None
    _account(full, sd.used, label, ROSINALITY_FILTERS, allow_unused, notes)
    return out


def from_rosinality(ckpt: dict, allow_unused: bool = False) -> Converted:
    networks, notes = {}, []
    g_cfg = d_cfg = None
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        check_finite({"latent_avg": np.asarray(latent_avg)}, "the file's")
    args = ckpt.get("args")
    lr_mlp = getattr(args, "lr_mlp", None) if args is not None else None
    for name in ("g_ema", "g"):
        if name in ckpt:
            sd = rosinality_generator_to_nvlabs(dict(ckpt[name]), latent_avg, label=name,
                                                allow_unused=allow_unused, notes=notes)
            kwargs = {"mapping_lr_multiplier": float(lr_mlp)} if lr_mlp is not None else {}
            g_cfg, networks[name] = build_generator(sd, label=name, **kwargs)
    if "d" in ckpt:
        sd = rosinality_discriminator_to_nvlabs(dict(ckpt["d"]), allow_unused=allow_unused, notes=notes)
        d_cfg, networks["d"] = build_discriminator(sd, label="d")
    if not networks:
        raise CheckpointError(f"no networks found; a rosinality/StyleKD checkpoint holds g_ema, g "
                              f"and d, this one holds {sorted(ckpt)}")
    if latent_avg is None and g_cfg is not None:
        for name in ("g_ema", "g"):
            if name in networks:
                networks[name]["buffers"]["mapping"]["w_avg"] = estimate_w_avg(g_cfg, networks[name])
        notes.append(f"no latent_avg in the file: w_avg (used by truncation) is the mean of "
                     f"{W_AVG_SAMPLES} mapped random z (seed 0)")
    return Converted("rosinality-pt", g_cfg, d_cfg, networks, notes)


# ---------------------------------------------------------------------------------------


def _looks_like_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())


def convert_file(path: str, allow_unused: bool = False) -> Converted:
    """Read any supported StyleGAN2 file (format detected from its content).

    Every tensor of the networks must be used and finite; `allow_unused` turns unused tensors
    into a note instead of an error.
    """
    obj = load_torch_file(path)
    if isinstance(obj, tuple):
        return from_nvlabs(obj, allow_unused)
    if isinstance(obj, dict) and any(isinstance(obj.get(k), PersistentObject) for k in ("G", "G_ema", "D")):
        return from_nvlabs(obj, allow_unused)
    if isinstance(obj, dict) and any(k in obj for k in ("g_ema", "g", "d")):
        return from_rosinality(obj, allow_unused)
    if _looks_like_state_dict(obj):
        if "input.input" in obj:
            return from_rosinality({"g_ema": obj}, allow_unused)
        if "synthesis.b4.const" in obj or "mapping.fc0.weight" in obj:
            notes: list[str] = []
            g_cfg, variables = build_generator(obj, allow_unused=allow_unused, notes=notes)
            return Converted("nvlabs-state-dict", g_cfg, None, {"g_ema": variables}, notes)
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"not a StyleGAN2 checkpoint: expected an NVlabs network pickle "
                          f"(G, D, G_ema) or a rosinality/StyleKD .pt (g, d, g_ema); found {keys}")
