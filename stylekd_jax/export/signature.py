"""What an exported model computes, and the images it must reproduce.

An export is a pure function of its inputs with the weights baked in as constants:

    signature 'z':   z [N, z_dim] (and psi [] when truncation is an input) -> image
    signature 'ws':  ws [N, num_ws, w_dim] -> image

StyleGAN2 noise is the checkpoint's constant noise ('const' noise mode), so an exported
model is deterministic; with `noise='input'` a StyleGAN2 export takes one more input per
noise-carrying layer instead, in synthesis order `noise_b4_conv1, noise_b8_conv0,
noise_b8_conv1, ...`, each [N, res, res] (N(0, 1) draws are NVlabs' noise_mode='random').
The image is NHWC or NCHW, either the raw float output (about [-1, 1]) or uint8 rounded as
NVlabs does, `floor(clip(x * 127.5 + 128, 0, 255))`.

Verification compares an export's output with the JAX generator called the usual way
(`Generator.apply(variables, z, psi, cutoff, 'const')`), on z of fixed seeds (seed s gives
`RandomState(s).randn(1, z_dim)`, the convention of `generate`). Float32 exports must
agree to 1e-4 of the output's largest magnitude (uint8 ones to one grey level, a rounding
flip); float16 and int8 ones report their PSNR against float32 and fail below a floor.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.architecture import GeneratorConfig
from stylekd_jax.generate import seed_latents
from stylekd_jax.networks import make_generator
from stylekd_jax.networks.mapping import truncate
from stylekd_jax.ops.upfirdn2d import filters_as_depthwise_conv

SIGNATURES = ("z", "ws")
NOISES = ("const", "input")
LAYOUTS = ("nhwc", "nchw")
DTYPES = ("float", "uint8")
FLOAT32_TOLERANCE = 1e-4        # of the output scale
UINT8_TOLERANCE = 1             # grey levels
MIN_PSNR = {"float16": 35.0, "int8": 15.0}   # dB against float32; below is a failed export
EXAMPLE_PSI = 0.7               # the psi fed to a model whose psi is an input, when verifying


class ExportError(ValueError):
    """One-line, user-facing: an export that could not be written or did not verify."""


@dataclasses.dataclass(frozen=True)
class Signature:
    inputs: str = "z"                       # 'z' or 'ws'
    truncation_psi: float | None = 1.0      # None: psi is an input
    truncation_cutoff: int | None = None
    layout: str = "nhwc"
    dtype: str = "float"                    # 'float' or 'uint8'
    noise: str = "const"                    # 'const' (baked) or 'input' (StyleGAN2)

    def describe(self) -> str:
        psi = "psi input" if self.truncation_psi is None else f"psi {self.truncation_psi:g} baked"
        head = f"z -> image ({psi})" if self.inputs == "z" else "ws -> image"
        noise = ", noise inputs" if self.noise == "input" else ""
        return f"{head}{noise}, {self.layout.upper()} {self.dtype}"


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]    # None: the batch dimension
    dtype: str = "float32"


def noise_layers(cfg) -> list[tuple[int, str]]:
    """StyleGAN2's noise-carrying layers in synthesis order: (resolution, 'conv0' | 'conv1')."""
    if not isinstance(cfg, GeneratorConfig):
        raise ExportError("noise inputs are StyleGAN2's; a StyleGAN3 generator has no noise")
    layers, res = [(4, "conv1")], 8
    while res <= cfg.resolution:
        layers += [(res, "conv0"), (res, "conv1")]
        res *= 2
    return layers


def input_specs(cfg, sig: Signature) -> list[InputSpec]:
    if sig.inputs == "ws":
        specs = [InputSpec("ws", (None, cfg.num_ws, cfg.w_dim))]
    else:
        specs = [InputSpec("z", (None, cfg.z_dim))]
        if sig.truncation_psi is None:
            specs.append(InputSpec("psi", ()))
    if sig.noise == "input":
        specs += [InputSpec(f"noise_b{res}_{conv}", (None, res, res)) for res, conv in noise_layers(cfg)]
    return specs


def with_noise(cfg, variables, noises):
    """`variables` with each layer's constant noise map replaced by a batch of maps [N, H, W]."""
    synthesis = {block: dict(layers) for block, layers in variables["buffers"]["synthesis"].items()}
    for (res, conv), noise in zip(noise_layers(cfg), noises, strict=True):
        synthesis[f"b{res}"][conv] = {**synthesis[f"b{res}"][conv], "noise_const": noise}
    return {**variables, "buffers": {**variables["buffers"], "synthesis": synthesis}}


def _finish(img: jax.Array, sig: Signature) -> jax.Array:
    if sig.layout == "nchw":
        img = jnp.transpose(img, (0, 3, 1, 2))
    if sig.dtype == "uint8":
        img = jnp.floor(jnp.clip(img * 127.5 + 128, 0, 255)).astype(jnp.uint8)
    return img


