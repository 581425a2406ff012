"""StyleGAN3 generators from NVlabs stylegan3-repo pickles into Flax variables.

The architecture comes from the generator's constructor kwargs (the repo's `train.py` passes
the synthesis kwargs flat: channel_base, channel_max, magnitude_ema_beta, and for config R
conv_kernel=1 and use_radial_filters=True), the per-layer channels from the tensor shapes,
and conv_clamp / magnitude_ema_beta / kernel from the layer objects themselves. The schedule
that follows (layer names, sizes, sampling rates, padding) is checked against every layer's
stored attributes, so a network built with settings this module does not know is refused
rather than converted wrongly.

Every buffer the file holds is used as is: `w_avg`, the input's `transform`, `freqs` and
`phases`, each layer's `magnitude_ema` and its up- and down-filter. The discriminator of the
stylegan3 repo is the StyleGAN2 one (converted by `convert.stylegan2`).
"""

from typing import Any

import jax
import numpy as np

from stylekd_jax.architecture import StyleGAN3Config
from stylekd_jax.convert.checks import TrackedStateDict, check_all_used, check_finite
from stylekd_jax.convert.torch_files import CheckpointError, PersistentObject

StateDict = dict[str, np.ndarray]

# Constructor kwargs of SynthesisNetwork / SynthesisLayer that map onto StyleGAN3Config fields.
_SYNTHESIS_KWARGS = ("num_layers", "num_critical", "first_cutoff", "first_stopband",
                     "last_stopband_rel", "margin_size", "output_scale", "conv_kernel",
                     "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
                     "magnitude_ema_beta")


def is_stylegan3(net: PersistentObject) -> bool:
    synthesis = net.modules.get("synthesis")
    return synthesis is not None and "input" in synthesis.modules


def _fc(sd: StateDict, name: str) -> dict[str, np.ndarray]:
    return {"weight": sd[f"{name}.weight"].T, "bias": sd[f"{name}.bias"].reshape(-1)}


