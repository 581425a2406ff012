"""PyTorch exports: NVlabs state dicts and StyleKD/rosinality `.pt` files, written without torch.

The inverse of the converters (`convert.stylegan2`, `convert.stylegan3`): Flax variables
(dense [in, out], conv HWIO, const [4, 4, C]) become NVlabs names and layouts (dense
[out, in], conv [O, I, k, k], const [C, 4, 4]), and those the rosinality names:

    mapping.fc{i}                      style.{i+1}
    mapping.w_avg                      latent_avg (top-level key)
    synthesis.b4.const [C,4,4]         input.input [1,C,4,4]
    *.weight [O,I,k,k]                 *.conv.weight [1,O,I,k,k]
    *.affine / *.noise_strength []     *.conv.modulation / *.noise.weight [1]
    *.bias (styled conv)               *.activate.bias; ToRGB bias [1,3,1,1]
    b4.conv1, b4.torgb                 conv1, to_rgb1
    b{r}.conv0, .conv1, .torgb         convs.{2k}, convs.{2k+1}, to_rgbs.{k}, k = log2(r) - 3
    noise_const of those layers        noises.noise_0, noise_{2k+1}, noise_{2k+2} [1,1,r,r]

Fixed blur buffers are written too (NVlabs `resample_filter` = outer([1,3,3,1])/64;
rosinality `kernel` = that x 4 on upsampling convs and ToRGB upsamplers), so a strict
`load_state_dict` accepts the files.

Files:
  generator_stylekd.pt  (StyleGAN2) {'g_ema', 'latent_avg', 'generator_net_shape',
      'kernel_size', 'size', 'style_dim', 'n_mlp'}: StyleKD's
      `Generator(size, style_dim, n_mlp, generator_net_shape=..., kernel_size=...)` loads
      `g_ema` (rosinality's plain Generator too, for teacher-shaped networks).
  generator_nvlabs.pt   the NVlabs state dict (G_ema.state_dict() of `training.networks`
      / `networks_stylegan2.Generator`, or `networks_stylegan3.Generator`), and
  generator_nvlabs.json the kwargs that build that class; a pruned student has no
      channel_base/channel_max that give its channels, so its JSON says so and lists them.
"""

import collections
import json
import os

import numpy as np

from stylekd_jax.architecture import GeneratorConfig, StyleGAN3Config, nvlabs_channels
from stylekd_jax.convert import torch_writer
from stylekd_jax.export.signature import ExportError

ROSINALITY_FILE = "generator_stylekd.pt"
NVLABS_FILE = "generator_nvlabs.pt"
NVLABS_KWARGS_FILE = "generator_nvlabs.json"


def _blur(gain: float = 1.0) -> np.ndarray:
    f = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0])
    return (f / f.sum() * gain).astype(np.float32)


