"""Student generators: their architecture and their initialisation from a teacher.

A StyleKD student is a generator of the teacher's family (StyleGAN2 or StyleGAN3) with the
teacher's mapping network and a thinner synthesis network (CAGAN's uniformly pruned shape), optionally with kernel-1 non-upsampling
convs ("heterogeneous" student). StyleKD's finding: inherit the teacher's mapping network,
initialise the synthesis network randomly (`init_student`'s defaults).

Channel rounding (`cagan_keep_channels`): CAGAN/StyleKD prune with a *remove* ratio,
`removed = int(C * remove_ratio)` per layer (`Get_Uniform_RmveList`, StyleKD
Util/pruning_util.py:233-244) and keep `C - removed`. We take `keep_ratio = 1 - remove_ratio`,
so keep_ratio 0.3 of [512]*10 + [256, 256, 128, 128] gives [154]*10 + [77, 77, 39, 39]
(512 - int(358.4) = 154, 256 - int(179.2) = 77, 128 - int(89.6) = 39).

Inheriting the synthesis network (`synthesis_init='inherit'`, the paper's "inherit conv"
baseline) keeps, in every channel slot of the per-layer `channels` list, the channels with
the highest score (`channel_selection`: L1 weight magnitude by default, or CAGAN's
content-aware or DCP-GAN's diversity-aware gradient scores), and slices every tensor that
touches a slot consistently: the const, each conv's output channels (weight, bias) and input
channels (weight, affine weight/bias, since the affine produces one style per input channel),
and the ToRGB inputs (weight, affine). ToRGB weights are multiplied by
sqrt(C_student / C_teacher) to undo the change of its 1/sqrt(C_in) style gain (the only layer
without demodulation), so a student whose dropped teacher channels fed nothing reproduces the
teacher exactly; CAGAN copies them unscaled. The slicing itself is CAGAN's
`Mask_the_Generator` (StyleKD Util/mask_util.py:11-121).

`inherit_discriminator` gives the teacher checkpoint's discriminator (official `--load 1`).
"""

import dataclasses
import math
import numbers
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.architecture import GeneratorConfig, StyleGAN3Config
from stylekd_jax.channel_selection import conv_layers, magnitude_scores, top_indices
from stylekd_jax.networks.generator import init_generator

MAPPING_INITS = ("inherit", "random")
SYNTHESIS_INITS = ("random", "inherit")


def cagan_keep_channels(channels: Sequence[int], keep_ratio: float) -> list[int]:
    """Channels kept per layer by CAGAN's uniform pruning with remove ratio `1 - keep_ratio`.

    `kept = C - floor(C * (1 - keep_ratio))`, as `(np.array(net_shape) * ratio).astype(int)`
    in CAGAN. A 1e-9 tolerance undoes the float error of `1 - keep_ratio` (1 - 0.9 is
    0.0999...98, which would otherwise remove nothing from a 10-channel layer where CAGAN's
    literal 0.1 removes one).
    """
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, numbers.Real) \
            or not 0.0 < float(keep_ratio) <= 1.0:
        raise ValueError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
    remove_ratio = 1.0 - float(keep_ratio)
    kept = [int(c) - int(math.floor(int(c) * remove_ratio + 1e-9)) for c in channels]
    if min(kept) < 1:
        raise ValueError(f"keep_ratio {keep_ratio} leaves no channel in some layer of "
                         f"{list(channels)} -> {kept}")
    return kept