def export_fn(cfg, variables, sig: Signature):
    """The function to convert: positional inputs as `input_specs`, weights as constants."""
    model = make_generator(cfg)
    variables = jax.tree_util.tree_map(np.asarray, variables)

    def synthesize(ws, noises):
        v = with_noise(cfg, variables, noises) if sig.noise == "input" else variables
        return _finish(model.apply(v, ws, "const", method="synthesize"), sig)

    if sig.inputs == "ws":
        return lambda ws, *noises: synthesize(ws, noises)
    if sig.truncation_psi is None:
        w_avg = variables["buffers"]["mapping"]["w_avg"]

        def z_psi_to_image(z, psi, *noises):
            ws = model.apply(variables, z, method="map")
            return synthesize(truncate(ws, w_avg, psi, sig.truncation_cutoff), noises)
        return z_psi_to_image

    def z_to_image(z, *noises):
        return synthesize(model.apply(variables, z, sig.truncation_psi, sig.truncation_cutoff,
                                      method="map"), noises)
    return z_to_image


def for_op_by_op_runtime(fn):
    """`fn` traced with its FIR filters as depthwise convolutions: what ONNX Runtime and TFLite,
    which run a graph op by op, run fastest (see `ops.upfirdn2d.filters_as_depthwise_conv`)."""
    def traced(*args):
        with filters_as_depthwise_conv():
            return fn(*args)
    return traced


def seed_noise(seeds, cfg) -> list[np.ndarray]:
    """Noise maps for the seeds, one [N, res, res] array per layer (layer i of seed s drawn
    from `default_rng([s, i])`)."""
    return [np.stack([np.random.default_rng([s, i]).standard_normal((res, res), np.float32)
                      for s in seeds]) for i, (res, _) in enumerate(noise_layers(cfg))]


def example_inputs(cfg, variables, sig: Signature, seeds) -> list[np.ndarray]:
    """Inputs for the fixed seeds, in `input_specs` order (ws: mapped with psi 1)."""
    z = seed_latents(seeds, cfg.z_dim)
    if sig.inputs == "ws":
        model = make_generator(cfg)
        inputs = [np.asarray(jax.jit(lambda v, z: model.apply(v, z, method="map"))(variables, z))]
    elif sig.truncation_psi is None:
        inputs = [z, np.float32(EXAMPLE_PSI)]
    else:
        inputs = [z]
    return inputs + (seed_noise(seeds, cfg) if sig.noise == "input" else [])


def reference_images(cfg, variables, sig: Signature, seeds) -> np.ndarray:
    """What the export must output for the seeds: the JAX generator's images, laid out and
    converted with numpy (not with the exported graph's own ops)."""
    model = make_generator(cfg)
    z = seed_latents(seeds, cfg.z_dim)
    psi = EXAMPLE_PSI if sig.truncation_psi is None else sig.truncation_psi
    if sig.noise == "input":
        variables = with_noise(cfg, variables, seed_noise(seeds, cfg))
    if sig.inputs == "ws":
        ws = example_inputs(cfg, variables, sig, seeds)[0]
        img = jax.jit(lambda v, ws: model.apply(v, ws, "const", method="synthesize"))(variables, ws)
    else:
        img = jax.jit(lambda v, z: model.apply(v, z, psi, sig.truncation_cutoff, "const"))(variables, z)
    img = np.asarray(img, np.float32)
    if sig.layout == "nchw":
        img = img.transpose(0, 3, 1, 2)
    if sig.dtype == "uint8":
        img = np.floor(np.clip(img * 127.5 + 128, 0, 255)).astype(np.uint8)
    return img


def psnr(got: np.ndarray, want: np.ndarray, sig: Signature) -> float:
    """dB; the peak-to-peak range is 2 for float images ([-1, 1]) and 255 for uint8."""
    peak = 255.0 if sig.dtype == "uint8" else 2.0
    mse = float(np.mean(np.square(got.astype(np.float64) - want.astype(np.float64))))
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def compare(what: str, got: np.ndarray, want: np.ndarray, sig: Signature,
            precision: str = "float32") -> str:
    """A one-line report of `got` against the JAX images; raises ExportError if it fails."""
    got = np.asarray(got)
    if got.shape != want.shape:
        raise ExportError(f"{what}: output shape {list(got.shape)}, expected {list(want.shape)}")
    if got.dtype.kind == "f" and not np.isfinite(got).all():
        raise ExportError(f"{what}: the output holds NaN or Inf")
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    quality = psnr(got, want, sig)
    if precision == "float32":
        if sig.dtype == "uint8":
            ok, bound = diff <= UINT8_TOLERANCE, f"{UINT8_TOLERANCE} grey level"
        else:
            scale = float(np.abs(want).max()) or 1.0
            ok, bound = diff <= FLOAT32_TOLERANCE * scale, f"{FLOAT32_TOLERANCE:g} x scale {scale:.3g}"
        line = f"{what}: max |diff| {diff:.3g} vs JAX (bound {bound})"
        if not ok:
            raise ExportError(f"{line}: the exported model does not reproduce the generator")
        return line + " ok"
    line = f"{what}: PSNR {quality:.1f} dB vs float32 JAX (max |diff| {diff:.3g})"
    if quality < MIN_PSNR[precision]:
        raise ExportError(f"{line}, below the {MIN_PSNR[precision]:g} dB floor for {precision}")
    return line + " ok"