def _np(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def _conv(weight) -> np.ndarray:
    """HWIO -> [O, I, k, k]."""
    return np.ascontiguousarray(np.transpose(_np(weight), (3, 2, 0, 1)))


def _fc(layer) -> dict[str, np.ndarray]:
    return {"weight": np.ascontiguousarray(_np(layer["weight"]).T), "bias": _np(layer["bias"])}


def _put(out: dict, prefix: str, tensors: dict) -> None:
    out.update((f"{prefix}.{k}", v) for k, v in tensors.items())


def _mapping(cfg, variables, out: dict) -> None:
    for i in range(len(cfg.mapping_features)):
        _put(out, f"mapping.fc{i}", _fc(variables["params"]["mapping"][f"fc{i}"]))
    out["mapping.w_avg"] = _np(variables["buffers"]["mapping"]["w_avg"])


def nvlabs_state_dict(cfg, variables) -> dict[str, np.ndarray]:
    """The NVlabs generator state dict (StyleGAN2 or StyleGAN3) of Flax variables."""
    if isinstance(cfg, StyleGAN3Config):
        return _nvlabs_stylegan3(cfg, variables)
    params, buffers = variables["params"]["synthesis"], variables["buffers"]["synthesis"]
    out: dict[str, np.ndarray] = collections.OrderedDict()
    for res in cfg.block_resolutions:
        p, b, prefix = params[f"b{res}"], buffers[f"b{res}"], f"synthesis.b{res}"
        if res == 4:
            out[f"{prefix}.const"] = np.ascontiguousarray(np.transpose(_np(p["const"]), (2, 0, 1)))
        out[f"{prefix}.resample_filter"] = _blur()
        for layer in (["conv1"] if res == 4 else ["conv0", "conv1"]):
            q = p[layer]
            _put(out, f"{prefix}.{layer}", {
                "weight": _conv(q["weight"]), "noise_strength": _np(q["noise_strength"]).reshape(()),
                "bias": _np(q["bias"]), "resample_filter": _blur(),
                "noise_const": _np(b[layer]["noise_const"])})
            _put(out, f"{prefix}.{layer}.affine", _fc(q["affine"]))
        _put(out, f"{prefix}.torgb", {"weight": _conv(p["torgb"]["weight"]),
                                      "bias": _np(p["torgb"]["bias"])})
        _put(out, f"{prefix}.torgb.affine", _fc(p["torgb"]["affine"]))
    _mapping(cfg, variables, out)
    return out


def _nvlabs_stylegan3(cfg: StyleGAN3Config, variables) -> dict[str, np.ndarray]:
    params, buffers = variables["params"]["synthesis"], variables["buffers"]["synthesis"]
    out: dict[str, np.ndarray] = collections.OrderedDict()
    _mapping(cfg, variables, out)
    inp = params["input"]
    out["synthesis.input.weight"] = np.ascontiguousarray(_np(inp["weight"]).T)
    _put(out, "synthesis.input.affine", _fc(inp["affine"]))
    for key in ("transform", "freqs", "phases"):
        out[f"synthesis.input.{key}"] = _np(buffers["input"][key])
    for i, layer in enumerate(cfg.layers()):
        p, b, prefix = params[f"L{i}"], buffers[f"L{i}"], f"synthesis.{layer.name}"
        out[f"{prefix}.weight"] = _conv(p["weight"])
        out[f"{prefix}.bias"] = _np(p["bias"])
        out[f"{prefix}.magnitude_ema"] = _np(b["magnitude_ema"]).reshape(())
        for name in ("up_filter", "down_filter"):
            if name in b:
                out[f"{prefix}.{name}"] = _np(b[name])
        _put(out, f"{prefix}.affine", _fc(p["affine"]))
    return out


def rosinality_checkpoint(cfg: GeneratorConfig, variables) -> dict:
    """The StyleKD/rosinality `.pt` tree of a StyleGAN2 generator (module docstring)."""
    why = rosinality_unsupported(cfg)
    if why:
        raise ExportError(why)
    sd = nvlabs_state_dict(cfg, variables)
    g: dict[str, np.ndarray] = collections.OrderedDict()
    for i in range(len(cfg.mapping_features)):
        g[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        g[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    g["input.input"] = sd["synthesis.b4.const"][None]

    def styled(dst: str, src: str, up: bool) -> None:
        g[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        if up:
            g[f"{dst}.conv.blur.kernel"] = _blur(4.0)
        g[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        g[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        g[f"{dst}.activate.bias"] = sd[f"{src}.bias"]

    def to_rgb(dst: str, src: str, up: bool) -> None:
        g[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            g[f"{dst}.upsample.kernel"] = _blur(4.0)
        g[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        g[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]

    blocks = cfg.block_resolutions[1:]
    styled("conv1", "synthesis.b4.conv1", False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", False)
    for k, res in enumerate(blocks):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", False)
    for k, res in enumerate(blocks):
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", True)
    g["noises.noise_0"] = sd["synthesis.b4.conv1.noise_const"][None, None]
    for k, res in enumerate(blocks):
        g[f"noises.noise_{2 * k + 1}"] = sd[f"synthesis.b{res}.conv0.noise_const"][None, None]
        g[f"noises.noise_{2 * k + 2}"] = sd[f"synthesis.b{res}.conv1.noise_const"][None, None]
    return {"g_ema": g, "latent_avg": sd["mapping.w_avg"],
            "generator_net_shape": [int(c) for c in cfg.channels], "kernel_size": int(cfg.kernel_size),
            "size": int(cfg.resolution), "style_dim": int(cfg.w_dim),
            "n_mlp": len(cfg.mapping_features)}


def rosinality_unsupported(cfg) -> str | None:
    """Why the StyleKD/rosinality format cannot hold this generator (None if it can)."""
    if isinstance(cfg, StyleGAN3Config):
        return "the StyleKD/rosinality .pt format is StyleGAN2-only; StyleGAN3 exports the NVlabs state dict"
    if not getattr(cfg, "mapping_normalize_z", True):
        return "the StyleKD .pt's mapping always normalises z (PixelNorm); this generator does not"
    if set(cfg.mapping_features) != {cfg.w_dim} or cfg.z_dim != cfg.w_dim:
        return (f"the StyleKD .pt needs z_dim = w_dim = every mapping width (style_dim), got "
                f"z_dim {cfg.z_dim}, mapping {list(cfg.mapping_features)}")
    if abs(cfg.mapping_lr_multiplier - 0.01) > 1e-12:
        return (f"the StyleKD .pt records no mapping lr multiplier (its default is 0.01, this "
                f"generator's {cfg.mapping_lr_multiplier:g})")
    return None


def _nvlabs_channel_settings(cfg) -> dict | None:
    """channel_base / channel_max that rebuild cfg's channels in the NVlabs class, or None."""
    candidates_max = sorted({2 ** k for k in range(0, 12)} | {max(cfg.channels)})
    for base in [2 ** k for k in range(4, 20)]:
        for cmax in candidates_max:
            if isinstance(cfg, StyleGAN3Config):
                try:
                    ok = StyleGAN3Config.teacher(
                        cfg.resolution, cfg.config_name, channel_base=base, channel_max=cmax,
                        **_sg3_schedule(cfg)).channels == cfg.channels
                except ValueError:
                    ok = False
            else:
                per_res = nvlabs_channels(cfg.resolution, base, cmax)
                ok = tuple(per_res[r] for r in sorted(per_res) for _ in range(2)) == cfg.channels
            if ok:
                return {"channel_base": base, "channel_max": cmax}
    return None


def _sg3_schedule(cfg: StyleGAN3Config) -> dict:
    keys = ("num_layers", "num_critical", "first_cutoff", "first_stopband", "last_stopband_rel",
            "margin_size", "output_scale", "conv_kernel", "filter_size", "lrelu_upsampling",
            "use_radial_filters", "conv_clamp", "magnitude_ema_beta")
    return {k: getattr(cfg, k) for k in keys}


def nvlabs_kwargs(cfg) -> dict:
    """Constructor kwargs of the NVlabs Generator class, with a note when none can build it."""
    mapping = {"num_layers": len(cfg.mapping_features), "lr_multiplier": cfg.mapping_lr_multiplier,
               "w_avg_beta": cfg.w_avg_beta}
    common = {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "img_resolution": cfg.resolution,
              "img_channels": cfg.img_channels, "mapping_kwargs": mapping}
    channels = _nvlabs_channel_settings(cfg)
    problems = []
    if channels is None:
        problems.append(f"its per-layer channels {list(cfg.channels)} follow no channel_base/"
                        f"channel_max")
    if not getattr(cfg, "mapping_normalize_z", True):
        problems.append("its mapping does not normalise z")
    if set(cfg.mapping_features) != {cfg.w_dim}:
        problems.append(f"its mapping widths {list(cfg.mapping_features)} differ from w_dim")
    if isinstance(cfg, StyleGAN3Config):
        out = {"class_name": "training.networks_stylegan3.Generator", **common,
               **(channels or {}), **_sg3_schedule(cfg)}
    else:
        if cfg.kernel_size != 3:
            problems.append(f"its non-upsampling convs have kernel {cfg.kernel_size} (NVlabs: 3)")
        out = {"class_name": "training.networks.Generator", **common,
               "synthesis_kwargs": {**(channels or {}), "num_fp16_res": 0,
                                    "conv_clamp": cfg.conv_clamp, "architecture": "skip"}}
    out["channels"] = list(cfg.channels)
    if problems:
        out["note"] = ("the NVlabs class cannot build this generator: " + "; ".join(problems)
                       + (". Load generator_stylekd.pt with StyleKD's Generator instead"
                          if isinstance(cfg, GeneratorConfig) else ""))
    return out


def export(cfg, variables, out_dir: str) -> list[str]:
    """Write the torch files into out_dir; returns their paths."""
    paths = []
    if rosinality_unsupported(cfg) is None:
        path = os.path.join(out_dir, ROSINALITY_FILE)
        torch_writer.save(rosinality_checkpoint(cfg, variables), path)
        paths.append(path)
    path = os.path.join(out_dir, NVLABS_FILE)
    torch_writer.save(nvlabs_state_dict(cfg, variables), path)
    with open(os.path.join(out_dir, NVLABS_KWARGS_FILE), "w") as f:
        json.dump(nvlabs_kwargs(cfg), f, indent=2)
    return paths + [path, os.path.join(out_dir, NVLABS_KWARGS_FILE)]


def read_back(cfg, path: str):
    """(config, Flax variables) of a written file, through the project's torch-free reader and
    converters, which were written and tested independently of this module."""
    from stylekd_jax.convert import stylegan2, stylegan3
    from stylekd_jax.convert.torch_files import load_torch_file
    if os.path.basename(path) == ROSINALITY_FILE:
        converted = stylegan2.convert_file(path)
        return converted.generator, converted.networks["g_ema"]
    sd = load_torch_file(path)
    if isinstance(cfg, StyleGAN3Config):
        return cfg, stylegan3.generator_variables(sd, cfg)
    return stylegan2.build_generator(sd, conv_clamp=cfg.conv_clamp,
                                     mapping_lr_multiplier=cfg.mapping_lr_multiplier,
                                     w_avg_beta=cfg.w_avg_beta)