def student_config(teacher, channels: Sequence[int] | None = None,
                   keep_ratio: float | None = None, kernel_size: int | None = None,
                   mapping_features: Sequence[int] | None = None, plain_mapping: bool = False):
    """The student architecture: the teacher's config with new synthesis channels and kernel.

    Give at most one of `channels` (the per-layer list, see `architecture`) and `keep_ratio`
    (CAGAN rounding of each teacher channel count, `cagan_keep_channels`); with neither the
    student has the teacher's channels. `kernel_size` (1 or 3, default the teacher's) is, for
    StyleGAN2, that of the non-upsampling convs of blocks 8..res and, for StyleGAN3, that of
    every layer but ToRGB. `mapping_features` defaults to the teacher's (needed to inherit
    the mapping network). `plain_mapping`: the mapping of the official two-stage students
    (StyleKD `--mlp_cfg`: `EqualLinear(..., activation='fused_lrelu')` layers at lr x1, no
    PixelNorm on z), else the teacher's lr multiplier and normalisation. Resolution, z/w
    dims, conv_clamp, image channels and (StyleGAN3) the whole filter schedule are the
    teacher's.
    """
    if not isinstance(teacher, (GeneratorConfig, StyleGAN3Config)):
        raise TypeError(f"teacher must be a GeneratorConfig or StyleGAN3Config, "
                        f"got {type(teacher).__name__}")
    kernel_field = "conv_kernel" if isinstance(teacher, StyleGAN3Config) else "kernel_size"
    if kernel_size is None:
        kernel_size = getattr(teacher, kernel_field)
    if channels is not None and keep_ratio is not None:
        raise ValueError("give at most one of channels and keep_ratio, not both")
    if keep_ratio is not None:
        channels = cagan_keep_channels(teacher.channels, keep_ratio)
    elif channels is None:
        channels = teacher.channels
    else:
        channels = list(channels)
        if len(channels) != len(teacher.channels):
            raise ValueError(f"a {teacher.resolution}px student needs {len(teacher.channels)} "
                             f"per-layer channels like the teacher's {list(teacher.channels)}, "
                             f"got {len(channels)}: {channels}")
    if mapping_features is None:
        mapping_features = teacher.mapping_features
    if plain_mapping:
        mapping = dict(mapping_lr_multiplier=1.0, mapping_normalize_z=False)
    else:
        mapping = dict(mapping_lr_multiplier=teacher.mapping_lr_multiplier,
                       mapping_normalize_z=teacher.mapping_normalize_z)
    return dataclasses.replace(teacher, channels=tuple(channels), mapping_features=tuple(mapping_features),
                               **mapping, **{kernel_field: kernel_size})


# ----------------------------------------------------------------------------------------------
# Layer bookkeeping in the per-layer channel convention.


def torgb_slots(cfg: GeneratorConfig) -> list[tuple[str, int]]:
    """(block, slot) pairs: the ToRGB of block k reads channel slot 2k + 1."""
    return [(f"b{res}", 2 * k + 1) for k, res in enumerate(cfg.block_resolutions)]


# The magnitude ranking's old names (the scores now live in channel_selection).
magnitude_keep_indices = top_indices


def magnitude_masks(teacher_cfg: GeneratorConfig, teacher_params: dict,
                    channels: Sequence[int]) -> list[np.ndarray]:
    """Kept teacher channel indices per slot by L1 weight magnitude (`magnitude_scores`)."""
    return keep_masks(magnitude_scores(teacher_cfg, teacher_params), teacher_cfg.channels, channels)


def keep_masks(scores: Sequence[np.ndarray], teacher_channels: Sequence[int],
               channels: Sequence[int]) -> list[np.ndarray]:
    """Per slot, the indices of the `channels[i]` highest of `scores[i]` (increasing order)."""
    if len(scores) != len(teacher_channels):
        raise ValueError(f"channel scores: expected one array per slot ({len(teacher_channels)}), "
                         f"got {len(scores)}")
    for i, (s, c) in enumerate(zip(scores, teacher_channels)):
        if np.shape(s) != (c,):
            raise ValueError(f"channel scores of slot {i}: shape {np.shape(s)}, expected ({c},)")
    return [top_indices(s, n) for s, n in zip(scores, channels)]


