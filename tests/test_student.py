"""Student architecture (CAGAN rounding, paper's parameter counts) and initialisation."""

import dataclasses

import jax
import numpy as np
import pytest

from stylekd_jax.architecture import GeneratorConfig, count_params
from stylekd_jax.networks import Generator
from stylekd_jax.networks.generator import init_generator
from stylekd_jax.student import cagan_keep_channels, init_student, student_config

TEACHER = GeneratorConfig.teacher(16, channel_base=128, channel_max=8, z_dim=16, w_dim=16,
                                  mapping_features=(16, 16))        # channels [8]*6
# Few distinct shapes: every new network shape costs seconds of op-by-op compilation on CPU.
SMALL = [4, 4, 3, 3, 2, 2]


def _np_tree(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _param_count(cfg):
    shapes = jax.eval_shape(lambda k: init_generator(cfg, k), jax.random.PRNGKey(0))
    return count_params(shapes["params"])


@pytest.fixture(scope="module")
def teacher_vars():
    variables = _np_tree(init_generator(TEACHER, jax.random.PRNGKey(1)))
    # Non-trivial biases, noise strengths and w_avg so that copying mistakes show in images.
    rng = np.random.RandomState(0)
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        *parents, last = [k.key for k in path]
        node = variables
        for k in parents:
            node = node[k]
        if last in ("bias", "noise_strength", "w_avg"):
            node[last] = (leaf + 0.3 * rng.randn(*leaf.shape)).astype(np.float32)
    return variables


# ---------------------------------------------------------------------------------------------
# student_config


def test_cagan_rounding_gives_the_papers_256px_student_and_param_counts():
    teacher = GeneratorConfig.teacher(256)
    student = student_config(teacher, keep_ratio=0.3)
    assert list(student.channels) == [154] * 10 + [77, 77, 39, 39]
    # CAGAN's own formula: kept = C - int(C * remove_ratio), remove_ratio 0.7.
    shape = np.array(teacher.channels)
    assert list(student.channels) == list(shape - (shape * 0.7).astype(int))
    assert student.mapping_features == teacher.mapping_features and student.kernel_size == 3
    assert _param_count(student) == 5_573_364                      # 5.57M (paper Table 3: 5.6M)
    heter = student_config(teacher, keep_ratio=0.3, kernel_size=1)
    assert _param_count(heter) == 4_754_852                        # 4.75M
    assert _param_count(teacher) == 30_034_338                     # 30.0M (paper Table 3)


def test_cagan_rounding_is_robust_to_float_error_of_one_minus_keep():
    # CAGAN with remove_ratio=0.1 literal: int(10 * 0.1) = 1 removed. 1 - 0.9 = 0.0999..98.
    shape = np.array([10, 20, 30, 512, 7])
    for keep, remove in ((0.9, 0.1), (0.7, 0.3), (0.3, 0.7), (0.5, 0.5), (0.25, 0.75)):
        assert cagan_keep_channels(shape, keep) == list(shape - (shape * remove).astype(int)), keep
    assert cagan_keep_channels([8, 4], 1.0) == [8, 4]
    assert cagan_keep_channels([512], np.float32(0.3)) == [154]


def test_student_config_variants():
    assert student_config(TEACHER) == TEACHER
    s = student_config(TEACHER, channels=[4, 4, 3, 3, 2, 2], kernel_size=1, mapping_features=(8, 16))
    assert s.channels == (4, 4, 3, 3, 2, 2) and s.kernel_size == 1 and s.mapping_features == (8, 16)
    assert (s.resolution, s.z_dim, s.w_dim, s.conv_clamp) == (16, 16, 16, None)
    assert student_config(TEACHER, keep_ratio=0.5).channels == (4,) * 6


def test_student_config_errors():
    with pytest.raises(ValueError, match="at most one"):
        student_config(TEACHER, channels=[4] * 6, keep_ratio=0.5)
    for bad in (0, 0.0, -0.1, 1.5, "0.3", True):
        with pytest.raises(ValueError, match="keep_ratio"):
            student_config(TEACHER, keep_ratio=bad)
    with pytest.raises(ValueError, match="6 per-layer channels"):
        student_config(TEACHER, channels=[4] * 5)
    with pytest.raises(ValueError, match="positive"):
        student_config(TEACHER, channels=[4, 4, 0, 4, 4, 4])
    with pytest.raises(ValueError, match="kernel_size"):
        student_config(TEACHER, kernel_size=2)
    with pytest.raises(ValueError, match="w_dim"):
        student_config(TEACHER, mapping_features=(16, 8))
    with pytest.raises(TypeError):
        student_config({"resolution": 16})


# ---------------------------------------------------------------------------------------------
# init_student


def test_random_random_is_init_generator():
    cfg = student_config(TEACHER, channels=SMALL)
    got = init_student(TEACHER, None, cfg, jax.random.PRNGKey(3), mapping_init="random")
    want = init_generator(cfg, jax.random.PRNGKey(3))
    jax.tree_util.tree_map(np.testing.assert_array_equal, _np_tree(got), _np_tree(want))


def test_inherit_mapping_copies_exactly_and_synthesis_stays_random(teacher_vars):
    cfg = student_config(TEACHER, channels=SMALL)
    key = jax.random.PRNGKey(5)
    got = _np_tree(init_student(TEACHER, teacher_vars, cfg, key))
    fresh = _np_tree(init_generator(cfg, key))
    jax.tree_util.tree_map(np.testing.assert_array_equal, got["params"]["mapping"],
                           teacher_vars["params"]["mapping"])
    np.testing.assert_array_equal(got["buffers"]["mapping"]["w_avg"],
                                  teacher_vars["buffers"]["mapping"]["w_avg"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, got["params"]["synthesis"],
                           fresh["params"]["synthesis"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, got["buffers"]["synthesis"],
                           fresh["buffers"]["synthesis"])
    # Same ws from the same z: the mapping networks agree.
    z = np.random.RandomState(0).randn(3, 16).astype(np.float32)
    ws_t = Generator(TEACHER).apply(teacher_vars, z, 0.7, method=Generator.map)
    ws_s = Generator(cfg).apply(got, z, 0.7, method=Generator.map)
    np.testing.assert_array_equal(np.asarray(ws_t), np.asarray(ws_s))


def test_inherit_mapping_errors(teacher_vars):
    key = jax.random.PRNGKey(0)
    for kwargs, match in (({"mapping_features": (8, 16)}, "mapping_features"),):
        cfg = student_config(TEACHER, **kwargs)
        with pytest.raises(ValueError, match=match):
            init_student(TEACHER, teacher_vars, cfg, key)
    cfg = dataclasses.replace(TEACHER, z_dim=8)
    with pytest.raises(ValueError, match="z_dim"):
        init_student(TEACHER, teacher_vars, cfg, key)
    cfg = dataclasses.replace(TEACHER, mapping_lr_multiplier=1.0)
    with pytest.raises(ValueError, match="mapping_lr_multiplier"):
        init_student(TEACHER, teacher_vars, cfg, key)
    with pytest.raises(ValueError, match="mapping_init"):
        init_student(TEACHER, teacher_vars, TEACHER, key, mapping_init="copy")
    with pytest.raises(ValueError, match="synthesis_init"):
        init_student(TEACHER, teacher_vars, TEACHER, key, synthesis_init="prune")
    # Teacher variables that do not match the teacher config.
    with pytest.raises(ValueError, match="do not match teacher_cfg"):
        init_student(student_config(TEACHER, keep_ratio=0.5), teacher_vars, TEACHER, key)


def test_keep_ratio_one_inherit_reproduces_the_teacher_exactly(teacher_vars):
    cfg = student_config(TEACHER, keep_ratio=1.0)
    got = _np_tree(init_student(TEACHER, teacher_vars, cfg, jax.random.PRNGKey(9),
                                mapping_init="inherit", synthesis_init="inherit"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, teacher_vars)
    z = np.random.RandomState(1).randn(4, 16).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(Generator(cfg).apply(got, z, 0.8)),
                                  np.asarray(Generator(TEACHER).apply(teacher_vars, z, 0.8)))


def _hand_made_teacher(teacher_vars, rng):
    """Teacher whose dropped channels are known: in each slot the kept channels are a random
    subset; dropped channels get tiny output weights (lowest L1) AND zero weight into every
    consumer (next conv, ToRGB), so the teacher's image does not depend on them."""
    v = jax.tree_util.tree_map(np.array, teacher_vars)            # writable copies
    syn = v["params"]["synthesis"]
    layers = [("b4", "conv1"), ("b8", "conv0"), ("b8", "conv1"), ("b16", "conv0"), ("b16", "conv1")]
    torgb = {1: "b4", 3: "b8", 5: "b16"}
    keep_n = [4, 4, 3, 3, 2, 2]
    kept = [np.sort(rng.permutation(8)[:n]) for n in keep_n]
    for slot, idx in enumerate(kept):
        dropped = np.setdiff1d(np.arange(8), idx)
        consumer = syn[layers[slot][0]][layers[slot][1]] if slot < len(layers) else None
        if consumer is not None:
            consumer["weight"][:, :, dropped, :] = 0.0
        if slot in torgb:
            syn[torgb[slot]]["torgb"]["weight"][:, :, dropped, :] = 0.0
    for slot, idx in enumerate(kept):
        dropped = np.setdiff1d(np.arange(8), idx)
        if slot == 0:
            syn["b4"]["const"][:, :, dropped] *= 1e-3
        else:
            block, layer = layers[slot - 1]
            syn[block][layer]["weight"][..., dropped] *= 1e-3
    return v, kept, layers, torgb


def test_inherit_synthesis_keeps_top_magnitude_channels(teacher_vars):
    rng = np.random.RandomState(7)
    teacher, kept, layers, torgb = _hand_made_teacher(teacher_vars, rng)
    cfg = student_config(TEACHER, channels=SMALL)
    student = _np_tree(init_student(TEACHER, teacher, cfg, jax.random.PRNGKey(2),
                                    synthesis_init="inherit"))
    t, s = teacher["params"]["synthesis"], student["params"]["synthesis"]
    # Independent NumPy ranking: L1 per output channel must select exactly the planted set.
    scores = [np.abs(t["b4"]["const"]).sum((0, 1))] + \
             [np.abs(t[b][l]["weight"]).sum((0, 1, 2)) for b, l in layers]
    for slot, idx in enumerate(kept):
        assert set(np.argsort(scores[slot])[::-1][:len(idx)]) == set(idx)
    np.testing.assert_array_equal(s["b4"]["const"], t["b4"]["const"][:, :, kept[0]])
    for i, (b, l) in enumerate(layers):
        m_in, m_out = kept[i], kept[i + 1]
        np.testing.assert_array_equal(s[b][l]["weight"], t[b][l]["weight"][:, :, m_in][..., m_out])
        np.testing.assert_array_equal(s[b][l]["bias"], t[b][l]["bias"][m_out])
        np.testing.assert_array_equal(s[b][l]["affine"]["weight"], t[b][l]["affine"]["weight"][:, m_in])
        np.testing.assert_array_equal(s[b][l]["affine"]["bias"], t[b][l]["affine"]["bias"][m_in])
        np.testing.assert_array_equal(s[b][l]["noise_strength"], t[b][l]["noise_strength"])
        np.testing.assert_array_equal(student["buffers"]["synthesis"][b][l]["noise_const"],
                                      teacher["buffers"]["synthesis"][b][l]["noise_const"])
    for slot, b in torgb.items():
        # ToRGB scales styles by 1/sqrt(C_in): inherited weights carry sqrt(C_s / C_t).
        gain = np.float32(np.sqrt(len(kept[slot]) / 8))
        np.testing.assert_array_equal(s[b]["torgb"]["weight"],
                                      t[b]["torgb"]["weight"][:, :, kept[slot]] * gain)
        np.testing.assert_array_equal(s[b]["torgb"]["bias"], t[b]["torgb"]["bias"])
        np.testing.assert_array_equal(s[b]["torgb"]["affine"]["weight"],
                                      t[b]["torgb"]["affine"]["weight"][:, kept[slot]])
    # End to end: the dropped channels feed nothing in this teacher, so the pruned student
    # (built only from the slicing) draws the teacher's images.
    z = np.random.RandomState(2).randn(4, 16).astype(np.float32)
    img_t = np.asarray(Generator(TEACHER).apply(teacher, z, 0.9))
    img_s = np.asarray(Generator(cfg).apply(student, z, 0.9))
    np.testing.assert_allclose(img_s, img_t, atol=1e-5 * np.abs(img_t).max())
    assert np.abs(img_t).max() > 0.1


def test_kernel1_student_takes_the_centre_tap(teacher_vars):
    cfg = student_config(TEACHER, kernel_size=1)
    student = _np_tree(init_student(TEACHER, teacher_vars, cfg, jax.random.PRNGKey(4),
                                    synthesis_init="inherit"))
    t, s = teacher_vars["params"]["synthesis"], student["params"]["synthesis"]
    for b in ("b8", "b16"):
        assert s[b]["conv1"]["weight"].shape == (1, 1, 8, 8)
        np.testing.assert_array_equal(s[b]["conv1"]["weight"], t[b]["conv1"]["weight"][1:2, 1:2])
        np.testing.assert_array_equal(s[b]["conv0"]["weight"], t[b]["conv0"]["weight"])
    np.testing.assert_array_equal(s["b4"]["conv1"]["weight"], t["b4"]["conv1"]["weight"])
    # A teacher whose 3x3 kernels are zero off-centre gives a kernel-1 student with its images.
    v = jax.tree_util.tree_map(np.array, teacher_vars)
    for b in ("b8", "b16"):
        w = v["params"]["synthesis"][b]["conv1"]["weight"]
        centre = w[1, 1].copy()
        w[:] = 0.0
        w[1, 1] = centre
    student = init_student(TEACHER, v, cfg, jax.random.PRNGKey(4), synthesis_init="inherit")
    z = np.random.RandomState(3).randn(2, 16).astype(np.float32)
    np.testing.assert_allclose(np.asarray(Generator(cfg).apply(student, z)),
                               np.asarray(Generator(TEACHER).apply(v, z)), atol=1e-5)


def test_inherit_synthesis_errors(teacher_vars):
    key = jax.random.PRNGKey(0)
    wide = dataclasses.replace(TEACHER, channels=(8, 8, 8, 8, 8, 9))
    with pytest.raises(ValueError, match="only remove channels"):
        init_student(TEACHER, teacher_vars, wide, key, synthesis_init="inherit")
    k1_teacher = dataclasses.replace(TEACHER, kernel_size=1)
    k1_vars = _np_tree(init_generator(k1_teacher, key))
    with pytest.raises(ValueError, match="kernel"):
        init_student(k1_teacher, k1_vars, TEACHER, key, synthesis_init="inherit")
    big = student_config(GeneratorConfig.teacher(32, channel_base=256, channel_max=8, z_dim=16,
                                                 w_dim=16, mapping_features=(16, 16)))
    with pytest.raises(ValueError, match="resolution"):
        init_student(TEACHER, teacher_vars, big, key, synthesis_init="inherit")