def generator_config(G: PersistentObject) -> StyleGAN3Config:
    """The StyleGAN3Config of an NVlabs SG3 generator object, checked against its layers."""
    kwargs = G.init_kwargs
    synthesis = G.modules["synthesis"]
    names = list(synthesis.attr("layer_names") or [n for n in synthesis.modules if n != "input"])
    layers = [synthesis.modules[n] for n in names]
    sd = G.state_dict()
    torgb = layers[-1]
    cfg_kwargs: dict[str, Any] = {k: kwargs[k] for k in _SYNTHESIS_KWARGS if kwargs.get(k) is not None}
    # The layer objects hold what the kwargs may leave at their defaults.
    cfg_kwargs["num_layers"] = len(layers) - 1
    cfg_kwargs["num_critical"] = int(synthesis.attr("num_critical", cfg_kwargs.get("num_critical", 2)))
    cfg_kwargs["margin_size"] = int(synthesis.attr("margin_size", cfg_kwargs.get("margin_size", 10)))
    cfg_kwargs["output_scale"] = float(synthesis.attr("output_scale", cfg_kwargs.get("output_scale", 0.25)))
    cfg_kwargs["conv_kernel"] = int(layers[0].attr("conv_kernel", cfg_kwargs.get("conv_kernel", 3)))
    clamp = layers[0].attr("conv_clamp", cfg_kwargs.get("conv_clamp", 256))
    cfg_kwargs["conv_clamp"] = None if clamp is None else float(clamp)
    beta = layers[0].attr("magnitude_ema_beta", cfg_kwargs.get("magnitude_ema_beta"))
    if beta is not None:
        cfg_kwargs["magnitude_ema_beta"] = float(beta)
    cfg_kwargs["use_radial_filters"] = bool(cfg_kwargs.get("use_radial_filters", False)) or any(
        bool(layer.attr("down_radial", False)) for layer in layers)
    mapping = G.modules["mapping"]
    num_mapping = int(mapping.attr("num_layers", len([m for m in mapping.modules if m.startswith("fc")])))
    mapping_features = tuple(sd[f"mapping.fc{i}.weight"].shape[0] for i in range(num_mapping))
    fc0 = mapping.modules.get("fc0")
    lr = fc0.attr("bias_gain") if fc0 is not None else None
    w_avg_beta = mapping.attr("w_avg_beta")
    channels = tuple(sd[f"synthesis.{n}.weight"].shape[0] for n in names[:-1])
    try:
        cfg = StyleGAN3Config(
            resolution=int(kwargs.get("img_resolution", torgb.attr("out_size", [0])[0])),
            channels=channels, z_dim=sd["mapping.fc0.weight"].shape[1], w_dim=mapping_features[-1],
            mapping_features=mapping_features,
            mapping_lr_multiplier=float(lr) if lr is not None else 0.01,
            w_avg_beta=float(w_avg_beta) if w_avg_beta is not None else 0.998,
            img_channels=sd[f"synthesis.{names[-1]}.weight"].shape[0], **cfg_kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the StyleGAN3 generator's settings are not supported: {e}") from None
    _check_schedule(cfg, names, layers)
    return cfg


def _check_schedule(cfg: StyleGAN3Config, names: list[str], layers: list[PersistentObject]) -> None:
    """Every layer's stored geometry must be the one `cfg` computes."""
    expected = cfg.layers()
    if [e.name for e in expected] != names:
        raise CheckpointError(f"the StyleGAN3 layer names {names} differ from the ones its settings "
                              f"give, {[e.name for e in expected]}; the network uses settings that "
                              f"the converter does not read")
    for e, layer in zip(expected, layers):
        stored = {"in_size": layer.attr("in_size"), "out_size": layer.attr("out_size"),
                  "in_sampling_rate": layer.attr("in_sampling_rate"),
                  "out_sampling_rate": layer.attr("out_sampling_rate"),
                  "up_factor": layer.attr("up_factor"), "down_factor": layer.attr("down_factor"),
                  "padding": layer.attr("padding"), "in_cutoff": layer.attr("in_cutoff"),
                  "out_cutoff": layer.attr("out_cutoff")}
        for key, value in stored.items():
            if value is None:
                continue
            want = getattr(e, key)
            got = np.asarray(value, np.float64).reshape(-1)
            want_arr = np.asarray(want, np.float64).reshape(-1)
            if got.shape != want_arr.shape and got.size == 2 and want_arr.size == 1:
                got = got[:1]
            if got.shape != want_arr.shape or not np.allclose(got, want_arr, rtol=1e-6, atol=1e-6):
                raise CheckpointError(f"layer {e.name}: stored {key} {list(got)} differs from the "
                                      f"computed {list(want_arr)}; the network uses settings that "
                                      f"the converter does not read")


def generator_variables(sd: StateDict, cfg: StyleGAN3Config) -> dict[str, Any]:
    """Flax {'params', 'buffers'} from an NVlabs-named SG3 generator state dict."""
    params: dict[str, Any] = {"mapping": {}, "synthesis": {}}
    buffers: dict[str, Any] = {"mapping": {}, "synthesis": {}}
    for i in range(len(cfg.mapping_features)):
        params["mapping"][f"fc{i}"] = _fc(sd, f"mapping.fc{i}")
    buffers["mapping"]["w_avg"] = sd["mapping.w_avg"]
    params["synthesis"]["input"] = {"weight": sd["synthesis.input.weight"].T,
                                    "affine": _fc(sd, "synthesis.input.affine")}
    buffers["synthesis"]["input"] = {k: sd[f"synthesis.input.{k}"] for k in ("transform", "freqs", "phases")}
    for i, layer in enumerate(cfg.layers()):
        p = f"synthesis.{layer.name}"
        params["synthesis"][f"L{i}"] = {"weight": np.transpose(sd[f"{p}.weight"], (2, 3, 1, 0)),
                                        "bias": sd[f"{p}.bias"], "affine": _fc(sd, f"{p}.affine")}
        layer_buffers = {"magnitude_ema": sd[f"{p}.magnitude_ema"].reshape(())}
        for name, taps in (("up_filter", layer.up_taps), ("down_filter", layer.down_taps)):
            if taps > 1:
                layer_buffers[name] = sd[f"{p}.{name}"]
        buffers["synthesis"][f"L{i}"] = layer_buffers
    return {"params": params, "buffers": buffers}


def _flat(tree) -> dict[str, tuple]:
    return {".".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(v))
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def build_generator(G: PersistentObject, allow_unused: bool = False,
                    notes: list[str] | None = None, label: str = "G_ema") -> tuple[StyleGAN3Config, dict]:
    """(config, Flax variables) of an NVlabs SG3 generator; every tensor is accounted for
    (missing, misshapen, unused or non-finite ones are errors naming them)."""
    from stylekd_jax.networks.stylegan3 import Generator
    if int(G.init_kwargs.get("c_dim", 0) or 0) > 0:
        raise CheckpointError("conditional generators (c_dim > 0) are not supported; convert an "
                              "unconditional StyleGAN3")
    sd = TrackedStateDict(G.state_dict())
    check_finite(sd, label)
    try:
        cfg = generator_config(G)
        variables = generator_variables(sd, cfg)
    except KeyError as e:
        raise CheckpointError(f"the {label} weights do not form a StyleGAN3: missing {e}") from None
    z = jax.ShapeDtypeStruct((1, cfg.z_dim), np.float32)
    want = _flat(jax.eval_shape(lambda z: Generator(cfg).init(jax.random.PRNGKey(0), z), z))
    got = _flat(variables)
    problems = [f"missing {k}" for k in sorted(set(want) - set(got))][:3] + \
               [f"{k} has shape {got[k]}, expected {want[k]}"
                for k in sorted(set(want) & set(got)) if got[k] != want[k]][:3]
    if problems:
        raise CheckpointError(f"the {label} weights do not form a StyleGAN3: " + "; ".join(problems))
    unused_notes = check_all_used(sd, sd.used, label, allow_unused=allow_unused)
    if notes is not None:
        notes.extend(unused_notes)
    return cfg, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), variables)