def _check_shape(name: str, array: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(array)
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{what}: {name} has shape {tuple(array.shape)}, expected {tuple(shape)}")
    return array


def _check_teacher(teacher_cfg: GeneratorConfig, teacher_vars: dict) -> None:
    """Raise if the teacher's variables do not have the shapes `teacher_cfg` describes."""
    if not isinstance(teacher_vars, dict) or "params" not in teacher_vars or "buffers" not in teacher_vars:
        raise ValueError("teacher_vars must be the generator variables {'params': ..., 'buffers': ...}")
    expected = jax.eval_shape(lambda k: init_generator(teacher_cfg, k), jax.random.PRNGKey(0))
    got = jax.tree_util.tree_map(np.shape, teacher_vars)
    want = jax.tree_util.tree_map(lambda s: tuple(s.shape), expected)
    if got != want:
        flat_got = dict(jax.tree_util.tree_flatten_with_path(got, is_leaf=lambda x: isinstance(x, tuple))[0])
        flat_want = dict(jax.tree_util.tree_flatten_with_path(want, is_leaf=lambda x: isinstance(x, tuple))[0])
        diffs = [f"{jax.tree_util.keystr(k)}: {flat_got.get(k)} vs {v}"
                 for k, v in flat_want.items() if flat_got.get(k) != v]
        diffs += [f"{jax.tree_util.keystr(k)}: unexpected" for k in flat_got if k not in flat_want]
        raise ValueError("teacher_vars do not match teacher_cfg (got vs expected): "
                         + "; ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else ""))


def _check_mapping(teacher_cfg, student_cfg):
    mismatches = [f"{f}: teacher {getattr(teacher_cfg, f)} vs student {getattr(student_cfg, f)}"
                  for f in ("z_dim", "w_dim", "mapping_features", "mapping_lr_multiplier",
                            "mapping_normalize_z")
                  if getattr(teacher_cfg, f) != getattr(student_cfg, f)]
    if mismatches:
        raise ValueError("mapping_init='inherit' needs the teacher's mapping architecture; "
                         "differs in " + "; ".join(mismatches)
                         + " (use mapping_init='random' and the two-stage mapping mimic instead)")


def _inherit_mapping(teacher_vars, params, buffers):
    params["mapping"] = jax.tree_util.tree_map(jnp.asarray, teacher_vars["params"]["mapping"])
    buffers["mapping"] = jax.tree_util.tree_map(jnp.asarray, teacher_vars["buffers"]["mapping"])


def _check_synthesis(teacher_cfg, student_cfg):
    for f in ("resolution", "w_dim", "img_channels"):
        if getattr(teacher_cfg, f) != getattr(student_cfg, f):
            raise ValueError(f"synthesis_init='inherit' needs the teacher's {f}: "
                             f"teacher {getattr(teacher_cfg, f)} vs student {getattr(student_cfg, f)}")
    wider = [i for i, (s, t) in enumerate(zip(student_cfg.channels, teacher_cfg.channels)) if s > t]
    if wider:
        raise ValueError(f"synthesis_init='inherit' can only remove channels, but the student's "
                         f"{list(student_cfg.channels)} exceed the teacher's "
                         f"{list(teacher_cfg.channels)} at layer(s) {wider}")
    if student_cfg.kernel_size > teacher_cfg.kernel_size:
        raise ValueError(f"synthesis_init='inherit' cannot grow kernel {teacher_cfg.kernel_size} "
                         f"to {student_cfg.kernel_size}")


def _inherit_synthesis(teacher_cfg, teacher_vars, student_cfg, params, buffers, masks):
    t_syn = teacher_vars["params"]["synthesis"]
    t_buf = teacher_vars["buffers"]["synthesis"]
    s_syn = params["synthesis"]
    s_buf = buffers["synthesis"]
    what = "synthesis_init='inherit'"

    def put(tree, path, value):
        *head, last = path
        node = tree
        for name in head:
            node = node[name]
        value = _check_shape("/".join(path), value, np.shape(node[last]), what)
        node[last] = jnp.asarray(value, dtype=jnp.asarray(node[last]).dtype)

    put(s_syn, ("b4", "const"), np.asarray(t_syn["b4"]["const"])[:, :, masks[0]])
    for i, (block, layer) in enumerate(conv_layers(teacher_cfg)):
        t = t_syn[block][layer]
        m_in, m_out = masks[i], masks[i + 1]
        w = np.asarray(t["weight"])[:, :, m_in][..., m_out]
        k_student = s_syn[block][layer]["weight"].shape[0]
        if k_student < w.shape[0]:          # kernel-1 student: the centre tap of the 3x3 kernel
            c = w.shape[0] // 2
            w = w[c:c + 1, c:c + 1]
        put(s_syn, (block, layer, "weight"), w)
        put(s_syn, (block, layer, "bias"), np.asarray(t["bias"])[m_out])
        put(s_syn, (block, layer, "affine", "weight"), np.asarray(t["affine"]["weight"])[:, m_in])
        put(s_syn, (block, layer, "affine", "bias"), np.asarray(t["affine"]["bias"])[m_in])
        put(s_syn, (block, layer, "noise_strength"), np.asarray(t["noise_strength"]))
        put(s_buf, (block, layer, "noise_const"), np.asarray(t_buf[block][layer]["noise_const"]))
    for block, slot in torgb_slots(teacher_cfg):
        t = t_syn[block]["torgb"]
        m = masks[slot]
        # ToRGB has no demodulation and scales its styles by 1/sqrt(C_in): rescale the kept
        # weights by sqrt(C_student / C_teacher) so the sliced ToRGB computes the teacher's
        # sum over the kept channels exactly (CAGAN copies them unscaled).
        gain = math.sqrt(len(m) / t["weight"].shape[2])
        put(s_syn, (block, "torgb", "weight"), np.asarray(t["weight"])[:, :, m] * np.float32(gain))
        put(s_syn, (block, "torgb", "bias"), np.asarray(t["bias"]))
        put(s_syn, (block, "torgb", "affine", "weight"), np.asarray(t["affine"]["weight"])[:, m])
        put(s_syn, (block, "torgb", "affine", "bias"), np.asarray(t["affine"]["bias"])[m])


def init_student(teacher_cfg: GeneratorConfig, teacher_vars: dict, student_cfg: GeneratorConfig,
                 key: jax.Array, *, mapping_init: str = "inherit",
                 synthesis_init: str = "random",
                 channel_scores: Sequence[np.ndarray] | None = None) -> dict:
    """Student variables {'params', 'buffers'} (plain dicts, like `init_generator`).

    mapping_init 'inherit' (StyleKD's default): the teacher's mapping weights and `w_avg`,
    copied exactly; needs the same z_dim, w_dim, mapping widths and lr multiplier.
    'random': fresh (then the trainer may run the two-stage mapping mimic).
    synthesis_init 'random' (StyleKD's default): fresh. 'inherit': the teacher's weights
    sliced to the student's highest-scoring channels (module docstring; ToRGB weights
    rescaled by sqrt(C_student / C_teacher)): `channel_scores` per slot, from
    `channel_selection.channel_scores` (default: L1 magnitude), the noise strengths
    and `noise_const` maps copied, kernel-1 convs taking the centre tap of the teacher's 3x3.
    Everything not inherited comes from `init_generator(student_cfg, key)`.
    """
    if mapping_init not in MAPPING_INITS:
        raise ValueError(f"mapping_init must be one of {MAPPING_INITS}, got {mapping_init!r}")
    if synthesis_init not in SYNTHESIS_INITS:
        raise ValueError(f"synthesis_init must be one of {SYNTHESIS_INITS}, got {synthesis_init!r}")
    if mapping_init == "random" and synthesis_init == "random":
        return init_generator(student_cfg, key)
    # All checks before the (slow to compile) initialisation.
    if mapping_init == "inherit":
        _check_mapping(teacher_cfg, student_cfg)
    if synthesis_init == "inherit":
        if isinstance(teacher_cfg, StyleGAN3Config):
            raise ValueError("synthesis_init='inherit' is implemented for StyleGAN2 teachers only; "
                             "StyleGAN3 students start from a random synthesis network "
                             "(StyleKD's default, synthesis_init='random')")
        _check_synthesis(teacher_cfg, student_cfg)
    if isinstance(teacher_vars, flax.core.FrozenDict):
        teacher_vars = flax.core.unfreeze(teacher_vars)
    _check_teacher(teacher_cfg, teacher_vars)
    if synthesis_init == "inherit":
        if channel_scores is None:
            channel_scores = magnitude_scores(teacher_cfg, teacher_vars["params"])
        masks = keep_masks(channel_scores, teacher_cfg.channels, student_cfg.channels)
    everything_inherited = mapping_init == "inherit" and synthesis_init == "inherit"
    if everything_inherited:
        # Every variable comes from the teacher: NaN placeholders of the right shapes instead
        # of compiling the student's initialiser (slow on CPU), checked below to be all gone.
        shapes = jax.eval_shape(lambda k: init_generator(student_cfg, k), key)
        variables = jax.tree_util.tree_map(lambda a: np.full(a.shape, np.nan, a.dtype), shapes)
    else:
        variables = init_generator(student_cfg, key)
    # Fresh containers so nothing of the caller's (or the teacher's) trees is mutated.
    params = jax.tree_util.tree_map(lambda x: x, variables["params"])
    buffers = jax.tree_util.tree_map(lambda x: x, variables["buffers"])
    if mapping_init == "inherit":
        _inherit_mapping(teacher_vars, params, buffers)
    if synthesis_init == "inherit":
        _inherit_synthesis(teacher_cfg, teacher_vars, student_cfg, params, buffers, masks)
    out = {"params": params, "buffers": buffers}
    if everything_inherited:
        missed = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_flatten_with_path(out)[0]
                  if isinstance(v, np.ndarray) and np.isnan(v).all() and v.size]
        if missed:
            raise AssertionError(f"init_student: not inherited: {missed}")
    return out


DISCRIMINATOR_INITS = ("random", "inherit")


def inherit_discriminator(teacher_dir: str, d_cfg) -> dict:
    """The teacher checkpoint's discriminator variables (official StyleKD `--load 1`, which
    starts D from the pruned checkpoint's 'd'), checked against the student's D `d_cfg`."""
    from stylekd_jax import checkpoint
    from stylekd_jax.networks import Discriminator
    what = "config.student.discriminator_init='inherit'"
    _, _, info = checkpoint.read_architecture(teacher_dir)
    stored = info.get("networks", [])
    if "d" not in stored:
        raise ValueError(f"{what}: the teacher checkpoint {teacher_dir} has no discriminator (it "
                         f"holds {stored}); convert a file that includes D (an NVlabs pickle, or a "
                         f"StyleKD/rosinality .pt with 'd') or set discriminator_init=random")
    _, _, nets = checkpoint.load(teacher_dir, ("d",))
    image = jax.ShapeDtypeStruct((1, d_cfg.resolution, d_cfg.resolution, d_cfg.img_channels),
                                 jnp.float32)
    want = jax.eval_shape(lambda x: Discriminator(d_cfg).init(jax.random.PRNGKey(0), x), image)
    want = dict(jax.tree_util.tree_flatten_with_path(want)[0])
    got = dict(jax.tree_util.tree_flatten_with_path(nets["d"])[0])
    diffs = [f"{jax.tree_util.keystr(k)}: {np.shape(got[k]) if k in got else 'missing'} vs "
             f"{tuple(v.shape)}" for k, v in want.items() if k not in got or np.shape(got[k]) != v.shape]
    diffs += [f"{jax.tree_util.keystr(k)}: unexpected" for k in got if k not in want]
    if diffs:
        raise ValueError(f"{what}: the teacher's discriminator in {teacher_dir} does not match the "
                         f"student's D architecture (got vs expected): " + "; ".join(diffs[:4])
                         + (" ..." if len(diffs) > 4 else "") + "; use discriminator_init=random")
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), nets["d"])
