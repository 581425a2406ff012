"""Shared fixtures: a tiny converted teacher, a tiny image folder, a persistent XLA cache.

Training tests compile the same jitted step many times (in-process and in subprocesses);
the persistent compilation cache makes every compile after the first a cache hit.
"""

import os

import jax
import numpy as np
import pytest
from PIL import Image

CACHE_DIR = os.path.join(os.environ.get("PYTEST_XLA_CACHE", "/tmp/stylekd_jax_test_xla_cache"))
# Also for the subprocesses the tests start (python -m stylekd_jax.main ...): every program,
# however small, is cached (a process otherwise recompiles ~100 small ones, ~0.1 s each).
os.environ["JAX_COMPILATION_CACHE_DIR"] = CACHE_DIR
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def set_noise_strength(variables: dict, value: float) -> None:
    """Every StyleGAN2 synthesis layer's noise strength := value (init gives 0, which would hide
    noise handling), in place on host variables."""
    for block in variables["params"]["synthesis"].values():
        for layer in block.values():
            if isinstance(layer, dict) and "noise_strength" in layer:
                layer["noise_strength"] = np.float32(value)


def rel_err(got, want) -> float:
    """max |got - want| relative to max |want|."""
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A 16px teacher checkpoint (random weights, non-zero noise strengths) with its D."""
    from stylekd_jax import checkpoint
    from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig
    from stylekd_jax.networks.generator import init_generator
    path = str(tmp_path_factory.mktemp("teacher") / "teacher")
    cfg = GeneratorConfig.teacher(16, channel_base=256, channel_max=32, z_dim=16, w_dim=16,
                                  mapping_features=(16, 16))
    variables = jax.tree_util.tree_map(np.asarray, init_generator(cfg, jax.random.PRNGKey(0)))
    set_noise_strength(variables, 0.2)
    d_cfg = DiscriminatorConfig.teacher(16, channel_base=256, channel_max=32)
    checkpoint.save(path, {"g_ema": variables}, cfg, d_cfg)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """24 structured 20x20 PNGs (flat colour + a square), centre-cropped/resized to 16 by the pipeline."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.RandomState(0)
    for i in range(24):
        colour = rng.randint(0, 256, 3)
        img = np.empty((20, 20, 3), np.uint8)
        img[:] = colour
        x, y = rng.randint(0, 12, 2)
        img[y:y + 8, x:x + 8] = 255 - colour
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return str(folder)


def tiny_overrides(teacher: str, data: str, **extra) -> dict:
    """Config overrides that make configs/ffhq256_stylegan2.py run on the tiny teacher in seconds."""
    overrides = {
        "teacher": teacher, "data.source": f"folder:{data}", "student.keep_ratio": 0.5,
        "batch_size": 8, "loss.lpips_size": 16, "loss.ld_layers": (1, 2), "total_steps": 4,
        "log_every_steps": 2, "checkpoint_every_steps": 2, "sample_every_steps": 2,
        "sample_seeds": (0, 1),
        "mesh.data": 1,            # one device also where tests make 8 (test_train's runs)
        # Path length on all 8 samples: its batch is shrunk per data device (path_length_batch),
        # 8 // 2 = 4 on one device but 8 on data 8, so only shrink 1 gives every mesh one batch.
        "pl_batch_shrink": 1,
        "loss.face_mask": False,   # no face-parser weights in tests (test_face_parsing covers it)
    }
    overrides.update(extra)
    return overrides


def as_flags(overrides: dict) -> list[str]:
    def fmt(v):
        return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
    return [f"--config.{k}={fmt(v)}" for k, v in overrides.items()]
