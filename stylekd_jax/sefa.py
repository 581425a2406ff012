"""SeFa (closed-form semantic factorisation) latent directions for StyleKD's LD loss.

Follows StyleKD's `calc_direction_split` / `calc_direction_global`
(distributed_train.py:43-68), which the official run calls with `max(mimic_layer)` = 5 blocks:

- Blocks: rosinality's `convs[2i]`, `convs[2i+1]` for i < num_blocks, i.e. conv0 and conv1
  of the synthesis blocks **after** b4 (b8, b16, ..., b128 for 5 blocks). b4's single conv
  (rosinality `conv1`, not in `convs`) and all ToRGB affines are not used.
- Matrix: the two convs' affine (modulation) weights concatenated along their output (style
  channel) axis. rosinality stores them [C, w_dim]; StyleKD concatenates on axis 0 and
  transposes, giving [w_dim, C1 + C2], which is our [in, out] layout as stored. Each COLUMN
  (one style channel's weight vector over w) is divided by its L2 norm
  (`w /= np.linalg.norm(w, axis=0, keepdims=True)`). Raw stored weights are used; the
  equalised-lr gain is a constant that this normalisation removes.
- Directions: eigenvectors of W W^T [w_dim, w_dim]. StyleKD calls `np.linalg.eig` and takes
  the first 5 columns without sorting (eig's order is unspecified); we use the symmetric
  solver `np.linalg.eigh` in float64 and take the largest eigenvalues first, which is what
  SeFa means (the official order coincides with this one whenever LAPACK happens to return
  eigenvalues in descending order).
- 'split': `per_block` vectors per block, blocks in order (b8 first); 'global': one matrix of
  the same `num_blocks` blocks' columns stacked (each column normalised), top `total`
  (StyleKD: 5 per block, i.e. 25).
- StyleGAN3 (no blocks): "block" j is the pair of layers (L{2j}, L{2j+1}), so 5 blocks are
  L0..L9; the input's affine (a rotation/translation, not styles) and ToRGB are not used.
- Signs: an eigenvector's sign is arbitrary; each row is flipped so that its component of
  largest magnitude is positive (first such component on ties), making the result
  deterministic. The LD loss draws offsets with a symmetric N(0,1) scale, so the sign does not
  change training statistics.
"""

from typing import Any

import numpy as np

from stylekd_jax.architecture import GeneratorConfig, StyleGAN3Config

MODES = ("split", "global")


def _affine_columns(g_cfg, params: dict, num_blocks: int) -> list[np.ndarray]:
    """Per block (b8, b16, ...): the [w_dim, C_in(conv0) + C_in(conv1)] affine weights.

    StyleGAN3 has no blocks: its layers are paired in order, (L0, L1), (L2, L3), ...
    """
    syn = params["synthesis"]
    if isinstance(g_cfg, StyleGAN3Config):
        return [np.concatenate([np.asarray(syn[f"L{2 * j + i}"]["affine"]["weight"], np.float64)
                                for i in (0, 1)], axis=1) for j in range(num_blocks)]
    mats = []
    for res in g_cfg.block_resolutions[1:1 + num_blocks]:
        block = syn[f"b{res}"]
        mats.append(np.concatenate([np.asarray(block["conv0"]["affine"]["weight"], np.float64),
                                    np.asarray(block["conv1"]["affine"]["weight"], np.float64)],
                                   axis=1))
    return mats


def _top_eigenvectors(w: np.ndarray, k: int) -> np.ndarray:
    """Top-k eigenvectors (rows) of W W^T for W with normalised columns, sign-fixed."""
    norms = np.linalg.norm(w, axis=0, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an affine weight column is all zeros; cannot normalise it")
    w = w / norms
    eigvals, eigvecs = np.linalg.eigh(w @ w.T)           # ascending eigenvalues
    order = np.argsort(-eigvals, kind="stable")[:k]
    vectors = eigvecs[:, order].T                        # [k, w_dim]
    largest = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(k), largest])
    return vectors * signs[:, None]


def sefa_directions(g_cfg: GeneratorConfig | StyleGAN3Config, g_vars: dict[str, Any], mode: str = "split",
                    num_blocks: int = 5, per_block: int = 5, total: int = 25) -> np.ndarray:
    """SeFa directions [K, w_dim] (float32, unit rows): K = num_blocks * per_block ('split')
    or `total` ('global'). `g_vars`: the generator variables (or just its 'params')."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    params = g_vars["params"] if "params" in g_vars else g_vars
    if isinstance(g_cfg, StyleGAN3Config):
        available = g_cfg.num_layers // 2
        if not 1 <= num_blocks <= available:
            raise ValueError(f"num_blocks must be in [1, {available}] (pairs of the "
                             f"{g_cfg.num_layers} StyleGAN3 layers), got {num_blocks}")
    else:
        available = len(g_cfg.block_resolutions) - 1
        if not 1 <= num_blocks <= available:
            raise ValueError(f"num_blocks must be in [1, {available}] (the blocks after b4 of a "
                             f"{g_cfg.resolution}px generator), got {num_blocks}")
    k = per_block if mode == "split" else total
    if not 1 <= k <= g_cfg.w_dim:
        name = "per_block" if mode == "split" else "total"
        raise ValueError(f"{name} must be in [1, w_dim={g_cfg.w_dim}], got {k}")
    mats = _affine_columns(g_cfg, params, num_blocks)
    if mode == "split":
        vectors = np.concatenate([_top_eigenvectors(m, per_block) for m in mats], axis=0)
    else:
        vectors = _top_eigenvectors(np.concatenate(mats, axis=1), total)
    return vectors.astype(np.float32)


def training_directions(g_cfg: GeneratorConfig | StyleGAN3Config, g_vars: dict[str, Any],
                        mode: str = "split", ld_layers: tuple[int, ...] | None = None) -> np.ndarray:
    """The directions distillation uses for the LD loss: 5 per block for the first
    max(ld_layers) blocks after the 4x4 one, as the official code (StyleGAN3: pairs of layers
    L0..L9); without `ld_layers` (edit, explore), the default's 5 blocks or as many as the
    generator has (fewer below 128 px), so that an edit is one the student was trained on."""
    available = (g_cfg.num_layers // 2 if isinstance(g_cfg, StyleGAN3Config)
                 else len(g_cfg.block_resolutions) - 1)
    num_blocks = max(ld_layers) if ld_layers else min(5, available)
    if not 1 <= num_blocks <= available:
        raise ValueError(f"ld_layers {tuple(ld_layers)} needs {num_blocks} blocks after the 4x4 one; "
                         f"this generator has {available}")
    return sefa_directions(g_cfg, g_vars, mode=mode, num_blocks=num_blocks)
